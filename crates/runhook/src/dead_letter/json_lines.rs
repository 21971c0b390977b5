//! Dead letters as JSON lines in a file, locked against a concurrent redrive.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::letter::invalid_data;
use super::sink::over_budget;
use super::{DeadLetter, DeadLetterRecord, DeadLetterSink};
use crate::handler::BoxFuture;

/// Appends each dead letter to a file as one JSON line ([`DeadLetterRecord`]), creating it
/// with mode 0600. Writers and [`redrive_file`](super::redrive_file) lock the file, so that a
/// redrive rewriting it never loses a letter appended meanwhile. With a byte budget
/// ([`JsonLinesDeadLetters::max_bytes`]) a letter that would grow the file past it is refused
/// (the workers park their deliveries and try again in the background; a redrive that empties
/// the file makes room).
#[derive(Debug)]
pub struct JsonLinesDeadLetters {
    path: PathBuf,
    max_bytes: Option<u64>,
}

impl JsonLinesDeadLetters {
    /// Appends to `path`, creating it when absent (on unix with mode `0600`: readable and
    /// writable by the owner only; an existing file keeps its mode).
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            max_bytes: None,
        }
    }

    /// Refuses a letter that would grow the file past `max_bytes`, unless written past the
    /// budget ([`DeadLetterSink::put_past_budget`]).
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Appends `letter` as one line, refusing it past `max_bytes` when given.
    fn append(
        &self,
        letter: DeadLetter,
        max_bytes: Option<u64>,
    ) -> BoxFuture<'_, Result<(), std::io::Error>> {
        let path = self.path.clone();
        Box::pin(async move {
            let mut line = serde_json::to_vec(&letter.record()).map_err(std::io::Error::other)?;
            line.push(b'\n');
            tokio::task::spawn_blocking(move || {
                let mut file = open_locked(&path)?;
                if let Some(max) = max_bytes {
                    let size = file.metadata()?.len();
                    if size.saturating_add(line.len() as u64) > max {
                        return Err(over_budget("the dead-letter file", max));
                    }
                }
                file.write_all(&line)?;
                file.sync_data()
            })
            .await
            .map_err(std::io::Error::other)?
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Every letter in the file at `path`, oldest first (an absent file holds none).
    ///
    /// # Errors
    /// I/O errors, and a line that is not a [`DeadLetterRecord`] (with its line number).
    pub fn read(path: impl AsRef<Path>) -> Result<Vec<DeadLetterRecord>, std::io::Error> {
        let text = match std::fs::read_to_string(path.as_ref()) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        parse_lines(&text)
    }
}

pub(crate) fn parse_lines(text: &str) -> Result<Vec<DeadLetterRecord>, std::io::Error> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(n, line)| {
            serde_json::from_str(line).map_err(|e| invalid_data(format!("line {}: {e}", n + 1)))
        })
        .collect()
}

/// Opens `path` for appending (mode 0600 when created) and locks it exclusively. If a
/// redrive replaced the file between the open and the lock, opens the new one.
pub(crate) fn open_locked(path: &Path) -> Result<std::fs::File, std::io::Error> {
    loop {
        let mut options = std::fs::OpenOptions::new();
        // Readable too: a redrive reads the file through this handle, under the lock.
        options.create(true).append(true).read(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path)?;
        file.lock()?;
        if same_file(&file, path)? {
            return Ok(file);
        }
    }
}

#[cfg(unix)]
fn same_file(file: &std::fs::File, path: &Path) -> Result<bool, std::io::Error> {
    use std::os::unix::fs::MetadataExt as _;
    let (open, named) = (file.metadata()?, std::fs::metadata(path));
    Ok(match named {
        Ok(named) => open.ino() == named.ino() && open.dev() == named.dev(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e),
    })
}

#[cfg(not(unix))]
fn same_file(_file: &std::fs::File, _path: &Path) -> Result<bool, std::io::Error> {
    Ok(true)
}

impl DeadLetterSink for JsonLinesDeadLetters {
    fn put(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        self.append(letter, self.max_bytes)
    }

    fn put_past_budget(&self, letter: DeadLetter) -> BoxFuture<'_, Result<(), std::io::Error>> {
        self.append(letter, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dead_letter::letter;

    #[tokio::test]
    async fn a_file_at_its_budget_refuses_until_written_past_it() {
        let dir = std::env::temp_dir().join(runhook_testkit::unique("jsonl-budget"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("letters.jsonl");
        let sink = JsonLinesDeadLetters::new(&path).max_bytes(600);
        sink.put(letter(&[b'x'; 200])).await.unwrap();
        let refused = sink.put(letter(&[b'x'; 200])).await.unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::StorageFull);
        assert_eq!(JsonLinesDeadLetters::read(&path).unwrap().len(), 1);
        sink.put_past_budget(letter(&[b'x'; 200])).await.unwrap();
        assert_eq!(JsonLinesDeadLetters::read(&path).unwrap().len(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
