//! A lock's cell and the hand-over of its answers: every state, every
//! transition, and the two callbacks libdlm calls, in one file.
//!
//! Every lock has a [`LockCell`] at a fixed heap address: the two
//! `dlm_lksb`s and the 32-byte value block buffer that libdlm and the
//! kernel write into, the answer to the request in flight, who to wake,
//! and the lockspace's [`Handoff`] (the reaper's queue and the cells the
//! lockspace keeps). libdlm calls [`completion_ast`] or [`blocking_ast`]
//! with the cell's address on its own thread in the default mode; in poll
//! mode the crate's reader ([`crate::reader`]) reads the kernel's answer
//! on the thread that dispatches and calls the same functions through
//! [`apply_result`], with the same argument.
//!
//! # Ownership
//! At any moment a cell has exactly one *owner*, and only the owner writes
//! a request naming its lock:
//! - a guard, a future or a blocking call (the *user side*);
//! - the lockspace's reaper, once the cell was given to it (see
//!   [`crate::reaper`]);
//! - the lockspace's keeping ([`Handoff::keep`]), for a cell whose waiter
//!   gave up before the answer came, or whose lock nobody will release
//!   (an orphaned lock, a lockspace gone or stopped). Kept cells are freed
//!   when the reaper is done with them or when the lockspace closes (its
//!   AST thread stopped, its descriptor closed), so the kernel never
//!   writes into freed memory.
//!
//! # The handshake
//! One atomic per cell, [`Handshake::state`], says who may touch the
//! answer. Each transition is one function of [`Handshake`]:
//!
//! | from | to | who | function | what it means |
//! |---|---|---|---|---|
//! | `IDLE` | `WAITING` | owner | [`begin`](Handshake::begin) | the wake target is set; the request is about to be written |
//! | `WAITING` | `IDLE` | owner | [`refused`](Handshake::refused) | libdlm refused the write, or answered it in the write itself (an orphan's adoption): no answer will come |
//! | `WAITING` | `DELIVERED` | callback | [`deliver`](Handshake::deliver) | the answer is in the cell; the target is woken (a thread, a task, or the reaper's queue) |
//! | `DELIVERED` | `IDLE` | owner | [`take`](Handshake::take) | the owner has the answer; the cell is its own again |
//! | `WAITING` | `ABANDONED_*` | owner | [`abandon`](Handshake::abandon) | the owner gave up; the cell is already in the lockspace's keeping |
//! | `DELIVERED` | `DELIVERED` | owner | [`abandon`](Handshake::abandon) fails | the answer came first: the owner gives the cell to the reaper with the answer still in it |
//! | `FAILED` | `FAILED` | owner | [`abandon`](Handshake::abandon) fails | the worker's write was refused first: the owner takes the failure back ([`take_failure`](Handshake::take_failure)) and frees the cell, nothing was written |
//! | `ABANDONED_*` | `DELIVERED` | callback | [`deliver`](Handshake::deliver) | a late answer: the cell goes to the reaper, which takes the answer and releases a lock it leaves held |
//! | `WAITING` | `FAILED` | worker | [`fail`](Handshake::fail) | the handle's worker, writing a future's request, was refused: the error is in the cell, nothing is in flight, the task is woken |
//! | `FAILED` | `IDLE` | owner | [`take_failure`](Handshake::take_failure) | the future has the error; the cell is its own again |
//! | `ABANDONED_*` | `IDLE` | worker | [`reclaim`](Handshake::reclaim) | a future gave up before the worker wrote its request: nothing was written, the worker owns the cell |
//! | `IDLE`, `DELIVERED`, `FAILED` | unchanged | callback | [`deliver`](Handshake::deliver) | an answer that finds no request of the cell waiting for it (a stray one): ignored, and never over an answer not yet taken (`loom_stray_answer_is_ignored`) |
//!
//! A future's request and cancel are written by its handle's worker thread
//! (the reaper's), never by `poll` or `drop`: the kernel blocks a write for
//! as long as the DLM's recovery runs (1.5 s measured in the test cluster
//! after a peer's crash), and an executor's thread must not wait for that.
//! Between `begin` and the worker's write the cell is `WAITING` with
//! nothing in flight yet; the worker writes only while it is still
//! `WAITING`, and a future that gives up meanwhile leaves it `ABANDONED_*`,
//! which the worker [reclaims](Handshake::reclaim) instead of writing.
//!
//! Exactly one compare-and-swap decides each race: `WAITING -> DELIVERED`
//! (the callback) against `WAITING -> ABANDONED_*` (the owner). Whoever
//! loses sees the winner's state and acts on it; nobody frees a cell that
//! a request in flight can still name.
//!
//! # The two status blocks
//! Slot [`MAIN`] serves requests, conversions and unlocks; slot [`CANCEL`]
//! serves cancels. libdlm stores `EINPROG` into the status block it is
//! given on the calling thread, and a cancel is the one call made while
//! the lock's answer can be arriving on libdlm's thread. The kernel's
//! cancel *replaces* the lock's completion argument and status block with
//! the cancel's (not its blocking argument): after a cancel, the
//! request's answer arrives on the [`CANCEL`] slot, and the lock's
//! blocking notifications name the [`CANCEL`] slot's status block (libdlm
//! writes the lock's last status into it; the crate's reader does not)
//! with the [`MAIN`] slot's argument, until the lock's next request. The
//! callback argument names the slot (the cell's address plus the slot
//! index), so [`completion_ast`] reads the status block the answer was
//! written into. A result read while a cancel is being written can pair
//! one slot's argument with the other slot's status block: [`complete`]
//! then finds the answer in the other slot, since the slot it was given
//! still holds libdlm's `EINPROG` (which no answer carries), and the
//! poll-mode reader applies it to the argument's slot ([`apply_result`]).
//!
//! # Which writes may name the lock id
//! The kernel frees a lock id when the answer that ends the lock is
//! *read* (an unlock's `EUNLOCK`; for a lock never granted, `EAGAIN`,
//! `ECANCEL` or `EDEADLK`), and gives it at once to the next new request of
//! the lockspace, from any process of the node; its cancel looks the id up
//! with no owner check. So a write naming the lock id is sent only while
//! the lock cannot have ended: conversions and unlocks by the cell's one
//! owner while the lock is held (they are sequential: the owner writes the
//! next only after the answer to the last), and cancels only where no
//! answer can end the lock without the cancel itself
//! ([`may_cancel`]); and a future whose timeout queued a cancel for the
//! worker takes no answer until the worker has written or skipped that
//! cancel ([`Handshake::queue_cancel`]), so the request it names is still
//! in flight. This is the rule the review of 2026-11 found broken:
//! a future dropped after a try-lock's `EAGAIN` cancelled a lock id the
//! kernel had already given to another process's request.
//!
//! # Threads and user code
//! The callbacks take no lock of the crate's but the blocking-notification
//! waiter's, allocate only when a cell goes to the reaper (a node of its
//! queue), and never unwind into C. The reaper's queue and the keeping
//! are lock-free [`Stack`]s: a future's `poll` or `drop` and a callback
//! hand a job or a cell over with one compare-and-swap and never wait for
//! another thread (a lock held by a preempted thread made polls block for
//! tens of milliseconds on a loaded node); only the worker sleeps, on a
//! mark in its queue's head that the next push replaces. Waking an async task runs the executor's `Waker::wake`
//! on the callback's thread (for every executor in common use: scheduling
//! the task, not running it).

use crate::state::{Answer, ReleasePlan};
use crossbeam_channel::{Receiver, Sender};
use dlm_sys as sys;
use std::collections::{HashMap, VecDeque};
use std::ffi::{c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::AtomicU32;

/// The atomics, cells and thread handles of the handshake: std's, or
/// loom's when the model checker runs (`--cfg dlm_loom`).
pub(crate) mod sync {
    #[cfg(dlm_loom)]
    pub(crate) use loom::{
        cell::UnsafeCell,
        sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering},
        sync::Mutex,
        thread::{current, park, yield_now, Thread},
    };
    #[cfg(not(dlm_loom))]
    pub(crate) use std::{
        sync::atomic::{AtomicBool, AtomicPtr, AtomicU8, Ordering},
        sync::Mutex,
        thread::{current, yield_now, Thread},
    };

    /// std's `UnsafeCell` with loom's access API.
    #[cfg(not(dlm_loom))]
    #[derive(Debug)]
    pub(crate) struct UnsafeCell<T>(std::cell::UnsafeCell<T>);

    #[cfg(not(dlm_loom))]
    impl<T> UnsafeCell<T> {
        pub(crate) const fn new(value: T) -> UnsafeCell<T> {
            UnsafeCell(std::cell::UnsafeCell::new(value))
        }
        pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
            f(self.0.get())
        }
        pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
            f(self.0.get())
        }
    }

    /// The async task's waker slot.
    #[derive(Debug, Default)]
    pub(crate) struct TaskWaker(
        #[cfg(not(dlm_loom))] atomic_waker::AtomicWaker,
        #[cfg(dlm_loom)] loom::future::AtomicWaker,
    );

    impl TaskWaker {
        pub(crate) fn register(&self, waker: &std::task::Waker) {
            #[cfg(not(dlm_loom))]
            self.0.register(waker);
            #[cfg(dlm_loom)]
            self.0.register_by_ref(waker);
        }
        pub(crate) fn wake(&self) {
            self.0.wake();
        }
        /// Drops the registered waker, if any (a task that no longer
        /// waits: its waker, and the memory it keeps, are let go now
        /// rather than at the cell's next request or its end).
        pub(crate) fn clear(&self) {
            #[cfg(not(dlm_loom))]
            drop(self.0.take());
            #[cfg(dlm_loom)]
            drop(self.0.take_waker());
        }
    }
}

use sync::{AtomicBool, AtomicU8, Ordering, TaskWaker, Thread, UnsafeCell};

/// No request in flight; the owner may write one.
const IDLE: u8 = 0;
/// A request is in flight; its answer goes to the wake target.
const WAITING: u8 = 1;
/// The callback put the answer in the cell.
const DELIVERED: u8 = 2;
/// Given up: a new request (only a grant leaves a lock held).
const ABANDONED_REQUEST: u8 = 3;
/// Given up: a conversion of a held lock (the lock stays held, whatever
/// the answer).
const ABANDONED_HELD: u8 = 4;
/// Given up: an unlock (only a failed unlock leaves the lock held).
const ABANDONED_UNLOCK: u8 = 5;
/// The handle's worker could not write the request (a future's): the
/// error is in the cell, nothing is in flight.
const FAILED: u8 = 6;

/// What an owner gives up on, which tells what a late answer leaves held.
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

/// The answer to one request, as the callback saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Delivered {
    pub(crate) answer: Answer,
    /// `sb_lkid`.
    pub(crate) lkid: u32,
}

/// Who the callback wakes when the answer is in the cell.
#[derive(Debug, Clone, Default)]
pub(crate) enum Wake {
    /// Nobody: a request answered in its write (an orphan's adoption), or
    /// an unlock its writer gives up at once
    /// ([`reaper::unlock_without_waiting`](crate::reaper::unlock_without_waiting)):
    /// an answer that comes before the give-up stays in the cell for the
    /// reaper.
    #[default]
    Nobody,
    /// A thread parked in a blocking call.
    Thread(Thread),
    /// The async task registered in [`Handshake::task`].
    Task,
    /// The lockspace's reaper (its own requests).
    Reaper,
}

