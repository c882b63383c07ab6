//! Where ASTs cross from libdlm's thread into Rust.
//!
//! Every lock has a [`LockCell`] at a fixed heap address: the `dlm_lksb` and
//! the 32-byte LVB buffer the kernel and libdlm write into, and the route
//! its completions take. libdlm's AST thread (started by
//! `dlm_ls_pthread_init`) copies each result into the lksb and calls
//! [`completion_ast`] or [`blocking_ast`] with the cell's address. Those
//! functions snapshot what they need and forward it over a
//! `crossbeam-channel` — nothing else: no allocation, no lock, no I/O, no
//! user code, and no panic can escape them.
//!
//! A thread waiting for a completion waits on its own channel (one per
//! thread, made on first use), so a request costs no channel allocation;
//! the AST sends on it and unparks the thread.
//! Each event names the cell and the request sequence number it answers;
//! a waiter discards any other (a late answer to a request it gave up on).
//!
//! Ownership rule: while a request is in flight, libdlm's thread owns the
//! lksb and LVB buffer; the requesting thread touches them again only after
//! it has received the completion (the channel orders the two). A blocking
//! AST may rewrite the lksb at any time, so Rust reads the lksb only on
//! libdlm's thread, in [`completion_ast`] (the one exception: the lock id
//! of a new request, which libdlm stores on the calling thread, read
//! atomically to cancel the request); the LVB buffer is written by libdlm
//! only at completions.

use crate::error::Error;
use crossbeam_channel::{Receiver, Sender};
use dlm_sys as sys;
use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// What the AST thread tells the waiting thread about one completion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completion {
    /// Address of the cell it belongs to.
    cell: usize,
    /// Sequence number of the request it answers.
    seq: u32,
    /// `sb_status`: 0, `EAGAIN`, `EDEADLK`, `ECANCEL`, `EUNLOCK`, ...
    pub status: i32,
    /// `sb_lkid`.
    pub lkid: u32,
    /// `sb_flags` (`DLM_SBF_*`).
    pub sb_flags: u8,
}

/// A blocking notification: another request waits for a mode this lock's
/// mode blocks. libdlm does not pass on which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking;

/// The per-lock state shared with libdlm's AST thread.
///
/// It has two lock status blocks. Slot [`MAIN`] serves requests,
/// conversions and unlocks; slot [`CANCEL`] serves cancels. libdlm stores
/// `EINPROG` into the lksb it is given on the calling thread, and a cancel
/// is the one call made while the lock's AST can be running on libdlm's
/// thread: with one lksb, that store could overwrite a grant's status
/// between libdlm's copy and the AST's read. The AST argument names the
/// slot (the cell's address plus the slot index), and the kernel writes
/// each result to the lksb of the request that set the argument.
#[repr(C)]
pub(crate) struct LockCell {
    /// Written by libdlm (calling thread at request time, AST thread at
    /// every AST); read by Rust only in `completion_ast` and, for a new
    /// request's lock id, by `lkid_after_request`.
    lksb: [UnsafeCell<sys::dlm_lksb>; 2],
    /// The LVB buffer both lksbs point at.
    lvb: UnsafeCell<[u8; sys::DLM_LVB_LEN]>,
    /// Sequence number of the request in flight; stored (Release) by the
    /// requesting thread before the request, loaded (Acquire) by the AST.
    seq: AtomicU32,
    /// An [`Abandoned`] value once a waiter gave up on this cell (its
    /// lockspace keeps it until close); late answers are then dealt with by
    /// the AST itself.
    abandoned: AtomicU8,
    /// The waiting thread's channel and handle; written only while no
    /// request is in flight, read by the AST during one.
    route: UnsafeCell<Option<Arc<Route>>>,
    /// Blocking notifications, when the lock asked for them.
    blocking: Option<Sender<Blocking>>,
    /// A thread parked in `LockGuard::wait_blocking`, to unpark after a
    /// blocking notification (std's mutex: it never spins or yields).
    bast_waiter: std::sync::Mutex<Option<Thread>>,
    /// The lockspace, for the unlock of a late grant of an abandoned cell.
    ls: sys::dlm_lshandle_t,
}

