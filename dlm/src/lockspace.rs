//! Lockspaces: create, open, join, close, release.

use crate::ast::LockCell;
use crate::error::{errno, set_errno, Error, Result};
use crate::guard::LockGuard;
use crate::mode::Mode;
use crate::name;
use crate::options::LockOptions;
use dlm_sys as sys;
use parking_lot::Mutex;
use std::ffi::{c_void, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// Serialises libdlm's unlocked global state (control device, kernel
/// version, default lockspace): create, open, release, close and version
/// queries all take it.
pub(crate) static GLOBAL: Mutex<()> = parking_lot::const_mutex(());

/// The control device; when it is missing there is no DLM at all.
const CONTROL_DEVICE: &str = "/dev/misc/dlm-control";

/// How many handles of each lockspace this process has open. The kernel
/// completes the removal of a lockspace only once every file descriptor of
/// it is closed, so a release while this process still has another handle
/// open would block for ever; such releases are refused instead.
static OPEN: Mutex<Vec<(CString, usize)>> = parking_lot::const_mutex(Vec::new());

fn count_open(name: &CString, delta: isize) -> usize {
    let mut open = OPEN.lock();
    let pos = match open.iter().position(|(n, _)| n == name) {
        Some(pos) => pos,
        None => {
            open.push((name.clone(), 0));
            open.len() - 1
        }
    };
    let count = (open[pos].1 as isize + delta).max(0) as usize;
    if count == 0 {
        open.swap_remove(pos);
    } else {
        open[pos].1 = count;
    }
    count
}

fn open_count(name: &CString) -> usize {
    OPEN.lock()
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, c)| *c)
}

/// An open lockspace: the namespace that lock names live in.
///
/// A `Lockspace` is a cheap, clonable handle (`Send + Sync`): many threads
/// can lock through one handle, or through clones of it, at once. Each
/// open lockspace has its own libdlm AST thread, started here with
/// `dlm_ls_pthread_init`.
///
/// # Closing
/// The lockspace is closed (`dlm_close_lockspace`) when the last handle
/// *and the last [`LockGuard`] of it* are dropped: every guard keeps its
/// lockspace open, so dropping a handle never strands a lock or a waiter,
/// and never blocks. Closing does not remove the lockspace from the
/// cluster; [`Lockspace::release`] (or [`leave`]) does.
///
/// # Example
/// ```no_run
/// use dlm::{Lockspace, Mode};
/// let ls = Lockspace::join("myapp", 0o600)?;
/// let guard = ls.lock("mylock1", Mode::Ex)?;
/// // ... the resource "mylock1" is ours, cluster-wide ...
/// guard.unlock()?;
/// # Ok::<(), dlm::Error>(())
/// ```
#[derive(Clone)]
pub struct Lockspace {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    handle: NonNull<c_void>,
    name: CString,
    /// The lockspace's device, `/dev/misc/dlm_<name>`, if it existed when
    /// the lockspace was opened: the kernel removes it first thing when the
    /// lockspace is released, so its disappearance tells that no AST will
    /// come any more.
    device: Option<PathBuf>,
    /// Cells whose last AST may still come: kept until the AST thread is
    /// stopped at close. Boxed: the kernel knows their addresses.
    #[allow(clippy::vec_box)]
    graveyard: Mutex<Vec<Box<LockCell>>>,
    /// Set once libdlm has closed the handle (by a release).
    closed: bool,
}

// SAFETY: the libdlm handle may be used from any thread: dlm_ls_lock and
// dlm_ls_unlock only write to its file descriptor, and create/close/
// release are serialised by GLOBAL.
unsafe impl Send for Inner {}
// SAFETY: as for Send.
unsafe impl Sync for Inner {}

impl fmt::Debug for Lockspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockspace")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

/// What to do to get a handle.
#[derive(Clone, Copy)]
enum How {
    Create { mode: u32, flags: u32 },
    Open,
}

impl Lockspace {
    /// Creates the lockspace `name`, or joins it if it exists already
    /// (`dlm_new_lockspace` with no flags), and opens it. `mode` is the
    /// permission of its device, e.g. `0o600`.
    ///
    /// Needs `CAP_SYS_ADMIN`. Each create is counted by the kernel and
    /// undone by one [`release`](Lockspace::release).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::PermissionDenied`];
    /// [`Error::NotAvailable`] with no DLM (module or `dlm_controld`).
    pub fn create(name: &str, mode: u32) -> Result<Lockspace> {
        Lockspace::get(name, How::Create { mode, flags: 0 })
    }

