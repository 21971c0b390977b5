//! One module per subcommand.

pub mod canonicalize;
pub mod dead_letters;
pub mod demo;
pub mod expect;
pub mod input;
pub mod migrate;
pub mod parse;
pub mod send;
pub mod serve;
pub mod sign;
pub mod verify;
