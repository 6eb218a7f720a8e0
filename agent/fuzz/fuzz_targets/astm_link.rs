//! The E1381 `Link` state machine in simulated time.
//!
//! Byte 0 picks the mode (even: receiver driven by scripted actions, odd: sender and receiver
//! paired over a lossy channel); the rest is that mode's script.
//!
//! # Receiver mode
//! A `Role::Computer` link with a small configuration (limits from the input) is driven by ops
//! read from the input: raw bytes, well-formed frames built from the input (so checksums are
//! right more often than chance), ENQ/EOT, commit/refuse of any message id seen, busy on/off,
//! and clock advances followed by `handle_timeout` once `poll_timeout` is due. After every op:
//! - every transmitted byte is ACK or NAK (a receiver with nothing to send sends nothing else);
//! - no `Message` text is longer than `max_message`; a message with `reply_held` ended at its
//!   L or at the next H, one without ended at EOT;
//! - while a reply is held (`is_holding()`), nothing is transmitted until the op that decides
//!   the last held message; that op's first transmitted byte is ACK (all committed) or NAK
//!   (any refused). `is_holding()` is true exactly while some held message is undecided;
//! - bookkeeping: NAKs sent = `FrameRejected` + `RefusedBusy` events, ACKs sent =
//!   `Established` + `DuplicateFrame` + `FrameAccepted` − holds started + holds released by
//!   commit; the link's counters agree.
//!
//! # Pair mode
//! A `Role::Instrument` link sends one message (an H record, middle records, an L record; bytes
//! 0x20..=0xFF and CR only) to a `Role::Computer` link. Each chunk written by either side may be
//! dropped, lose one byte, have one byte replaced by a non-control byte, or be split in two,
//! as chosen by the input. That damage is always detectable by E1381 (one change per frame,
//! checksum mod 256, control bytes never forged); a multi-byte or control-forging channel can
//! defeat the E1381 checksum itself, which is the protocol's limit, not the implementation's.
//! - every message the receiver emits with `end == Terminator` equals the text sent;
//! - every message ended by EOT is a prefix of it, and none ends at a next header;
//! - when the sender reports `Sent`, the receiver has committed a message equal to the text;
//! - over a channel that damaged nothing, the message is delivered (`Sent`);
//! - the exchange settles (no transmits, no timers) within a bounded number of steps.

#![no_main]

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use labagent_astm::chars::{ACK, CR, ENQ, EOT, NAK};
use labagent_astm::frame::{self, Frame, FrameKind};
use labagent_astm::link::{Event, Link, LinkConfig, MessageEnd, MessageId, Role};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        receiver(rest);
    } else {
        pair(rest);
    }
});

/// Reads bytes off the front of the input; yields zeros once it is exhausted.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
}

// ---------------------------------------------------------------------------------------------
// Receiver mode
// ---------------------------------------------------------------------------------------------

const MAX_MESSAGES: [usize; 6] = [0, 1, 8, 64, 1024, 1 << 20];
const MAX_FRAME_TEXTS: [usize; 5] = [0, 4, 32, 240, frame::DEFAULT_MAX_TEXT];

#[derive(Default)]
struct Tally {
    acks: u64,
    naks: u64,
    established: u64,
    refused_busy: u64,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    holds_started: u64,
    holds_released_ack: u64,
    messages: u64,
}