const NOT_ABANDONED: u8 = 0;

/// What a waiter gave up on, which tells the AST what a late answer leaves
/// held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Abandoned {
    /// A new request: only a grant leaves a lock held.
    Request = 1,
    /// A conversion or other request on a held lock: the lock stays held
    /// whatever the answer, except after an unlock.
    Held = 2,
    /// An unlock: nothing is left to release.
    Unlock = 3,
}

/// Slot of requests, conversions and unlocks.
pub(crate) const MAIN: usize = 0;
/// Slot of cancels.
pub(crate) const CANCEL: usize = 1;

// SAFETY: the cell is shared between the thread that owns its lock and
// libdlm's AST thread under the ownership rule in the module docs: the
// UnsafeCell fields are only accessed by one side at a time, ordered by
// the request (a write(2) to the lockspace device) and by `seq`'s
// Release/Acquire pair and the completion channel. `ls` is only used while
// the lockspace is open (ASTs stop before it closes).
unsafe impl Send for LockCell {}
// SAFETY: as for Send; shared access from the two threads follows the same
// rule.
unsafe impl Sync for LockCell {}

impl std::fmt::Debug for LockCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockCell")
            .field("seq", &self.seq.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LockCell {
    /// A new cell, boxed so that its address stays fixed.
    pub(crate) fn new(
        ls: sys::dlm_lshandle_t,
        blocking: Option<Sender<Blocking>>,
    ) -> Box<LockCell> {
        let cell = Box::new(LockCell {
            lksb: [
                UnsafeCell::new(sys::dlm_lksb::default()),
                UnsafeCell::new(sys::dlm_lksb::default()),
            ],
            lvb: UnsafeCell::new([0; sys::DLM_LVB_LEN]),
            seq: AtomicU32::new(0),
            abandoned: AtomicU8::new(NOT_ABANDONED),
            route: UnsafeCell::new(None),
            blocking,
            bast_waiter: std::sync::Mutex::new(None),
            ls,
        });
        for slot in &cell.lksb {
            // SAFETY: nothing else can see the new cell yet.
            unsafe { (*slot.get()).sb_lvbptr = cell.lvb.get().cast() };
        }
        cell
    }

    /// The lksb of `slot` to pass to libdlm.
    pub(crate) fn lksb_ptr(&self, slot: usize) -> *mut sys::dlm_lksb {
        self.lksb[slot].get()
    }

    /// The `astarg` to pass to libdlm with the lksb of `slot`: the cell's
    /// address plus the slot index (the cell is 8-byte aligned).
    pub(crate) fn arg(&self, slot: usize) -> *mut c_void {
        (self as *const LockCell as *mut c_void).wrapping_byte_add(slot)
    }

    /// The cell and slot an `astarg` names.
    ///
    /// # Safety
    /// `arg` came from [`LockCell::arg`] of a cell that is still alive.
    unsafe fn from_arg<'a>(arg: *mut c_void) -> (&'a LockCell, usize) {
        let slot = arg as usize & 1;
        // SAFETY: undoing `arg` gives back the cell's own pointer, with its
        // provenance; the cell is alive (the caller's contract).
        (
            unsafe { &*(arg.wrapping_byte_sub(slot) as *const LockCell) },
            slot,
        )
    }

    /// Registers (or, with `None`, removes) the thread to unpark at a
    /// blocking notification.
    pub(crate) fn set_bast_waiter(&self, thread: Option<Thread>) {
        if let Ok(mut waiter) = self.bast_waiter.lock() {
            *waiter = thread;
        }
    }

    /// Whether the lock asked for blocking notifications.
    pub(crate) fn wants_blocking(&self) -> bool {
        self.blocking.is_some()
    }

    /// Gets the cell ready for a request from the current thread, whose
    /// channel is `waiter`: routes completions there and returns the new
    /// request's sequence number.
    ///
    /// # Safety
    /// No request of this cell may be in flight.
    pub(crate) unsafe fn prepare(&self, waiter: &Waiter) -> u32 {
        // SAFETY: no request in flight (caller's contract), so the AST
        // thread does not read `route` now.
        let route = unsafe { &mut *self.route.get() };
        if !route
            .as_ref()
            .is_some_and(|r| Arc::ptr_eq(r, &waiter.route))
        {
            *route = Some(waiter.route.clone());
        }
        self.seq.fetch_add(1, Ordering::Release).wrapping_add(1)
    }

    /// The LVB buffer's contents.
    ///
    /// # Safety
    /// No request of this cell may be in flight, and the completion of the
    /// last one must have been received on this thread.
    pub(crate) unsafe fn lvb(&self) -> [u8; sys::DLM_LVB_LEN] {
        // SAFETY: libdlm writes the buffer only at completions; none can
        // come now (caller's contract).
        unsafe { *self.lvb.get() }
    }

    /// Replaces the LVB buffer's contents (sent with the next VALBLK
    /// request).
    ///
    /// # Safety
    /// As for [`LockCell::lvb`].
    pub(crate) unsafe fn set_lvb(&self, bytes: &[u8; sys::DLM_LVB_LEN]) {
        // SAFETY: as in `lvb`.
        unsafe { *self.lvb.get() = *bytes };
    }

    /// Marks the cell given up: its owner no longer waits for it, and the
    /// AST thread releases whatever lock the late answer leaves held.
    pub(crate) fn abandon(&self, how: Abandoned) {
        self.abandoned.store(how as u8, Ordering::Release);
    }

    /// Reads the lock id libdlm stored on this thread after the `write` of
    /// a new request; used only to cancel a request that has not completed.
    pub(crate) fn lkid_after_request(&self) -> u32 {
        // libdlm's AST thread may store the same value into the field at the
        // same time (a race inside libdlm's design); an atomic load keeps
        // this side free of torn or assumed-stable reads.
        // SAFETY: the field is a valid, aligned u32 inside the live cell.
        let lkid = unsafe {
            &*(std::ptr::addr_of_mut!((*self.lksb[MAIN].get()).sb_lkid) as *const AtomicU32)
        };
        lkid.load(Ordering::Relaxed)
    }
}