/// What the callback leaves to its caller after [`Handshake::deliver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// The owner has been woken, or nobody waits (an answer with no
    /// request in flight: ignored).
    Done,
    /// The cell goes to the reaper: its own request was answered.
    Reaper,
    /// The cell goes to the reaper: an abandoned request was answered.
    Late(Abandon),
}

/// The handshake of one cell (see the module docs): its state, the answer
/// and who to wake.
#[derive(Debug)]
pub(crate) struct Handshake {
    state: AtomicU8,
    /// Written by the callback before `DELIVERED` (or after `ABANDONED_*`),
    /// read by the owner after it has seen `DELIVERED`.
    answer: UnsafeCell<Delivered>,
    /// Written by the owner only in `IDLE`; read by the callback in
    /// `WAITING`.
    wake: UnsafeCell<Wake>,
    /// The async task to wake (a future waiting for the answer); cleared
    /// by the future once it has taken the answer, so that a held lock's
    /// cell keeps no task (and its memory) alive.
    pub(crate) task: TaskWaker,
    /// Set by a future before it queues a cancel of its request; cleared by
    /// the worker once it has written or skipped that cancel (then the task
    /// is woken). While it is set the future does not take its answer: a
    /// cancel written after the answer was taken could name the cell's next
    /// request, or a lock id that an unlock has freed and the kernel has
    /// given to another request.
    cancel_pending: AtomicBool,
}

impl Default for Handshake {
    fn default() -> Handshake {
        Handshake::new()
    }
}

impl Handshake {
    pub(crate) fn new() -> Handshake {
        Handshake {
            state: AtomicU8::new(IDLE),
            answer: UnsafeCell::new(Delivered::default()),
            wake: UnsafeCell::new(Wake::Nobody),
            task: TaskWaker::default(),
            cancel_pending: AtomicBool::new(false),
        }
    }

    /// The future's side, before it queues a cancel of its request for the
    /// worker: from now on it takes no answer ([`may_take`](Self::may_take)
    /// says no) until the worker is done with the cancel.
    pub(crate) fn queue_cancel(&self) {
        self.cancel_pending.store(true, Ordering::Release);
    }

    /// The worker's side, once it has written or skipped the cancel: the
    /// future may take its answer again, and its task is woken to do so.
    pub(crate) fn cancel_done(&self) {
        self.cancel_pending.store(false, Ordering::Release);
        self.task.wake();
    }

    /// Whether the future may take an answer (or a failure) now: not while
    /// a cancel it queued is pending. The future registers its waker
    /// before it asks, so [`cancel_done`](Self::cancel_done)'s wake is
    /// never lost (`loom_cancel_holds_back_the_answer`).
    pub(crate) fn may_take(&self) -> bool {
        !self.cancel_pending.load(Ordering::Acquire)
    }

    /// `IDLE -> WAITING`: the owner is about to write a request whose
    /// answer wakes `wake`.
    ///
    /// # Safety
    /// The caller owns the cell and no request of it is in flight
    /// (`IDLE`).
    pub(crate) unsafe fn begin(&self, wake: Wake) {
        debug_assert_eq!(self.state.load(Ordering::Relaxed), IDLE);
        // SAFETY: IDLE: the callback does not read `wake` (it reads it only
        // in WAITING, which the Release store below publishes).
        self.wake.with_mut(|w| unsafe {
            match (&*w, &wake) {
                // The same thread as last time: no clone of its handle.
                (Wake::Thread(old), Wake::Thread(new)) if old.id() == new.id() => {}
                _ => *w = wake,
            }
        });
        self.state.store(WAITING, Ordering::Release);
    }

    /// `WAITING -> IDLE`: libdlm refused the write; no answer will come.
    ///
    /// # Safety
    /// The caller owns the cell and its request was refused (nothing in
    /// flight: no callback can run for it).
    pub(crate) unsafe fn refused(&self) {
        self.state.store(IDLE, Ordering::Release);
    }

    /// `DELIVERED -> IDLE`: the answer, once delivered; the cell is the
    /// owner's again. `None` while it has not come.
    pub(crate) fn take(&self) -> Option<Delivered> {
        if self.state.load(Ordering::Acquire) != DELIVERED {
            return None;
        }
        // Only the owner leaves DELIVERED, so a plain store is enough.
        self.state.store(IDLE, Ordering::Relaxed);
        // SAFETY: DELIVERED (Acquire) means the callback wrote the answer
        // and will not touch it again for this request.
        Some(self.answer.with(|a| unsafe { *a }))
    }

    /// `WAITING -> FAILED`: the worker could not write the request (libdlm
    /// refused it with `code`); the task is woken. `false` if the owner gave
    /// up first (`ABANDONED_*`): the worker then [reclaims](Self::reclaim)
    /// the cell.
    ///
    /// # Safety
    /// The caller is the handle's worker, which was to write this cell's
    /// request and did not: nothing is in flight.
    pub(crate) unsafe fn fail(&self, code: i32) -> bool {
        // SAFETY: nothing is in flight and the owner reads the answer slot
        // only after FAILED (Acquire), published below.
        self.answer.with_mut(|a| unsafe {
            *a = Delivered {
                answer: Answer {
                    status: code,
                    sb_flags: 0,
                },
                lkid: 0,
            }
        });
        match self
            .state
            .compare_exchange(WAITING, FAILED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => {
                self.task.wake();
                true
            }
            Err(_) => false,
        }
    }

    /// `FAILED -> IDLE`: the error code of a request the worker could not
    /// write; the cell is the owner's again. `None` unless `FAILED`.
    pub(crate) fn take_failure(&self) -> Option<i32> {
        if self.state.load(Ordering::Acquire) != FAILED {
            return None;
        }
        self.state.store(IDLE, Ordering::Relaxed);
        // SAFETY: FAILED (Acquire) publishes the code the worker wrote.
        Some(self.answer.with(|a| unsafe { (*a).answer.status }))
    }

    /// `ABANDONED_* -> IDLE`: the worker takes a cell whose owner gave up
    /// before the request was written; what the owner had asked for.
    /// `None` if the cell is not abandoned (the worker writes as asked).
    ///
    /// # Safety
    /// The caller is the handle's worker and has not written the request:
    /// nothing is in flight, so no callback can race this.
    pub(crate) unsafe fn reclaim(&self) -> Option<Abandon> {
        let how = Abandon::from_state(self.state.load(Ordering::Acquire))?;
        self.state.store(IDLE, Ordering::Release);
        Some(how)
    }

    /// Whether the owner gave up on the request in flight and its answer
    /// has not come (a cancel of it may still be written).
    pub(crate) fn is_abandoned(&self) -> bool {
        Abandon::from_state(self.state.load(Ordering::Acquire)).is_some()
    }

    /// Whether the request in flight has not been answered yet (a cheap
    /// check before a cancel; see [`may_cancel`] for why it is not what
    /// makes a cancel safe).
    pub(crate) fn is_waiting(&self) -> bool {
        self.state.load(Ordering::Acquire) == WAITING
    }

    /// `WAITING -> ABANDONED_*`: the owner gives up on the request in
    /// flight. `Ok` if the answer has not come (the callback gives the
    /// cell to the reaper when it does); `Err` if it came first (the cell
    /// stays `DELIVERED`, with the answer in it, for the reaper to take).
    ///
    /// # Safety
    /// The caller owns the cell, a request of it is in flight (`WAITING`
    /// or `DELIVERED`), and the cell is already in its lockspace's keeping:
    /// after `Ok` the caller must not touch it again.
    pub(crate) unsafe fn abandon(&self, how: Abandon) -> Result<(), ()> {
        match self
            .state
            .compare_exchange(WAITING, how as u8, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Ok(()),
            Err(state) => {
                debug_assert!(state == DELIVERED || state == FAILED);
                Err(())
            }
        }
    }

    /// The callback's side: puts `delivered` in the cell and wakes the
    /// target, or tells the caller to give the cell to the reaper.
    pub(crate) fn deliver(&self, delivered: Delivered) -> Route {
        let state = self.state.load(Ordering::Acquire);
        match state {
            WAITING => {
                // WAITING: the owner reads the answer only after DELIVERED,
                // which the compare-and-swap below publishes; after an
                // abandon (the swap fails) nobody reads it but the reaper,
                // after the store below.
                self.answer.with_mut(|a| {
                    // SAFETY: no other side reads or writes the answer now
                    // (see above).
                    unsafe { *a = delivered }
                });
                // Read before the swap: once the owner sees DELIVERED it may
                // begin its next request, which writes `wake`.
                // SAFETY: `wake` is not written while a request is in
                // flight.
                let wake = self.wake.with(|w| unsafe { (*w).clone() });
                match self.state.compare_exchange(
                    WAITING,
                    DELIVERED,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => match wake {
                        Wake::Nobody => Route::Done,
                        Wake::Thread(thread) => {
                            thread.unpark();
                            Route::Done
                        }
                        Wake::Task => {
                            self.task.wake();
                            Route::Done
                        }
                        Wake::Reaper => Route::Reaper,
                    },
                    Err(abandoned) => self.late(abandoned, delivered),
                }
            }
            _ => self.late(state, delivered),
        }
    }

    /// An answer after an abandon (`ABANDONED_* -> DELIVERED`); any other
    /// state means no request of this cell is in flight: ignored.
    fn late(&self, state: u8, delivered: Delivered) -> Route {
        let Some(how) = Abandon::from_state(state) else {
            return Route::Done;
        };
        // SAFETY: ABANDONED: the owner is gone and the reaper reads the
        // answer only after the Release store below (and the queue's lock).
        self.answer.with_mut(|a| unsafe { *a = delivered });
        self.state.store(DELIVERED, Ordering::Release);
        Route::Late(how)
    }
}

/// Whether a cancel of the request described by `new`/`flags` can only
/// name this cell's own lock: the proof that a cancel never hits another
/// request of the node.
///
/// The kernel frees a lock id only when the answer that ends the lock is
/// read (`fs/dlm/user.c`: `lkb_is_endoflife`, then the last reference is
/// put after `copy_result_to_user`). For a *conversion* no answer ends the
/// lock (a failed or cancelled conversion leaves it held in its old mode),
/// and its owner sends no unlock while the conversion is in flight. For a
/// *new request*, the answers that end it are `EAGAIN` (only with
/// `NOQUEUE`: the kernel refuses only such requests), `ECANCEL` (only
/// after this cancel) and `EDEADLK` (a deadlock cancel by another process,
/// `dlm_ls_deadlock_cancel`, sent by another program, or by
/// [`Lockspace::deadlock_cancel`](crate::Lockspace::deadlock_cancel),
/// whose docs say to name only conversions: the proof assumes no deadlock
/// cancel of a waiting *new* request, which would free its id while its
/// owner may be about to cancel it). So: conversions may be cancelled; new
/// requests only without `NOQUEUE` (a try is answered promptly anyway: its
/// owner gives up without a cancel, and the reaper releases a late grant);
/// unlocks never.
pub(crate) fn may_cancel(new: bool, unlock: bool, flags: u32) -> bool {
    if unlock {
        return false;
    }
    !new || flags & sys::LKF_NOQUEUE == 0
}

