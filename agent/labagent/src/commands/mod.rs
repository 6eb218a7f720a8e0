//! One module per subcommand.

pub mod decode;
pub mod demo;
pub mod queue;
pub mod run;
pub mod simulate;
pub mod translate;
