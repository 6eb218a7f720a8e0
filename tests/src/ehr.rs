//! `EhrStub`: an MLLP server standing in for the clinic's EHR. It records every message it
//! receives (with the connection it came on) and answers each according to a script; when
//! the script runs out it uses the default reply. Plain TCP or TLS (optionally requiring a
//! client certificate).

use crate::er7::Er7;
use crate::mllp::{Stream, frame, take_block};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the stub answers one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// MSA-1 AA, MSA-2 = the received MSH-10.
    Aa,
    /// MSA-1 AE with this text (MSA-3).
    Ae(String),
    /// MSA-1 AR.
    Ar,
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then AA.
    DelayThenAa(Duration),
    /// Never answer (keep the connection open).
    Silent,
}

/// One message the stub received.
#[derive(Debug, Clone)]
pub struct Received {
    /// The payload, framing removed.
    pub bytes: Vec<u8>,
    /// Which accepted connection (0-based) it arrived on.
    pub conn: usize,
    /// The reply the stub chose.
    pub reply: Reply,
}

impl Received {
    /// Parsed.
    pub fn er7(&self) -> Er7 {
        Er7::parse(&self.bytes)
    }

    /// MSH-10.
    pub fn control_id(&self) -> String {
        self.er7().control_id()
    }
}

#[derive(Debug, Default)]
struct State {
    received: Vec<Received>,
    script: VecDeque<Reply>,
    accepts: Vec<Instant>,
    tls_errors: Vec<String>,
    streams: Vec<TcpStream>,
}

/// How to start a stub.
#[derive(Debug, Clone)]
pub struct StubSpec {
    /// Port to bind on 127.0.0.1 (0: any).
    pub port: u16,
    /// Replies for the first messages, in order.
    pub script: Vec<Reply>,
    /// Reply once the script is used up.
    pub default: Reply,
    /// TLS server configuration.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Close every connection as soon as it is accepted (an EHR that is up but refusing).
    pub hang_up_on_accept: bool,
}

impl Default for StubSpec {
    fn default() -> Self {
        StubSpec {
            port: 0,
            script: Vec::new(),
            default: Reply::Aa,
            tls: None,
            hang_up_on_accept: false,
        }
    }
}

impl StubSpec {
    /// Starts the stub.
    pub fn start(self) -> EhrStub {
        EhrStub::start_spec(self)
    }
}

/// The running stub; stops (closing every connection) on drop.
#[derive(Debug)]
pub struct EhrStub {
    /// Its port on 127.0.0.1.
    pub port: u16,
    shared: Arc<(Mutex<State>, Condvar)>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl EhrStub {
    /// A plain stub on any port answering AA to everything.
    pub fn aa() -> EhrStub {
        StubSpec::default().start()
    }

    fn start_spec(spec: StubSpec) -> EhrStub {
        let listener = TcpListener::bind(("127.0.0.1", spec.port)).expect("bind the EHR stub");
        let port = listener.local_addr().expect("addr").port();
        let shared = Arc::new((
            Mutex::new(State {
                script: spec.script.iter().cloned().collect(),
                ..State::default()
            }),
            Condvar::new(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut index = 0usize;
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(tcp) = conn else { continue };
                    {
                        let mut s = shared.0.lock().expect("stub lock");
                        s.accepts.push(Instant::now());
                        if let Ok(c) = tcp.try_clone() {
                            s.streams.push(c);
                        }
                        shared.1.notify_all();
                    }
                    if spec.hang_up_on_accept {
                        let _ = tcp.shutdown(Shutdown::Both);
                        continue;
                    }
                    let (shared, stop, spec) = (shared.clone(), stop.clone(), spec.clone());
                    let conn_index = index;
                    index += 1;
                    std::thread::spawn(move || serve(tcp, conn_index, &spec, &shared, &stop));
                }
            })
        };
        EhrStub {
            port,
            shared,
            stop,
            accept: Some(accept),
        }
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared.0.lock().expect("stub lock").received.clone()
    }

    /// When each connection was accepted.
    pub fn accept_times(&self) -> Vec<Instant> {
        self.shared.0.lock().expect("stub lock").accepts.clone()
    }

    /// TLS handshake failures seen by the stub.
    pub fn tls_errors(&self) -> Vec<String> {
        self.shared.0.lock().expect("stub lock").tls_errors.clone()
    }