/// A blocking notification: another request waits for a mode this lock's
/// mode blocks, or the lock was lost with its lockspace
/// ([`lockspace_gone`](Blocking::lockspace_gone)).
///
/// Which mode it waits for ([`mode`](Blocking::mode)) is known only on a
/// handle in poll mode ([`LockspaceBuilder::poll_mode`](crate::LockspaceBuilder::poll_mode)),
/// whose answers the crate reads from the lockspace's descriptor itself:
/// the kernel sends the mode with the notification, and libdlm's thread
/// (the default mode) drops it before it calls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocking {
    mode: Option<crate::mode::Mode>,
    lost: bool,
}

impl Blocking {
    /// What the crate sends when it finds the lockspace released (by force,
    /// by another process: [`Error::LockspaceGone`](crate::Error::LockspaceGone)).
    pub(crate) fn lost() -> Blocking {
        Blocking {
            mode: None,
            lost: true,
        }
    }

    /// Whether the lockspace was released by force (by another process)
    /// and the lock went with it: there is nothing left to release, the
    /// guard's [`is_held`](crate::LockGuard::is_held) says `false`, and
    /// its calls fail with [`Error::LockspaceGone`](crate::Error::LockspaceGone).
    /// The crate sends this once per lock that asked for notifications,
    /// as soon as its handle knows of the release (see the crate docs,
    /// "When the cluster fails"); [`mode`](Blocking::mode) is then `None`.
    pub fn lockspace_gone(&self) -> bool {
        self.lost
    }

    /// The mode the blocked request waits for: converting this lock to a
    /// mode [compatible](crate::Mode::is_compatible) with it (or
    /// unlocking it) lets that request on. Two notifications the receiver
    /// has not taken yet are merged into one, whose mode is compatible with
    /// exactly the modes compatible with both (the stronger of the two;
    /// PW for CW and PR).
    ///
    /// `None` where the mode is not known: on a handle with libdlm's
    /// thread (the default mode; libdlm's callback has no parameter for
    /// it), or in poll mode on a kernel whose device protocol is not
    /// 6.0.x (then libdlm's `dlm_dispatch` reads the answers). A holder
    /// that does not know the mode must assume the worst (EX: convert to
    /// NL or unlock).
    pub fn mode(&self) -> Option<crate::mode::Mode> {
        self.mode
    }

    /// The notification that says what both `self` and `other` say.
    fn merge(self, other: Blocking) -> Blocking {
        use crate::mode::Mode;
        let mode = match (self.mode, other.mode) {
            (Some(Mode::Cw), Some(Mode::Pr)) | (Some(Mode::Pr), Some(Mode::Cw)) => Some(Mode::Pw),
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Blocking {
            mode,
            lost: self.lost || other.lost,
        }
    }
}

/// The merge of two pending notifications (kept apart from `mod tests`).
#[cfg(all(test, not(dlm_loom)))]
mod blocking_merge_tests {
    use super::Blocking;
    use crate::mode::Mode;

