//! Where ASTs cross from libdlm's thread into Rust.
//!
//! Every lock has a [`LockCell`] at a fixed heap address: the `dlm_lksb`
//! and the 32-byte LVB buffer the kernel and libdlm write into, the answer
//! to the request in flight, and who to wake. libdlm's AST thread (started
//! by `dlm_ls_pthread_init`) copies each result into the lksb and calls
//! [`completion_ast`] or [`blocking_ast`] with the cell's address. Those
//! functions snapshot the answer into the cell, and forward it to the
//! waiter by one compare-and-swap and one unpark — nothing else: no
//! allocation, no lock (but the blocking-notification waiter's), no user
//! code, and no panic can escape them. The one exception is a late answer
//! that leaves an abandoned lock held when the reaper's queue is full:
//! then the AST writes the unlock itself (see [`crate::reaper`]).
//!
//! # The handshake
//! One atomic per cell says who owns the request in flight:
//! `IDLE -> WAITING` (the requesting thread, before the request is
//! written), then either `WAITING -> DELIVERED` (the AST: the answer is in
//! the cell, the waiter may read it and free the cell) or
//! `WAITING -> ABANDONED_*` (the waiter gave up: a timeout whose cancel was
//! never answered, a lockspace gone, a panic unwinding). Exactly one of the
//! two compare-and-swaps wins. A waiter that loses reads the answer that
//! won; an AST that loses deals with its answer itself: if the answer
//! leaves a lock held that nobody owns any more, it hands the cell to the
//! [reaper](crate::reaper), which releases the lock without writing any
//! value block. An abandoned cell stays in its lockspace's keeping
//! until the lockspace closes, or until the reaper has unlocked it, so the
//! kernel never writes into freed memory.
//!
//! Ownership rule: while a request is in flight (`WAITING`), libdlm's
//! thread owns the lksb, the LVB buffer and the answer; the requesting
//! thread touches them again only after it has seen `DELIVERED` (Acquire)
//! or has won the abandon. A blocking AST may rewrite the lksb at any
//! time, so Rust reads the lksb only on libdlm's thread (the one exception:
//! the lock id of a new request, which libdlm stores on the calling thread,
//! read atomically to cancel the request).

use crate::lockspace::Inner;
use crate::state::Answer;
use crossbeam_channel::{Receiver, Sender};
use dlm_sys as sys;
use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::{Arc, Weak};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A blocking notification: another request waits for a mode this lock's
/// mode blocks. libdlm does not pass on which mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking;

/// The receiving end of a lock's blocking notifications
/// ([`LockGuard::blocking`](crate::LockGuard::blocking)): a
/// `crossbeam-channel` receiver, usable with
/// [`crossbeam_channel::select!`] (re-exported as
/// [`dlm::crossbeam_channel`](crate::crossbeam_channel)).
pub type BlockingReceiver = Receiver<Blocking>;

/// No request in flight.
const IDLE: u8 = 0;
/// A request is in flight and its thread waits for the answer.
const WAITING: u8 = 1;
/// The AST put the answer in the cell.
const DELIVERED: u8 = 2;
/// The reaper owns the cell (an abandoned lock it releases).
const REAPING: u8 = 3;
/// Given up: a new request (only a grant leaves a lock held).
const ABANDONED_REQUEST: u8 = 4;
/// Given up: a conversion of a held lock (the lock stays held, whatever
/// the answer).
const ABANDONED_HELD: u8 = 5;
/// Given up: an unlock (only a failed unlock leaves the lock held).
const ABANDONED_UNLOCK: u8 = 6;

/// What a waiter gives up on, which tells what a late answer leaves held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Abandon {
    /// A new request.
    Request = ABANDONED_REQUEST,
    /// A conversion (or publication) of a held lock.
    Held = ABANDONED_HELD,
    /// An unlock.
    Unlock = ABANDONED_UNLOCK,
}

