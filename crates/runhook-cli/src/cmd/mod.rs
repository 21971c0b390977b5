//! One module per subcommand.

pub mod input;
pub mod parse;
pub mod secrets;
pub mod verify;