    #[test]
    fn merged_notifications_allow_only_what_both_allow() {
        let b = |mode| Blocking { mode, lost: false };
        for x in Mode::ALL {
            for y in Mode::ALL {
                let m = b(Some(x)).merge(b(Some(y))).mode().unwrap();
                assert_eq!(m, b(Some(y)).merge(b(Some(x))).mode().unwrap());
                // A holder's mode lets both waiters on exactly when it
                // lets the merged mode on.
                for held in Mode::ALL {
                    assert_eq!(
                        held.is_compatible(m),
                        held.is_compatible(x) && held.is_compatible(y),
                        "{x} + {y} = {m}, held {held}"
                    );
                }
            }
        }
        assert_eq!(b(None).merge(b(Some(Mode::Pr))).mode(), None);
        assert_eq!(b(Some(Mode::Pr)).merge(b(None)).mode(), None);
        // A loss stays a loss, merged with anything.
        assert!(b(Some(Mode::Pr)).merge(Blocking::lost()).lockspace_gone());
        assert!(Blocking::lost().merge(b(None)).lockspace_gone());
        assert!(!b(None).merge(b(Some(Mode::Ex))).lockspace_gone());
    }
}

/// The receiving end of a lock's blocking notifications
/// ([`LockGuard::blocking`](crate::LockGuard::blocking)): a
/// `crossbeam-channel` receiver, usable with
/// [`crossbeam_channel::select!`] (re-exported as
/// [`dlm::crossbeam_channel`](crate::crossbeam_channel)).
pub type BlockingReceiver = Receiver<Blocking>;

/// Slot of requests, conversions and unlocks.
pub(crate) const MAIN: usize = 0;
/// Slot of cancels.
pub(crate) const CANCEL: usize = 1;

/// The per-lock state shared with libdlm (see the module docs).
#[repr(C)]
pub(crate) struct LockCell {
    /// Written by libdlm (calling thread at request time, callback thread
    /// at every answer); read by Rust only in `completion_ast` and, for a
    /// new request's lock id, by `lkid_after_request`.
    lksb: [std::cell::UnsafeCell<sys::dlm_lksb>; 2],
    /// The value block buffer both status blocks point at.
    lvb: std::cell::UnsafeCell<[u8; sys::DLM_LVB_LEN]>,
    /// The hand-over of answers.
    pub(crate) hs: Handshake,
    /// The async task waiting for a blocking notification.
    pub(crate) bast_task: TaskWaker,
    /// Blocking notifications, when the lock asked for them. The receiver
    /// is kept to drop notifications made stale by a grant.
    blocking: Option<(Sender<Blocking>, Receiver<Blocking>)>,
    /// A thread parked in `LockGuard::wait_blocking`, to unpark after a
    /// blocking notification (std's mutex: it never spins or yields).
    bast_waiter: std::sync::Mutex<Option<std::thread::Thread>>,
    /// The lockspace's reaper queue and keeping.
    handoff: std::sync::Arc<Handoff>,
    /// The lock id of the last new request written for this cell (by the
    /// worker, or by a future's poll with `AsyncWrites::InPoll`, before it
    /// queues a cancel), for the worker's cancel of it.
    pub(crate) written_lkid: AtomicU32,
}

// SAFETY: the cell is shared between its owner and libdlm's callback
// thread under the handshake in the module docs: the status blocks and the
// value block buffer are written by libdlm only for a request in flight
// and read by Rust only on the callback's thread or by the owner after it
// has seen the answer (Acquire); the handshake's fields are atomics or
// guarded by its state; the rest is Sync.
unsafe impl Send for LockCell {}
// SAFETY: as for Send.
unsafe impl Sync for LockCell {}

impl std::fmt::Debug for LockCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockCell")
            .field("state", &self.hs.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// A shared owner of a [`LockCell`]: an `Arc` held as the raw pointer
/// `Arc::into_raw` gave, so that the callback argument libdlm passes back
/// is that very pointer and the callback can take a counted reference from
/// it within `Arc`'s contract. The cell is only ever reached through
/// shared references (libdlm writes into it concurrently).
pub(crate) struct CellRef(NonNull<LockCell>);

// SAFETY: a counted reference to a Sync value.
unsafe impl Send for CellRef {}
// SAFETY: as for Send.
unsafe impl Sync for CellRef {}

impl CellRef {
    /// A new cell, on the heap so that its address stays fixed.
    pub(crate) fn new(blocking: bool, handoff: &std::sync::Arc<Handoff>) -> CellRef {
        let cell = std::sync::Arc::new(LockCell {
            lksb: [
                std::cell::UnsafeCell::new(sys::dlm_lksb::default()),
                std::cell::UnsafeCell::new(sys::dlm_lksb::default()),
            ],
            lvb: std::cell::UnsafeCell::new([0; sys::DLM_LVB_LEN]),
            hs: Handshake::new(),
            bast_task: TaskWaker::default(),
            blocking: blocking.then(|| crossbeam_channel::bounded(1)),
            bast_waiter: std::sync::Mutex::new(None),
            handoff: handoff.clone(),
            written_lkid: AtomicU32::new(0),
        });
        for slot in &cell.lksb {
            // SAFETY: nothing else can see the new cell yet.
            unsafe { (*slot.get()).sb_lvbptr = cell.lvb.get().cast() };
        }
        let raw = std::sync::Arc::into_raw(cell).cast_mut();
        CellRef(NonNull::new(raw).expect("Arc::into_raw is never null"))
    }

    /// A counted reference to the cell a callback argument names.
    ///
    /// # Safety
    /// `arg` came from [`CellRef::arg`] of a cell that is still alive (some
    /// `CellRef` of it exists for the duration of this call).
    unsafe fn from_arg(arg: *mut c_void) -> (CellRef, usize) {
        let slot = arg as usize & 1;
        let ptr = arg.wrapping_byte_sub(slot) as *const LockCell;
        // SAFETY: `ptr` is the pointer `Arc::into_raw` gave for the cell
        // (`arg` added the slot index to it, undone above), and the cell
        // is alive (the caller's contract): the strong count is at least 1.
        unsafe { std::sync::Arc::increment_strong_count(ptr) };
        (
            CellRef(NonNull::new(ptr.cast_mut()).expect("non-null")),
            slot,
        )
    }

    /// A weak reference to the cell (it keeps the allocation, not the
    /// cell, alive), for the handle's list of locks to tell of a loss.
    pub(crate) fn downgrade(&self) -> std::sync::Weak<LockCell> {
        // The pointer is the one `Arc::into_raw` gave, and `self` holds one
        // count of it, which `ManuallyDrop` leaves untouched.
        // SAFETY: `into_raw`'s pointer, one count held by `self`, not given back (ManuallyDrop).
        let arc = std::mem::ManuallyDrop::new(unsafe {
            std::sync::Arc::from_raw(self.0.as_ptr().cast_const())
        });
        std::sync::Arc::downgrade(&arc)
    }

    /// The cell's address, as its callback argument names it (the keeping's
    /// key).
    pub(crate) fn addr(&self) -> usize {
        self.0.as_ptr() as usize
    }

    /// The status block of `slot` to pass to libdlm.
    pub(crate) fn lksb_ptr(&self, slot: usize) -> *mut sys::dlm_lksb {
        self.lksb[slot].get()
    }

    /// The `astarg` to pass to libdlm with the status block of `slot`: the
    /// cell's `Arc` pointer plus the slot index (the cell is 8-byte
    /// aligned).
    pub(crate) fn arg(&self, slot: usize) -> *mut c_void {
        self.0.as_ptr().cast::<c_void>().wrapping_byte_add(slot)
    }
}

impl Clone for CellRef {
    fn clone(&self) -> CellRef {
        // SAFETY: `self` holds one count of the Arc whose `into_raw` gave
        // this pointer.
        unsafe { std::sync::Arc::increment_strong_count(self.0.as_ptr().cast_const()) };
        CellRef(self.0)
    }
}

impl Drop for CellRef {
    fn drop(&mut self) {
        // SAFETY: gives back the one count this value holds.
        drop(unsafe { std::sync::Arc::from_raw(self.0.as_ptr().cast_const()) });
    }
}

impl std::ops::Deref for CellRef {
    type Target = LockCell;
    fn deref(&self) -> &LockCell {
        // SAFETY: the count this value holds keeps the cell alive.
        unsafe { self.0.as_ref() }
    }
}

impl std::fmt::Debug for CellRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl LockCell {
    /// The BAST function to register: only for locks that asked for
    /// notifications, so the kernel sends none to the others.
    pub(crate) fn bast_fn(&self) -> Option<unsafe extern "C" fn(*mut c_void)> {
        self.blocking
            .is_some()
            .then_some(blocking_ast as unsafe extern "C" fn(*mut c_void))
    }

    /// Sends `note` to the lock's blocking notifications, if it asked for
    /// them, and wakes whoever waits for one: the kernel's notification
    /// ([`blocking`]), or the crate's [`Blocking::lost`] (the watchdog, on
    /// a thread of its own: the channel, the waiter's mutex and the task
    /// waker are all safe to use from any thread at any time).
    pub(crate) fn notify(&self, note: Blocking) {
        if let Some((tx, rx)) = &self.blocking {
            // Coalesces: one pending notification says enough, with the
            // mode that says what both say.
            if tx.try_send(note).is_err() {
                let merged = rx.try_recv().map_or(note, |old| old.merge(note));
                let _ = tx.try_send(merged);
            }
            if let Ok(waiter) = self.bast_waiter.lock() {
                if let Some(thread) = waiter.as_ref() {
                    thread.unpark();
                }
            }
            self.bast_task.wake();
        }
    }

    /// The receiver of blocking notifications, if the lock asked for them.
    pub(crate) fn blocking_rx(&self) -> Option<&Receiver<Blocking>> {
        self.blocking.as_ref().map(|(_, rx)| rx)
    }

    /// Registers (or, with `None`, removes) the thread to unpark at a
    /// blocking notification.
    pub(crate) fn set_bast_waiter(&self, thread: Option<std::thread::Thread>) {
        if let Ok(mut waiter) = self.bast_waiter.lock() {
            *waiter = thread;
        }
    }

    /// The value block buffer's contents.
    ///
    /// # Safety
    /// The caller owns the cell, no request of it is in flight, and its
    /// last answer was seen (Acquire) by this thread or handed over since.
    pub(crate) unsafe fn lvb(&self) -> [u8; sys::DLM_LVB_LEN] {
        // SAFETY: libdlm writes the buffer only at answers; none can come
        // now (the caller's contract).
        unsafe { *self.lvb.get() }
    }

    /// Replaces the value block buffer's contents (sent with the next
    /// `VALBLK` request).
    ///
    /// # Safety
    /// As for [`LockCell::lvb`].
    pub(crate) unsafe fn set_lvb(&self, bytes: &[u8; sys::DLM_LVB_LEN]) {
        // SAFETY: as in `lvb`.
        unsafe { *self.lvb.get() = *bytes };
    }

    /// The lock id libdlm stored on this thread after the `write` of a new
    /// request (read right after it, by the writer: the id a cancel of the
    /// request names, and an adopted orphan's id).
    pub(crate) fn lkid_after_request(&self) -> u32 {
        // libdlm's callback thread may store the same value into the field
        // at the same time (a race inside libdlm's design); an atomic load
        // keeps this side free of torn or assumed-stable reads.
        // SAFETY: the field is a valid, aligned u32 inside the live cell.
        let lkid = unsafe {
            &*(std::ptr::addr_of_mut!((*self.lksb[MAIN].get()).sb_lkid) as *const AtomicU32)
        };
        lkid.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A request a future asks the worker to write.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request {
    /// A new lock on `name[..len]`.
    New {
        name: [u8; sys::DLM_RESNAME_MAXLEN],
        len: u8,
        /// The transaction id (`LockOptions::transaction_id`), 0 for none.
        xid: u64,
    },
    /// A conversion of the lock `lkid`.
    Convert { lkid: u32 },
    /// An unlock of the lock `lkid`.
    Unlock { lkid: u32 },
}

/// What the reaper is asked to do with a cell (see [`crate::reaper`]).
#[derive(Debug)]
pub(crate) enum Job {
    /// Nothing to do but look: a linger began, or the handle closed.
    Nudge,
    /// Write a future's request (the cell is `WAITING`, or `ABANDONED_*`
    /// if the future gave up since); `flags` raw `LKF_*`.
    Write {
        cell: CellRef,
        request: Request,
        mode: crate::mode::Mode,
        flags: u32,
    },
    /// Cancel a future's request, if the worker wrote it and it is still
    /// unanswered, and [`may_cancel`] allows it.
    Cancel {
        cell: CellRef,
        request: Request,
        flags: u32,
    },
    /// The reaper's own request was answered: take the answer, go on.
    Answer(CellRef),
    /// An abandoned request was answered (`DELIVERED`): take the answer;
    /// release the lock if it leaves it held, else free the cell.
    Late(CellRef, Abandon),
    /// Release the held lock `lkid` (the cell is `IDLE`, in the keeping):
    /// by the owner's plan, or (`None`, state unknown) by a conversion to
    /// NL then an unlock.
    Release {
        cell: CellRef,
        lkid: u32,
        plan: Option<ReleasePlan>,
    },
}

/// Parks the calling thread for `wait` at most (`None`: until unparked);
/// it may return early. Under the model checker a park has no timeout
/// (loom's threads park until unparked).
pub(crate) fn park(wait: Option<std::time::Duration>) {
    #[cfg(not(dlm_loom))]
    match wait {
        None => std::thread::park(),
        Some(d) => std::thread::park_timeout(d),
    }
    #[cfg(dlm_loom)]
    {
        let _ = wait;
        sync::park();
    }
}

/// A stack that any thread pushes onto without waiting for another (one
/// compare-and-swap on the head) and whose owner takes everything at once
/// (one swap). The worker's jobs and the cells handed to the keeping go
/// through it, so that a future's `poll` or `drop` (and libdlm's callback)
/// never waits for a lock another thread holds: on a busy node that
/// thread may be preempted in its critical section for tens of
/// milliseconds (measured with a mutex here: polls blocked 10-40 ms under
/// CPU load).
///
/// The owner may also sleep on it ([`Stack::sleep_if_empty`]): the head
/// then holds [`Stack::asleep`] instead of null, and the push that
/// replaces it learns so from its own compare-and-swap and wakes the
/// owner. Announcing the sleep and pushing are read-modify-writes of the
/// one head, so they are totally ordered: no wake-up is lost, and a push
/// onto an awake owner's stack costs no system call.
///
/// No ABA problem: nodes leave only all at once ([`Stack::take_all`]), so
/// a push whose compare-and-swap succeeds links its node to the head it
/// read, which is the head at that moment whatever happened in between.
pub(crate) struct Stack<T> {
    head: sync::AtomicPtr<Node<T>>,
}

struct Node<T> {
    value: T,
    next: *mut Node<T>,
}

impl<T> Default for Stack<T> {
    fn default() -> Stack<T> {
        Stack {
            head: sync::AtomicPtr::new(std::ptr::null_mut()),
        }
    }
}

impl<T> std::fmt::Debug for Stack<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("empty", &self.is_empty())
            .finish()
    }
}

// SAFETY: the stack owns its values (each node is reached from the head by
// exactly one chain, and leaves it only by `take_all`, which hands the
// values to the taking thread): it only moves values of `T` between
// threads, so `T: Send` is enough.
unsafe impl<T: Send> Send for Stack<T> {}
// SAFETY: as above: `&Stack` only pushes (moves a `T` in) or takes (moves
// them out), never hands out a `&T`.
unsafe impl<T: Send> Sync for Stack<T> {}

impl<T> Stack<T> {
    /// The head's value while the owner sleeps on an empty stack: never
    /// the address of a node (a dangling, aligned, non-null pointer; no
    /// allocation is there), never dereferenced.
    fn asleep() -> *mut Node<T> {
        std::ptr::NonNull::dangling().as_ptr()
    }

    /// Pushes `value` (never waits); whether the owner was asleep on the
    /// stack (then the caller wakes it: this push was the one to end the
    /// sleep).
    pub(crate) fn push(&self, value: T) -> bool {
        let node = Box::into_raw(Box::new(Node {
            value,
            next: std::ptr::null_mut(),
        }));
        let mut head = self.head.load(sync::Ordering::Acquire);
        loop {
            let next = if head == Self::asleep() {
                std::ptr::null_mut()
            } else {
                head
            };
            // SAFETY: `node` came from `Box::into_raw` above and is not
            // yet published (only a successful exchange publishes it):
            // this thread is its only user.
            unsafe { (*node).next = next };
            match self.head.compare_exchange_weak(
                head,
                node,
                sync::Ordering::AcqRel,
                sync::Ordering::Acquire,
            ) {
                Ok(_) => return head == Self::asleep(),
                Err(now) => head = now,
            }
        }
    }

    /// Takes every value, oldest first (and ends the owner's sleep mark,
    /// if still there).
    pub(crate) fn take_all(&self) -> VecDeque<T> {
        let mut out = VecDeque::new();
        self.take_all_into(&mut out);
        out
    }

    /// [`take_all`](Self::take_all) into `out`, after what it holds: a
    /// caller that takes often keeps one buffer, whose memory is not
    /// given back and asked for again each time.
    pub(crate) fn take_all_into(&self, out: &mut VecDeque<T>) {
        let mut p = self.head.swap(std::ptr::null_mut(), sync::Ordering::AcqRel);
        if p == Self::asleep() {
            return;
        }
        let base = out.len();
        while !p.is_null() {
            // the swap detached the whole chain: every node on it
            // was published by a push whose release exchange this swap's
            // acquire reads from (directly or through the chain of
            // read-modify-writes on the head), so its `value` and `next`
            // are visible; no other thread can reach it any more; each
            // came from `Box::into_raw` and is freed exactly once, here.
            // The chain below a node never holds the sleep mark (a push
            // that replaces it links null).
            // SAFETY: each detached node came from Box::into_raw and is freed once, here.
            let node = unsafe { Box::from_raw(p) };
            p = node.next;
            out.push_back(node.value);
        }
        // Taken newest first.
        out.make_contiguous()[base..].reverse();
    }

    /// Marks the owner asleep if the stack is empty: then the owner parks,
    /// and the next push reports that it ended the sleep. False (do not
    /// park) if something was pushed.
    pub(crate) fn sleep_if_empty(&self) -> bool {
        self.head
            .compare_exchange(
                std::ptr::null_mut(),
                Self::asleep(),
                sync::Ordering::AcqRel,
                sync::Ordering::Acquire,
            )
            .is_ok()
    }

    /// Whether nothing is on the stack (at this moment).
    pub(crate) fn is_empty(&self) -> bool {
        let head = self.head.load(sync::Ordering::Acquire);
        head.is_null() || head == Self::asleep()
    }
}

impl<T> Drop for Stack<T> {
    fn drop(&mut self) {
        drop(self.take_all());
    }
}

/// A lockspace handle's reaper queue and the cells it keeps. The callbacks
/// reach it through the cell; the handle owns it; the reaper thread takes
/// its jobs.
///
/// The worker sleeps on its queue ([`Stack::sleep_if_empty`]); whoever
/// pushes the job that ends the sleep unparks it. A linger and the close
/// push [`Job::Nudge`] to wake it, after their own change (the worker sees
/// the change once it takes the nudge).
#[derive(Debug, Default)]
pub(crate) struct Handoff {
    /// Jobs for the reaper.
    jobs: Stack<Job>,
    /// The worker's thread, to unpark (set when it starts: a fork's child
    /// starts a new one). Locked by a pusher only when its push ended the
    /// worker's sleep, when the worker does not hold it.
    worker: sync::Mutex<Option<sync::Thread>>,
    /// Cells a request in flight, a late answer or a blocking notification
    /// may still name, with no owner but the lockspace: kept until the
    /// reaper frees them or the lockspace closes. Together with
    /// `to_keep`: cells handed over and not yet moved in (by whoever
    /// locks this next), so that handing one over never waits.
    kept: parking_lot::Mutex<HashMap<usize, CellRef>>,
    to_keep: Stack<CellRef>,
    /// Set when the handle closes: the reaper thread ends.
    closed: sync::AtomicBool,
    /// The worker thread's kernel id (it writes futures' requests: the
    /// kernel records it as their locks' owner); 0 before it runs.
    worker_tid: AtomicU32,
    /// Requests the worker has written or will write again, whose answers
    /// it awaits (set by the worker after each round of jobs).
    busy: std::sync::atomic::AtomicUsize,
    /// The handle's libdlm handle, kept open by the worker after its last
    /// user let go while releases were still under way, and since when.
    linger: parking_lot::Mutex<Option<(Box<dyn std::any::Any + Send>, std::time::Instant)>>,
}

impl Handoff {
    /// Queues `job` for the reaper and wakes it if it sleeps (never
    /// waits).
    pub(crate) fn push(&self, job: Job) {
        if self.jobs.push(job) {
            if let Ok(worker) = self.worker.lock() {
                if let Some(t) = worker.as_ref() {
                    t.unpark();
                }
            }
        }
    }

    /// Every queued job, waiting until `until` at most for the first
    /// (`None`: until one comes or the handle closes); empty when none came
    /// in time or the handle closed. Called by the worker thread only.
    #[cfg(test)]
    pub(crate) fn next(&self, until: Option<std::time::Instant>) -> VecDeque<Job> {
        let mut jobs = VecDeque::new();
        self.next_into(until, &mut jobs);
        jobs
    }

    /// [`next`](Self::next) into `jobs` (empty), the worker's buffer, kept
    /// from one batch to the next.
    pub(crate) fn next_into(&self, until: Option<std::time::Instant>, jobs: &mut VecDeque<Job>) {
        self.register_worker(false);
        let mut yields = 0;
        loop {
            self.jobs.take_all_into(jobs);
            if !jobs.is_empty() || self.is_closed() {
                return;
            }
            // (Not under the model checker: loom runs a yielding thread
            // only once the others block, which would hide the
            // interleavings where the worker sleeps first.)
            if yields < 2 && !cfg!(dlm_loom) {
                // A task that just handed over one request is often about
                // to hand over more (a join of many): let it run before
                // going to sleep, so that it need not wake this thread for
                // each.
                yields += 1;
                sync::yield_now();
                continue;
            }
            // Loom's parks have no timeout: a timed wait returns at once.
            #[cfg(dlm_loom)]
            if until.is_some() {
                return self.jobs.take_all_into(jobs);
            }
            let wait = match until {
                None => None,
                Some(t) => match t.checked_duration_since(std::time::Instant::now()) {
                    Some(d) if !d.is_zero() => Some(d),
                    _ => return self.jobs.take_all_into(jobs),
                },
            };
            if self.jobs.sleep_if_empty() {
                // Once more after the mark: a close between the look above
                // and the mark took its own nudge back with the jobs (the
                // mark's exchange reads the close's, so it sees the flag).
                // Loom found this wake-up lost.
                if self.is_closed() {
                    return self.jobs.take_all_into(jobs);
                }
                park(wait);
                if wait.is_some() {
                    // Timed out or woken: what came (the mark is cleared).
                    return self.jobs.take_all_into(jobs);
                }
            }
        }
    }

    /// Records the calling thread as the worker to unpark (`replace`: even
    /// if one was recorded, as a fork's child's new worker does).
    fn register_worker(&self, replace: bool) {
        if let Ok(mut worker) = self.worker.lock() {
            if replace || worker.is_none() {
                *worker = Some(sync::current());
            }
        }
    }

    /// Records the worker thread's kernel id (the worker, at its start,
    /// before it takes its first job).
    pub(crate) fn set_worker_tid(&self, tid: u32) {
        self.register_worker(true);
        self.worker_tid
            .store(tid, std::sync::atomic::Ordering::SeqCst);
    }

    /// The worker thread's kernel id, once it has taken a job.
    pub(crate) fn worker_tid(&self) -> u32 {
        self.worker_tid.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Whether the worker has work: queued jobs, or requests whose answers
    /// it awaits.
    pub(crate) fn has_work(&self) -> bool {
        self.busy.load(std::sync::atomic::Ordering::Acquire) > 0 || !self.jobs.is_empty()
    }

    /// The worker's count of requests whose answers it awaits.
    pub(crate) fn set_busy(&self, n: usize) {
        self.busy.store(n, std::sync::atomic::Ordering::Release);
    }

    /// Gives the worker `keep` (the libdlm handle) to hold until its work
    /// is done (the last user let go with releases under way), and wakes
    /// it.
    pub(crate) fn linger(&self, keep: Box<dyn std::any::Any + Send>) {
        *self.linger.lock() = Some((keep, std::time::Instant::now()));
        self.push(Job::Nudge);
    }

    /// Since when the worker holds the handle after its last user.
    pub(crate) fn lingering_since(&self) -> Option<std::time::Instant> {
        self.linger.lock().as_ref().map(|(_, t)| *t)
    }

    /// Ends the lingering: the handle is dropped (closed, if it was the
    /// last reference) by the caller, the worker.
    pub(crate) fn end_linger(&self) -> Option<Box<dyn std::any::Any + Send>> {
        self.linger.lock().take().map(|(k, _)| k)
    }

    /// Keeps `cell` in the lockspace's keeping.
    pub(crate) fn keep(&self, cell: CellRef) {
        self.to_keep.push(cell);
    }

    /// The keeping, with the cells handed over since it was last locked
    /// moved in.
    fn kept(&self) -> parking_lot::MutexGuard<'_, HashMap<usize, CellRef>> {
        let mut kept = self.kept.lock();
        for cell in self.to_keep.take_all() {
            kept.insert(cell.addr(), cell);
        }
        kept
    }

    /// Frees a kept cell whose lock is gone (no callback names it any
    /// more).
    pub(crate) fn free(&self, cell: &CellRef) {
        let removed = self.kept().remove(&cell.addr());
        drop(removed);
    }

    /// The handle is closing: the reaper ends, and the kept cells and
    /// queued jobs are returned (to be dropped once no callback can run,
    /// or forgotten where the kernel may still write into them).
    pub(crate) fn close(&self) -> (Vec<CellRef>, Vec<Job>) {
        self.closed.store(true, sync::Ordering::SeqCst);
        let kept = std::mem::take(&mut *self.kept()).into_values().collect();
        // Wakes the worker, which then sees the close. First: taking the
        // jobs also takes the worker's sleep mark, and with it the duty to
        // wake it (loom found that order losing the wake-up).
        self.push(Job::Nudge);
        let jobs = self
            .jobs
            .take_all()
            .into_iter()
            .filter(|j| !matches!(j, Job::Nudge))
            .collect();
        (kept, jobs)
    }

    /// Whether the handle has closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(sync::Ordering::SeqCst)
    }
}

#[cfg_attr(miri, allow(dead_code))]
extern "C" {
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}
/// glibc's `PTHREAD_CANCEL_DISABLE`.
#[cfg_attr(miri, allow(dead_code))]
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Holds off `pthread_cancel` (used by `dlm_close_lockspace`) while a
/// callback runs, so that cancellation never unwinds through Rust frames;
/// a pending cancel acts at libdlm's next `read`.
struct NoCancel(c_int);

impl NoCancel {
    #[cfg_attr(miri, allow(unused_mut))]
    fn new() -> NoCancel {
        let mut old = 0;
        // Miri runs the callbacks of the host tests, with no libdlm thread
        // to cancel (and no foreign calls).
        #[cfg(not(miri))]
        // SAFETY: `old` is a valid out-pointer; the call only changes this
        // thread's cancel state.
        unsafe {
            pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old)
        };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        let mut ignored = 0;
        #[cfg(not(miri))]
        // SAFETY: as in `new`; restores the state saved there.
        unsafe {
            pthread_setcancelstate(self.0, &mut ignored)
        };
        #[cfg(miri)]
        let _ = (self.0, &mut ignored);
    }
}

