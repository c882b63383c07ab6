//! Whether a lockspace can still answer: what the kernel and dlm_controld
//! show from outside, read without writing to the lockspace (a write to a
//! stopped lockspace blocks uninterruptibly).
//!
//! - Released (possibly by force, by another process): the kernel removes
//!   the lockspace's device, `/dev/misc/dlm_<name>`, first thing. The
//!   watchdog watches the device directory with inotify and re-reads the
//!   lockspaces' devices as soon as one is deleted, so a handle knows
//!   within milliseconds (and, where inotify is not to be had, within a
//!   second); a device of the same name created again later is another
//!   lockspace (its inode differs). Once known, it stays known.
//! - Stopped with no daemon: when dlm_controld dies, the kernel stops every
//!   lockspace of the node (its monitor device closed) and no recovery will
//!   restart them. Seen from outside, as measured in the test cluster:
//!   `/sys/kernel/dlm/<name>/recover_status` reads `0` (it reads `ff` once
//!   a recovery is done), and nobody holds the lock dlm_controld keeps on
//!   its pid file. A lockspace is *stalled* when both hold; a recovery in
//!   progress with dlm_controld alive is not stalled (its requests wait,
//!   as the DLM intends).
//!
//! The watchdog thread re-reads both for the open lockspaces ([`watch`],
//! [`update`]) once a second, at once when a device is deleted, and at
//! once when dlm_controld exits (it waits on a pidfd of the daemon,
//! [`daemon_pidfd`]); requests read cached flags.

use std::ffi::{CStr, CString};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

/// dlm_controld's pid file, which it keeps write-locked while it runs.
const DAEMON_PID_FILE: &str = "/run/dlm_controld/dlm_controld.pid";

/// The directory of the lockspaces' devices.
pub(crate) const DEVICE_DIR: &str = "/dev/misc";

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

/// A pidfd of the running dlm_controld (readable once it exits), for the
/// watchdog to wait on: the kernel stops every lockspace of the node as
/// the daemon's descriptors close, before the pidfd says it exited, so a
/// re-read then sees the stall at once. `None` when the daemon does not
/// run, its pid cannot be read, or the kernel has no `pidfd_open`.
pub(crate) fn daemon_pidfd() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let pid: libc::pid_t = std::fs::read_to_string(DAEMON_PID_FILE)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    if pid <= 0 {
        return None;
    }
    // SAFETY: plain system call; a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: pidfd_open returned a new descriptor that nothing else owns.
    let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as std::os::fd::RawFd) };
    // The pid file may be stale (the pid reused by another process): then
    // the lock dlm_controld keeps on it is not held. A pidfd of another
    // process would only cause a needless re-read when it exits.
    (daemon_running() == Some(true)).then_some(fd)
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

/// The device of `name`: its inode, `None` if it does not exist.
fn device_inode(name: &CStr) -> Option<u64> {
    let path = format!("{DEVICE_DIR}/dlm_{}", name.to_str().ok()?);
    std::fs::metadata(path).ok().map(|m| m.ino())
}

/// Whether `/proc/misc` still lists the lockspace's device with `minor`:
/// the kernel deregisters it at the release that removes the lockspace,
/// whatever happens to the device node (a non-final release by an old
/// libdlm unlinks the node too). `None` when it cannot be read.
fn misc_lists(minor: u32, name: &CStr) -> Option<bool> {
    let misc = std::fs::read_to_string("/proc/misc").ok()?;
    let want = format!("dlm_{}", name.to_str().ok()?);
    Some(misc.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next().and_then(|m| m.parse::<u32>().ok()) == Some(minor) && f.next() == Some(&want)
    }))
}

/// One open handle's view of its lockspace's health.
#[derive(Debug)]
pub(crate) struct Health {
    stalled: AtomicBool,
    gone: AtomicBool,
    /// The device's inode when the handle was opened (`None`: not seen,
    /// then release cannot be told and the lockspace counts as alive).
    inode: Option<u64>,
    /// The minor number of the handle's descriptor.
    minor: Option<u32>,
    /// The handle's locks that asked for blocking notifications, told of
    /// the loss when the lockspace is found gone (weak: a lock released
    /// since is skipped, and pruned as the list grows).
    notified: parking_lot::Mutex<Notified>,
    /// The process generation the handle was opened in: a fork's child
    /// does not run its parent's wakers.
    generation: u32,
}

/// The locks to tell of a loss, pruned of released ones when the list
/// reaches twice its size after the last pruning.
#[derive(Debug, Default)]
struct Notified {
    cells: Vec<std::sync::Weak<crate::cell::LockCell>>,
    prune_at: usize,
}

impl Health {
    pub(crate) fn is_stalled(&self) -> bool {
        self.stalled.load(Ordering::Relaxed)
    }

    pub(crate) fn is_gone(&self) -> bool {
        self.gone.load(Ordering::Relaxed)
    }