impl Abandon {
    /// Whether `status`, the answer to a request of this kind, leaves the
    /// lock held.
    pub(crate) fn leaves_held(self, status: i32) -> bool {
        match self {
            Abandon::Request => status == 0,
            Abandon::Held | Abandon::Unlock => status != sys::EUNLOCK,
        }
    }

    fn from_state(state: u8) -> Option<Abandon> {
        match state {
            ABANDONED_REQUEST => Some(Abandon::Request),
            ABANDONED_HELD => Some(Abandon::Held),
            ABANDONED_UNLOCK => Some(Abandon::Unlock),
            _ => None,
        }
    }
}

/// The answer to one request, as the AST saw it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Delivered {
    pub(crate) answer: Answer,
    /// `sb_lkid`.
    pub(crate) lkid: u32,
}

/// The per-lock state shared with libdlm's AST thread.
///
/// It has two lock status blocks. Slot [`MAIN`] serves requests,
/// conversions and unlocks; slot [`CANCEL`] serves cancels. libdlm stores
/// `EINPROG` into the lksb it is given on the calling thread, and a cancel
/// is the one call made while the lock's AST can be running on libdlm's
/// thread: with one lksb, that store could overwrite a grant's status
/// between libdlm's copy and the AST's read. The AST argument names the
/// slot (the cell's address plus the slot index).
#[repr(C)]
pub(crate) struct LockCell {
    /// Written by libdlm (calling thread at request time, AST thread at
    /// every AST); read by Rust only in `completion_ast` and, for a new
    /// request's lock id, by `lkid_after_request`.
    lksb: [UnsafeCell<sys::dlm_lksb>; 2],
    /// The LVB buffer both lksbs point at.
    lvb: UnsafeCell<[u8; sys::DLM_LVB_LEN]>,
    /// The handshake (see the module docs).
    state: AtomicU8,
    /// The answer, written by the AST before `WAITING -> DELIVERED`.
    answer: UnsafeCell<Delivered>,
    /// The thread to wake; written only while no request is in flight.
    waker: UnsafeCell<Option<Thread>>,
    /// The async task to wake (a future waiting for the answer, or for a
    /// blocking notification).
    pub(crate) task: atomic_waker::AtomicWaker,
    /// The async task waiting for a blocking notification.
    pub(crate) bast_task: atomic_waker::AtomicWaker,
    /// The lockspace, for the reaper; written before an abandon, read by
    /// the AST after it.
    owner: UnsafeCell<Weak<Inner>>,
    /// Blocking notifications, when the lock asked for them. The receiver
    /// is kept to drop notifications made stale by a grant.
    blocking: Option<(Sender<Blocking>, Receiver<Blocking>)>,
    /// A thread parked in `LockGuard::wait_blocking`, to unpark after a
    /// blocking notification (std's mutex: it never spins or yields).
    bast_waiter: std::sync::Mutex<Option<Thread>>,
    /// The lockspace handle, for the AST thread's fallback unlock (the
    /// lockspace cannot close while its AST thread runs).
    ls: sys::dlm_lshandle_t,
}

/// A shared owner of a [`LockCell`]: an `Arc`, so that the cell is only
/// ever reached through shared references (libdlm's AST thread writes into
/// it concurrently: a `Box` would assert unique access), and so that the
/// AST can keep it alive for the few instructions after it hands the
/// answer over (waking an async task reads the cell after the waiter may
/// have let go of it).
#[derive(Clone)]
pub(crate) struct CellBox(Arc<LockCell>);

impl CellBox {
    /// The cell's address, as its AST argument names it.
    pub(crate) fn addr(&self) -> usize {
        Arc::as_ptr(&self.0) as usize
    }
}

impl std::ops::Deref for CellBox {
    type Target = LockCell;
    fn deref(&self) -> &LockCell {
        &self.0
    }
}

impl std::fmt::Debug for CellBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (*self.0).fmt(f)
    }
}

