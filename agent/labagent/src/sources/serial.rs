//! Serial ports through tokio-serial (built without libudev, so cross builds need nothing extra).

use std::time::Duration;
use tokio_serial::{DataBits, FlowControl, Parity, SerialPortBuilderExt, SerialStream, StopBits};

/// Line settings of an RS-232 port. Analysers commonly use 9600 8N1 without flow control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SerialSettings {
    /// Device path, e.g. `/dev/ttyUSB0` or `/dev/serial/by-id/...`.
    pub device: String,
    /// Baud rate.
    pub baud: u32,
    /// Data bits per character.
    pub data_bits: DataBits,
    /// Parity.
    pub parity: Parity,
    /// Stop bits.
    pub stop_bits: StopBits,
    /// Flow control.
    pub flow_control: FlowControl,
}

impl SerialSettings {
    /// 9600 baud, 8 data bits, no parity, 1 stop bit, no flow control.
    pub fn new(device: impl Into<String>) -> Self {
        SerialSettings {
            device: device.into(),
            baud: 9600,
            data_bits: DataBits::Eight,
            parity: Parity::None,
            stop_bits: StopBits::One,
            flow_control: FlowControl::None,
        }
    }

    /// Opens the port exclusively and drops stale input left in the driver's buffer (a pty keeps
    /// bytes across a reopen; a real UART may hold a half frame from before we started).
    pub fn open(&self) -> tokio_serial::Result<SerialStream> {
        let port = tokio_serial::new(&self.device, self.baud)
            .data_bits(self.data_bits)
            .parity(self.parity)
            .stop_bits(self.stop_bits)
            .flow_control(self.flow_control)
            .timeout(Duration::from_millis(100))
            .open_native_async()?;
        tokio_serial::SerialPort::clear(&port, tokio_serial::ClearBuffer::Input)?;
        Ok(port)
    }
}
