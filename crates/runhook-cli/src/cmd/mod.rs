//! One module per subcommand.

pub mod secrets;
pub mod verify;
