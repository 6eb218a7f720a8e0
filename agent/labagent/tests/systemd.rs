//! The sd_notify protocol as systemd sees it: a datagram socket stands in for NOTIFY_SOCKET and
//! receives READY=1 (after recovery and binding), STATUS= lines, WATCHDOG=1 at half of
//! WATCHDOG_USEC, and STOPPING=1 on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_labagent");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

#[test]
fn ready_status_watchdog_and_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[agent]\nid = \"sd1\"\nstate_dir = \"state\"\n[http]\nlisten = \"127.0.0.1:{}\"\n\
             [[source]]\nname = \"an\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{}\"\n\
             [[sink]]\nname = \"files\"\nkind = \"file\"\ndir = \"out\"\n",
            free_port(),
            free_port()
        ),
    )
    .expect("config");
    let mut child = Command::new(BIN)
        .args(["run", "--config"])
        .arg(&config)
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1000000")
        .env_remove("WATCHDOG_PID")
        .stderr(Stdio::null())
        .spawn()
        .expect("start agent");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1"))
        && seen
            .iter()
            .any(|m| m.contains("STATUS=0/1 sources connected, 0 queued")))
    {
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        let n = sock.recv(&mut buf).expect("notification");
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let ready_at = seen.iter().position(|m| m.contains("READY=1"));
    let first_watchdog = seen.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(ready_at < first_watchdog, "watchdog before ready: {seen:?}");

    // SIGTERM: the agent says STOPPING=1 and exits 0.
    let pid = child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        assert!(Instant::now() < deadline, "no STOPPING=1 in {seen:?}");
        let n = sock.recv(&mut buf).expect("notification");
        let m = String::from_utf8_lossy(&buf[..n]).into_owned();
        if m.contains("STOPPING=1") {
            break;
        }
        seen.push(m);
    }
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status:?}");
}