    /// Waits until `pred(received)` holds; returns what was received either way.
    pub fn wait_until(
        &self,
        timeout: Duration,
        pred: impl Fn(&[Received]) -> bool,
    ) -> (bool, Vec<Received>) {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().expect("stub lock");
        loop {
            if pred(&s.received) {
                return (true, s.received.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return (false, s.received.clone());
            }
            s = cv.wait_timeout(s, deadline - now).expect("stub lock").0;
        }
    }

    /// Waits for at least `n` messages; panics with what arrived if they do not.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let (ok, got) = self.wait_until(timeout, |r| r.len() >= n);
        assert!(
            ok,
            "the EHR stub expected {n} message(s) within {timeout:?}, got {}",
            got.len()
        );
        got
    }

    /// Waits for at least `n` accepted connections.
    pub fn wait_for_accepts(&self, n: usize, timeout: Duration) -> Vec<Instant> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut s = lock.lock().expect("stub lock");
        loop {
            if s.accepts.len() >= n || Instant::now() >= deadline {
                return s.accepts.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            s = cv.wait_timeout(s, left).expect("stub lock").0;
        }
    }
}

impl Drop for EhrStub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop, then close every connection so their threads end.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
        let s = self.shared.0.lock().expect("stub lock");
        for c in &s.streams {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

fn serve(
    tcp: TcpStream,
    conn_index: usize,
    spec: &StubSpec,
    shared: &Arc<(Mutex<State>, Condvar)>,
    stop: &AtomicBool,
) {
    // A clone of the socket is kept for Drop, so ending this thread alone would not close the
    // connection: shut it down explicitly.
    let ctl = tcp.try_clone();
    serve_inner(tcp, conn_index, spec, shared, stop);
    if let Ok(c) = ctl {
        let _ = c.shutdown(Shutdown::Both);
    }
}

fn serve_inner(
    tcp: TcpStream,
    conn_index: usize,
    spec: &StubSpec,
    shared: &Arc<(Mutex<State>, Condvar)>,
    stop: &AtomicBool,
) {
    let _ = tcp.set_nodelay(true);
    let mut stream: Box<dyn Stream> = match &spec.tls {
        None => Box::new(tcp),
        Some(config) => {
            let mut tcp = tcp;
            let mut conn = match rustls::ServerConnection::new(config.clone()) {
                Ok(c) => c,
                Err(_) => return,
            };
            while conn.is_handshaking() {
                if let Err(e) = conn.complete_io(&mut tcp) {
                    let (lock, cv) = &**shared;
                    lock.lock()
                        .expect("stub lock")
                        .tls_errors
                        .push(e.to_string());
                    cv.notify_all();
                    return;
                }
            }
            Box::new(rustls::StreamOwned::new(conn, tcp))
        }
    };
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some(payload) = take_block(&mut buf) {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let reply = {
                let (lock, cv) = &**shared;
                let mut s = lock.lock().expect("stub lock");
                let reply = s.script.pop_front().unwrap_or_else(|| spec.default.clone());
                s.received.push(Received {
                    bytes: payload.clone(),
                    conn: conn_index,
                    reply: reply.clone(),
                });
                cv.notify_all();
                reply
            };
            let id = Er7::parse(&payload).control_id();
            let ack = match &reply {
                Reply::Aa => ack("AA", &id, None),
                Reply::Ae(text) => ack("AE", &id, Some(text)),
                Reply::Ar => ack("AR", &id, None),
                Reply::Drop => return,
                Reply::DelayThenAa(d) => {
                    std::thread::sleep(*d);
                    ack("AA", &id, None)
                }
                Reply::Silent => continue,
            };
            if stream.write_all(&frame(ack.as_bytes())).is_err() || stream.flush().is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// An ACK as an EHR builds it: `MSH|^~\&|EHR|CLINIC|...|ACK^R01^ACK|<id>|P|2.5.1` then
/// `MSA|<code>|<msh10>[|text]`.
pub fn ack(code: &str, msh10: &str, text: Option<&str>) -> String {
    use std::sync::atomic::AtomicU64;
    static N: AtomicU64 = AtomicU64::new(1);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let text = text.map(|t| format!("|{t}")).unwrap_or_default();
    format!(
        "MSH|^~\\&|EHR|CLINIC|LABAGENT|LAB|20260101120000||ACK^R01^ACK|EHRACK{n}|P|2.5.1\rMSA|{code}|{msh10}{text}\r"
    )
}