/// Slot of requests, conversions and unlocks.
pub(crate) const MAIN: usize = 0;
/// Slot of cancels.
pub(crate) const CANCEL: usize = 1;

// SAFETY: the cell is shared between the thread that owns its lock and
// libdlm's AST thread under the handshake in the module docs: each
// UnsafeCell field is accessed by one side at a time, ordered by the
// request (a write(2) to the lockspace device) and by `state`'s
// Release/Acquire compare-and-swaps.
unsafe impl Send for LockCell {}
// SAFETY: as for Send; shared access from the two threads follows the same
// rule.
unsafe impl Sync for LockCell {}

impl std::fmt::Debug for LockCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockCell")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl LockCell {
    /// A new cell, on the heap so that its address stays fixed.
    #[allow(clippy::new_ret_no_self)]
    pub(crate) fn new(ls: sys::dlm_lshandle_t, blocking: bool) -> CellBox {
        let cell = Arc::new(LockCell {
            lksb: [
                UnsafeCell::new(sys::dlm_lksb::default()),
                UnsafeCell::new(sys::dlm_lksb::default()),
            ],
            lvb: UnsafeCell::new([0; sys::DLM_LVB_LEN]),
            state: AtomicU8::new(IDLE),
            answer: UnsafeCell::new(Delivered::default()),
            waker: UnsafeCell::new(None),
            task: atomic_waker::AtomicWaker::new(),
            bast_task: atomic_waker::AtomicWaker::new(),
            owner: UnsafeCell::new(Weak::new()),
            blocking: blocking.then(|| crossbeam_channel::bounded(1)),
            bast_waiter: std::sync::Mutex::new(None),
            ls,
        });
        for slot in &cell.lksb {
            // SAFETY: nothing else can see the new cell yet.
            unsafe { (*slot.get()).sb_lvbptr = cell.lvb.get().cast() };
        }
        CellBox(cell)
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

    /// The lockspace handle the cell's lock belongs to.
    pub(crate) fn handle(&self) -> sys::dlm_lshandle_t {
        self.ls
    }

    /// The BAST function to register: only for locks that asked for
    /// notifications, so the kernel sends none to the others.
    pub(crate) fn bast_fn(&self) -> Option<unsafe extern "C" fn(*mut c_void)> {
        self.blocking
            .is_some()
            .then_some(blocking_ast as unsafe extern "C" fn(*mut c_void))
    }

    /// The receiver of blocking notifications, if the lock asked for them.
    pub(crate) fn blocking_rx(&self) -> Option<&Receiver<Blocking>> {
        self.blocking.as_ref().map(|(_, rx)| rx)
    }

    /// Registers (or, with `None`, removes) the thread to unpark at a
    /// blocking notification.
    pub(crate) fn set_bast_waiter(&self, thread: Option<Thread>) {
        if let Ok(mut waiter) = self.bast_waiter.lock() {
            *waiter = thread;
        }
    }

    /// Gets the cell ready for a request from the current thread: it will
    /// be woken when the answer comes.
    ///
    /// # Safety
    /// No request of this cell may be in flight.
    pub(crate) unsafe fn prepare(&self, waiter: Option<&Waiter>) {
        // SAFETY: no request in flight (the caller's contract): the AST
        // thread does not read `waker` now.
        let waker = unsafe { &mut *self.waker.get() };
        match waiter {
            Some(w) if waker.as_ref().map(Thread::id) != Some(w.thread.id()) => {
                *waker = Some(w.thread.clone());
            }
            Some(_) => {}
            // An async request: its task is woken through `task`.
            None => *waker = None,
        }
        self.state.store(WAITING, Ordering::Release);
    }

    /// Undoes [`prepare`](Self::prepare) after libdlm refused the request:
    /// no AST will come for it.
    pub(crate) fn unprepare(&self) {
        self.state.store(IDLE, Ordering::Release);
    }

    /// The answer, once delivered: then the cell is the waiter's again.
    pub(crate) fn delivered(&self) -> Option<Delivered> {
        if self.state.load(Ordering::Acquire) != DELIVERED {
            return None;
        }
        self.state.store(IDLE, Ordering::Relaxed);
        // SAFETY: DELIVERED (Acquire) means the AST wrote the answer and
        // will not touch the cell again for this request.
        Some(unsafe { *self.answer.get() })
    }

    /// Gives up on the request in flight: `Ok` if the AST has not answered
    /// (it will deal with the answer, reaching the lockspace through
    /// `owner`); `Err` with the answer if it came first (the cell is the
    /// caller's again).
    pub(crate) fn abandon(&self, how: Abandon, owner: &Arc<Inner>) -> Result<(), Delivered> {
        // SAFETY: WAITING: the AST reads `owner` only after it sees an
        // ABANDONED state, which the compare-and-swap below publishes.
        unsafe { *self.owner.get() = Arc::downgrade(owner) };
        match self
            .state
            .compare_exchange(WAITING, how as u8, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(_) => Err(self.delivered().unwrap_or_default()),
        }
    }

    /// Marks the cell as the reaper's.
    pub(crate) fn set_reaping(&self) {
        self.state.store(REAPING, Ordering::Release);
    }

    /// The LVB buffer's contents.
    ///
    /// # Safety
    /// No request of this cell may be in flight, and its answer must have
    /// been seen (Acquire) by this thread or handed over since.
    pub(crate) unsafe fn lvb(&self) -> [u8; sys::DLM_LVB_LEN] {
        // SAFETY: libdlm writes the buffer only at completions; none can
        // come now (the caller's contract).
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

    /// Reads the lock id libdlm stored on this thread after the `write` of
    /// a new request; used to cancel a request that has not completed, and
    /// to learn an adopted orphan's id.
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

/// A thread's registration for waits: its handle, and whether it is
/// parked in an untimed wait (for the watchdog).
///
/// Waiting costs what the same design costs in C (a condition variable):
/// the AST stores the answer and unparks (one futex wake), the waiter
/// parks (one futex wait). An untimed wait reads no clock — under
/// user-mode Linux, for one, every clock read is a system call — so it
/// cannot time itself: a process-wide watchdog thread advances [`TICKS`]
/// every [`LIVENESS_PERIOD`] and wakes the threads parked in untimed
/// waits, which then check that their lockspace still exists.
#[derive(Debug)]
pub(crate) struct Waiter {
    thread: Thread,
    parked: Arc<AtomicBool>,
}

/// How long a wait may go on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Until the answer comes or the lockspace is gone.
    Forever,
    /// At most about this many watchdog ticks.
    Ticks(u32),
    /// Until this instant (a timed request; reads the clock).
    Deadline(Instant),
}

impl Limit {
    /// The limit of a wait of `timeout` from now: a timeout too large to
    /// add to the clock means no deadline.
    pub(crate) fn after(timeout: Option<Duration>) -> Limit {
        match timeout.and_then(|t| Instant::now().checked_add(t)) {
            Some(deadline) => Limit::Deadline(deadline),
            None => Limit::Forever,
        }
    }
}

/// Why a wait ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The limit passed.
    Expired,
    /// The lockspace is gone: no answer will come.
    Gone,
}

