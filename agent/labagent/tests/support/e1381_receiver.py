#!/usr/bin/env python3
"""An independent ASTM E1381 receiver for testing `labagent simulate`.

Written from the standard (LIS1-A), sharing no code with labagent: it answers ENQ with ACK,
checks every frame's number and checksum, ACKs good frames and NAKs bad ones, joins frame texts,
and on EOT appends the received message (records split on CR) to a JSON-lines file.

    e1381_receiver.py --tcp OUT [--nak-frame N] [--sessions K]      (prints its port)
    e1381_receiver.py --serial DEVICE OUT [--nak-frame N] [--sessions K]  (prints "ready")

--nak-frame N answers the N-th frame received (counting from 1, over the whole run) with NAK
once, to exercise the sender's retransmission. The receiver exits after K sessions (ENQ..EOT).
"""
import argparse
import json
import os
import socket
import sys
import termios
import tty

STX, ETX, EOT, ENQ, ACK, LF, CR, NAK, ETB = 2, 3, 4, 5, 6, 10, 13, 21, 23


class Receiver:
    def __init__(self, read, write, out, nak_frame, sessions):
        self.read, self.write, self.out = read, write, out
        self.nak_frame, self.sessions = nak_frame, sessions
        self.frames_seen = 0

    def byte(self):
        b = self.read(1)
        if not b:
            raise EOFError
        return b[0]

    def run(self):
        done = 0
        while done < self.sessions:
            b = self.byte()
            if b != ENQ:
                continue
            self.write(bytes([ACK]))
            text, expected, nak_frames = b"", 1, 0
            while True:
                b = self.byte()
                if b == EOT:
                    break
                if b != STX:
                    continue
                frame = bytearray()
                while True:
                    c = self.byte()
                    frame.append(c)
                    if c in (ETX, ETB):
                        break
                c1, c2 = self.byte(), self.byte()
                trailer = bytes([self.byte(), self.byte()])
                fn = frame[0] - ord("0")
                ok = (sum(frame) % 256) == int(bytes([c1, c2]), 16) and trailer == b"\r\n"
                ok = ok and fn == expected and len(frame) - 2 <= 240
                self.frames_seen += 1
                if ok and self.frames_seen == self.nak_frame:
                    ok = False
                    nak_frames += 1
                if ok:
                    text += bytes(frame[1:-1])
                    expected = (expected + 1) % 8
                    self.write(bytes([ACK]))
                else:
                    self.write(bytes([NAK]))
            records = [r.decode("latin-1") for r in text.split(b"\r") if r]
            with open(self.out, "a") as f:
                f.write(json.dumps({"records": records, "naks": nak_frames}) + "\n")
            done += 1


def main():
    p = argparse.ArgumentParser()
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--tcp", action="store_true")
    g.add_argument("--serial", metavar="DEVICE")
    p.add_argument("out")
    p.add_argument("--nak-frame", type=int, default=0)
    p.add_argument("--sessions", type=int, default=1)
    a = p.parse_args()
    if a.tcp:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        print(srv.getsockname()[1], flush=True)
        conn, _ = srv.accept()
        r = Receiver(conn.recv, conn.sendall, a.out, a.nak_frame, a.sessions)
    else:
        fd = os.open(a.serial, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(fd, termios.TCSANOW)  # TCSANOW: do not flush what the sender already wrote
        print("ready", flush=True)
        r = Receiver(lambda n: os.read(fd, n), lambda b: os.write(fd, b), a.out, a.nak_frame,
                     a.sessions)
    try:
        r.run()
    except EOFError:
        sys.exit(3)


if __name__ == "__main__":
    main()
