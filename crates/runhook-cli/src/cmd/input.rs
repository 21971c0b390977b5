//! Reading a body from a file or from standard input.

use std::io::Read;
use std::path::{Path, PathBuf};

/// A file (or standard input, `-`) that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {}: {source}", shown(path))]
pub struct InputError {
    path: PathBuf,
    source: std::io::Error,
}

/// `path` as a message names it: `standard input` for `-`.
fn shown(path: &Path) -> String {
    if path.as_os_str() == "-" {
        "standard input".into()
    } else {
        path.display().to_string()
    }
}

/// A reader of `path`, or of standard input when `path` is `-`, for input read as a stream.
pub fn open_input(path: &Path) -> Result<Box<dyn Read>, InputError> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    match std::fs::File::open(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) => Err(read_error(path, e)),
    }
}

/// The error for a failed read of `path` (`-`: standard input).
pub fn read_error(path: &Path, source: std::io::Error) -> InputError {
    InputError {
        path: path.to_path_buf(),
        source,
    }
}

/// The whole content of `path`, or of standard input when `path` is `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, InputError> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| read_error(path, e))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|e| read_error(path, e))
}