/// Watchdog ticks so far.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// The threads that have waited, for the watchdog.
#[allow(clippy::type_complexity)]
static PARKED: parking_lot::Mutex<Vec<(Thread, Arc<AtomicBool>)>> =
    parking_lot::const_mutex(Vec::new());

/// Tasks to wake at the watchdog's next tick (async waits without a
/// deadline, for their liveness check).
static TICK_WAKERS: parking_lot::Mutex<Vec<std::task::Waker>> =
    parking_lot::const_mutex(Vec::new());

/// Wakes `waker` at the watchdog's next tick.
pub(crate) fn wake_at_next_tick(waker: &std::task::Waker) {
    TICK_WAKERS.lock().push(waker.clone());
}

/// The watchdog's tick count (advances about once a second): a clock that
/// costs no system call.
pub(crate) fn ticks() -> u32 {
    TICKS.load(Ordering::Relaxed)
}

/// Starts the watchdog thread, once per process (again in a fork's child,
/// which has no threads but the forking one).
pub(crate) fn start_watchdog() {
    static STARTED: crate::fork::StartedIn = crate::fork::StartedIn::new();
    if !STARTED.first() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dlm-watchdog".into())
        .spawn(|| loop {
            std::thread::sleep(LIVENESS_PERIOD);
            crate::health::update();
            TICKS.fetch_add(1, Ordering::SeqCst);
            let tasks = std::mem::take(&mut *TICK_WAKERS.lock());
            tasks.into_iter().for_each(std::task::Waker::wake);
            for (thread, parked) in PARKED.lock().iter() {
                if parked.load(Ordering::SeqCst) {
                    thread.unpark();
                }
            }
        });
    // Without the watchdog, untimed waits only lose their liveness check;
    // they still end when their answer comes.
    drop(spawned);
}

