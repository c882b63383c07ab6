//! Driving a poll-mode lockspace from a tokio runtime (feature `tokio`):
//! no libdlm thread, no cross-thread wake-up; the answers are read on the
//! runtime's thread when tokio's reactor says the descriptor is readable.

use crate::error::{Error, Result};
use crate::lockspace::Lockspace;
use std::os::fd::{AsRawFd, RawFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// The lockspace, registered with the reactor by its descriptor (which
/// stays open as long as this handle: dropping the registration closes
/// nothing but this clone).
struct Registered(Lockspace);

impl AsRawFd for Registered {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Reads and dispatches the answers of the poll-mode handle `ls` whenever
/// tokio's reactor finds its descriptor readable (`AsyncFd`, then
/// [`Lockspace::dispatch`], which reads until the descriptor is drained,
/// one `read(2)` per answer):
/// the futures of the handle are woken from here. Spawn it on the runtime
/// that runs them, and abort it when done (it holds `ls`, so the handle
/// stays open while it runs):
///
/// ```no_run
/// # async fn example() -> Result<(), dlm::Error> {
/// use dlm::{Lockspace, Mode};
/// let ls = Lockspace::builder("myapp").poll_mode().join()?;
/// let driver = tokio::spawn(dlm::tokio::drive(ls.clone()));
/// let guard = ls.lock_async("r", Mode::Ex).await?;
/// guard.unlock_async().await?;
/// driver.abort();
/// # Ok(()) }
/// ```
///
/// Blocking calls on the handle would dispatch on their own thread too;
/// keep them off a handle driven here. When the driver ends (an error of
/// the reactor or of the reading, or an abort; not an answer that could
/// not be applied, [`Error::BadAnswer`], which it skips), nothing reads the
/// handle's answers any more: its pending futures wait until something
/// dispatches again.
///
/// # Errors
/// [`Error::InvalidArgument`] unless `ls` is in poll mode; the reactor's
/// errors (`Error::Os`); those of [`Lockspace::dispatch`].
///
/// # Panics
/// Outside a tokio runtime with its I/O driver enabled (tokio's
/// `AsyncFd` needs one).
pub async fn drive(ls: Lockspace) -> Result<()> {
    if !ls.is_polled() {
        return Err(Error::InvalidArgument(
            "dlm::tokio::drive needs a handle opened in poll mode",
        ));
    }
    let reactor = |source| Error::Os {
        op: "tokio AsyncFd",
        source,
    };
    // SAFETY: the descriptor is the handle's own, open as long as the
    // handle the registration holds, and `as_raw_fd` always returns it.
    let fd = unsafe { AsyncFd::register_with_interest(Registered(ls), Interest::READABLE) }
        .map_err(|e| reactor(e.into_parts().1))?;
    loop {
        let mut ready = fd.readable().await.map_err(reactor)?;
        // The reader (or dlm_dispatch) reads until EAGAIN: the readiness
        // can be cleared. An answer it could not apply was read all the
        // same (and counted): the others still need the driver.
        match fd.get_ref().0.dispatch() {
            Ok(()) | Err(Error::BadAnswer(_)) => {}
            Err(e) => return Err(e),
        }
        ready.clear_ready();
    }
}