thread_local! {
    /// Set while a callback runs on this thread.
    static IN_CALLBACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is running one of the callbacks (libdlm's
/// thread, or a poll-mode program's dispatching thread): closing a handle
/// there must be left to another thread.
pub(crate) fn on_callback_thread() -> bool {
    IN_CALLBACK.with(std::cell::Cell::get)
}

/// Runs `f` as a callback, aborting the process if it panics: no panic may
/// unwind into libdlm's C frames.
fn no_unwind(f: impl FnOnce()) {
    IN_CALLBACK.with(|c| c.set(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    IN_CALLBACK.with(|c| c.set(false));
    if result.is_err() {
        std::process::abort();
    }
}

/// The completion callback of every lock: snapshots the status block into
/// the cell and hands the answer over ([`Handshake::deliver`]).
///
/// # Safety
/// `arg` is the callback argument of a live cell ([`CellRef::arg`]): its
/// owner or its lockspace's keeping holds a `CellRef` of it until this
/// answer has been handed over (see the module docs); libdlm has just
/// written the slot's status block on this thread.
pub(crate) unsafe extern "C" fn completion_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    // SAFETY: this function's contract is `complete`'s.
    unsafe { complete(arg) }
}

/// What [`completion_ast`] does, without holding off `pthread_cancel`:
/// the poll-mode reader ([`apply_result`]) calls it directly. Its thread
/// is the program's (a `dispatch` caller, the crate's own wait, an
/// executor's reader), never libdlm's, which is the only thread the crate
/// or libdlm (`dlm_close_lockspace`) cancels; and the `read(2)` that just
/// returned the answer on that thread is a cancellation point itself, so
/// holding cancellation off here would not keep a program's own cancel
/// out of the reader's frames anyway. Two `pthread_setcancelstate` calls
/// less per answer.
///
/// # Safety
/// As for [`completion_ast`].
unsafe fn complete(arg: *mut c_void) {
    no_unwind(|| {
        // A counted reference: once the owner sees the answer it may drop
        // its own, while this function still wakes the task.
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, slot) = unsafe { CellRef::from_arg(arg) };
        let mut lksb = cell.lksb[slot].get();
        // libdlm wrote the status and flags of this slot's status
        // block on this thread just now (or, see below, last wrote them on
        // the requesting thread before the write that sent this slot's
        // request, which the kernel ordered before this answer), and
        // nobody else writes them while the request is in flight: the
        // owner writes the status block only before a request of its own
        // slot (libdlm's `EINPROG` store included, before the write).
        // SAFETY: this slot's status block, which nobody writes now (above).
        let mut status = unsafe { std::ptr::addr_of!((*lksb).sb_status).read() };
        if status == sys::EINPROG {
            // The kernel never answers `EINPROG`: this slot still holds
            // libdlm's store before its request, and the answer went into
            // the other slot's status block. A result read while a cancel
            // is being written can pair the cancel's argument with the
            // request's status block (`copy_result_to_user` reads the
            // status block before the argument, with no lock against
            // `dlm_user_cancel`, which writes them in the other order; see
            // `apply_result`), and libdlm writes the status block the
            // result names. (The other pairing needs the kernel's two
            // stores seen out of order; it is found here only while no
            // blocking notification has rewritten this slot, since libdlm
            // copies the lock's last status into the status block a
            // notification names.)
            lksb = cell.lksb[1 - slot].get();
            // SAFETY: libdlm wrote that status block on this thread just
            // now (the one the result named), and nobody else writes it
            // while a request is in flight (as above).
            status = unsafe { std::ptr::addr_of!((*lksb).sb_status).read() };
        }
        // SAFETY: as for the status, in the status block it was read from.
        let sb_flags = unsafe { std::ptr::addr_of!((*lksb).sb_flags).read() };
        // as above, with one exception libdlm makes: for a new
        // request, `dlm_ls_lock` also stores the lock id the write
        // returned into `sb_lkid` on the writing thread, after the write,
        // so that store can race this read. It stores the same value this
        // thread just stored (the kernel's lock id of the request): an
        // aligned 32-bit field, read once, volatile so that it is not
        // assumed unchanged; either store gives the same id.
        // SAFETY: an aligned id that any racing store sets to the same value.
        let lkid = unsafe { std::ptr::addr_of!((*lksb).sb_lkid).read_volatile() };
        let delivered = Delivered {
            answer: Answer {
                status,
                sb_flags: sb_flags as u8,
            },
            lkid,
        };
        if delivered.answer.status == 0 {
            // A grant makes earlier blocking notifications stale: the
            // kernel sends a new one if the new mode blocks someone. On
            // this thread, so none sent after the grant is lost.
            // A loss of the lockspace is not stale: told again.
            if let Some((_, rx)) = &cell.blocking {
                let mut lost = false;
                while let Ok(note) = rx.try_recv() {
                    lost |= note.lockspace_gone();
                }
                if lost {
                    cell.notify(Blocking::lost());
                }
            }
        }
        match cell.hs.deliver(delivered) {
            Route::Done => {}
            Route::Reaper => cell.handoff.clone().push(Job::Answer(cell)),
            Route::Late(how) => cell.handoff.clone().push(Job::Late(cell, how)),
        }
    });
}

/// The blocking callback of locks that asked for notifications (libdlm's
/// thread calls it; it cannot say which mode is waited for).
///
/// # Safety
/// `arg` is the callback argument of a live cell; the kernel sends
/// blocking notifications only before the lock's last answer, and a cell
/// is freed only after that.
pub(crate) unsafe extern "C" fn blocking_ast(arg: *mut c_void) {
    let _no_cancel = NoCancel::new();
    // SAFETY: this function's contract is `blocking`'s.
    unsafe { blocking(arg, None) }
}

/// A blocking notification for the cell `arg` names, waited for in `mode`
/// when known: what [`blocking_ast`] does (without holding off
/// `pthread_cancel`, as [`complete`] and for its reasons), and what the
/// poll-mode reader does with a blocking notification it read
/// ([`apply_result`]).
///
/// # Safety
/// As for [`blocking_ast`].
unsafe fn blocking(arg: *mut c_void, mode: Option<crate::mode::Mode>) {
    no_unwind(|| {
        // SAFETY: `arg` names a live cell (this function's contract).
        let (cell, _) = unsafe { CellRef::from_arg(arg) };
        cell.notify(Blocking { mode, lost: false });
    });
}

/// Applies a result the poll-mode reader read from the lockspace's
/// descriptor ([`crate::reader`]) as libdlm's `dlm_dispatch` would: a
/// completion's status, lock id, flags and value block into the status
/// block and buffer of the slot its argument names, then
/// [`completion_ast`]'s body ([`complete`]); a blocking notification
/// through [`blocking_ast`]'s path, with its mode. Refuses (applying
/// nothing) a result whose status block is neither of its argument's
/// cell's. Either is accepted, and a completion is applied to the slot
/// its argument names: the kernel's cancel replaces the lock's status
/// block and completion argument but not its blocking argument (after a
/// cancel, the lock's notifications name the [`CANCEL`] slot's status
/// block and the [`MAIN`] slot's argument, until its next request), and
/// a result read while a cancel is being written can pair the old status
/// block with the new argument (`copy_result_to_user` reads the two with
/// no lock against `dlm_user_cancel`, which writes them in the other
/// order).
///
/// # Safety
/// `parsed.arg` is the callback argument of a result read from the
/// descriptor of a poll-mode handle whose requests this crate wrote: the
/// argument of a live cell, under the same contract as a call of
/// [`completion_ast`] or [`blocking_ast`] by libdlm's thread (the owner or
/// the lockspace's keeping holds the cell until its last answer has been
/// handed over); nothing else reads that descriptor meanwhile.
pub(crate) unsafe fn apply_result(parsed: &crate::reader::Parsed) -> crate::error::Result<()> {
    use crate::reader::Kind;
    let slot = parsed.arg & 1;
    let cell = (parsed.arg - slot) as *const LockCell;
    if cell.align_offset(std::mem::align_of::<LockCell>()) != 0 {
        return Err(crate::Error::BadAnswer("a misaligned callback argument"));
    }
    // SAFETY: `cell` is a live cell (this function's contract); the places
    // are only projected to the slots' status blocks, nothing is read.
    let lksbs: [*mut sys::dlm_lksb; 2] = unsafe { [(*cell).lksb[0].get(), (*cell).lksb[1].get()] };
    let lksb = lksbs[slot];
    if !lksbs.iter().any(|&l| l as usize == parsed.lksb) {
        return Err(crate::Error::BadAnswer(
            "a result whose status block is not its argument's cell's",
        ));
    }
    let arg = parsed.arg as *mut c_void;
    match parsed.kind {
        Kind::Completion {
            status,
            lkid,
            flags,
            lvb,
        } => {
            // the cell is live; this is the status block of the
            // slot the argument names, the one `complete` reads (the
            // result's own may be the other slot's: see above). No other
            // side writes it while that slot's request is in flight (the
            // owner's and libdlm's stores come before the request's write),
            // and the owner reads it only after the hand-over. The
            // lock id is stored atomically: the writer of a new request
            // reads it right after its write (`lkid_after_request`), maybe
            // while this runs on another thread.
            // SAFETY: the cell is live and its status block is ours until the hand-over.
            unsafe {
                (*lksb).sb_status = status;
                (*lksb).sb_flags = flags as std::ffi::c_char;
                (*(std::ptr::addr_of_mut!((*lksb).sb_lkid) as *const AtomicU32))
                    .store(lkid, std::sync::atomic::Ordering::Relaxed);
                if let Some(lvb) = lvb {
                    // The buffer both status blocks point at (libdlm copies
                    // into `sb_lvbptr`, which is this buffer).
                    *(*cell).lvb.get() = lvb;
                }
                complete(arg);
            }
        }
        Kind::Blocking { mode } => {
            // SAFETY: the contract of `blocking_ast`, which is this
            // function's.
            unsafe { blocking(arg, crate::mode::Mode::from_raw(u32::from(mode))) };
        }
    }
    Ok(())
}

/// The handshake under the loom model checker: every interleaving of the
/// owner, the callback (the kernel's answer) and the reaper, for each kind
/// of answer the kernel can give. Run with
/// `RUSTFLAGS="--cfg dlm_loom" cargo test -p libdlm --lib loom_`.
///
/// Loom rather than shuttle: the handshake is a few threads and a few
/// atomics, small enough for loom to visit every interleaving (with
/// C11's weaker orderings, which shuttle, a randomized scheduler over
/// sequentially consistent memory, does not model); shuttle's strength,
/// sampling schedules of programs too large to enumerate, is not needed
/// here. The few larger cases run under a preemption bound, said where
/// they are.
#[cfg(all(test, dlm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use loom::thread;

    /// The answers a request can get: a grant, a try's refusal, a
    /// cancel's answer, a conversion deadlock, an unlock's completion.
    const STATUSES: [i32; 5] = [0, libc::EAGAIN, sys::ECANCEL, libc::EDEADLK, sys::EUNLOCK];

    fn answer(status: i32) -> Delivered {
        Delivered {
            answer: Answer {
                status,
                sb_flags: 0,
            },
            lkid: 7,
        }
    }

    /// The owner gives up while the answer arrives: exactly one side
    /// hands the cell to the reaper, which then finds the answer in it and
    /// releases the lock exactly when the answer leaves it held.
    #[test]
    fn loom_answer_races_give_up() {
        for how in [Abandon::Request, Abandon::Held, Abandon::Unlock] {
            for status in STATUSES {
                loom::model(move || {
                    let hs = Arc::new(Handshake::new());
                    // SAFETY: a new cell: nothing in flight.
                    unsafe { hs.begin(Wake::Nobody) };
                    let callback = {
                        let hs = hs.clone();
                        thread::spawn(move || hs.deliver(answer(status)))
                    };
                    // SAFETY: the owner, with the request in flight.
                    let gave_up = unsafe { hs.abandon(how) };
                    let route = callback.join().unwrap();
                    let to_reaper = match (gave_up, route) {
                        // The callback lost the race: it hands the cell on.
                        (Ok(()), Route::Late(h)) => h,
                        // The answer came first: the owner hands it on.
                        (Err(()), Route::Done) => how,
                        other => panic!("both or neither handed the cell on: {other:?}"),
                    };
                    assert_eq!(to_reaper, how);
                    // The reaper's side.
                    let d = hs.take().expect("the answer is in the cell");
                    assert_eq!(d, answer(status));
                    assert_eq!(
                        to_reaper.leaves_held(status),
                        match how {
                            Abandon::Request => status == 0,
                            _ => status != sys::EUNLOCK,
                        }
                    );
                    // The cell is the reaper's: a next request can begin.
                    assert!(!hs.is_waiting());
                });
            }
        }
    }

    /// A thread parked for its answer is always woken (a lost wake-up
    /// would leave it parked: loom reports the deadlock).
    #[test]
    fn loom_parked_waiter_is_woken() {
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: a new cell: nothing in flight.
            unsafe { hs.begin(Wake::Thread(thread::current())) };
            let callback = {
                let hs = hs.clone();
                thread::spawn(move || assert_eq!(hs.deliver(answer(0)), Route::Done))
            };
            let d = loop {
                if let Some(d) = hs.take() {
                    break d;
                }
                thread::park();
            };
            assert_eq!(d, answer(0));
            callback.join().unwrap();
        });
    }

    /// A future registers its waker, then checks for the answer: the
    /// callback's wake after delivering is never lost, whichever comes
    /// first (loom's executor reports a task never woken).
    #[test]
    fn loom_task_waker_is_woken() {
        struct Answer(Arc<Handshake>);
        impl std::future::Future for Answer {
            type Output = Delivered;
            fn poll(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<Delivered> {
                self.0.task.register(cx.waker());
                match self.0.take() {
                    Some(d) => std::task::Poll::Ready(d),
                    None => std::task::Poll::Pending,
                }
            }
        }
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: a new cell: nothing in flight.
            unsafe { hs.begin(Wake::Task) };
            let callback = {
                let hs = hs.clone();
                thread::spawn(move || assert_eq!(hs.deliver(answer(0)), Route::Done))
            };
            let d = loom::future::block_on(Answer(hs.clone()));
            assert_eq!(d, answer(0));
            callback.join().unwrap();
        });
    }

    /// A future gives up while the worker, writing its request, is
    /// refused: exactly one of them finishes the unwritten request (the
    /// owner takes the refusal back, or the worker reclaims the cell), and
    /// nothing is left in between.
    #[test]
    fn loom_refused_write_races_give_up() {
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: the future's poll: nothing in flight.
            unsafe { hs.begin(Wake::Task) };
            let worker = {
                let hs = hs.clone();
                thread::spawn(move || {
                    // SAFETY: the worker did not write the request.
                    if unsafe { hs.fail(libc::EINVAL) } {
                        None
                    } else {
                        // SAFETY: as above.
                        unsafe { hs.reclaim() }
                    }
                })
            };
            // SAFETY: the owner gives up.
            let gave_up = unsafe { hs.abandon(Abandon::Request) };
            let owner_finishes = gave_up.is_err() && hs.take_failure() == Some(libc::EINVAL);
            let worker_reclaimed = worker.join().unwrap();
            assert!(
                owner_finishes != worker_reclaimed.is_some(),
                "exactly one side finishes: owner {owner_finishes}, worker {worker_reclaimed:?}"
            );
            if let Some(how) = worker_reclaimed {
                assert_eq!(how, Abandon::Request);
            }
            assert!(!hs.is_waiting() && !hs.is_abandoned());
        });
    }

    /// A future that gives up before the worker takes its request: the
    /// worker reclaims the cell instead of writing; if the worker took it
    /// first, the answer of its write goes to the reaper as a late answer.
    #[test]
    fn loom_give_up_before_the_write() {
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: the future's poll: nothing in flight.
            unsafe { hs.begin(Wake::Task) };
            let worker = {
                let hs = hs.clone();
                thread::spawn(move || {
                    // SAFETY: not written yet.
                    match unsafe { hs.reclaim() } {
                        Some(how) => Err(how),
                        // Written: the kernel answers (played here).
                        None => Ok(hs.deliver(answer(0))),
                    }
                })
            };
            // SAFETY: the owner gives up.
            let gave_up = unsafe { hs.abandon(Abandon::Request) };
            match (gave_up, worker.join().unwrap()) {
                // Abandoned before the worker looked: reclaimed, unwritten.
                (Ok(()), Err(Abandon::Request)) => assert!(!hs.is_abandoned()),
                // Written, then abandoned before the answer: a late answer.
                (Ok(()), Ok(Route::Late(Abandon::Request))) => {
                    assert_eq!(hs.take(), Some(answer(0)))
                }
                // Answered before the give-up: the owner hands it on.
                (Err(()), Ok(Route::Done)) => assert_eq!(hs.take(), Some(answer(0))),
                other => panic!("unexpected: {other:?}"),
            }
        });
    }

    /// The reaper's own requests come back to it through the queue.
    #[test]
    fn loom_reaper_requests_come_back() {
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: the reaper owns the cell; nothing in flight.
            unsafe { hs.begin(Wake::Reaper) };
            let callback = {
                let hs = hs.clone();
                thread::spawn(move || hs.deliver(answer(sys::EUNLOCK)))
            };
            assert_eq!(callback.join().unwrap(), Route::Reaper);
            assert_eq!(hs.take(), Some(answer(sys::EUNLOCK)));
            assert_eq!(hs.take(), None, "taken once");
        });
    }

    /// An answer with nothing in flight (a duplicate, or one that comes
    /// after the owner has taken the answer) is ignored, not handed on.
    #[test]
    fn loom_stray_answer_is_ignored() {
        loom::model(|| {
            let hs = Arc::new(Handshake::new());
            // SAFETY: a new cell: nothing in flight.
            unsafe { hs.begin(Wake::Nobody) };
            let first = {
                let hs = hs.clone();
                thread::spawn(move || hs.deliver(answer(0)))
            };
            assert_eq!(first.join().unwrap(), Route::Done);
            let owner = {
                let hs = hs.clone();
                thread::spawn(move || hs.take())
            };
            let stray = hs.deliver(answer(libc::EAGAIN));
            let taken = owner.join().unwrap();
            // Either the owner took the grant before the stray answer (then
            // it is ignored) or after (then the stray answer was ignored
            // while DELIVERED): the grant is never overwritten.
            assert_eq!(stray, Route::Done);
            assert_eq!(taken, Some(answer(0)));
        });
    }

    /// The cancel protocol of a future (issue 15, defect 1's structure):
    /// the future queues a cancel at its deadline, the worker writes it
    /// (played here by a flag; a cancel the kernel refuses, as it refuses
    /// one of a request already granted, is the same to the cell: the
    /// worker is done with it) and says it is done, and the kernel answers
    /// the request at any moment (the cancel's `ECANCEL`, or the grant the
    /// cancel lost the race to: the same to the handshake). The
    /// future never takes the answer before the worker is done with the
    /// cancel (so the cancel names the request still in flight), and is
    /// always woken to take it (loom's executor reports a task never
    /// woken).
    ///
    /// Four threads with the waker's own state make every interleaving
    /// take about five minutes here (`DLM_LOOM_EXHAUSTIVE=1` runs them
    /// all, as was done on 2026-12-06: passed); by default loom explores
    /// every interleaving with up to three preemptions (about a second).
    #[test]
    fn loom_cancel_holds_back_the_answer() {
        let mut model = loom::model::Builder::new();
        if model.preemption_bound.is_none() && std::env::var_os("DLM_LOOM_EXHAUSTIVE").is_none() {
            model.preemption_bound = Some(3);
        }
        // The handshake never looks at the answer's status (a grant, the
        // cancel's ECANCEL or a try's EAGAIN are handed over alike), so one
        // status visits every interleaving there is.
        cancel_holds_back(&model, sys::ECANCEL);
    }

    /// [`loom_cancel_holds_back_the_answer`] for the answer `status`.
    fn cancel_holds_back(model: &loom::model::Builder, status: i32) {
        model.check(move || {
            let hs = Arc::new(Handshake::new());
            // SAFETY: a new cell: nothing in flight.
            unsafe { hs.begin(Wake::Task) };
            // The future's deadline passed: it queues a cancel.
            hs.queue_cancel();
            let written = Arc::new(sync::AtomicBool::new(false));
            let worker = {
                let (hs, written) = (hs.clone(), written.clone());
                thread::spawn(move || {
                    written.store(true, Ordering::Relaxed);
                    hs.cancel_done();
                })
            };
            let kernel = {
                let hs = hs.clone();
                thread::spawn(move || assert_eq!(hs.deliver(answer(status)), Route::Done))
            };
            let d = loom::future::block_on(std::future::poll_fn(|cx| {
                hs.task.register(cx.waker());
                if !hs.may_take() {
                    return std::task::Poll::Pending;
                }
                match hs.take() {
                    Some(d) => {
                        assert!(
                            written.load(Ordering::Relaxed),
                            "the answer was taken before the cancel was written"
                        );
                        std::task::Poll::Ready(d)
                    }
                    None => std::task::Poll::Pending,
                }
            }));
            assert_eq!(d, answer(status));
            worker.join().unwrap();
            kernel.join().unwrap();
        });
    }

    /// The worker's queue: jobs pushed from two threads (a future's poll
    /// and libdlm's callback) while the worker takes them, sleeping when
    /// the queue is empty. A push wakes the worker only if it sleeps (no
    /// futex call per job): no job is ever left in the queue with the
    /// worker asleep (loom reports the deadlock).
    #[test]
    fn loom_queue_never_sleeps_on_a_job() {
        loom::model(|| {
            let handoff = std::sync::Arc::new(Handoff::default());
            let pushers: Vec<_> = (0..2)
                .map(|_| {
                    let handoff = handoff.clone();
                    thread::spawn(move || {
                        let cell = CellRef::new(false, &handoff);
                        handoff.push(Job::Answer(cell));
                    })
                })
                .collect();
            let mut taken = 0;
            while taken < 2 {
                taken += handoff.next(None).len();
            }
            for p in pushers {
                p.join().unwrap();
            }
            let (kept, jobs) = handoff.close();
            assert!(kept.is_empty() && jobs.is_empty());
        });
    }

    /// The close wakes a sleeping worker (which then ends), a job pushed
    /// before it is taken or handed back by the close, and a cell handed
    /// to the keeping meanwhile is in what the close returns: nothing is
    /// lost and the worker never sleeps through the close.
    #[test]
    fn loom_close_wakes_the_worker_and_loses_nothing() {
        loom::model(|| {
            let handoff = std::sync::Arc::new(Handoff::default());
            let worker = {
                let handoff = handoff.clone();
                thread::spawn(move || {
                    let mut taken = 0;
                    while !handoff.is_closed() {
                        taken += handoff
                            .next(None)
                            .into_iter()
                            .filter(|j| !matches!(j, Job::Nudge))
                            .count();
                    }
                    taken
                })
            };
            let cell = CellRef::new(false, &handoff);
            handoff.keep(cell.clone());
            handoff.push(Job::Answer(cell));
            let (kept, jobs) = handoff.close();
            let taken = worker.join().unwrap();
            assert_eq!(kept.len(), 1, "the kept cell is handed back");
            assert_eq!(taken + jobs.len(), 1, "the job is taken or handed back");
        });
    }
}

