//! Errors that say whose fault they are.
//!
//! [`Error::User`] is the user's input being wrong (a config file, a CLI
//! argument, a data file, a checkpoint): its message names the place and says
//! what to do, and the process exits with status 2. [`Error::Internal`] is a
//! bug in scir and says so. Everything else (I/O, a failed task) exits with 1.
//! Library code may wrap these in `anyhow::Error` with context; the binary edge
//! finds them again with `downcast_ref` on the error chain.

use std::fmt;

/// A typed scir error.
#[derive(Debug)]
pub enum Error {
    /// The user's input is wrong; the message names the place and the fix.
    User(String),
    /// A broken invariant inside scir: a bug, not the user's fault.
    Internal(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::User(msg) => write!(f, "{msg}"),
            Error::Internal(msg) => write!(
                f,
                "internal error: {msg}\nThis is a bug in scir, not in your input; please report it \
                 with the command you ran."
            ),
        }
    }
}

impl std::error::Error for Error {}

/// Build an [`Error::User`] from a format string: `user_err!("{path}: bad")`.
#[macro_export]
macro_rules! user_err {
    ($($arg:tt)*) => { $crate::error::Error::User(format!($($arg)*)) };
}

/// Build an [`Error::Internal`] from a format string.
#[macro_export]
macro_rules! internal_err {
    ($($arg:tt)*) => { $crate::error::Error::Internal(format!($($arg)*)) };
}

/// Exit status for an error chain: 2 when any link is a user error, else 1.
pub fn exit_code(err: &anyhow::Error) -> u8 {
    let is_user = err
        .chain()
        .any(|e| matches!(e.downcast_ref::<Error>(), Some(Error::User(_))));
    if is_user { 2 } else { 1 }
}