    /// Tells `cell`'s blocking notifications if the lockspace is found
    /// gone: at once if it is already known gone, else when it is.
    pub(crate) fn notify_on_loss(&self, cell: &crate::cell::CellRef) {
        let mut list = self.notified.lock();
        // Pruned when it doubled since the last pruning: amortised O(1),
        // at most about half the entries stale.
        if list.cells.len() >= list.prune_at.max(16) {
            list.cells.retain(|c| c.strong_count() > 0);
            list.prune_at = 2 * list.cells.len();
        }
        list.cells.push(cell.downgrade());
        drop(list);
        // Registered just after the loss was told: tell it now (a second
        // notice merges with the first).
        if self.is_gone() {
            self.tell_lost();
        }
    }

    /// The lockspace was found gone: every lock that asked for blocking
    /// notifications gets [`Blocking::lost`](crate::cell::Blocking::lost).
    fn tell_lost(&self) {
        // A fork's child (its own watchdog walks the handles it inherited)
        // leaves its parent's locks, wakers and mutexes alone.
        if crate::fork::generation() != self.generation {
            return;
        }
        let cells = std::mem::take(&mut self.notified.lock().cells);
        for cell in cells.iter().filter_map(std::sync::Weak::upgrade) {
            cell.notify(crate::cell::Blocking::lost());
        }
    }

    /// Re-reads the lockspace `name`'s state; `daemon` as
    /// [`daemon_running`] said (read once for every lockspace).
    fn update(&self, name: &CStr, daemon: Option<bool>) {
        let stalled = daemon == Some(false) && recovery_stopped(name) == Some(true);
        self.stalled.store(stalled, Ordering::Relaxed);
        if let Some(inode) = self.inode {
            // The node changed or went; the kernel has the last word.
            if device_inode(name) != Some(inode)
                && self.minor.and_then(|m| misc_lists(m, name)) != Some(true)
                && !self.gone.swap(true, Ordering::Relaxed)
            {
                self.tell_lost();
            }
        }
    }

    /// Re-reads this lockspace's state now (a poll-mode wait that saw a
    /// second go by with nothing to read).
    pub(crate) fn refresh(&self, name: &CStr) {
        self.update(name, daemon_running());
    }
}

/// The open handles' health, for the watchdog.
#[allow(clippy::type_complexity)]
static WATCHED: parking_lot::Mutex<Vec<(CString, Weak<Health>)>> =
    parking_lot::const_mutex(Vec::new());

/// Starts watching the lockspace `name` for a handle just opened; the
/// entry goes when the handle drops its `Health`.
pub(crate) fn watch(name: &CStr, minor: Option<u32>) -> Arc<Health> {
    let health = Arc::new(Health {
        stalled: AtomicBool::new(stalled(name)),
        gone: AtomicBool::new(false),
        inode: device_inode(name),
        minor,
        notified: parking_lot::Mutex::new(Notified::default()),
        generation: crate::fork::generation(),
    });
    let mut watched = WATCHED.lock();
    watched.retain(|(_, h)| h.strong_count() > 0);
    watched.push((name.to_owned(), Arc::downgrade(&health)));
    health
}

/// Re-reads every watched lockspace's state (the watchdog, each tick and
/// after a device was deleted).
pub(crate) fn update() {
    let watched: Vec<(CString, Arc<Health>)> = {
        let mut watched = WATCHED.lock();
        watched.retain(|(_, h)| h.strong_count() > 0);
        watched
            .iter()
            .filter_map(|(n, h)| Some((n.clone(), h.upgrade()?)))
            .collect()
    };
    if watched.is_empty() {
        return;
    }
    let daemon = daemon_running();
    for (name, health) in &watched {
        health.update(name, daemon);
    }
}

/// An inotify descriptor watching [`DEVICE_DIR`] for deletions, for the
/// watchdog to wait on; `None` where inotify cannot be had.
pub(crate) fn device_watch() -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system call with constant flags.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` is a new descriptor this function owns.
    let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
    let dir = CString::new(DEVICE_DIR).expect("no NUL");
    // SAFETY: a valid descriptor and C string.
    let wd = unsafe { libc::inotify_add_watch(fd, dir.as_ptr(), libc::IN_DELETE) };
    (wd >= 0).then_some(owned)
}

#[cfg(all(test, not(dlm_loom)))]
mod tests {
    /// Handles opened and dropped leave the watched list at the next
    /// open, with no watchdog (a poll-only program runs none): it does not
    /// grow with every handle ever opened.
    #[test]
    fn dropped_handles_leave_the_watch_list() {
        let name = std::ffi::CString::new("no-such-lockspace").unwrap();
        for _ in 0..1000 {
            drop(super::watch(&name, None));
        }
        let len = super::WATCHED.lock().len();
        assert!(len < 64, "{len} entries after 1,000 handles dropped");
    }
}
