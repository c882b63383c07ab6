//! Whether a lockspace can still answer: what the kernel and dlm_controld
//! show from outside, read without writing to the lockspace (a write to a
//! stopped lockspace blocks uninterruptibly).
//!
//! - Released: the kernel removes the lockspace's device first thing
//!   (see [`Inner::is_alive`](crate::lockspace::Inner)).
//! - Stopped with no daemon: when dlm_controld dies, the kernel stops every
//!   lockspace of the node (its monitor device closed) and no recovery will
//!   restart them. Seen from outside, as measured in the test cluster:
//!   `/sys/kernel/dlm/<name>/recover_status` reads `0` (it reads `ff` once
//!   a recovery is done), and nobody holds the lock dlm_controld keeps on
//!   its pid file. A lockspace is *stalled* when both hold; a recovery in
//!   progress with dlm_controld alive is not stalled (its requests wait,
//!   as the DLM intends).
//!
//! The watchdog thread re-reads both once a second for the open
//! lockspaces ([`watch`], [`update`]); requests read a cached flag.

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// dlm_controld's pid file, which it keeps write-locked while it runs.
const DAEMON_PID_FILE: &str = "/run/dlm_controld/dlm_controld.pid";

/// Whether dlm_controld runs on this node: `None` when that cannot be
/// told (no pid file: another layout, or no daemon ever started).
pub(crate) fn daemon_running() -> Option<bool> {
    let file = std::fs::File::open(DAEMON_PID_FILE).ok()?;
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero flock is a valid value of the C struct.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    // SAFETY: a valid descriptor and a valid flock out-parameter.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETLK, &mut lock) } != 0 {
        return None;
    }
    Some(lock.l_type != libc::F_UNLCK as libc::c_short)
}

/// Whether the kernel has the lockspace `name` stopped (its recovery
/// status reads 0); `None` when it cannot be read.
pub(crate) fn recovery_stopped(name: &CStr) -> Option<bool> {
    let path = format!("/sys/kernel/dlm/{}/recover_status", name.to_str().ok()?);
    let status = std::fs::read_to_string(path).ok()?;
    Some(u32::from_str_radix(status.trim(), 16).ok()? == 0)
}

/// Whether `name` is stalled now (see the module docs).
pub(crate) fn stalled(name: &CStr) -> bool {
    daemon_running() == Some(false) && recovery_stopped(name) == Some(true)
}

/// The open lockspaces' stalled flags, for the watchdog.
#[allow(clippy::type_complexity)]
static WATCHED: parking_lot::Mutex<Vec<(CString, Arc<AtomicBool>)>> =
    parking_lot::const_mutex(Vec::new());

/// Starts watching the lockspace `name` through `flag`; it stops when the
/// flag's other owner (the handle) is gone.
pub(crate) fn watch(name: &CStr, flag: &Arc<AtomicBool>) {
    WATCHED.lock().push((name.to_owned(), flag.clone()));
}

/// Re-reads every watched lockspace's state (the watchdog, each tick).
pub(crate) fn update() {
    let mut watched = WATCHED.lock();
    watched.retain(|(_, flag)| Arc::strong_count(flag) > 1);
    if watched.is_empty() {
        return;
    }
    let daemon = daemon_running();
    for (name, flag) in watched.iter() {
        let stalled = daemon == Some(false) && recovery_stopped(name) == Some(true);
        flag.store(stalled, Ordering::Relaxed);
    }
}
