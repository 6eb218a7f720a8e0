//! MLLP framing (`VT payload FS CR`, HL7 v2.5.1 Appendix C) and a blocking client.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// Start of block.
pub const VT: u8 = 0x0B;
/// End of block.
pub const FS: u8 = 0x1C;
/// Carriage return after FS.
pub const CR: u8 = 0x0D;

/// `VT payload FS CR`.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(payload.len() + 3);
    v.push(VT);
    v.extend_from_slice(payload);
    v.push(FS);
    v.push(CR);
    v
}

/// Takes the first complete block out of `buf` (dropping bytes before its VT and the CR
/// after its FS); `None` while incomplete.
pub fn take_block(buf: &mut Vec<u8>) -> Option<Vec<u8>> {
    let fs = buf.iter().position(|&b| b == FS)?;
    let vt = buf[..fs].iter().rposition(|&b| b == VT);
    let payload = match vt {
        Some(v) => buf[v + 1..fs].to_vec(),
        None => {
            // An end block without a start: drop it and look again.
            buf.drain(..=fs);
            return take_block(buf);
        }
    };
    let mut end = fs + 1;
    if buf.get(end) == Some(&CR) {
        end += 1;
    }
    buf.drain(..end);
    Some(payload)
}

/// A byte stream: TCP or TLS over TCP.
pub trait Stream: Read + Write + Send {}
impl<T: Read + Write + Send> Stream for T {}

/// A blocking MLLP client.
pub struct MllpClient {
    stream: Box<dyn Stream>,
    tcp: TcpStream,
    buf: Vec<u8>,
}

impl std::fmt::Debug for MllpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MllpClient").finish_non_exhaustive()
    }
}

impl MllpClient {
    /// Connects over plain TCP to `127.0.0.1:port` (10 s read timeout).
    pub fn connect(port: u16) -> io::Result<MllpClient> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        tcp.set_nodelay(true)?;
        Ok(MllpClient {
            stream: Box::new(tcp.try_clone()?),
            tcp,
            buf: Vec::new(),
        })
    }

    /// Wraps an already connected socket.
    pub fn from_tcp(tcp: TcpStream) -> io::Result<MllpClient> {
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        Ok(MllpClient {
            stream: Box::new(tcp.try_clone()?),
            tcp,
            buf: Vec::new(),
        })
    }

    /// Connects over TLS and completes the handshake (an error here is a refused handshake).
    pub fn connect_tls(
        port: u16,
        config: Arc<rustls::ClientConfig>,
        server_name: &str,
    ) -> io::Result<MllpClient> {
        let mut tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let name = rustls_pki_types::ServerName::try_from(server_name.to_string())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut conn = rustls::ClientConnection::new(config, name).map_err(io::Error::other)?;
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp)?;
        }
        let clone = tcp.try_clone()?;
        Ok(MllpClient {
            stream: Box::new(rustls::StreamOwned::new(conn, tcp)),
            tcp: clone,
            buf: Vec::new(),
        })
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, t: Duration) -> io::Result<()> {
        self.tcp.set_read_timeout(Some(t))
    }

    /// Writes raw bytes (no framing).
    pub fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)?;
        self.stream.flush()
    }

    /// Reads the next block; `UnexpectedEof` when the peer closed.
    pub fn read_block(&mut self) -> io::Result<Vec<u8>> {
        loop {
            if let Some(b) = take_block(&mut self.buf) {
                return Ok(b);
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one framed message and returns the ACK payload.
    pub fn send(&mut self, payload: &[u8]) -> io::Result<Vec<u8>> {
        self.write_raw(&frame(payload))?;
        self.read_block()
    }

    /// Reads until the peer closes or fails: `Ok(true)` for a close (read of 0 or a reset),
    /// `Ok(false)` if the read timed out first.
    pub fn wait_closed(&mut self, timeout: Duration) -> io::Result<bool> {
        self.tcp.set_read_timeout(Some(timeout))?;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(true),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(false);
                }
                Err(_) => return Ok(true),
            }
        }
    }
}

/// A minimal ORU^R01-shaped HL7 v2.5.1 message with control id `id`.
pub fn hl7_message(id: &str, patient: &str, value: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|LIS|LAB|EHR|CLINIC|20260101120000||ORU^R01^ORU_R01|{id}|P|2.5.1\r\
         PID|1||{patient}||Doe^John||19700101|M\r\
         OBR|1|ORD-{id}|SPC-{id}|GLU^Glucose^L\r\
         OBX|1|NM|GLU^Glucose^L||{value}|mmol/L|||||F\r"
    )
    .into_bytes()
}

/// MSA-1 and MSA-2 of an ACK.
pub fn msa(ack: &[u8]) -> (String, String) {
    let m = crate::Er7::parse(ack);
    (m.field("MSA", 1), m.field("MSA", 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_taken_whole_and_junk_is_dropped() {
        let mut buf = b"junk\x0bA\x1c\r\x0bB".to_vec();
        assert_eq!(take_block(&mut buf), Some(b"A".to_vec()));
        assert_eq!(take_block(&mut buf), None);
        buf.extend_from_slice(b"C\x1c\r");
        assert_eq!(take_block(&mut buf), Some(b"BC".to_vec()));
        assert!(buf.is_empty());
        assert_eq!(frame(b"MSH|"), b"\x0bMSH|\x1c\r");
    }

    #[test]
    fn msa_fields() {
        let ack = crate::ehr::ack("AE", "ID1", Some("bad"));
        assert_eq!(msa(ack.as_bytes()), ("AE".into(), "ID1".into()));
        assert!(ack.starts_with("MSH|^~\\&|EHR|CLINIC|"));
        assert!(ack.contains("|ACK^R01^ACK|"));
    }
}
