//! The error type and the one mapping from libdlmcontrol's results to it.

use std::io;

/// Result of every fallible call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong asking `dlm_controld`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `dlm_controld` does not answer: it is not running, or this process
    /// may not connect to its socket (`code` is the `errno` of the
    /// connection: `ECONNREFUSED` when no daemon listens, `EACCES`/`EPERM`
    /// for a caller that is not root).
    #[error("cannot talk to dlm_controld (errno {code}): is it running, and are we root?")]
    NotRunning {
        /// The `errno` of the failed connection.
        code: i32,
    },
    /// `dlm_controld` knows no lockspace of that name on this node
    /// (`ENOENT` from the daemon).
    #[error("dlm_controld knows no such lockspace on this node")]
    LockspaceNotFound,
    /// `dlm_controld` knows no such node in that lockspace (`ENOENT` from
    /// the daemon for a node query).
    #[error("dlm_controld knows no such node in this lockspace")]
    NodeNotFound,
    /// A lockspace name the daemon cannot be asked about: empty, longer
    /// than 64 bytes, or holding a NUL byte. Checked before any call.
    #[error("invalid lockspace name: {0}")]
    InvalidName(&'static str),
    /// The daemon answered with an error code not covered above (its
    /// answer's `data` field, a negated `errno`).
    #[error("dlm_controld refused the query (errno {code})")]
    Daemon {
        /// The `errno` the daemon answered with.
        code: i32,
    },
    /// A system call of this crate failed (the pipe, `fork` or `waitpid`
    /// around [`status`](crate::status)), or the library failed with this
    /// `errno`.
    #[error("system error: {0}")]
    Io(#[from] io::Error),
    /// The text `dlmc_print_status` produced could not be read: an
    /// unexpected format (an unknown dlm_controld release?).
    #[error("unexpected dlm_controld status output: {0}")]
    Parse(String),
}

impl Error {
    /// The operating system's error code behind this error, if there is one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::NotRunning { code } | Error::Daemon { code } => Some(*code),
            Error::LockspaceNotFound | Error::NodeNotFound => Some(libc::ENOENT),
            Error::Io(e) => e.raw_os_error(),
            Error::InvalidName(_) | Error::Parse(_) => None,
        }
    }

    /// Maps the result of a libdlmcontrol query to an error.
    ///
    /// libdlmcontrol returns `-1` with `errno` set when it cannot connect
    /// or talk to the daemon, and the daemon's own negative answer (a
    /// negated `errno`) otherwise. `errno` is cleared before each call, so
    /// `-1` with `errno` 0 is the daemon's `-EPERM`.
    pub(crate) fn from_query(rv: i32, errno: i32, missing: Error) -> Error {
        if rv == -1 && errno != 0 {
            return match errno {
                libc::ECONNREFUSED | libc::ENOENT | libc::EACCES | libc::EPERM => {
                    Error::NotRunning { code: errno }
                }
                _ => Error::Io(io::Error::from_raw_os_error(errno)),
            };
        }
        match -rv {
            libc::ENOENT => missing,
            code => Error::Daemon { code },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_results_map_to_errors() {
        assert!(matches!(
            Error::from_query(-1, libc::ECONNREFUSED, Error::LockspaceNotFound),
            Error::NotRunning {
                code: libc::ECONNREFUSED
            }
        ));
        assert!(matches!(
            Error::from_query(-libc::ENOENT, 0, Error::LockspaceNotFound),
            Error::LockspaceNotFound
        ));
        assert!(matches!(
            Error::from_query(-libc::ENOENT, 0, Error::NodeNotFound),
            Error::NodeNotFound
        ));
        assert!(matches!(
            Error::from_query(-1, 0, Error::LockspaceNotFound),
            Error::Daemon { code: libc::EPERM }
        ));
        assert!(matches!(
            Error::from_query(-libc::EINVAL, 0, Error::LockspaceNotFound),
            Error::Daemon { code: libc::EINVAL }
        ));
        assert_eq!(
            Error::from_query(-1, libc::EIO, Error::LockspaceNotFound).raw_os_error(),
            Some(libc::EIO)
        );
    }
}