fn receiver(input: &[u8]) {
    let mut input = Bytes(input);
    let cfg_byte = input.u8();
    let config = LinkConfig {
        role: Role::Computer,
        max_message: MAX_MESSAGES[usize::from(cfg_byte & 0x7) % MAX_MESSAGES.len()],
        max_frame_text: MAX_FRAME_TEXTS[usize::from(cfg_byte >> 3) % MAX_FRAME_TEXTS.len()],
        ..LinkConfig::default()
    };
    let max_message = config.max_message;
    let mut link = Link::new(config);
    let t0 = Instant::now();
    let mut elapsed_ms: u64 = 0;
    let mut ids: Vec<MessageId> = Vec::new();
    // The held messages not yet decided, and whether any of them was refused.
    let mut pending: Vec<MessageId> = Vec::new();
    let mut pending_refused = false;
    let mut tally = Tally::default();
    let mut ops = 0;

    while !input.is_empty() && ops < 4096 {
        ops += 1;
        let now = t0 + Duration::from_millis(elapsed_ms);
        let holding_before = !pending.is_empty();
        // Some(refused) when this op decides a pending held message.
        let mut decided: Option<bool> = None;
        let op = input.u8();
        match op % 10 {
            0 | 1 => {
                let n = usize::from(input.u8());
                link.handle_input(input.take(n), now);
            }
            2 | 3 => {
                // A well-formed frame: number, kind and text from the input.
                let b = input.u8();
                let n = usize::from(input.u8() % 64);
                let text = input.take(n).to_vec();
                let kind = if b & 0x80 != 0 {
                    FrameKind::Intermediate
                } else {
                    FrameKind::Final
                };
                let bytes = Frame::new(b & 0x7, kind, text).to_bytes();
                link.handle_input(&bytes, now);
            }
            4 => link.handle_input(&[ENQ], now),
            5 => link.handle_input(&[EOT], now),
            6 | 7 => {
                // Commit or refuse a held message (high bit), or any id seen, or one never
                // issued.
                let refuse = op % 10 == 7;
                let pick = usize::from(input.u8());
                let id = if pick & 0x80 != 0 && !pending.is_empty() {
                    pending[pick % pending.len()]
                } else {
                    ids.get(pick % (ids.len() + 1))
                        .copied()
                        .unwrap_or(MessageId(9999))
                };
                if let Some(pos) = pending.iter().position(|&p| p == id) {
                    pending.remove(pos);
                    pending_refused |= refuse;
                    if pending.is_empty() {
                        decided = Some(pending_refused);
                        pending_refused = false;
                    }
                }
                if refuse {
                    link.refuse(id, now);
                } else {
                    link.commit(id, now);
                }
            }
            8 => {
                // Advance the clock, then run the timers if due.
                elapsed_ms += u64::from(input.u16()) * 4;
                let now = t0 + Duration::from_millis(elapsed_ms);
                if link.poll_timeout().is_some_and(|t| t <= now) {
                    link.handle_timeout(now);
                }
            }
            _ => link.set_busy(input.u8() & 1 == 1),
        }

        let sent = link.poll_transmit();
        if let Some(bytes) = &sent {
            assert!(
                !bytes.is_empty(),
                "poll_transmit returned an empty transmit"
            );
            for &b in bytes {
                assert!(b == ACK || b == NAK, "receiver transmitted 0x{b:02X}");
                if b == ACK {
                    tally.acks += 1;
                } else {
                    tally.naks += 1;
                }
            }
        }
        match decided {
            Some(refused) => {
                let first = sent.as_ref().and_then(|s| s.first().copied());
                let want = if refused { NAK } else { ACK };
                assert_eq!(first, Some(want), "held reply not released as expected");
                if !refused {
                    tally.holds_released_ack += 1;
                }
            }
            None => assert!(
                !holding_before || sent.is_none(),
                "transmitted while a reply was held"
            ),
        }

        let mut after_accept = false;
        let mut hold_counted = false;
        while let Some(ev) = link.poll_event() {
            let was_accept = matches!(ev, Event::FrameAccepted { .. });
            let was_held = matches!(&ev, Event::Message(m) if m.reply_held);
            match ev {
                Event::Established => tally.established += 1,
                Event::RefusedBusy => tally.refused_busy += 1,
                Event::FrameAccepted { number } => {
                    assert!(number < 8);
                    tally.accepted += 1;
                    hold_counted = false;
                }
                Event::DuplicateFrame { .. } => tally.duplicates += 1,
                Event::FrameRejected { .. } => tally.rejected += 1,
                Event::Message(m) => {
                    tally.messages += 1;
                    assert!(
                        m.text.len() <= max_message,
                        "message of {} bytes over max_message {max_message}",
                        m.text.len()
                    );
                    assert!(!m.text.is_empty());
                    ids.push(m.id);
                    if m.reply_held {
                        assert_ne!(m.end, MessageEnd::Eot);
                        assert!(after_accept, "held message not right after FrameAccepted");
                        if !hold_counted {
                            tally.holds_started += 1;
                            hold_counted = true;
                        }
                        pending.push(m.id);
                    } else {
                        assert_eq!(m.end, MessageEnd::Eot);
                    }
                }
                Event::Sent(_) | Event::SendFailed { .. } | Event::Contention => {
                    panic!("receiver-only link reported a sender event: {ev:?}")
                }
                Event::Discarded { .. } | Event::Terminated => {}
            }
            // Several messages can follow one FrameAccepted (one frame may end several).
            after_accept = was_accept || (after_accept && was_held);
        }
        assert_eq!(
            link.is_holding(),
            !pending.is_empty(),
            "is_holding disagrees with the undecided held messages"
        );

        assert_eq!(tally.naks, tally.rejected + tally.refused_busy, "NAK count");
        assert_eq!(
            tally.acks + tally.holds_started,
            tally.established + tally.duplicates + tally.accepted + tally.holds_released_ack,
            "ACK count"
        );
        let stats = link.stats();
        assert_eq!(stats.naks_sent, tally.rejected);
        assert_eq!(stats.messages_received, tally.messages);
        assert_eq!(stats.messages_sent, 0);
    }
}

