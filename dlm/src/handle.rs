//! The libdlm handle under a [`Lockspace`](crate::Lockspace): opening and
//! closing it, libdlm's process-wide state, the registry of open handles,
//! liveness (released, stopped), the lockspace's keeping and reaper queue,
//! and reading answers in poll mode.

use crate::cell::{CellRef, Handoff, Handshake};
use crate::error::{errno, set_errno, Error, Result};
use crate::health::Health;
use crate::reader::{Protocol, Read};
use crate::request::Patience;
use dlm_sys as sys;
use parking_lot::Mutex;
use std::ffi::{c_void, CString};
use std::fmt;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Serialises the first use of libdlm's unlocked process-wide state (the
/// control device and the kernel version it caches): [`init_global`] runs
/// under it once; after a success that state is only read, so creates,
/// opens, closes and releases do not take it and one that the kernel
/// blocks (a recovery) holds up no other.
pub(crate) static GLOBAL: Mutex<()> = parking_lot::const_mutex(());

/// Whether libdlm's process-wide state is initialised.
static GLOBAL_READY: AtomicBool = AtomicBool::new(false);

/// The control device; when it is missing there is no DLM at all.
pub(crate) const CONTROL_DEVICE: &str = "/dev/misc/dlm-control";

/// Opens libdlm's control device and caches the kernel version, once per
/// process (`dlm_kernel_version` does both). Returns the guard of
/// [`GLOBAL`] while that has not succeeded yet (the caller's libdlm call
/// then runs under it, as libdlm may initialise the state itself).
pub(crate) fn init_global() -> Option<parking_lot::MutexGuard<'static, ()>> {
    if GLOBAL_READY.load(Ordering::Acquire) {
        return None;
    }
    let global = GLOBAL.lock();
    if GLOBAL_READY.load(Ordering::Acquire) {
        return None;
    }
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: valid out-pointers; GLOBAL is held.
    if unsafe { sys::dlm_kernel_version(&mut a, &mut b, &mut c) } == 0 {
        GLOBAL_READY.store(true, Ordering::Release);
        return None;
    }
    Some(global)
}

/// How many handles of each lockspace this process has open. The kernel
/// completes the removal of a lockspace only once every file descriptor of
/// it is closed, so a release while this process still has another handle
/// open would block for ever; such releases are refused instead.
static OPEN: Mutex<Vec<(CString, usize)>> = parking_lot::const_mutex(Vec::new());

