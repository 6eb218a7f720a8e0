//! One module per subcommand.

pub mod decode;
pub mod simulate;
pub mod translate;