// ---------------------------------------------------------------------------------------------
// Pair mode
// ---------------------------------------------------------------------------------------------

/// Builds `H<hdr>CR <middle records> L<delim><tail>CR` from the input: printable and high bytes
/// only, no record but the first starting with H and none but the last starting with L.
fn message_text(input: &mut Bytes<'_>) -> Vec<u8> {
    let printable = |b: u8| if b < 0x20 { b | 0x40 } else { b };
    let mut text = vec![b'H'];
    let hdr_len = usize::from(input.u8() % 32);
    text.extend(input.take(hdr_len).iter().map(|&b| printable(b)));
    // The assembler reads the field delimiter from H (default `|` when H is alone).
    let delimiter = text.get(1).copied().unwrap_or(b'|');
    text.push(CR);
    let records = input.u8() % 8;
    for _ in 0..records {
        let len = usize::from(input.u8() % 48);
        let body = input.take(len);
        for (i, &b) in body.iter().enumerate() {
            let b = if b == 0 { CR } else { printable(b) };
            // A record starting with H or L would end the message early.
            let b = if (i == 0 || text.last() == Some(&CR)) && (b == b'H' || b == b'L') {
                b'R'
            } else {
                b
            };
            text.push(b);
        }
        text.push(CR);
    }
    text.push(b'L');
    if input.u8() & 1 == 1 {
        text.push(delimiter);
        let len = usize::from(input.u8() % 16);
        text.extend(input.take(len).iter().map(|&b| printable(b)));
    }
    text.push(CR);
    text
}

/// What the channel does to one chunk.
fn damage(chunk: Vec<u8>, noise: &mut Bytes<'_>, damaged: &mut bool) -> Vec<Vec<u8>> {
    if noise.is_empty() {
        return vec![chunk];
    }
    let what = noise.u8();
    let at = usize::from(noise.u16()) % chunk.len().max(1);
    match what % 8 {
        0 => {
            *damaged = true;
            vec![]
        }
        1 => {
            *damaged = true;
            let mut c = chunk;
            c.remove(at);
            vec![c]
        }
        2 => {
            // Replace one byte with a different non-control byte (never forges ENQ/ACK/NAK/EOT/
            // STX/ETX/ETB/CR/LF).
            *damaged = true;
            let mut c = chunk;
            let old = c[at];
            let mut new = 0x20 + noise.u8() % 0xE0;
            if new == old {
                new = if new == 0xFF { 0x20 } else { new + 1 };
            }
            c[at] = new;
            vec![c]
        }
        3 => {
            let (a, b) = chunk.split_at(at);
            vec![a.to_vec(), b.to_vec()]
        }
        _ => vec![chunk],
    }
}