pub(crate) fn count_open(name: &CString, delta: isize) -> usize {
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

pub(crate) fn open_count(name: &CString) -> usize {
    OPEN.lock()
        .iter()
        .find(|(n, _)| n == name)
        .map_or(0, |(_, c)| *c)
}

/// What to do to get a handle.
#[derive(Debug, Clone, Copy)]
pub(crate) enum How {
    Create { mode: u32, flags: u32 },
    Open,
}

/// A user's view of an open libdlm handle: what [`Lockspace`](crate::Lockspace)
/// and its guards and futures hold. Dropping the last one ends this
/// process's use of the lockspace (the open-handle count; a later `leave`
/// is no longer refused); the libdlm handle itself ([`Core`]) closes when
/// the handle's worker thread, which may hold it a moment longer while it
/// finishes a write, lets go too.
pub(crate) struct Handle {
    core: Arc<Core>,
    /// This handle came from `dlm_new_lockspace`: one release is owed.
    pub(crate) created: bool,
    /// Released through `Lockspace::release`, which did the count itself.
    released: bool,
}

impl std::ops::Deref for Handle {
    type Target = Core;
    fn deref(&self) -> &Core {
        &self.core
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.core.fmt(f)
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.released {
            count_open(&self.core.name, -1);
            // Releases still under way (guards dropped in the background,
            // given-up requests): the worker keeps the libdlm handle open
            // until they are done (a value block published, a persistent
            // lock unlocked rather than orphaned), for at most
            // `LINGER` (crate docs).
            if self.core.reaper_started.started() && self.core.handoff.has_work() {
                count_lingering(&self.core.name, 1);
                let keep = Lingering(Some(self.core.clone()));
                self.core.handoff.linger(Box::new(keep));
            }
        }
    }
}

/// A libdlm handle its worker keeps open after its last user let go;
/// counted in [`LINGERING`] until it is dropped.
struct Lingering(Option<Arc<Core>>);

impl Drop for Lingering {
    fn drop(&mut self) {
        if let Some(core) = self.0.take() {
            let name = core.name.clone();
            drop(core);
            count_lingering(&name, -1);
        }
    }
}

/// How many handles of each lockspace their workers keep open after
/// their last user let go (see [`LINGER`]).
static LINGERING: Mutex<Vec<(CString, usize)>> = parking_lot::const_mutex(Vec::new());

fn count_lingering(name: &CString, delta: isize) {
    let mut l = LINGERING.lock();
    match l.iter().position(|(n, _)| n == name) {
        Some(i) => {
            let c = (l[i].1 as isize + delta).max(0) as usize;
            if c == 0 {
                l.swap_remove(i);
            } else {
                l[i].1 = c;
            }
        }
        None if delta > 0 => l.push((name.clone(), delta as usize)),
        None => {}
    }
}

/// Waits (at most [`LINGER`]) until no worker of this process keeps a
/// handle of `name` open for its releases: a release of the lockspace
/// would otherwise find their locks.
pub(crate) fn wait_lingering(name: &CString) {
    let deadline = std::time::Instant::now() + LINGER;
    while LINGERING.lock().iter().any(|(n, _)| n == name) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// How long a handle's worker keeps the libdlm handle open after its last
/// user let go, for the releases still under way.
pub(crate) const LINGER: std::time::Duration = std::time::Duration::from_secs(5);

impl Handle {
    /// The libdlm handle, for the worker thread (which holds it only while
    /// it writes).
    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.core
    }

    /// Takes the handle apart for a release: the core, which the caller
    /// must close (or give back); the open-handle count is the caller's to
    /// decrement.
    pub(crate) fn into_core(mut self) -> Arc<Core> {
        self.released = true;
        self.core.clone()
    }

    /// A handle over `core` (a release refused: the lockspace is still
    /// there), counted again.
    pub(crate) fn from_core(core: Arc<Core>, created: bool) -> Handle {
        count_open(&core.name, 1);
        Handle {
            core,
            created,
            released: false,
        }
    }
}

/// Reads before a poll that found nothing, in a row, after which a
/// poll-mode waiter polls first ([`Core::drive_until`]).
const READ_FIRST_MISSES: u32 = 4;
/// Waits that poll first before reading first is tried again.
const READ_FIRST_SKIPS: u32 = 32;

/// One open libdlm handle.
pub(crate) struct Core {
    handle: NonNull<c_void>,
    pub(crate) name: CString,
    /// Liveness, kept by the watchdog: released (the device is gone or
    /// another one took its name), stopped (no dlm_controld).
    health: Arc<Health>,
    /// The reaper's queue and the cells the lockspace keeps.
    handoff: Arc<Handoff>,
    /// Set once libdlm has closed the handle (by a release).
    pub(crate) closed: bool,
    /// The process generation (see `fork`) the handle was opened in.
    generation: u32,
    /// Poll mode: no AST thread; answers are read by `dispatch`.
    polled: bool,
    /// Futures write their requests in `poll` (`AsyncWrites::InPoll`).
    writes_in_poll: bool,
    /// How a poll-mode handle's answers are read: the crate's own reader
    /// (device protocol 6.0.x, checked once at open) or `dlm_dispatch`.
    protocol: Protocol,
    /// Set (for good) when the reader refused an answer
    /// ([`Error::BadAnswer`]): that answer's waiter cannot be told which
    /// it was, so every wait of the handle ends with the error (a wait
    /// with no timeout would otherwise wait for ever), and requests that
    /// could wait are refused with it ([`Core::check_new`]). Releases and
    /// conversions down are still written.
    broken: std::sync::OnceLock<&'static str>,
    /// Held while a thread reads answers in poll mode (one reader at a
    /// time: results are applied in the order they are read, and
    /// `dlm_dispatch` toggles the descriptor's flags). Never held across a
    /// wait for readability.
    reading: Mutex<()>,
    /// Whether a poll-mode waiter's read before its poll pays off here
    /// (see [`Core::drive_until`]): below [`READ_FIRST_MISSES`], how many
    /// of those reads in a row found nothing; from there up to
    /// `READ_FIRST_MISSES + READ_FIRST_SKIPS`, waits that polled first.
    /// A hint: threads race on it harmlessly.
    read_first: AtomicU32,
    /// The handle's reaper thread was started (per process generation).
    pub(crate) reaper_started: crate::fork::StartedIn,
    /// How long its waits are patient.
    patience: Patience,
}

// SAFETY: the libdlm handle may be used from any thread: dlm_ls_lock and
// dlm_ls_unlock only write to its file descriptor, and the process-wide
// state is initialised once under GLOBAL and only read after.
unsafe impl Send for Core {}
// SAFETY: as for Send.
unsafe impl Sync for Core {}

impl fmt::Debug for Core {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// Creates or opens the lockspace `name` (`dlm_new_lockspace` or
    /// `dlm_open_lockspace`), and starts its AST thread unless `polled`
    /// (`dlm_ls_pthread_init`).
    pub(crate) fn open(
        cname: CString,
        how: How,
        polled: bool,
        writes_in_poll: bool,
        libdlm_dispatch: bool,
        patience: Patience,
    ) -> Result<Handle> {
        crate::fork::install();
        // libdlm_lt (feature `lt`) has no thread: poll mode only.
        let polled = polled || cfg!(feature = "lt");
        // Poll mode: the program may want no thread but its own; its waits
        // check liveness themselves. Futures start the watchdog when used.
        if !polled {
            crate::wait::start_watchdog();
        }
        let global = init_global();
        set_errno(0);
        let (raw, op) = match how {
            // SAFETY: cname is a valid C string; libdlm's global state is
            // initialised (or GLOBAL held).
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
        let code = errno();
        // The device protocol decides who reads a poll-mode handle's
        // answers: this crate (6.0.x) or libdlm's dlm_dispatch. Checked
        // once per handle (libdlm caches the version at its first open).
        let protocol = if polled && !raw.is_null() && !libdlm_dispatch {
            let (mut major, mut minor, mut patch) = (0, 0, 0);
            // SAFETY: valid out-pointers; libdlm's global state is
            // initialised (the open above succeeded) and only read now, or
            // GLOBAL is held.
            match unsafe { sys::dlm_kernel_version(&mut major, &mut minor, &mut patch) } {
                0 => Protocol::for_version(major, minor),
                _ => Protocol::Libdlm,
            }
        } else {
            Protocol::Libdlm
        };
        drop(global);
        let Some(handle) = NonNull::new(raw) else {
            return Err(match code {
                libc::ENOENT if !Path::new(CONTROL_DEVICE).exists() => Error::NotAvailable { code },
                libc::ENOENT if matches!(how, How::Open) => Error::LockspaceNotFound,
                libc::ENOENT => Error::NotAvailable { code },
                _ => Error::from_errno(op, code),
            });
        };
        let rc = if polled {
            0
        } else {
            crate::lt::start_ast_thread(handle)
        };
        if rc != 0 {
            // dlm_ls_pthread_init returns pthread_create's error code.
            // SAFETY: handle is open, has no thread and is not used again.
            unsafe { sys::dlm_close_lockspace(handle.as_ptr()) };
            return Err(Error::from_errno("dlm_ls_pthread_init", rc));
        }
        // The descriptor must not outlive this process in a program it
        // executes: an inherited descriptor keeps the lockspace open, and
        // this process's locks held, after this process is gone.
        // SAFETY: `handle` is open; dlm_ls_get_fd only reads it; fcntl on
        // a descriptor we own.
        unsafe {
            let fd = sys::dlm_ls_get_fd(handle.as_ptr());
            if fd >= 0 {
                libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
            }
        }
        // The crate's reader keeps the descriptor non-blocking for good
        // (nobody else reads it: no fcntl per read, as dlm_dispatch does).
        let protocol = match protocol {
            Protocol::Direct => {
                // SAFETY: `handle` is open; dlm_ls_get_fd only reads it;
                // fcntl on a descriptor we own.
                let set = unsafe {
                    let fd = sys::dlm_ls_get_fd(handle.as_ptr());
                    let flags = libc::fcntl(fd, libc::F_GETFL);
                    flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
                };
                if set {
                    Protocol::Direct
                } else {
                    Protocol::Libdlm
                }
            }
            Protocol::Libdlm => Protocol::Libdlm,
        };
        // SAFETY: `handle` is open; dlm_ls_get_fd only reads it; fstat
        // fills a zeroed struct for a descriptor we own.
        let minor = unsafe {
            let mut st: libc::stat = std::mem::zeroed();
            (libc::fstat(sys::dlm_ls_get_fd(handle.as_ptr()), &mut st) == 0)
                .then(|| libc::minor(st.st_rdev))
        };
        let health = crate::health::watch(&cname, minor);
        let core = Core {
            handle,
            name: cname,
            health,
            handoff: Arc::new(Handoff::default()),
            closed: false,
            generation: crate::fork::generation(),
            polled,
            writes_in_poll,
            protocol,
            broken: std::sync::OnceLock::new(),
            reading: Mutex::new(()),
            read_first: AtomicU32::new(0),
            reaper_started: crate::fork::StartedIn::new(),
            patience,
        };
        Ok(Handle::from_core(
            Arc::new(core),
            matches!(how, How::Create { .. }),
        ))
    }
}

impl Core {
    /// The lockspace's name.
    pub(crate) fn name(&self) -> &str {
        self.name.to_str().expect("checked to be UTF-8 when opened")
    }

    /// Whether answers can still come: not released, not stalled, and no
    /// answer refused by the reader.
    pub(crate) fn is_alive(&self) -> bool {
        !self.is_down() && self.broken.get().is_none()
    }

    /// Whether the lockspace is known to be released (possibly by force,
    /// by another process): its device went away. Sticky.
    pub(crate) fn is_gone(&self) -> bool {
        self.health.is_gone()
    }

    /// Whether the handle is in poll mode.
    pub(crate) fn is_polled(&self) -> bool {
        self.polled
    }

    /// Whether a poll-mode handle's answers are read by libdlm's
    /// `dlm_dispatch` (asked for, or a device protocol the crate's reader
    /// does not know).
    pub(crate) fn reads_with_libdlm(&self) -> bool {
        self.polled && self.protocol == Protocol::Libdlm
    }

    /// Whether futures write their requests in `poll`.
    pub(crate) fn writes_in_poll(&self) -> bool {
        self.writes_in_poll
    }

    /// How long the handle's waits are patient.
    pub(crate) fn patience(&self) -> Patience {
        self.patience
    }

    /// Stopped with no dlm_controld: a write would block for ever.
    pub(crate) fn is_stalled(&self) -> bool {
        self.health.is_stalled()
    }

    /// The lockspace's descriptor.
    pub(crate) fn fd(&self) -> i32 {
        // SAFETY: the handle is open while `self` lives; the call reads it.
        unsafe { sys::dlm_ls_get_fd(self.handle.as_ptr()) }
    }

    pub(crate) fn raw(&self) -> sys::dlm_lshandle_t {
        self.handle.as_ptr()
    }

    /// A new lock's cell; one that asks for blocking notifications is
    /// told ([`Blocking::lost`](crate::cell::Blocking::lost)) if the
    /// lockspace is found released.
    pub(crate) fn new_cell(&self, notify_blocking: bool) -> crate::cell::CellRef {
        let cell = crate::cell::CellRef::new(notify_blocking, &self.handoff);
        if notify_blocking {
            self.health.notify_on_loss(&cell);
            // The watchdog tells the loss; a poll-mode handle starts it
            // only for its futures otherwise (a one-time start).
            crate::wait::start_watchdog();
        }
        cell
    }

    /// The reaper's queue and the lockspace's keeping.
    pub(crate) fn handoff(&self) -> &Arc<Handoff> {
        &self.handoff
    }

    /// Keeps `cell` until the lockspace closes (or the reaper frees it):
    /// the kernel may still name it.
    pub(crate) fn keep(&self, cell: CellRef) {
        self.handoff.keep(cell);
    }

    /// Whether this is a fork's child's copy of the handle.
    pub(crate) fn forked(&self) -> bool {
        crate::fork::generation() != self.generation
    }

    /// The error for a wait that ended because no answer can come.
    pub(crate) fn gone_error(&self) -> Error {
        match self.broken.get() {
            _ if self.is_stalled() => Error::LockspaceStopped,
            Some(&what) if !self.is_gone() => Error::BadAnswer(what),
            _ => Error::LockspaceGone,
        }
    }

    /// Whether the lockspace is released or stopped: no write can be made
    /// (unlike a handle whose reader refused an answer, which still
    /// writes).
    pub(crate) fn is_down(&self) -> bool {
        self.health.is_stalled() || self.is_gone()
    }

    /// [`Error::Forked`] in a fork's child: the handle is the parent's.
    /// [`Error::LockspaceGone`] once the lockspace is known released, and
    /// [`Error::LockspaceStopped`] when a write would block for ever.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.forked() {
            return Err(Error::Forked);
        }
        if self.health.is_stalled() {
            return Err(Error::LockspaceStopped);
        }
        if self.health.is_gone() {
            return Err(Error::LockspaceGone);
        }
        Ok(())
    }

    /// [`check`](Self::check) for a request that can wait (a new request,
    /// a conversion up): also [`Error::BadAnswer`] once the reader refused
    /// an answer, since every wait of the handle then ends at once.
    #[inline]
    pub(crate) fn check_new(&self) -> Result<()> {
        self.check()?;
        match self.broken.get() {
            Some(what) => Err(Error::BadAnswer(what)),
            None => Ok(()),
        }
    }

    /// Reads every pending answer and applies it on this thread (the
    /// crate's reader, or `dlm_dispatch` on a device protocol it does not
    /// know). Poll mode only. Waits while another thread of this process
    /// reads (never long: nobody holds the reading lock across a wait), so
    /// that an answer that made the descriptor readable is read before
    /// this returns.
    pub(crate) fn dispatch_now(&self) -> Result<()> {
        let _one = self.reading.lock();
        self.dispatch_locked(None).map(drop)
    }

    /// Reads and applies answers until none is left, or (`until`) until
    /// that request's answer has been applied. Returns whether any answer
    /// was read (`dlm_dispatch`: whether it was called). A result that
    /// cannot be applied does not stop the reading: the others are
    /// applied, then its error is returned.
    fn dispatch_locked(&self, until: Option<&Handshake>) -> Result<bool> {
        if self.protocol == Protocol::Libdlm {
            set_errno(0);
            // SAFETY: a poll-mode handle has no AST thread reading the
            // descriptor; `reading` keeps other threads of this process
            // out; the callbacks are this crate's.
            let rc = unsafe { sys::dlm_dispatch(self.fd()) };
            if rc < 0 {
                let code = errno();
                if code == libc::EAGAIN {
                    return Ok(true);
                }
                return Err(Error::from_errno("dlm_dispatch", code));
            }
            return Ok(true);
        }
        let fd = self.fd();
        let mut buf = crate::reader::Buf::new();
        let mut read = false;
        let mut bad = None;
        loop {
            // SAFETY: the descriptor of this poll-mode handle, whose
            // requests this crate wrote; `reading` is held, so no other
            // thread of this process reads it.
            match unsafe { crate::reader::read_one(fd, &mut buf) } {
                Ok(Read::Applied) => read = true,
                Ok(Read::Empty) => break,
                Err(e @ Error::BadAnswer(what)) => {
                    read = true;
                    // Its waiter cannot be told: every wait ends (the
                    // liveness checks see it), before the error is
                    // returned to anyone.
                    let _ = self.broken.set(what);
                    bad.get_or_insert(e);
                }
                Err(e) => return Err(bad.unwrap_or(e)),
            }
            if until.is_some_and(|hs| !hs.is_waiting()) {
                break;
            }
        }
        match bad {
            Some(e) => Err(e),
            None => Ok(read),
        }
    }

    /// Poll mode: waits up to `timeout_ms` for answers and applies them on
    /// this thread. Returns whether the whole timeout passed with nothing
    /// to read.
    pub(crate) fn drive(&self, timeout_ms: i32) -> bool {
        self.drive_until(timeout_ms, None)
    }

    /// [`drive`](Self::drive) for a waiter of the request on `until`: with
    /// the crate's reader it reads before it polls (a request this node
    /// masters is usually answered before its write returns) and stops
    /// reading once that request's answer has been applied, so a lone
    /// request costs one write and one read. Where those reads keep
    /// finding nothing ([`READ_FIRST_MISSES`] in a row: the resources are
    /// mastered by other nodes, whose answers take a network round trip),
    /// the next [`READ_FIRST_SKIPS`] waits poll first, saving the read
    /// that would fail with `EAGAIN` (one write, one poll, one read), and
    /// then try again.
    pub(crate) fn drive_until(&self, timeout_ms: i32, until: Option<&Handshake>) -> bool {
        if until.is_some() && self.protocol == Protocol::Direct {
            let streak = self.read_first.load(Ordering::Relaxed);
            if streak < READ_FIRST_MISSES {
                if let Some(_one) = self.reading.try_lock() {
                    // An error (a closing handle, a bad answer) falls
                    // through to the poll: it never turns this into a
                    // busy loop.
                    if matches!(self.dispatch_locked(until), Ok(true)) {
                        if streak != 0 {
                            self.read_first.store(0, Ordering::Relaxed);
                        }
                        return false;
                    }
                    self.read_first.store(streak + 1, Ordering::Relaxed);
                }
            } else if streak < READ_FIRST_MISSES + READ_FIRST_SKIPS {
                self.read_first.store(streak + 1, Ordering::Relaxed);
            } else {
                self.read_first.store(0, Ordering::Relaxed);
            }
        }
        let mut pfd = libc::pollfd {
            fd: self.fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n > 0 {
            let _one = self.reading.lock();
            let _ = self.dispatch_locked(until);
        } else if n == 0 && timeout_ms >= 1000 {
            // A second with nothing to read: look at the lockspace's
            // health (the watchdog may not run in poll mode).
            self.health.refresh(&self.name);
        }
        n == 0
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if self.forked() {
            // A fork's child: the AST thread is the parent's and libdlm's
            // close would cancel a thread that is not here; close only the
            // child's copy of the descriptor. The cells are the parent's
            // memory image: leave them, without taking the queue's locks
            // (a parent thread may have held them at the fork).
            // SAFETY: the handle's memory is this process's copy; closing
            // our copy of the descriptor does not touch the parent's.
            unsafe { libc::close(sys::dlm_ls_get_fd(self.handle.as_ptr())) };
            std::mem::forget(self.handoff.clone());
            return;
        }
        if self.is_stalled() {
            // Closing would block uninterruptibly in the kernel (and
            // cancelling the AST thread is useless: it sleeps in read);
            // leave the handle, its thread and its cells: the descriptor
            // closes when the process exits.
            let (kept, jobs) = self.handoff.close();
            std::mem::forget(kept);
            std::mem::forget(jobs);
            return;
        }
        let close = Closing {
            handle: self.handle,
            handoff: self.handoff.clone(),
        };
        if crate::cell::on_callback_thread() {
            // The last reference went on libdlm's own thread (a waker the
            // callback dropped held it): libdlm's close would join this very
            // thread. Another thread closes.
            let spawned = std::thread::Builder::new()
                .name("dlm-close".into())
                .spawn(move || close.run());
            if let Err(e) = spawned {
                // No thread: leave the handle open, as a stalled one.
                drop(e);
            }
            return;
        }
        close.run();
    }
}

/// A libdlm handle to close, and its queue and keeping to drop after.
struct Closing {
    handle: NonNull<c_void>,
    handoff: Arc<Handoff>,
}

// SAFETY: the handle is closed once, by whichever thread runs `run`; libdlm
// handles may be used from any thread.
unsafe impl Send for Closing {}

impl Closing {
    fn run(self) {
        // libdlm cancels and joins the AST thread (never this thread),
        // closes the device and frees the handle. Only then are the kept
        // cells and the queued jobs dropped: until the thread is stopped a
        // callback can still name a kept cell, or queue one.
        // SAFETY: the last owner of the open handle gave it here.
        unsafe { sys::dlm_close_lockspace(self.handle.as_ptr()) };
        let (kept, jobs) = self.handoff.close();
        drop(jobs);
        drop(kept);
    }
}

/// Calls `dlm_release_lockspace` and finds out what the kernel said:
/// libdlm ignores the kernel's answer, so `errno` is cleared first and
/// looked at after (libdlm's other calls on that path do not fail).
///
/// # Safety
/// `handle` is an open handle not used again.
pub(crate) unsafe fn release_handle(
    name: &CString,
    handle: sys::dlm_lshandle_t,
    force: bool,
) -> Result<()> {
    let global = init_global();
    set_errno(0);
    // SAFETY: the caller's contract; libdlm's global state is initialised
    // (or GLOBAL held).
    let rc = unsafe { sys::dlm_release_lockspace(name.as_ptr(), handle, force as i32) };
    let code = errno();
    drop(global);
    match (rc, code) {
        (0, 0) => Ok(()),
        (_, libc::EBUSY) => Err(Error::LockspaceBusy),
        // Gone already: released (by force) by someone else meanwhile.
        (_, libc::ENOENT) => Err(Error::LockspaceNotFound),
        (_, code) => Err(Error::from_errno("dlm_release_lockspace", code)),
    }
}

/// Releases a lockspace through a handle of its own.
pub(crate) fn release_by_name(name: &CString, force: bool) -> Result<()> {
    wait_lingering(name);
    if open_count(name) > 0 {
        return Err(Error::HandlesOpen);
    }
    let handle = {
        let global = init_global();
        set_errno(0);
        // SAFETY: name is a valid C string; the global state is initialised
        // (or GLOBAL held).
        let raw = unsafe { sys::dlm_open_lockspace(name.as_ptr()) };
        let code = errno();
        drop(global);
        match NonNull::new(raw) {
            Some(handle) => handle,
            None => {
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

#[cfg(test)]
mod tests {
    use super::*;

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
