//! Reading a body from a file or from standard input.

use std::io::Read as _;
use std::path::Path;

/// The whole content of `path`, or of standard input when `path` is `-`.
pub fn read_input(path: &Path) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read standard input: {e}"))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}