fn pair(input: &[u8]) {
    let mut input = Bytes(input);
    let cfg = input.u8();
    let send_frame_text = [1, 2, 5, 17, 64, 240][usize::from(cfg % 6)];
    let refuse_budget = (cfg >> 4) % 4;
    let text = message_text(&mut input);
    let mut noise = input;

    let mut sender = Link::new(LinkConfig {
        role: Role::Instrument,
        send_frame_text,
        ..LinkConfig::default()
    });
    let mut receiver = Link::new(LinkConfig::default());
    let t0 = Instant::now();
    let mut now = t0;
    let mut refusals = 0;
    let id = sender.send(&text, now);

    let mut to_receiver: VecDeque<Vec<u8>> = VecDeque::new();
    let mut to_sender: VecDeque<Vec<u8>> = VecDeque::new();
    let mut committed_ok = false;
    let mut sent_ok = false;
    let mut settled = false;
    let mut damaged = false;

    for _ in 0..200_000 {
        let mut progress = false;
        if let Some(chunk) = sender.poll_transmit() {
            progress = true;
            to_receiver.extend(damage(chunk, &mut noise, &mut damaged));
        }
        if let Some(chunk) = receiver.poll_transmit() {
            progress = true;
            to_sender.extend(damage(chunk, &mut noise, &mut damaged));
        }
        while let Some(ev) = sender.poll_event() {
            match ev {
                Event::Sent(sid) => {
                    assert_eq!(sid, id);
                    sent_ok = true;
                }
                Event::SendFailed { id: sid, .. } => assert_eq!(sid, id),
                _ => {}
            }
        }
        while let Some(ev) = receiver.poll_event() {
            let Event::Message(m) = ev else { continue };
            match m.end {
                MessageEnd::Terminator => {
                    assert_eq!(m.text, text, "receiver took a message that was not sent");
                    assert!(m.reply_held);
                    progress = true;
                    if refusals < refuse_budget && noise.u8() & 1 == 1 {
                        refusals += 1;
                        receiver.refuse(m.id, now);
                    } else {
                        receiver.commit(m.id, now);
                        committed_ok = true;
                    }
                }
                MessageEnd::Eot => {
                    assert!(!m.reply_held);
                    assert!(
                        text.starts_with(&m.text),
                        "message ended by EOT is not a prefix of the text sent"
                    );
                }
                MessageEnd::NextHeader => panic!("only one H was sent"),
            }
        }
        if let Some(chunk) = to_receiver.pop_front() {
            receiver.handle_input(&chunk, now);
            continue;
        }
        if let Some(chunk) = to_sender.pop_front() {
            sender.handle_input(&chunk, now);
            continue;
        }
        if progress {
            continue;
        }
        // Nothing in flight: let the clock run to the next deadline.
        let next = match (sender.poll_timeout(), receiver.poll_timeout()) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => {
                    settled = true;
                    break;
                }
            },
        };
        assert!(next >= now, "a deadline in the past was left pending");
        now = next;
        if sender.poll_timeout().is_some_and(|t| t <= now) {
            sender.handle_timeout(now);
        }
        if receiver.poll_timeout().is_some_and(|t| t <= now) {
            receiver.handle_timeout(now);
        }
    }
    assert!(settled, "the exchange did not settle");
    assert!(sender.is_idle());
    if !damaged {
        assert!(sent_ok, "message not delivered over a clean channel");
    }
    if sent_ok {
        assert!(
            committed_ok,
            "sender reports Sent but the receiver committed nothing"
        );
    }
}
