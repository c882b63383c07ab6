//! The reaper: releases locks that nobody owns any more.
//!
//! A lock can end up held with no owner when its waiter gave up on it (a
//! timeout whose cancel was never answered, a lockspace that looked gone,
//! a panic unwinding through a request) and the DLM granted it, or left
//! it held, afterwards. The AST thread cannot release such a lock itself:
//! releasing it without writing libdlm's uninitialised unlock bytes into
//! the resource's value block takes a conversion to NL and then an unlock,
//! two answers to wait for, and the kernel may answer `EBUSY` for a while
//! (a cancel still in progress on another node). So the AST hands the cell
//! to one process-wide thread, which does both steps with the same code as
//! a guard's unlock, then frees the cell. If no reaper can take it, the
//! AST unlocks at once with `LKF_IVVALBLK`: the value block is then marked
//! not valid, never filled with garbage.

use crate::ast::{LockCell, Waiter, MAIN};
use crate::lockspace::Inner;
use crate::mode::Mode;
use crate::request::{self, Op};
use crate::state::ReleasePlan;
use crossbeam_channel::{Receiver, Sender};
use dlm_sys as sys;
use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Weak};

/// A lock to release, or a cell to free.
struct Job {
    owner: Weak<Inner>,
    /// The cell's address; it stays alive while `owner` does (the cell is
    /// in its lockspace's keeping until closed, or until freed here).
    cell: usize,
    lkid: u32,
    work: Work,
}

/// What a job asks.
#[derive(Debug, Clone, Copy)]
enum Work {
    /// Release the lock: with the owner's plan, or (`None`, an abandoned
    /// lock whose state is unknown) by a conversion to NL then an unlock.
    Release(Option<ReleasePlan>),
    /// The lock is gone (its last answer came): free the cell.
    Free,
}

/// The reaper's queue, leaked once per process generation (a fork's child
/// gets its own thread and queue).
static QUEUE: AtomicPtr<Sender<Job>> = AtomicPtr::new(std::ptr::null_mut());
static STARTED: crate::fork::StartedIn = crate::fork::StartedIn::new();

/// Starts the reaper thread, once per process generation.
pub(crate) fn start() {
    if !STARTED.first() {
        return;
    }
    let (tx, rx) = crossbeam_channel::unbounded();
    let spawned = std::thread::Builder::new()
        .name("dlm-reaper".into())
        .spawn(move || run(rx));
    if spawned.is_ok() {
        QUEUE.store(Box::into_raw(Box::new(tx)), Ordering::Release);
    } else {
        QUEUE.store(std::ptr::null_mut(), Ordering::Release);
    }
}

/// Queues the release of the lock `lkid` held through `cell` (called on
/// libdlm's AST thread, or by a waiter that gave up after its answer
/// came); the cell must be in the keeping of `owner`'s lockspace.
pub(crate) fn reap_later(owner: Weak<Inner>, cell: &LockCell, lkid: u32) {
    queue(owner, cell, lkid, Work::Release(None));
}

/// Queues the release of a lock whose owner let go of it without waiting
/// (a guard dropped in async code), following the owner's `plan`.
pub(crate) fn release_later(owner: Weak<Inner>, cell: &LockCell, lkid: u32, plan: ReleasePlan) {
    queue(owner, cell, lkid, Work::Release(Some(plan)));
}

/// Queues the freeing of a cell in the lockspace's keeping whose lock is
/// gone (called on libdlm's AST thread, which must not take the
/// lockspace's locks for long).
pub(crate) fn free_later(owner: Weak<Inner>, cell: &LockCell) {
    queue(owner, cell, 0, Work::Free);
}

fn queue(owner: Weak<Inner>, cell: &LockCell, lkid: u32, work: Work) {
    // Started with the first lockspace, or here (poll mode starts it only
    // when a lock needs it).
    start();
    let queue = QUEUE.load(Ordering::Acquire);
    let job = Job {
        owner,
        cell: cell as *const LockCell as usize,
        lkid,
        work,
    };
    // SAFETY: a non-null QUEUE points at a leaked, never-freed Sender.
    let sent = !queue.is_null() && unsafe { (*queue).try_send(job).is_ok() };
    if !sent && matches!(work, Work::Release(_)) {
        // SAFETY: the cell is alive (kept by its lockspace, which is open:
        // the caller holds it, or this is its AST thread); `handle` is the
        // lockspace's. IVVALBLK: see the module docs.
        unsafe {
            sys::dlm_ls_unlock(
                cell.handle(),
                lkid,
                sys::LKF_IVVALBLK,
                cell.lksb_ptr(MAIN),
                cell.arg(MAIN),
            )
        };
    }
}

fn run(rx: Receiver<Job>) {
    for job in rx {
        let Some(inner) = job.owner.upgrade() else {
            // Closed: the kernel released (or orphaned) the lock.
            continue;
        };
        // SAFETY: the cell is in `inner`'s keeping, alive while `inner` is.
        let cell = unsafe { &*(job.cell as *const LockCell) };
        match job.work {
            Work::Free => inner.free_parked(job.cell),
            Work::Release(plan) => {
                if reap(&inner, cell, job.lkid, plan) {
                    if plan.is_none() {
                        crate::stats::count(&crate::stats::REAPED);
                    }
                    inner.free_parked(job.cell);
                }
            }
        }
        // Dropping `inner` may close the lockspace, here: never on the AST
        // thread.
    }
}

/// Releases the lock: with no plan, converts it to NL with no flags
/// (which writes no value block and clears the kernel's `VALBLK`), then
/// unlocks it. Returns whether it is gone (then no AST names the cell any
/// more).
fn reap(inner: &Arc<Inner>, cell: &LockCell, lkid: u32, plan: Option<ReleasePlan>) -> bool {
    let (convert, unlock) = match plan {
        None => (Some(sys::LKF_CONVERT), 0),
        Some(ReleasePlan::ConvertFirst(flags)) => (Some(flags), 0),
        Some(ReleasePlan::Unlock(flags)) => (None, flags),
    };
    Waiter::with(|w| {
        let mut unlock = unlock;
        if let Some(flags) = convert {
            let converted =
                request::run_parked(inner, cell, w, Op::Convert { lkid }, Mode::Nl, flags);
            match converted {
                Some(0) => {}
                // Refused or failed: mark the value block not valid rather
                // than let libdlm's unlock bytes in.
                Some(_) => unlock = sys::LKF_IVVALBLK,
                None => return false,
            }
        }
        matches!(
            request::run_parked(inner, cell, w, Op::Unlock { lkid }, Mode::Nl, unlock),
            Some(status) if status == sys::EUNLOCK
        )
    })
}