    /// Creates the lockspace `name`, failing with
    /// [`Error::LockspaceExists`] if it exists (`dlm_new_lockspace` with
    /// `DLM_LSFL_NEWEXCL`).
    ///
    /// # Errors
    /// As [`create`](Lockspace::create), and [`Error::LockspaceExists`].
    pub fn create_exclusive(name: &str, mode: u32) -> Result<Lockspace> {
        Lockspace::get(
            name,
            How::Create {
                mode,
                flags: sys::DLM_LSFL_NEWEXCL,
            },
        )
    }

    /// Opens an existing lockspace (`dlm_open_lockspace`). Needs only
    /// permission on its device, as set by its creator.
    ///
    /// # Errors
    /// [`Error::LockspaceNotFound`]; [`Error::PermissionDenied`];
    /// [`Error::NotAvailable`]; [`Error::InvalidName`].
    pub fn open(name: &str) -> Result<Lockspace> {
        Lockspace::get(name, How::Open)
    }

    /// Opens the lockspace `name`, creating it if it does not exist
    /// (`dlm_open_lockspace`, else `dlm_new_lockspace`); ocaml-dlm's
    /// `join`. The same as the free function [`join`].
    ///
    /// # Errors
    /// As [`open`](Lockspace::open) and [`create`](Lockspace::create).
    pub fn join(name: &str, mode: u32) -> Result<Lockspace> {
        Lockspace::join_created(name, mode).map(|(ls, _)| ls)
    }

    /// [`join`](Lockspace::join), telling whether it created the lockspace.
    fn join_created(name: &str, mode: u32) -> Result<(Lockspace, bool)> {
        match Lockspace::open(name) {
            Err(Error::LockspaceNotFound) => Lockspace::create(name, mode).map(|ls| (ls, true)),
            other => other.map(|ls| (ls, false)),
        }
    }

    fn get(name: &str, how: How) -> Result<Lockspace> {
        let cname = name::lockspace_name(name)?;
        let _global = GLOBAL.lock();
        set_errno(0);
        let (raw, op) = match how {
            // SAFETY: cname is a valid C string; GLOBAL is held.
            How::Create { mode, flags } => (
                unsafe { sys::dlm_new_lockspace(cname.as_ptr(), mode, flags) },
                "dlm_new_lockspace",
            ),
            // SAFETY: as above.
            How::Open => (
                unsafe { sys::dlm_open_lockspace(cname.as_ptr()) },
                "dlm_open_lockspace",
            ),
        };
        let Some(handle) = NonNull::new(raw) else {
            let code = errno();
            return Err(match code {
                libc::ENOENT if !Path::new(CONTROL_DEVICE).exists() => Error::NotAvailable { code },
                libc::ENOENT if matches!(how, How::Open) => Error::LockspaceNotFound,
                libc::ENOENT => Error::NotAvailable { code },
                _ => Error::from_errno(op, code),
            });
        };
        // SAFETY: handle is the open handle just returned.
        let rc = unsafe { sys::dlm_ls_pthread_init(handle.as_ptr()) };
        if rc != 0 {
            // dlm_ls_pthread_init returns pthread_create's error code.
            // SAFETY: handle is open, has no thread and is not used again.
            unsafe { sys::dlm_close_lockspace(handle.as_ptr()) };
            return Err(Error::from_errno("dlm_ls_pthread_init", rc));
        }
        let device = PathBuf::from(format!("/dev/misc/dlm_{name}"));
        let device = device.exists().then_some(device);
        count_open(&cname, 1);
        Ok(Lockspace {
            inner: Arc::new(Inner {
                handle,
                name: cname,
                device,
                graveyard: Mutex::new(Vec::new()),
                closed: false,
            }),
        })
    }

    /// The lockspace's name.
    pub fn name(&self) -> &str {
        self.inner
            .name
            .to_str()
            .expect("checked to be UTF-8 when opened")
    }

    /// The libdlm handle (`dlm_lshandle_t`), for calls this crate does not
    /// wrap. Do not close or release it, and do not read its file
    /// descriptor: libdlm's AST thread reads it.
    pub fn as_raw(&self) -> sys::dlm_lshandle_t {
        self.inner.handle.as_ptr()
    }

