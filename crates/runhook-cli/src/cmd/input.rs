//! Reading a body from a file or from standard input.

use std::io::Read;
use std::path::Path;

/// A reader of `path`, or of standard input when `path` is `-`, for input read as a stream;
/// the error is the message [`read_input`] would give.
pub fn open_input(path: &Path) -> Result<Box<dyn Read>, String> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(std::io::stdin().lock()));
    }
    match std::fs::File::open(path) {
        Ok(file) => Ok(Box::new(file)),
        Err(e) => Err(read_error(path, &e)),
    }
}

/// The message for a failed read of `path` (`-`: standard input).
pub fn read_error(path: &Path, e: &std::io::Error) -> String {
    if path.as_os_str() == "-" {
        format!("cannot read standard input: {e}")
    } else {
        format!("cannot read {}: {e}", path.display())
    }
}

/// The whole content of `path`, or of standard input when `path` is `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| read_error(path, &e))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|e| read_error(path, &e))
}
