//! How a command fails: lines for stderr and an exit code, never a panic or a backtrace.

use std::fmt::Display;

/// A failed command: what to print on stderr, and the exit status.
#[derive(Debug)]
pub struct Fail {
    pub lines: Vec<String>,
    pub code: i32,
}

impl Fail {
    /// The usual one-line error: `meshver: <what is wrong>; <what to do>`, exit 1.
    pub fn new(what: impl Display, todo: impl Display) -> Self {
        Fail { lines: vec![format!("meshver: {what}; {todo}")], code: 1 }
    }

    /// Several lines printed as they are (e.g. every error of a catalog), exit 1.
    pub fn report(lines: Vec<String>) -> Self {
        Fail { lines, code: 1 }
    }

    /// The same message with another exit status.
    pub fn with_code(mut self, code: i32) -> Self {
        self.code = code;
        self
    }
}

pub type Outcome<T = ()> = Result<T, Fail>;
