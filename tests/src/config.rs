//! TOML snippets for agent configurations (INTERFACE.md "Config file"). Tests concatenate them
//! and write the result with [`write`]. Paths are written as TOML literal strings.

use crate::free_port;
use std::path::{Path, PathBuf};

/// A path as a TOML literal string.
pub fn path(p: &Path) -> String {
    let s = p.display().to_string();
    assert!(!s.contains('\''), "path with a quote: {s}");
    format!("'{s}'")
}

/// `[agent]` (state in `dir/state`, time zone UTC) and `[http]` on a free loopback port, so
/// parallel agents never share a port even once the status page exists.
pub fn agent(dir: &Path, id: &str) -> String {
    format!(
        "[agent]\nid = \"{id}\"\nstate_dir = {}\ntimezone = \"UTC\"\n\n[http]\nlisten = \"127.0.0.1:{}\"\n\n",
        path(&dir.join("state")),
        free_port()
    )
}

/// `[store] max_bytes`.
pub fn store(max_bytes: &str) -> String {
    format!("[store]\nmax_bytes = \"{max_bytes}\"\n\n")
}

/// An `astm-tcp` source listening on `127.0.0.1:port`, plus `extra` lines.
pub fn astm_tcp_source(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"astm-tcp\"\nlisten = \"127.0.0.1:{port}\"\n{extra}\n"
    )
}

/// An `astm-serial` source on `device`, plus `extra` lines.
pub fn astm_serial_source(name: &str, device: &Path, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"astm-serial\"\ndevice = {}\n{extra}\n",
        path(device)
    )
}

/// An `mllp` source listening on `127.0.0.1:port`, plus `extra` lines.
pub fn mllp_source(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[source]]\nname = \"{name}\"\nkind = \"mllp\"\nlisten = \"127.0.0.1:{port}\"\n{extra}\n"
    )
}

/// An `mllp` sink to `127.0.0.1:port`, plus `extra` lines (e.g. `ack_timeout = "2s"`).
pub fn mllp_sink(name: &str, port: u16, extra: &str) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\nkind = \"mllp\"\nconnect = \"127.0.0.1:{port}\"\n{extra}\n"
    )
}

/// A `file` sink writing into `dir`.
pub fn file_sink(name: &str, dir: &Path) -> String {
    format!(
        "[[sink]]\nname = \"{name}\"\nkind = \"file\"\ndir = {}\n\n",
        path(dir)
    )
}

/// Writes `text` to `dir/labagent.toml` and returns the path.
pub fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("labagent.toml");
    std::fs::write(&p, text).expect("write config");
    p
}