impl Waiter {
    fn new() -> Waiter {
        let parked = Arc::new(AtomicBool::new(false));
        let thread = std::thread::current();
        PARKED.lock().push((thread.clone(), parked.clone()));
        Waiter { thread, parked }
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
        self.parked.store(true, Ordering::SeqCst);
        std::thread::park();
        self.parked.store(false, Ordering::SeqCst);
        TICKS.load(Ordering::SeqCst) != tick
    }

    /// Waits for the answer to the request in flight on `cell` within
    /// `limit`. About every [`LIVENESS_PERIOD`] of waiting it asks
    /// `alive()` whether the lockspace still exists: no AST will come from
    /// one that is gone.
    ///
    /// With `poll`, a poll-mode lockspace, the wait reads and dispatches
    /// the lockspace's answers itself instead of sleeping.
    pub(crate) fn wait(
        &self,
        cell: &LockCell,
        limit: Limit,
        alive: &dyn Fn() -> bool,
        poll: Option<&Inner>,
    ) -> Result<Delivered, NoAnswer> {
        let mut ticks = 0u32;
        let mut last_check = None::<Instant>;
        loop {
            if let Some(d) = cell.delivered() {
                return Ok(d);
            }
            match limit {
                Limit::Deadline(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(NoAnswer::Expired);
                    }
                    let since = *last_check.get_or_insert(now);
                    if now - since >= LIVENESS_PERIOD {
                        if !alive() {
                            return Err(NoAnswer::Gone);
                        }
                        last_check = Some(now);
                    }
                    let left = (deadline - now).min(LIVENESS_PERIOD);
                    match poll {
                        Some(inner) => {
                            // Rounded up: poll's resolution is 1 ms.
                            inner.drive(left.as_micros().div_ceil(1000) as i32);
                        }
                        None => std::thread::park_timeout(left),
                    }
                }
                Limit::Forever | Limit::Ticks(_) => {
                    // An AST that delivered after the check above has also
                    // unparked us: park returns at once then. In poll mode,
                    // a second of nothing to read is a tick.
                    let ticked = match poll {
                        Some(inner) => inner.drive(LIVENESS_PERIOD.as_millis() as i32),
                        None => self.park_untimed(),
                    };
                    if ticked {
                        ticks += 1;
                        if !alive() {
                            return Err(NoAnswer::Gone);
                        }
                        if matches!(limit, Limit::Ticks(n) if ticks >= n) {
                            return Err(NoAnswer::Expired);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        PARKED
            .lock()
            .retain(|(_, parked)| !Arc::ptr_eq(parked, &self.parked));
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

/// The completion AST of every lock: snapshots the lksb into the cell and
/// wakes the waiter, or, if the waiter gave up, deals with the answer.
///
/// # Safety
/// `arg` is the address of a live [`LockCell`] that stays alive until its
/// waiter has seen this answer (or, for an abandoned cell, until its
/// lockspace is closed or the reaper is done with it); libdlm has just
/// written its lksb on this thread.
pub(crate) unsafe extern "C" fn completion_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    no_unwind(|| {
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, slot) = unsafe { LockCell::from_arg(arg) };
        // Keep the cell alive until this function is done with it: once
        // the waiter sees the answer it may drop its own reference.
        // SAFETY: the cell is alive and was made by `Arc::from` in
        // `LockCell::new`, so its address is an `Arc`'s pointer.
        let cell: Arc<LockCell> = unsafe {
            let ptr = cell as *const LockCell;
            Arc::increment_strong_count(ptr);
            Arc::from_raw(ptr)
        };
        let cell = &*cell;
        // SAFETY: libdlm wrote this slot's lksb on this thread just now;
        // the requesting thread writes it only before a request of its own
        // slot, which cannot be in flight at the same time.
        let lksb = unsafe { std::ptr::read(cell.lksb[slot].get()) };
        let delivered = Delivered {
            answer: Answer {
                status: lksb.sb_status,
                sb_flags: lksb.sb_flags as u8,
            },
            lkid: lksb.sb_lkid,
        };
        if delivered.answer.status == 0 {
            // A grant makes earlier blocking notifications stale: the
            // kernel sends a new one if the new mode blocks someone. On
            // this thread, so none sent after the grant is lost.
            if let Some((_, rx)) = &cell.blocking {
                while rx.try_recv().is_ok() {}
            }
        }
        let state = cell.state.load(Ordering::Acquire);
        if state == WAITING {
            // SAFETY: WAITING: the waiter reads the answer only after
            // DELIVERED, which the compare-and-swap below publishes.
            unsafe { *cell.answer.get() = delivered };
            // Read before the swap: once the waiter sees DELIVERED it may
            // start its next request, which writes `waker`.
            // SAFETY: `waker` is not written while a request is in flight.
            let waker = unsafe { (*cell.waker.get()).clone() };
            match cell.state.compare_exchange(
                WAITING,
                DELIVERED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if let Some(thread) = waker {
                        thread.unpark();
                    }
                    cell.task.wake();
                }
                Err(abandoned) => late_answer(cell, abandoned, delivered),
            }
        } else {
            late_answer(cell, state, delivered);
        }
    });
}

/// An answer that came after its waiter gave up (`state` is an
/// ABANDONED_* value): a lock it leaves held goes to the reaper.
fn late_answer(cell: &LockCell, state: u8, delivered: Delivered) {
    let Some(how) = Abandon::from_state(state) else {
        return;
    };
    cell.set_reaping();
    // SAFETY: an ABANDONED state (Acquire) publishes `owner`, written
    // before it; nobody writes it again.
    let owner = unsafe { (*cell.owner.get()).clone() };
    if how.leaves_held(delivered.answer.status) {
        crate::reaper::reap_later(owner, cell, delivered.lkid);
    } else {
        // The lock is gone: no AST names the cell any more.
        crate::reaper::free_later(owner, cell);
    }
}

/// The blocking AST of locks that asked for notifications.
///
/// # Safety
/// `arg` is the address of a live [`LockCell`]; the kernel sends blocking
/// ASTs only before the lock's last completion, and a cell is freed only
/// after that.
pub(crate) unsafe extern "C" fn blocking_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    no_unwind(|| {
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, _) = unsafe { LockCell::from_arg(arg) };
        if let Some((tx, _)) = &cell.blocking {
            // Coalesces: one pending notification says enough.
            let _ = tx.try_send(Blocking);
            if let Ok(waiter) = cell.bast_waiter.lock() {
                if let Some(thread) = waiter.as_ref() {
                    thread.unpark();
                }
            }
            cell.bast_task.wake();
        }
    });
}