/// Where a thread's completions go: its channel, and the thread to wake.
#[derive(Debug)]
pub(crate) struct Route {
    tx: Sender<Completion>,
    thread: Thread,
    /// Set while the thread is parked in an untimed wait, for the
    /// watchdog.
    waiting: AtomicBool,
}

impl Route {
    /// Hands a completion to the thread and wakes it.
    fn deliver(&self, completion: Completion) {
        // Never blocks; a full channel only happens if a thread leaves more
        // than WAITER_CAPACITY answers unread.
        let _ = self.tx.try_send(completion);
        self.thread.unpark();
    }
}

/// A thread's completion channel.
///
/// Waiting costs what the same design costs in C (a condition variable):
/// the AST sends and unparks (one futex wake), the waiter parks (one futex
/// wait). An untimed wait reads no clock — under user-mode Linux, for one,
/// every clock read is a system call — so it cannot time itself: a
/// process-wide watchdog thread advances [`TICKS`] every
/// [`LIVENESS_PERIOD`] and wakes the threads parked in untimed waits, which
/// then check that their lockspace still exists.
#[derive(Debug)]
pub(crate) struct Waiter {
    route: Arc<Route>,
    rx: Receiver<Completion>,
}

/// Completions that can be pending for one thread: one per request, plus
/// late answers to requests it gave up on.
const WAITER_CAPACITY: usize = 32;

/// How long a wait may go on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Until the completion comes or the lockspace is gone.
    Forever,
    /// At most about this many watchdog ticks.
    Ticks(u32),
    /// Until this instant (a timed request; reads the clock).
    Deadline(Instant),
}

/// Watchdog ticks so far.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// The routes of every thread that has waited, for the watchdog.
static ROUTES: parking_lot::Mutex<Vec<Arc<Route>>> = parking_lot::const_mutex(Vec::new());