    /// Whether the lockspace is still in service: its device disappears when
    /// it is released (possibly by force, by another process). Always
    /// `true` when the device could not be seen at open.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// Takes the lock `name` in `mode`, waiting as long as it takes
    /// (`dlm_ls_lock`, then the completion AST).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::Deadlock`];
    /// [`Error::LockspaceGone`]; other errors of `dlm_ls_lock`.
    pub fn lock(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, LockOptions::new())
    }

    /// Takes the lock `name` in `mode` if that can be done at once
    /// (`LKF_NOQUEUE`).
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when another holder's mode is incompatible,
    /// and the errors of [`lock`](Lockspace::lock).
    pub fn try_lock(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, LockOptions::new().no_wait())
    }

    /// Takes the lock `name` in `mode` with `options`: flags, a timeout,
    /// blocking notifications (`dlm_ls_lock`; with a timeout, `dlm_ls_unlock`
    /// with `LKF_CANCEL` when it expires).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a flag combination the kernel
    /// rejects; [`Error::TimedOut`]; [`Error::WouldBlock`]; and the errors
    /// of [`lock`](Lockspace::lock).
    pub fn lock_with(
        &self,
        name: impl AsRef<[u8]>,
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, options)
    }

    /// Adopts an orphan: a [persistent](LockOptions::persistent) lock
    /// left behind by a closed handle or an exited process, held in `mode`
    /// (`dlm_ls_lock` with `LKF_PERSISTENT | LKF_ORPHAN`). The kernel
    /// answers at once and sends no AST. The adopted lock stays persistent.
    ///
    /// `options` may add [`lvb`](LockOptions::lvb) (the LVB is read at the
    /// next conversion) and [`notify_blocking`](LockOptions::notify_blocking).
    ///
    /// # Errors
    /// [`Error::OrphanNotFound`] when there is no orphan of that name;
    /// [`Error::OrphanModeMismatch`] when there is one in another mode.
    pub fn adopt_orphan(
        &self,
        name: impl AsRef<[u8]>,
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        LockGuard::adopt(self, name.as_ref(), mode, options)
    }

    /// Removes orphan locks (`dlm_ls_purge`): those of owner `pid` on
    /// node `nodeid`. `pid` 0 means every owner; `nodeid` 0 means this
    /// node. The kernel records as owner the id of the *thread* that made
    /// the request (the process id only for the main thread).
    ///
    /// # Errors
    /// Errors of `dlm_ls_purge`.
    pub fn purge_orphans(&self, nodeid: u32, pid: u32) -> Result<()> {
        // SAFETY: the handle is open for as long as `self` lives.
        let rc = unsafe { sys::dlm_ls_purge(self.as_raw(), nodeid as i32, pid as i32) };
        if rc != 0 {
            return Err(Error::last("dlm_ls_purge"));
        }
        Ok(())
    }

    /// Releases the lockspace (`dlm_release_lockspace`): undoes one
    /// create; the kernel removes the lockspace when the last is undone.
    ///
    /// Without `force`, fails with [`Error::Busy`] while locks exist in it
    /// (orphans included, and other nodes' locks). With `force`, the
    /// lockspace goes with its locks.
    ///
    /// The kernel finishes removing a lockspace only when every handle of
    /// it, in every process, is closed; until then the call waits. So that
    /// it cannot wait for this process itself, it fails with
    /// [`Error::Busy`] while this process has another handle of the
    /// lockspace open: a clone of this one, a [`LockGuard`] (guards keep
    /// their lockspace open) or another [`open`](Lockspace::open).
    ///
    /// libdlm closes this handle first, which unlocks its non-persistent
    /// locks. `self` is consumed (and closed) either way.
    ///
    /// # Errors
    /// [`Error::Busy`]; [`Error::PermissionDenied`]; other errors of
    /// `dlm_release_lockspace`.
    pub fn release(self, force: bool) -> Result<()> {
        let Some(mut inner) = Arc::into_inner(self.inner) else {
            return Err(Error::Busy);
        };
        if open_count(&inner.name) > 1 {
            return Err(Error::Busy);
        }
        // SAFETY: sole owner of the handle; libdlm stops its AST thread,
        // closes and frees it; `closed` keeps Drop from closing it again.
        let result = unsafe { release_handle(&inner.name, inner.handle.as_ptr(), force) };
        inner.closed = true;
        count_open(&inner.name, -1);
        // Dropping `inner` frees the parked cells: the AST thread is gone.
        drop(inner);
        result
    }
}

impl Inner {
    pub(crate) fn is_alive(&self) -> bool {
        self.device.as_ref().is_none_or(|p| p.exists())
    }

    pub(crate) fn handle(&self) -> sys::dlm_lshandle_t {
        self.handle.as_ptr()
    }

    /// Keeps `cell` until the lockspace closes: an AST may still name it.
    pub(crate) fn park(&self, cell: Box<LockCell>) {
        self.graveyard.lock().push(cell);
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        {
            let _global = GLOBAL.lock();
            // libdlm cancels and joins the AST thread (not this thread: no
            // Rust code on it holds a handle), closes the device and frees
            // the handle. The graveyard is dropped after.
            // SAFETY: last owner of the open handle.
            unsafe { sys::dlm_close_lockspace(self.handle.as_ptr()) };
        }
        count_open(&self.name, -1);
    }
}