#[cfg(all(test, not(dlm_loom)))]
mod tests {
    use super::*;

    /// A cell's callback argument and status block, as libdlm holds them.
    #[derive(Clone, Copy)]
    struct Given(*mut c_void, *mut sys::dlm_lksb);
    // SAFETY: plain addresses, used by one thread at a time (see
    // `play_libdlm`).
    unsafe impl Send for Given {}

    fn given(cell: &CellRef, slot: usize) -> Given {
        Given(cell.arg(slot), cell.lksb_ptr(slot))
    }

    /// Plays libdlm's thread for the callback argument `arg` of a cell:
    /// writes the status block at `lksb` and the value block as libdlm
    /// does, then runs the blocking and completion callbacks.
    ///
    /// # Safety
    /// `given` comes from a live cell ([`given`]), with a request in flight on it (nobody else writes that
    /// status block), and the cell stays alive until this returns.
    unsafe fn play_libdlm(given: Given, status: i32, lkid: u32, fill: u8, bast: bool) {
        let Given(arg, lksb) = given;
        // SAFETY: the caller's contract: the slot is this thread's to
        // write, and its value-block pointer names the cell's buffer.
        unsafe {
            (*lksb).sb_status = status;
            (*lksb).sb_lkid = lkid;
            (*lksb).sb_flags = 0;
            std::ptr::write_bytes((*lksb).sb_lvbptr, fill, sys::DLM_LVB_LEN);
            if bast {
                blocking_ast(arg);
            }
            completion_ast(arg);
        }
    }

