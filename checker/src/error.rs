//! Errors about the input: every one names the file, the line when there is one, and what is
//! wrong, so a user can fix the history instead of guessing.

use std::fmt;

/// A problem with a history file or its contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryError {
    /// The file (or other source) the history came from.
    pub source: String,
    /// 1-based line, when the problem is on one line.
    pub line: Option<usize>,
    /// What is wrong, in words meant for the user.
    pub message: String,
}

impl HistoryError {
    /// An error on one line of `source`.
    pub fn at(source: &str, line: usize, message: impl Into<String>) -> HistoryError {
        HistoryError {
            source: source.to_string(),
            line: (line > 0).then_some(line),
            message: message.into(),
        }
    }

    /// An error about `source` as a whole.
    pub fn whole(source: &str, message: impl Into<String>) -> HistoryError {
        HistoryError {
            source: source.to_string(),
            line: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for HistoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = crate::text::for_terminal(&self.source);
        let message = crate::text::for_terminal(&self.message);
        match self.line {
            Some(line) => write!(f, "{source}:{line}: {message}"),
            None => write!(f, "{source}: {message}"),
        }
    }
}

impl std::error::Error for HistoryError {}