/// Calls `dlm_release_lockspace` and finds out what the kernel said:
/// libdlm ignores the kernel's answer, so `errno` is cleared first and
/// looked at after.
///
/// GLOBAL is held only to make sure libdlm's control device is open: the
/// release itself may wait in the kernel for other processes to close the
/// lockspace, and must not hold up this process's other lockspaces.
///
/// # Safety
/// `handle` is an open handle not used again.
unsafe fn release_handle(name: &CString, handle: sys::dlm_lshandle_t, force: bool) -> Result<()> {
    {
        let _global = GLOBAL.lock();
        let (mut a, mut b, mut c) = (0, 0, 0);
        // SAFETY: valid out-pointers; opens libdlm's control device once.
        unsafe { sys::dlm_kernel_version(&mut a, &mut b, &mut c) };
    }
    set_errno(0);
    // SAFETY: the caller's contract; libdlm's global state is initialised
    // (above) and only read from now on.
    let rc = unsafe { sys::dlm_release_lockspace(name.as_ptr(), handle, force as i32) };
    let code = errno();
    if rc != 0 {
        return Err(Error::from_errno("dlm_release_lockspace", code));
    }
    match code {
        libc::EBUSY | libc::EPERM | libc::EACCES => {
            Err(Error::from_errno("dlm_release_lockspace", code))
        }
        _ => Ok(()),
    }
}

/// Releases a lockspace through a handle of its own.
fn release_by_name(name: &CString, force: bool) -> Result<()> {
    if open_count(name) > 0 {
        return Err(Error::Busy);
    }
    let handle = {
        let _global = GLOBAL.lock();
        set_errno(0);
        // SAFETY: name is a valid C string; GLOBAL is held.
        let raw = unsafe { sys::dlm_open_lockspace(name.as_ptr()) };
        match NonNull::new(raw) {
            Some(handle) => handle,
            None => {
                let code = errno();
                return Err(match code {
                    libc::ENOENT if Path::new(CONTROL_DEVICE).exists() => Error::LockspaceNotFound,
                    libc::ENOENT => Error::NotAvailable { code },
                    _ => Error::from_errno("dlm_open_lockspace", code),
                });
            }
        }
    };
    // SAFETY: a fresh handle without AST thread, not used again.
    unsafe { release_handle(name, handle.as_ptr(), force) }
}

/// Opens the lockspace `name`, creating it if needed (ocaml-dlm's `join`);
/// see [`Lockspace::join`].
///
/// # Errors
/// As [`Lockspace::join`].
pub fn join(name: &str, mode: u32) -> Result<Lockspace> {
    Lockspace::join(name, mode)
}

/// Releases the lockspace `name` (ocaml-dlm's `leave`), through a handle
/// opened for the purpose: `dlm_open_lockspace` then
/// `dlm_release_lockspace`. See [`Lockspace::release`] for `force` and for
/// why it fails while this process has the lockspace open.
///
/// # Errors
/// [`Error::LockspaceNotFound`]; [`Error::Busy`] (locks remain and
/// `force` is false, or this process has the lockspace open);
/// [`Error::PermissionDenied`]; [`Error::NotAvailable`].
pub fn leave(name: &str, force: bool) -> Result<()> {
    let cname = name::lockspace_name(name)?;
    release_by_name(&cname, force)
}

/// Joins the lockspace `name` (creating it with mode `0o600` if needed),
/// runs `f` with it, then closes it; if the join created it, releases it
/// too (without force): ocaml-dlm's `with_lockspace`.
///
/// # Errors
/// The errors of [`join`]; those of [`Lockspace::release`] after `f` (for
/// instance [`Error::Busy`] if `f` left orphans behind in it).
pub fn with_lockspace<T>(name: &str, f: impl FnOnce(&Lockspace) -> T) -> Result<T> {
    let (ls, created) = Lockspace::join_created(name, 0o600)?;
    let value = f(&ls);
    if created {
        ls.release(false)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_guards_cross_threads() {
        send_sync::<Lockspace>();
        send_sync::<LockGuard>();
        send_sync::<Error>();
    }

    #[test]
    fn open_handle_registry_counts_per_name() {
        let a = CString::new("registry-test-a").unwrap();
        let b = CString::new("registry-test-b").unwrap();
        assert_eq!(open_count(&a), 0);
        assert_eq!(count_open(&a, 1), 1);
        assert_eq!(count_open(&a, 1), 2);
        assert_eq!(count_open(&b, 1), 1);
        assert_eq!(count_open(&a, -1), 1);
        assert_eq!(open_count(&a), 1);
        assert_eq!(count_open(&a, -1), 0);
        assert_eq!(count_open(&b, -1), 0);
        assert_eq!((open_count(&a), open_count(&b)), (0, 0));
    }
}
