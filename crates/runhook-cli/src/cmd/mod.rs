//! One module per subcommand.

pub mod canonicalize;
pub mod input;
pub mod parse;
pub mod secrets;
pub mod sign;
pub mod verify;