/// Starts the watchdog thread, once per process.
fn start_watchdog() {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("dlm-watchdog".into())
            .spawn(|| loop {
                std::thread::sleep(LIVENESS_PERIOD);
                TICKS.fetch_add(1, Ordering::SeqCst);
                for route in ROUTES.lock().iter() {
                    if route.waiting.load(Ordering::SeqCst) {
                        route.thread.unpark();
                    }
                }
            });
        // Without the watchdog, untimed waits only lose their liveness
        // check; they still end when their completion comes.
        drop(spawned);
    });
}

impl Waiter {
    pub(crate) fn new() -> Waiter {
        start_watchdog();
        let (tx, rx) = crossbeam_channel::bounded(WAITER_CAPACITY);
        let route = Arc::new(Route {
            tx,
            thread: std::thread::current(),
            waiting: AtomicBool::new(false),
        });
        ROUTES.lock().push(route.clone());
        Waiter { route, rx }
    }

    /// Runs `f` with the calling thread's waiter (or, during thread-local
    /// destruction, a fresh one).
    pub(crate) fn with<R>(f: impl FnOnce(&Waiter) -> R) -> R {
        thread_local! {
            static WAITER: Waiter = Waiter::new();
        }
        let mut f = Some(f);
        match WAITER.try_with(|w| (f.take().expect("called once"))(w)) {
            Ok(r) => r,
            Err(_) => (f.take().expect("not yet called"))(&Waiter::new()),
        }
    }

    /// Parks the thread with no clock read; the watchdog wakes it at its
    /// next tick if nothing else does. Returns whether a tick passed.
    pub(crate) fn park_untimed(&self) -> bool {
        let tick = TICKS.load(Ordering::SeqCst);
        self.route.waiting.store(true, Ordering::SeqCst);
        std::thread::park();
        self.route.waiting.store(false, Ordering::SeqCst);
        TICKS.load(Ordering::SeqCst) != tick
    }

    /// Drops answers to earlier requests still in the channel.
    pub(crate) fn drain(&self) {
        while self.rx.try_recv().is_ok() {}
    }

