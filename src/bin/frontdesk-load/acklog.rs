//! `--ack-log FILE`: one line per `ack` received from frontdesk,
//! `conversation_id<TAB>message_id`, written as it arrives, so that a run
//! against a server that is killed and restarted can be checked afterwards
//! against what the server stored (scripts/crash-test does).

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

/// The log, shared by the visitors of a run.
#[derive(Debug)]
pub struct AckLog {
    file: Mutex<File>,
}

impl AckLog {
    /// Creates (or empties) the file.
    pub fn create(path: &Path) -> std::io::Result<AckLog> {
        Ok(AckLog {
            file: Mutex::new(File::create(path)?),
        })
    }

    /// Records one acknowledgement. Each line is written with one `write`
    /// and not buffered, so the file holds every ack seen even if the tool
    /// itself is stopped abruptly.
    pub fn record(&self, conversation_id: &str, message_id: &str) -> std::io::Result<()> {
        let line = line(conversation_id, message_id)?;
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        file.write_all(line.as_bytes())
    }
}

/// The line for one ack; ids with a tab or newline would break the format.
fn line(conversation_id: &str, message_id: &str) -> std::io::Result<String> {
    let bad = |s: &str| s.is_empty() || s.contains(['\t', '\n', '\r']);
    if bad(conversation_id) || bad(message_id) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("cannot log the ack of {message_id:?} in {conversation_id:?}"),
        ));
    }
    Ok(format!("{conversation_id}\t{message_id}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_ack_as_it_comes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.tsv");
        std::fs::write(&path, "left over\n").unwrap();
        let log = AckLog::create(&path).unwrap();
        log.record("c_1", "v0-0").unwrap();
        log.record("c_2", "v1-0").unwrap();
        // Readable while the run goes on: nothing waits in a buffer.
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "c_1\tv0-0\nc_2\tv1-0\n"
        );
    }

    #[test]
    fn ids_that_would_break_a_line_are_refused() {
        assert!(line("c_1", "a\tb").is_err());
        assert!(line("c\n1", "m").is_err());
        assert!(line("", "m").is_err());
        assert_eq!(line("c_1", "m").unwrap(), "c_1\tm\n");
    }
}
