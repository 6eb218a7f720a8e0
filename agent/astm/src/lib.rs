//! labagent-astm: the ASTM E1381 (CLSI LIS1-A) link layer and E1394 (CLSI LIS2-A2) records,
//! without I/O.
//!
//! # Boundary
//! This crate never touches sockets, files, threads or clocks. Bytes come in through
//! [`link::Link::handle_input`] together with the caller's `now`; bytes to write come out of
//! [`link::Link::poll_transmit`]; deadlines leave through [`link::Link::poll_timeout`]. A thin
//! async driver in the `labagent` crate owns the port and the clock (the quinn-proto shape).
//!
//! # Layers
//! - [`chars`]: control bytes.
//! - [`frame`]: one E1381 frame (`STX FN text ETB|ETX C1 C2 CR LF`), its checksum, and a bounded
//!   stream decoder that resynchronises on junk.
//! - [`link`]: the E1381 state machine for both roles (receiver and sender), with every timer.
//! - [`record`]: E1394 records, delimiters read from each H record, escapes, and the
//!   H > P > O > R > C hierarchy.
//! - [`capture`]: offline decoding of captured byte streams (`labagent decode`, corpus tests).
//! - [`charset`]: the analyser's 8-bit character set (latin-1 by default).
//!
//! # Invariants
//! - No input can make this crate panic; bad input becomes a typed error or an event.
//! - A frame with a bad checksum or frame number is never accepted.
//! - The reply to the frame that completes a message is held until the caller commits or refuses
//!   the message: that is how "durable before acknowledged" is enforced one layer up.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod capture;
pub mod chars;
pub mod charset;
pub mod frame;
pub mod link;
pub mod record;