    /// Waits for the completion of request `seq` of `cell` within `limit`
    /// (then `Ok(None)`). About every [`LIVENESS_PERIOD`] of waiting it
    /// asks `alive()` whether the lockspace still exists; a lockspace that
    /// is gone gives [`Error::LockspaceGone`], since no AST will come from
    /// it.
    pub(crate) fn wait(
        &self,
        cell: &LockCell,
        seq: u32,
        limit: Limit,
        alive: &dyn Fn() -> bool,
    ) -> Result<Option<Completion>, Error> {
        let me = cell as *const LockCell as usize;
        let mut tick = TICKS.load(Ordering::SeqCst);
        let mut ticks = 0u32;
        let mut last_check = None::<Instant>;
        loop {
            match self.rx.try_recv() {
                Ok(c) if c.cell == me && c.seq == seq => return Ok(Some(c)),
                Ok(_) => continue, // a late answer to a request given up on
                Err(_) => {}
            }
            match limit {
                Limit::Deadline(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    let since = *last_check.get_or_insert(now);
                    if now - since >= LIVENESS_PERIOD {
                        if !alive() {
                            return Err(Error::LockspaceGone);
                        }
                        last_check = Some(now);
                    }
                    std::thread::park_timeout((deadline - now).min(LIVENESS_PERIOD));
                }
                Limit::Forever | Limit::Ticks(_) => {
                    self.route.waiting.store(true, Ordering::SeqCst);
                    // An AST that sent after the try_recv above has also
                    // unparked us: park returns at once then.
                    std::thread::park();
                    self.route.waiting.store(false, Ordering::SeqCst);
                    let now_tick = TICKS.load(Ordering::SeqCst);
                    if now_tick != tick {
                        tick = now_tick;
                        ticks += 1;
                        if !alive() {
                            return Err(Error::LockspaceGone);
                        }
                        if matches!(limit, Limit::Ticks(n) if ticks >= n) {
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        ROUTES.lock().retain(|r| !Arc::ptr_eq(r, &self.route));
    }
}

/// How often a wait checks that its lockspace still exists.
pub(crate) const LIVENESS_PERIOD: Duration = Duration::from_secs(1);

extern "C" {
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}
/// glibc's `PTHREAD_CANCEL_DISABLE`.
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Holds off `pthread_cancel` (used by `dlm_close_lockspace`) while an AST
/// function runs, so that cancellation never unwinds through Rust frames;
/// a pending cancel acts at libdlm's next `read`.
struct NoCancel(c_int);

impl NoCancel {
    fn new() -> NoCancel {
        let mut old = 0;
        // SAFETY: `old` is a valid out-pointer; the call only changes this
        // thread's cancel state.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        let mut ignored = 0;
        // SAFETY: as in `new`; restores the state saved there.
        unsafe { pthread_setcancelstate(self.0, &mut ignored) };
    }
}

/// Runs `f`, aborting the process if it panics: no panic may unwind into
/// libdlm's C frames.
fn no_unwind(f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        std::process::abort();
    }
}

/// The completion AST of every lock: snapshots the lksb and forwards it to
/// the waiting thread.
///
/// # Safety
/// `arg` is the address of a live [`LockCell`] that stays alive until the
/// waiter has received this completion (or, for an abandoned cell, until
/// its lockspace is closed); libdlm has just written its lksb on this
/// thread.
pub(crate) unsafe extern "C" fn completion_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    no_unwind(|| {
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, slot) = unsafe { LockCell::from_arg(arg) };
        let seq = cell.seq.load(Ordering::Acquire);
        // SAFETY: libdlm wrote this slot's lksb on this thread just now;
        // the calling thread writes it only before a request of its own
        // slot, which cannot be in flight at the same time.
        let lksb = unsafe { std::ptr::read(cell.lksb[slot].get()) };
        let abandoned = cell.abandoned.load(Ordering::Acquire);
        if abandoned != NOT_ABANDONED {
            let still_held = match abandoned {
                a if a == Abandoned::Request as u8 => lksb.sb_status == 0,
                a if a == Abandoned::Held as u8 => lksb.sb_status != sys::EUNLOCK,
                _ => false,
            };
            if still_held {
                // Granted, or left held, after its waiter gave up: release
                // it at once. Its EUNLOCK comes back here and ends it.
                cell.abandoned
                    .store(Abandoned::Unlock as u8, Ordering::Release);
                // SAFETY: the cell stays alive until the lockspace closes,
                // which cannot happen while this AST runs; lkid names the
                // granted lock.
                unsafe {
                    sys::dlm_ls_unlock(
                        cell.ls,
                        lksb.sb_lkid,
                        0,
                        cell.lksb_ptr(MAIN),
                        cell.arg(MAIN),
                    )
                };
            }
            return;
        }
        let completion = Completion {
            cell: cell as *const LockCell as usize,
            seq,
            status: lksb.sb_status,
            lkid: lksb.sb_lkid,
            sb_flags: lksb.sb_flags as u8,
        };
        // Clone the route out of the cell: once the waiter has the event it
        // may free the cell, so the send must not borrow from it.
        // SAFETY: `route` is not written while a request is in flight.
        let route = unsafe { (*cell.route.get()).clone() };
        if let Some(route) = route {
            route.deliver(completion);
        }
    });
}

/// The blocking AST of locks that asked for notifications.
///
/// # Safety
/// `arg` is the address of a live [`LockCell`]; the kernel sends blocking
/// ASTs only before the lock's last completion, which its owner waits for
/// before freeing the cell.
pub(crate) unsafe extern "C" fn blocking_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    no_unwind(|| {
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, _) = unsafe { LockCell::from_arg(arg) };
        // The cell cannot be freed while this runs: its owner frees it only
        // after the lock's last completion, which libdlm delivers on this
        // thread after this function returns.
        if let Some(tx) = &cell.blocking {
            // Coalesces: one pending notification says enough.
            let _ = tx.try_send(Blocking);
            if let Ok(waiter) = cell.bast_waiter.lock() {
                if let Some(thread) = waiter.as_ref() {
                    thread.unpark();
                }
            }
        }
    });
}
