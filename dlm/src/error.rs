//! The error type and the two mappings from libdlm's results to it: the
//! `-1`/`errno` convention of the calls, and the `sb_status` of an AST.

use std::io;

/// Result of every fallible call of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong talking to the DLM.
///
/// The operating-system error code behind a variant, where there is one, is
/// kept: [`Error::raw_os_error`] returns it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A `try` request (`LKF_NOQUEUE`) could not be granted at once
    /// (`EAGAIN`). A new lock is not held; a conversion leaves the lock in
    /// its old mode.
    #[error("the lock is held in an incompatible mode (would block)")]
    WouldBlock,
    /// The request was refused because it would deadlock (`EDEADLK`): a
    /// conversion deadlock, or this request was cancelled as a deadlock
    /// victim by [`Lockspace::deadlock_cancel`](crate::Lockspace::deadlock_cancel)
    /// (`dlm_ls_deadlock_cancel`, from any process of this node). A
    /// conversion leaves the lock in its old mode.
    #[error("conversion deadlock (EDEADLK)")]
    Deadlock,
    /// The request was not granted before its timeout; it was cancelled.
    /// A new lock is not held; a conversion leaves the lock in its old mode.
    #[error("timed out waiting for the lock")]
    TimedOut,
    /// The request was cancelled (`ECANCEL`) by something other than this
    /// request's own timeout (a deadlock cancel reports
    /// [`Error::Deadlock`] instead).
    #[error("the request was cancelled (ECANCEL)")]
    Cancelled,
    /// No DLM to talk to: no `dlm` kernel module, no `dlm_controld`
    /// (`EUNATCH`), no control device, or libdlm failed without an error
    /// code. `code` is the `errno` seen (0 when libdlm gave none).
    #[error("the DLM is not available{}: is the dlm module loaded and dlm_controld running?", os_error_suffix(*code))]
    NotAvailable {
        /// The `errno` libdlm left, 0 when it left none.
        code: i32,
    },
    /// The caller lacks the privilege (`EPERM`/`EACCES`): creating or
    /// releasing a lockspace needs `CAP_SYS_ADMIN`; opening one needs
    /// permission on its device.
    #[error("permission denied (errno {code})")]
    PermissionDenied {
        /// `EPERM` or `EACCES`.
        code: i32,
    },
    /// The lockspace exists already and was asked for exclusively
    /// (`DLM_LSFL_NEWEXCL`, `EEXIST`).
    #[error("the lockspace exists already")]
    LockspaceExists,
    /// No lockspace of that name exists (`ENOENT` from open).
    #[error("no such lockspace")]
    LockspaceNotFound,
    /// The lockspace still holds locks (of any process or node, orphans
    /// included) and was released without force: the kernel refused
    /// (`EBUSY`).
    #[error(
        "the lockspace still holds locks (EBUSY): release it with force, or unlock them first"
    )]
    LockspaceBusy,
    /// This process still has another handle of the lockspace open (a
    /// clone, a [`LockGuard`](crate::LockGuard), which keeps its lockspace
    /// open, or another open): the kernel would wait for it to close, so
    /// the release was refused before it was sent.
    #[error("this process still has another handle, clone or lock guard of the lockspace open")]
    HandlesOpen,
    /// The kernel kept answering `EBUSY` to a lock request: an earlier
    /// operation on the lock (such as a cancel crossing a grant on the
    /// wire) was still in progress after
    /// [`BUSY_PATIENCE`](crate::BUSY_PATIENCE) of retries. The lock is in
    /// the state it had before the call.
    #[error("an earlier operation on the lock is still in progress (EBUSY)")]
    InProgress,
    /// The kernel could not send the request to the node that masters the
    /// resource (`ENOBUFS`): that node is leaving, or has left, the cluster
    /// and the lockspace's recovery has not started yet (seen on a node cut
    /// off from the others, in the moment its membership changed). A lock
    /// request, conversion or unlock is sent again for
    /// [`BUSY_PATIENCE`](crate::BUSY_PATIENCE) before this is returned
    /// (once recovery starts, requests wait for it instead); other calls
    /// return it at once. Nothing was queued: a new lock is not held, a
    /// conversion leaves the lock in its old mode, an unlock leaves it held
    /// (a guard's drop then leaves it to the crate's reaper thread, which
    /// tries once more; if that is refused too, the lock stays until the
    /// handle closes, when the kernel drops it).
    #[error("the node mastering the resource cannot be reached (ENOBUFS): the cluster's membership is changing")]
    Unreachable,
    /// A conversion failed (its cause inside: timed out, cancelled,
    /// deadlock...) *and* the DLM demoted the lock to NL to break a
    /// conversion deadlock ([`LockOptions::demote_on_deadlock`](crate::LockOptions::demote_on_deadlock)
    ///): the lock is now held in
    /// NL, not in its old mode.
    #[error("the lock was demoted to NL ({0})")]
    Demoted(Box<Error>),
    /// The guard no longer holds its lock: an earlier request on it was
    /// never answered and was given up (see
    /// [`LockGuard::is_held`](crate::LockGuard::is_held)); the crate's
    /// reaper releases the lock if the kernel answers later.
    #[error("the lock was given up after an unanswered request; it is released in the background")]
    GivenUp,
    /// The lockspace is stopped and no recovery will restart it:
    /// dlm_controld is not running on this node (the kernel stops every
    /// lockspace when it dies). The kernel would block the request's write
    /// uninterruptibly, so nothing was sent; a wait for an answer ends so
    /// too. Closing the handle (or exiting) still blocks in the kernel
    /// until dlm_controld is back or the node restarts.
    #[error("the lockspace is stopped and dlm_controld is not running on this node: no answer can come, and the kernel would block any request written to it")]
    LockspaceStopped,
    /// The call was made in a child of `fork` on a handle or guard of its
    /// parent: the lockspace descriptor is shared with the parent, whose
    /// locks it would act on, and the child has no AST thread. Nothing was
    /// sent. Open a new handle in the child.
    #[error("the lockspace handle belongs to the parent process (called after fork)")]
    Forked,
    /// The lockspace this handle or lock belongs to has been released
    /// (with force, possibly by another process) while it was in use.
    #[error("the lockspace was released while in use")]
    LockspaceGone,
    /// No orphan lock of that name exists to adopt (`ENOENT`).
    #[error("no orphan lock of that name to adopt")]
    OrphanNotFound,
    /// An orphan of that name exists, but in another mode (`EAGAIN`).
    #[error("the orphan lock is held in another mode")]
    OrphanModeMismatch,
    /// A resource or lockspace name that the DLM would refuse; the text
    /// says why. Nothing was sent to the DLM.
    #[error("invalid name: {0}")]
    InvalidName(&'static str),
    /// A flag, mode or option combination the DLM would refuse, or a call
    /// that does not apply in the lock's state; the text says why. Nothing
    /// was sent to the DLM.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// An answer read from a poll-mode handle's descriptor could not be
    /// applied (too short, of an unknown device protocol version, a value
    /// block outside it, naming a callback or status block that is not
    /// this crate's); the text says what. Nothing of it was applied, and
    /// the request it answered cannot be told which it was: from then on
    /// every wait of the handle ends with this error (blocking calls at
    /// once or within a second, futures at the watchdog's next tick, the
    /// request given up as at a timeout), and new requests, conversions up
    /// and waits for blocking notifications are refused with it. Unlocks
    /// and conversions down are still written (the kernel carries them
    /// out), and end with their answer if it was already there to read,
    /// else with this error (a conversion's lock is then given up and
    /// released in the background). Close the handle: the kernel then
    /// unlocks what it holds (persistent locks become orphans). Counted in
    /// [`Stats::bad_answers`](crate::Stats::bad_answers).
    #[error("an answer from the lockspace device could not be applied: {0}")]
    BadAnswer(&'static str),
    /// Any other error from a libdlm call or an AST status.
    #[error("{op} failed: {source}")]
    Os {
        /// The libdlm call that failed.
        op: &'static str,
        /// The operating-system error.
        source: io::Error,
    },
}

impl Error {
    /// The operating-system error code behind this error, if there is one
    /// (for instance `EAGAIN` for [`Error::WouldBlock`]). Errors found by
    /// this crate before calling libdlm have none.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Error::WouldBlock => Some(libc::EAGAIN),
            Error::Deadlock => Some(libc::EDEADLK),
            Error::TimedOut => Some(libc::ETIMEDOUT),
            Error::Cancelled => Some(dlm_sys::ECANCEL),
            Error::NotAvailable { code } | Error::PermissionDenied { code } => Some(*code),
            Error::LockspaceExists => Some(libc::EEXIST),
            Error::LockspaceNotFound | Error::OrphanNotFound => Some(libc::ENOENT),
            Error::LockspaceBusy | Error::HandlesOpen | Error::InProgress => Some(libc::EBUSY),
            Error::Unreachable => Some(libc::ENOBUFS),
            Error::Demoted(e) => e.raw_os_error(),
            Error::Forked | Error::GivenUp => None,
            Error::LockspaceStopped => Some(libc::ESHUTDOWN),
            Error::LockspaceGone => Some(libc::ENOENT),
            Error::OrphanModeMismatch => Some(libc::EAGAIN),
            Error::InvalidName(_) | Error::InvalidArgument(_) => None,
            Error::BadAnswer(_) => Some(libc::EPROTO),
            Error::Os { source, .. } => source.raw_os_error(),
        }
    }

    /// Maps an `errno` left by the libdlm call `op`.
    pub(crate) fn from_errno(op: &'static str, code: i32) -> Error {
        match code {
            0 | libc::EUNATCH | libc::ENODEV | libc::ENXIO | libc::ENOSYS => {
                Error::NotAvailable { code }
            }
            libc::EPERM | libc::EACCES => Error::PermissionDenied { code },
            libc::EEXIST => Error::LockspaceExists,
            libc::EBUSY => Error::InProgress,
            libc::ENOBUFS => Error::Unreachable,
            libc::EAGAIN => Error::WouldBlock,
            libc::EDEADLK => Error::Deadlock,
            _ => Error::Os {
                op,
                source: io::Error::from_raw_os_error(code),
            },
        }
    }

    /// The error for the current `errno` after the libdlm call `op`
    /// returned -1 or NULL.
    pub(crate) fn last(op: &'static str) -> Error {
        Error::from_errno(op, errno())
    }

    /// Maps the `sb_status` of a completion AST; `None` for success (0).
    pub(crate) fn from_status(status: i32) -> Option<Error> {
        match status {
            0 => None,
            libc::EAGAIN => Some(Error::WouldBlock),
            libc::EDEADLK => Some(Error::Deadlock),
            dlm_sys::ECANCEL => Some(Error::Cancelled),
            s if s < 0 => Some(Error::from_errno("lock request", -s)),
            s => Some(Error::from_errno("lock request", s)),
        }
    }
}