    /// The owner's side of a blocking wait: parks until the answer is in.
    fn wait_for(cell: &CellRef) -> Delivered {
        loop {
            if let Some(d) = cell.hs.take() {
                return d;
            }
            std::thread::park();
        }
    }

    /// An answer crosses from the callback's thread to its parked owner,
    /// with the status block, the value block and a blocking notification
    /// (which the grant then makes stale). Run under Miri
    /// (`cargo +nightly miri test -p libdlm --lib cell::`), it checks the
    /// cell's raw pointers, its `Arc` counting through the callback
    /// argument, and the data races between the two threads.
    #[test]
    fn an_answer_crosses_from_the_callback_thread_to_its_owner() {
        let handoff = std::sync::Arc::new(Handoff::default());
        for round in 0..3u32 {
            let cell = CellRef::new(true, &handoff);
            // SAFETY: a new cell: nothing in flight.
            unsafe { cell.hs.begin(Wake::Thread(std::thread::current())) };
            // After a cancel the answer comes on the cancel's slot.
            let g = given(&cell, if round == 2 { CANCEL } else { MAIN });
            let fill = round as u8 + 1;
            // SAFETY: the request is in flight on MAIN; `cell` outlives the
            // thread (joined below).
            let libdlm =
                std::thread::spawn(move || unsafe { play_libdlm(g, 0, 100 + round, fill, true) });
            let d = wait_for(&cell);
            libdlm.join().unwrap();
            assert_eq!((d.answer.status, d.lkid), (0, 100 + round));
            // SAFETY: no request in flight: the answer was taken.
            assert_eq!(unsafe { cell.lvb() }, [fill; sys::DLM_LVB_LEN]);
            assert!(
                cell.blocking_rx().unwrap().try_recv().is_err(),
                "a grant makes earlier notifications stale"
            );
        }
        let (kept, jobs) = handoff.close();
        assert!(kept.is_empty() && jobs.is_empty());
    }

