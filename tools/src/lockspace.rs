//! Getting the tools' lockspace: open it, or create it when it does not
//! exist, and say plainly why not when neither works.

use dlm::{Error, Lockspace};
use std::fmt;
use std::path::Path;

/// The permission bits of the device of a lockspace the tools create: only
/// root (the creator) may open it.
pub const CREATE_MODE: u32 = 0o600;

/// Why the lockspace could not be had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No DLM here: no `dlm` module, no dlm_controld, no control device.
    Unavailable,
    /// Not allowed: creating a lockspace needs `CAP_SYS_ADMIN`; opening one
    /// needs permission on its device.
    Permission,
    /// Anything else.
    Other,
}

/// A lockspace that could not be had, with the message to show.
#[derive(Debug)]
pub struct JoinError {
    /// The kind of failure, for the exit status.
    pub failure: Failure,
    /// One line saying what happened and what to do.
    pub message: String,
}

impl fmt::Display for JoinError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for JoinError {}

/// The device of lockspace `name`.
pub fn device(name: &str) -> String {
    format!("/dev/misc/dlm_{name}")
}

/// Opens lockspace `name` (`dlm_open_lockspace`), creating it
/// (`dlm_new_lockspace`, device mode [`CREATE_MODE`]) if it does not
/// exist. A lockspace created here stays after the program ends (remove
/// it with `dlm_tool leave NAME`): other holders may be using it.
///
/// # Errors
/// A [`JoinError`] naming `CAP_SYS_ADMIN` when the lockspace does not
/// exist and the caller may not create it, the device when it may not open
/// it, and the DLM's own message otherwise.
pub fn open_or_create(name: &str) -> Result<Lockspace, JoinError> {
    let err = match Lockspace::open(name) {
        Ok(ls) => return Ok(ls),
        Err(Error::LockspaceNotFound) => match Lockspace::create(name, CREATE_MODE) {
            Ok(ls) => return Ok(ls),
            Err(e) => e,
        },
        Err(e) => e,
    };
    Err(explain(name, &err))
}

/// The message and kind for `err`, met getting lockspace `name`.
pub fn explain(name: &str, err: &Error) -> JoinError {
    let dev = device(name);
    match err {
        Error::NotAvailable { .. } => JoinError {
            failure: Failure::Unavailable,
            message: format!("lockspace {name}: {err}"),
        },
        Error::PermissionDenied { .. } if Path::new(&dev).exists() => JoinError {
            failure: Failure::Permission,
            message: format!(
                "lockspace {name}: no permission to open its device {dev} (its creator set the device's mode)"
            ),
        },
        Error::PermissionDenied { .. } => JoinError {
            failure: Failure::Permission,
            message: format!(
                "lockspace {name} does not exist and creating it needs CAP_SYS_ADMIN: run as root, or have root create it first (dlm_tool join {name})"
            ),
        },
        e => JoinError {
            failure: Failure::Other,
            message: format!("lockspace {name}: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_privilege() {
        let e = explain("nosuch-ls", &Error::PermissionDenied { code: libc::EPERM });
        assert_eq!(e.failure, Failure::Permission);
        assert!(e.message.contains("CAP_SYS_ADMIN"), "{e}");
        let e = explain("x", &Error::NotAvailable { code: 0 });
        assert_eq!(e.failure, Failure::Unavailable);
        assert!(e.to_string().starts_with("lockspace x"), "{e}");
        let e = explain("x", &Error::InvalidName("bad"));
        assert_eq!(e.failure, Failure::Other);
    }
}
