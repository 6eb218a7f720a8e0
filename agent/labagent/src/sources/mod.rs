//! Analyser-facing transports and the driver that runs the E1381 link over them.

pub mod astm;
pub mod driver;
pub mod mllp;
pub mod serial;