    /// libdlm's thread writes an answer into the status block the result
    /// names, and calls the callback with the argument the result names:
    /// the kernel can pair one slot's argument with the other slot's
    /// status block (a result read while a cancel is being written). The
    /// completion finds the answer there: the slot its argument names
    /// still holds libdlm's `EINPROG`, which no answer carries (for the
    /// pairing of the request's argument with the cancel's status block,
    /// only while no blocking notification has rewritten the request's
    /// slot: see `complete`).
    #[test]
    fn an_answer_written_into_the_other_slot_is_found() {
        let handoff = std::sync::Arc::new(Handoff::default());
        for (arg, lksb) in [(CANCEL, MAIN), (MAIN, CANCEL)] {
            let cell = CellRef::new(false, &handoff);
            // libdlm's stores before the request and before the cancel.
            // SAFETY: a new cell, nothing in flight: this thread's to write.
            unsafe {
                (*cell.lksb_ptr(MAIN)).sb_status = sys::EINPROG;
                (*cell.lksb_ptr(CANCEL)).sb_status = sys::EINPROG;
            }
            // SAFETY: a new cell: nothing in flight.
            unsafe { cell.hs.begin(Wake::Thread(std::thread::current())) };
            let g = Given(cell.arg(arg), cell.lksb_ptr(lksb));
            // SAFETY: a request in flight on the cell, which outlives the
            // call; nobody else writes that status block now.
            unsafe { play_libdlm(g, 0, 42, 9, false) };
            let d = wait_for(&cell);
            assert_eq!((d.answer.status, d.lkid), (0, 42), "argument {arg}");
        }
        let (kept, jobs) = handoff.close();
        assert!(kept.is_empty() && jobs.is_empty());
    }

    /// The poll-mode reader's `apply_result` takes a result whose status
    /// block is either of its argument's cell's (after a cancel, or read
    /// while a cancel is written: see its docs) and applies a completion
    /// to the slot its argument names; a status block of another cell is
    /// refused with nothing applied.
    #[test]
    fn a_result_may_name_either_status_block_of_its_cell() {
        use crate::reader::{Kind, Parsed};
        let handoff = std::sync::Arc::new(Handoff::default());
        let cell = CellRef::new(true, &handoff);
        let other = CellRef::new(false, &handoff);
        // SAFETY: a new cell: nothing in flight.
        unsafe { cell.hs.begin(Wake::Thread(std::thread::current())) };
        let result = |arg: usize, lksb: usize, kind| Parsed {
            arg: cell.arg(arg) as usize,
            lksb,
            kind,
        };
        let completion = Kind::Completion {
            status: 0,
            lkid: 7,
            flags: 0,
            lvb: None,
        };
        let foreign = result(CANCEL, other.lksb_ptr(MAIN) as usize, completion);
        // SAFETY: the argument names the live cell `cell`, with a request
        // in flight on it; nothing else applies results to it.
        let refused = unsafe { apply_result(&foreign) };
        assert!(matches!(refused, Err(crate::Error::BadAnswer(_))));
        assert!(cell.hs.take().is_none(), "nothing of it applied");
        let bast = result(
            MAIN,
            cell.lksb_ptr(CANCEL) as usize,
            Kind::Blocking { mode: 5 },
        );
        // SAFETY: as above.
        unsafe { apply_result(&bast) }.unwrap();
        let note = cell.blocking_rx().unwrap().try_recv().unwrap();
        assert_eq!(note.mode(), Some(crate::Mode::Ex));
        let answer = result(CANCEL, cell.lksb_ptr(MAIN) as usize, completion);
        // SAFETY: as above.
        unsafe { apply_result(&answer) }.unwrap();
        let d = cell.hs.take().expect("applied");
        assert_eq!((d.answer.status, d.lkid), (0, 7));
        drop((cell, other));
        let (kept, jobs) = handoff.close();
        assert!(kept.is_empty() && jobs.is_empty());
    }

    /// The owner gives up while the answer arrives (each order, in turn
    /// and racing): whichever comes second hands the cell to the worker's
    /// queue, exactly once, and the worker frees it after taking the
    /// answer; the cell is freed when the last reference goes (Miri
    /// reports a leak or a use after free).
    #[test]
    fn a_given_up_cell_reaches_the_worker_once_and_is_freed() {
        let handoff = std::sync::Arc::new(Handoff::default());
        for round in 0..6u32 {
            let cell = CellRef::new(false, &handoff);
            // SAFETY: a new cell: nothing in flight.
            unsafe { cell.hs.begin(Wake::Thread(std::thread::current())) };
            let g = given(&cell, MAIN);
            // The give-up step (reaper::give_up): into the keeping first.
            handoff.keep(cell.clone());
            let answer_first = round % 3 == 0;
            if answer_first {
                // SAFETY: in flight on MAIN; the keeping holds the cell.
                unsafe { play_libdlm(g, 0, round, 0, false) };
            }
            // SAFETY: in flight on MAIN; the cell is in the keeping.
            let libdlm = (!answer_first)
                .then(|| std::thread::spawn(move || unsafe { play_libdlm(g, 0, round, 0, false) }));
            // SAFETY: the owner, a request in flight, the cell kept.
            match unsafe { cell.hs.abandon(Abandon::Request) } {
                Ok(()) => {}
                // The answer came first: the owner queues it itself.
                Err(()) => handoff.push(Job::Late(cell.clone(), Abandon::Request)),
            }
            drop(cell);
            if let Some(t) = libdlm {
                t.join().unwrap();
            }
            let jobs = handoff.next(Some(std::time::Instant::now()));
            assert_eq!(jobs.len(), 1, "round {round}: one job, not {}", jobs.len());
            for job in jobs {
                let Job::Late(cell, how) = job else {
                    panic!("round {round}: not a late answer");
                };
                let d = cell.hs.take().expect("the answer is in the cell");
                assert!(how.leaves_held(d.answer.status));
                assert_eq!(d.lkid, round);
                handoff.free(&cell);
            }
        }
        let (kept, jobs) = handoff.close();
        assert!(kept.is_empty() && jobs.is_empty());
    }

    /// The lock-free stack: values pushed from several threads come out
    /// once each, in each thread's order; the sleep mark is set only on
    /// an empty stack, reported by exactly the push that replaces it, and
    /// never taken for a node; values left at the drop are dropped (Miri
    /// checks the raw nodes: no leak, no use after free, no race).
    #[test]
    fn the_stack_hands_every_value_over_once() {
        let stack = std::sync::Arc::new(Stack::<(u32, u32)>::default());
        assert!(stack.sleep_if_empty(), "empty: the owner may sleep");
        assert!(stack.is_empty() && stack.take_all().is_empty());
        assert!(stack.sleep_if_empty());
        let woke: u32 = std::thread::scope(|s| {
            let pushers: Vec<_> = (0..3u32)
                .map(|t| {
                    let stack = &stack;
                    s.spawn(move || {
                        (0..20u32)
                            .map(|i| u32::from(stack.push((t, i))))
                            .sum::<u32>()
                    })
                })
                .collect();
            pushers.into_iter().map(|p| p.join().unwrap()).sum()
        });
        assert_eq!(woke, 1, "exactly one push ends the sleep");
        assert!(!stack.sleep_if_empty(), "not empty: no sleep");
        let all = stack.take_all();
        assert_eq!(all.len(), 60);
        for t in 0..3u32 {
            let mine: Vec<u32> = all.iter().filter(|v| v.0 == t).map(|v| v.1).collect();
            assert_eq!(mine, (0..20).collect::<Vec<_>>(), "thread {t}'s order");
        }
        stack.push((9, 9));
        drop(stack);
    }

    /// `take_all_into` appends, oldest first, after what the buffer holds,
    /// and keeps the buffer's memory.
    #[test]
    fn the_stack_takes_into_a_kept_buffer() {
        let stack = Stack::<u32>::default();
        let mut out = std::collections::VecDeque::with_capacity(8);
        out.push_back(100);
        for i in 0..5 {
            stack.push(i);
        }
        stack.take_all_into(&mut out);
        assert_eq!(out, [100, 0, 1, 2, 3, 4]);
        let capacity = out.capacity();
        out.clear();
        assert!(stack.sleep_if_empty());
        stack.take_all_into(&mut out);
        assert!(out.is_empty(), "the sleep mark is no value");
        stack.push(7);
        stack.take_all_into(&mut out);
        assert_eq!(out, [7]);
        assert_eq!(out.capacity(), capacity);
    }

    #[test]
    fn cancels_name_only_the_cells_own_lock() {
        // A try (NOQUEUE) can be refused at any moment, which frees its
        // lock id: never cancelled.
        assert!(!may_cancel(true, false, sys::LKF_NOQUEUE));
        assert!(!may_cancel(true, false, sys::LKF_NOQUEUE | sys::LKF_VALBLK));
        // A queued new request ends only through the cancel itself.
        assert!(may_cancel(true, false, 0));
        assert!(may_cancel(
            true,
            false,
            sys::LKF_VALBLK | sys::LKF_PERSISTENT
        ));
        // A conversion never ends the lock.
        assert!(may_cancel(false, false, sys::LKF_CONVERT));
        assert!(may_cancel(
            false,
            false,
            sys::LKF_CONVERT | sys::LKF_NOQUEUE
        ));
        // Unlocks are never cancelled.
        assert!(!may_cancel(false, true, 0));
    }

    #[test]
    fn answers_leave_locks_held_as_the_kernel_says() {
        assert!(Abandon::Request.leaves_held(0));
        for s in [libc::EAGAIN, sys::ECANCEL, libc::EDEADLK] {
            assert!(!Abandon::Request.leaves_held(s));
            assert!(Abandon::Held.leaves_held(s));
        }
        assert!(!Abandon::Unlock.leaves_held(sys::EUNLOCK));
        assert!(Abandon::Unlock.leaves_held(libc::EBUSY));
    }

    #[test]
    fn a_late_answer_after_a_give_up_goes_to_the_reaper() {
        let hs = Handshake::new();
        // SAFETY: a new handshake; the test plays owner and callback.
        unsafe { hs.begin(Wake::Nobody) };
        // SAFETY: as above.
        assert_eq!(unsafe { hs.abandon(Abandon::Held) }, Ok(()));
        let d = Delivered {
            answer: Answer {
                status: 0,
                sb_flags: 0,
            },
            lkid: 3,
        };
        assert_eq!(hs.deliver(d), Route::Late(Abandon::Held));
        assert_eq!(hs.take(), Some(d));
    }
}