/// The calling thread's `errno`.
pub(crate) fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Sets the calling thread's `errno` (libdlm leaves it unchanged on some
/// paths, so it is cleared before those calls).
pub(crate) fn set_errno(value: i32) {
    // SAFETY: __errno_location returns the valid, thread-local errno slot.
    unsafe { *libc::__errno_location() = value };
}

/// " (errno N: description)" for a real `errno`, nothing for 0 (libdlm
/// failed without setting one).
fn os_error_suffix(code: i32) -> String {
    if code == 0 {
        String::new()
    } else {
        let text = std::io::Error::from_raw_os_error(code).to_string();
        let suffix = format!(" (os error {code})");
        format!(
            " (errno {code}: {})",
            text.strip_suffix(&suffix).unwrap_or(&text)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ast_statuses_map_to_variants() {
        assert!(Error::from_status(0).is_none());
        assert!(matches!(
            Error::from_status(libc::EAGAIN),
            Some(Error::WouldBlock)
        ));
        assert!(matches!(
            Error::from_status(libc::EDEADLK),
            Some(Error::Deadlock)
        ));
        assert!(matches!(
            Error::from_status(dlm_sys::ECANCEL),
            Some(Error::Cancelled)
        ));
        let other = Error::from_status(libc::EINVAL).unwrap();
        assert_eq!(other.raw_os_error(), Some(libc::EINVAL));
        // A negative status (kernel convention) maps like the positive one.
        assert_eq!(
            Error::from_status(-libc::EINVAL).unwrap().raw_os_error(),
            Some(libc::EINVAL)
        );
    }

    #[test]
    fn errnos_map_to_variants_and_keep_the_code() {
        assert!(matches!(
            Error::from_errno("x", 0),
            Error::NotAvailable { code: 0 }
        ));
        assert!(matches!(
            Error::from_errno("x", libc::EUNATCH),
            Error::NotAvailable { .. }
        ));
        assert!(matches!(
            Error::from_errno("x", libc::EPERM),
            Error::PermissionDenied { code: libc::EPERM }
        ));
        assert!(matches!(
            Error::from_errno("x", libc::EEXIST),
            Error::LockspaceExists
        ));
        assert!(matches!(
            Error::from_errno("x", libc::EBUSY),
            Error::InProgress
        ));
        assert!(matches!(
            Error::from_errno("x", libc::ENOBUFS),
            Error::Unreachable
        ));
        for code in [
            libc::EUNATCH,
            libc::EPERM,
            libc::EEXIST,
            libc::EBUSY,
            libc::ENOBUFS,
            libc::EIO,
        ] {
            assert_eq!(Error::from_errno("x", code).raw_os_error(), Some(code));
        }
        assert_eq!(Error::InvalidName("empty").raw_os_error(), None);
    }

    #[test]
    fn not_available_names_its_errno_only_when_there_is_one() {
        let none = Error::NotAvailable { code: 0 }.to_string();
        assert!(!none.contains("errno"), "{none}");
        let enoent = Error::NotAvailable { code: libc::ENOENT }.to_string();
        assert!(enoent.contains("(errno 2: "), "{enoent}");
    }

    #[test]
    fn messages_name_the_problem() {
        let e = Error::from_errno("dlm_ls_lock", libc::EIO);
        assert!(e.to_string().starts_with("dlm_ls_lock failed"), "{e}");
        assert!(Error::NotAvailable { code: 0 }
            .to_string()
            .contains("dlm_controld"));
    }

    #[test]
    fn errno_round_trip() {
        set_errno(libc::EBUSY);
        assert_eq!(errno(), libc::EBUSY);
        set_errno(0);
        assert_eq!(errno(), 0);
    }
}
