//! The reaper: gives up cells and releases locks that nobody owns any
//! more, one thread per lockspace handle, never waiting for an answer.
//!
//! A lock can end up held with no owner when its waiter gave up on it (a
//! timeout whose cancel was never answered, a future dropped, a lockspace
//! that looked gone, a panic unwinding) and the DLM granted it, or left it
//! held, afterwards; or when a guard lets go without waiting (a background
//! drop). The callbacks cannot release such a lock themselves: releasing
//! it without writing libdlm's uninitialised unlock bytes into the
//! resource's value block takes a conversion to NL and then an unlock, two
//! answers, and the kernel may refuse a write with `EBUSY` for a while (a
//! cancel still in progress on another node).
//!
//! So every such cell goes through the functions here: [`give_up`]
//! (the owner stops waiting for a request in flight), [`release`] (the
//! owner hands over a held lock) and [`unlock_without_waiting`] (a thread
//! that may block in a DLM write writes a plain unlock itself, then gives
//! it up as [`give_up`] does). [`give_up`] and [`release`] put the cell
//! in the lockspace's keeping first, then queue a [`Job`] on the handle's
//! [`Handoff`] ([`give_up`] only when the answer came first); the callbacks
//! queue the answers of abandoned requests and of the reaper's own
//! requests on the same queue. An unlock written without waiting, like a
//! given-up request, is not the reaper's work until its answer comes (it
//! does not keep a closing handle lingering, nor `Lockspace::release`
//! waiting: the kernel unlocks the lock when the handle closes anyway).
//!
//! The handle's reaper thread (started at the first job, ended when the
//! handle closes) writes each request and goes on: the answer comes back
//! as a job. It never waits for an answer, so one lockspace whose program
//! stopped dispatching (poll mode) or whose writes are refused holds up
//! nothing else, and no handle's releases wait on another's. Refused
//! writes (`EBUSY`, `ENOBUFS`, a stopped lockspace) are tried again with a
//! back-off of up to a second, counted in [`stats`](crate::stats); a
//! release that cannot be done (any other refusal) is counted as
//! [`release_failures`](crate::Stats::release_failures): the lock stays
//! held until the handle closes (the kernel then unlocks it).

use crate::cell::{Abandon, CellRef, Handoff, Job, Request, Wake};
use crate::error::Error;
use crate::handle::{Core, Handle};
use crate::mode::Mode;
use crate::request::{self, Op};
use crate::state::ReleasePlan;
use dlm_sys as sys;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Gives up on the request in flight on `cell` (sent as `how`): the cell
/// goes to the lockspace's keeping, and its answer, whenever it comes, to
/// the reaper, which releases a lock the answer leaves held. The caller
/// must not touch the cell again, unless it is given back: a future's
/// request that the worker could not write (`FAILED`) has nothing in
/// flight, and is the caller's to finish as a request never sent.
pub(crate) fn give_up(handle: &Arc<Handle>, cell: CellRef, how: Abandon) -> Option<CellRef> {
    let back = abandon(handle, cell, how);
    if back.is_none() {
        crate::stats::count(&crate::stats::GIVEN_UP);
    }
    back
}

/// [`give_up`], not counted as a waiter's give-up.
fn abandon(handle: &Arc<Handle>, cell: CellRef, how: Abandon) -> Option<CellRef> {
    start(handle);
    handle.keep(cell.clone());
    // SAFETY: the caller owns the cell, a request of it is in flight (or
    // handed to the worker), and it is in the keeping (above).
    match unsafe { cell.hs.abandon(how) } {
        // The callback queues the answer when it comes (or the worker
        // takes the cell back if it had not written the request).
        Ok(()) => {}
        Err(()) => {
            if cell.hs.take_failure().is_some() {
                // Refused by the worker: nothing was written.
                handle.handoff().free(&cell);
                return Some(cell);
            }
            // The answer came first: the reaper takes it from the cell.
            handle.handoff().push(Job::Late(cell, how));
        }
    }
    None
}

/// Hands the held lock `lkid` to the reaper, which releases it: by `plan`
/// (the owner's model of the lock), or, with `None`, by a conversion to NL
/// with no flags (which writes no value block) and then an unlock. The
/// caller owns the cell, with no request in flight, and must not touch it
/// again.
pub(crate) fn release(handle: &Arc<Handle>, cell: CellRef, lkid: u32, plan: Option<ReleasePlan>) {
    start(handle);
    handle.keep(cell.clone());
    handle.handoff().push(Job::Release { cell, lkid, plan });
}

/// Releases the held lock `lkid` whose release is a plain unlock with
/// `flags` ([`ReleasePlan::Unlock`]) without waiting for its answer: the
/// unlock is written on the calling thread, and the cell is given up to
/// the reaper at once, as a blocking call that stopped waiting gives up
/// its request (the answer, when it comes, goes to the reaper, which frees
/// the cell, or releases the lock if the answer left it held). Against
/// [`release`]: one wake-up of the reaper (for the answer) instead of two
/// (the job, then the answer), and no thread hop before the write. Only
/// for a caller whose thread may block in a DLM write (the kernel holds
/// one up while the lockspace recovers): never an executor's. A refused
/// write (`EBUSY`, a stopped lockspace, ...) hands the release to the
/// reaper, which tries again.
///
/// The caller owns the cell, with no request in flight, and must not touch
/// it again.
pub(crate) fn unlock_without_waiting(handle: &Arc<Handle>, cell: CellRef, lkid: u32, flags: u32) {
    let op = Op::Unlock { lkid };
    // `Wake::Nobody`: an answer that comes before the give-up below stays
    // in the cell (`DELIVERED`), and the give-up hands it to the reaper.
    // SAFETY: the caller owns the cell, nothing in flight; once written it is given up below, untouched here.
    let written = unsafe { request::write(handle, &cell, Wake::Nobody, op, Mode::Nl, flags) };
    match written {
        Ok(_) => {
            // A thread's own write: never handed back (only the worker's
            // refused writes are).
            drop(abandon(handle, cell, Abandon::Unlock));
        }
        Err(_) => release(handle, cell, lkid, Some(ReleasePlan::Unlock(flags))),
    }
}

/// Starts the handle's reaper thread (which also writes the futures'
/// requests), once per handle and process generation.
pub(crate) fn start(handle: &Arc<Handle>) {
    if !handle.reaper_started.first() {
        return;
    }
    let weak = Arc::downgrade(handle.core());
    let handoff = handle.handoff().clone();
    let spawned = std::thread::Builder::new()
        .name("dlm-reaper".into())
        .spawn(move || {
            batch_scheduling();
            handoff.set_worker_tid(request::thread_id());
            Reaper::default().run(&weak, &handoff)
        });
    if spawned.is_err() {
        // No thread: the jobs stay queued and the locks held until the
        // handle closes (the kernel then unlocks them).
        crate::stats::count(&crate::stats::RELEASE_FAILURES);
    }
}

/// Puts the calling thread (the worker) under `SCHED_BATCH`: same share
/// of the CPU as any other thread of its nice value, but its wake-ups do
/// not preempt the thread that woke it. A future's `poll` that hands a
/// request over wakes the worker; on a CPU both share, wake-up preemption
/// switched to the worker at once, which wrote that one request and slept
/// again, two context switches and two system calls per request. Without
/// it, the polling thread hands the rest of its requests over first and
/// the worker writes them in one go when the poller waits. Refused (it is
/// not, for an unprivileged thread, but a seccomp filter may): the default
/// policy stays.
fn batch_scheduling() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the duration of the call;
    // pid 0 names the calling thread, and the call changes only its policy.
    unsafe {
        libc::sched_setscheduler(0, libc::SCHED_BATCH, &param);
    }
}

/// What the reaper waits for on a cell.
#[derive(Debug, Clone, Copy)]
enum Step {
    /// A conversion to NL, then an unlock with no flags (or with
    /// `IVVALBLK` if the conversion failed).
    Convert { lkid: u32, flags: u32 },
    /// The unlock.
    Unlock { lkid: u32, flags: u32 },
}

/// A release in progress.
#[derive(Debug)]
struct Work {
    cell: CellRef,
    step: Step,
    /// An abandoned lock (counted as reaped when released).
    reaped: bool,
    /// Refused writes so far (for the back-off).
    refusals: u32,
}

/// A future's request to write, and since when the kernel refuses it.
#[derive(Debug)]
struct Write {
    cell: CellRef,
    request: Request,
    mode: Mode,
    flags: u32,
    busy_since: Option<Instant>,
}

#[derive(Debug, Default)]
struct Reaper {
    /// Requests written, by cell address.
    waiting: HashMap<usize, Work>,
    /// Writes to try again, and when.
    retry: Vec<(Instant, Work)>,
    /// Futures' writes to try again, and when.
    retry_writes: Vec<(Instant, Write)>,
    /// The jobs of a batch (empty between batches; its capacity is kept,
    /// so a batch of a thousand futures' writes does not ask the allocator
    /// for memory it gave back after the last one).
    jobs: std::collections::VecDeque<Job>,
}

impl Reaper {
    fn run(&mut self, weak: &Weak<Core>, handoff: &Handoff) {
        loop {
            let lingering = handoff.lingering_since();
            let due = self
                .retry
                .iter()
                .map(|(t, _)| *t)
                .chain(self.retry_writes.iter().map(|(t, _)| *t))
                // Lingering: answers may have to be read by this thread.
                .chain(lingering.map(|_| Instant::now() + Duration::from_millis(10)))
                .min();
            // The buffer of the last batch, emptied: its memory is kept.
            let mut jobs = std::mem::take(&mut self.jobs);
            handoff.next_into(due, &mut jobs);
            if handoff.is_closed() {
                return;
            }
            // Held only while working, never while waiting (unless it
            // lingers): the libdlm handle closes when its last user lets
            // go (or right after the writes at hand).
            let Some(handle) = weak.upgrade() else {
                return;
            };
            for job in jobs.drain(..) {
                self.job(&handle, job);
            }
            self.jobs = jobs;
            let now = Instant::now();
            let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.retry = later;
            for (_, work) in ready {
                self.write(&handle, work);
            }
            let (ready, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retry_writes)
                .into_iter()
                .partition(|(t, _)| *t <= now);
            self.retry_writes = later;
            for (_, write) in ready {
                self.write_request(&handle, write);
            }
            let busy = self.waiting.len() + self.retry.len() + self.retry_writes.len();
            handoff.set_busy(busy);
            if let Some(since) = lingering {
                // Nobody uses the handle any more: in poll mode its answers
                // are read here.
                if busy > 0 && handle.is_polled() {
                    handle.drive(0);
                }
                if (busy == 0 && !handoff.has_work()) || since.elapsed() >= crate::handle::LINGER {
                    let keep = handoff.end_linger();
                    drop(handle);
                    // The last reference, most likely: the handle closes
                    // here (never on libdlm's thread).
                    drop(keep);
                }
            }
        }
    }

    fn job(&mut self, handle: &Core, job: Job) {
        match job {
            // Only a wake-up: the loop looks at the linger and the close.
            Job::Nudge => {}
            Job::Write {
                cell,
                request,
                mode,
                flags,
            } => self.write_request(
                handle,
                Write {
                    cell,
                    request,
                    mode,
                    flags,
                    busy_since: None,
                },
            ),
            Job::Cancel {
                cell,
                request,
                flags,
            } => {
                self.cancel(handle, &cell, request, flags);
                // Done with it: the future may take its answer now.
                cell.hs.cancel_done();
            }
            Job::Release { cell, lkid, plan } => {
                let step = match plan {
                    None => Step::Convert {
                        lkid,
                        flags: sys::LKF_CONVERT,
                    },
                    Some(ReleasePlan::ConvertFirst(flags)) => Step::Convert { lkid, flags },
                    Some(ReleasePlan::Unlock(flags)) => Step::Unlock { lkid, flags },
                };
                self.write(
                    handle,
                    Work {
                        cell,
                        step,
                        reaped: false,
                        refusals: 0,
                    },
                );
            }
            Job::Late(cell, how) => {
                let Some(d) = cell.hs.take() else {
                    return;
                };
                if how.leaves_held(d.answer.status) {
                    let step = Step::Convert {
                        lkid: d.lkid,
                        flags: sys::LKF_CONVERT,
                    };
                    self.write(
                        handle,
                        Work {
                            cell,
                            step,
                            reaped: true,
                            refusals: 0,
                        },
                    );
                } else {
                    // The answer ended the lock: no callback names the cell
                    // any more.
                    handle.handoff().free(&cell);
                }
            }
            Job::Answer(cell) => {
                let Some(d) = cell.hs.take() else {
                    return;
                };
                let Some(mut work) = self.waiting.remove(&cell.addr()) else {
                    return;
                };
                match work.step {
                    Step::Convert { lkid, .. } => {
                        // Failed: mark the value block not valid rather
                        // than let libdlm's unlock bytes in.
                        let flags = if d.answer.status == 0 {
                            0
                        } else {
                            sys::LKF_IVVALBLK
                        };
                        work.step = Step::Unlock { lkid, flags };
                        work.refusals = 0;
                        self.write(handle, work);
                    }
                    Step::Unlock { .. } if d.answer.status == sys::EUNLOCK => {
                        if work.reaped {
                            crate::stats::count(&crate::stats::REAPED);
                        }
                        handle.handoff().free(&work.cell);
                    }
                    Step::Unlock { .. } => {
                        // The kernel refused the unlock in its answer: the
                        // lock stays held until the handle closes.
                        crate::stats::count(&crate::stats::RELEASE_FAILURES);
                    }
                }
            }
        }
    }

    /// A future's cancel: written only for a request this thread wrote,
    /// still unanswered (waiting, or given up and unanswered), with the lock
    /// id this thread's write gave (`may_cancel` decides the rest; the
    /// future takes no answer while the cancel is pending, so the cell's
    /// request is still the one cancelled). A request whose write is still
    /// to be tried again is not written at all: it fails as timed out.
    fn cancel(&mut self, handle: &Core, cell: &CellRef, request: Request, flags: u32) {
        if let Some(i) = self
            .retry_writes
            .iter()
            .position(|(_, w)| w.cell.addr() == cell.addr())
        {
            let (_, w) = self.retry_writes.swap_remove(i);
            // SAFETY: this thread did not write the request.
            if !unsafe { w.cell.hs.fail(TIMED_OUT) } {
                // SAFETY: as above; the future gave up meanwhile.
                if unsafe { w.cell.hs.reclaim() }.is_some() {
                    self.unwritten(handle, w);
                }
            }
            return;
        }
        if !(cell.hs.is_waiting() || cell.hs.is_abandoned()) {
            return;
        }
        let op = Op::of(&request);
        let lkid = match request {
            Request::New { .. } => cell.written_lkid.load(std::sync::atomic::Ordering::Acquire),
            Request::Convert { lkid } | Request::Unlock { lkid } => lkid,
        };
        request::cancel_unanswered(handle, cell, op, lkid, flags);
    }

    /// Writes a future's request (its cell `WAITING` since the future's
    /// poll), or schedules it again after a refusal that passes, or hands
    /// the future the error; a cell its future gave up before the write is
    /// taken over instead (nothing was written).
    fn write_request(&mut self, handle: &Core, mut w: Write) {
        // SAFETY: this thread was to write the request and has not:
        // nothing is in flight.
        if unsafe { w.cell.hs.reclaim() }.is_some() {
            self.unwritten(handle, w);
            return;
        }
        let op = Op::of(&w.request);
        let e = if handle.is_stalled() {
            Error::LockspaceStopped
        } else {
            w.cell
                .written_lkid
                .store(0, std::sync::atomic::Ordering::Relaxed);
            // SAFETY: the cell is WAITING for this request (the future's
            // `begin`), nothing of it is in flight, and from now on it is
            // owned by the future (until its answer) or by the reaper.
            match unsafe { request::syscall(handle, &w.cell, op, w.mode, w.flags) } {
                Ok(lkid) => {
                    if op.is_new() {
                        w.cell
                            .written_lkid
                            .store(lkid, std::sync::atomic::Ordering::Relaxed);
                    }
                    return;
                }
                Err(code) => request::refusal(handle, op, code),
            }
        };
        if matches!(e, Error::InProgress | Error::Unreachable) {
            let now = Instant::now();
            let since = *w.busy_since.get_or_insert(now);
            if now - since < handle.patience().busy {
                crate::stats::count_retry(&e);
                // Backing off as the blocking path does: 2 ms at first, up
                // to 50 ms.
                let delay =
                    ((now - since) / 4).clamp(Duration::from_millis(2), Duration::from_millis(50));
                self.retry_writes.push((now + delay, w));
                return;
            }
        }
        // SAFETY: this thread did not write the request.
        if !unsafe { w.cell.hs.fail(failure_code(&e)) } {
            // The future gave up meanwhile.
            // SAFETY: as above.
            if unsafe { w.cell.hs.reclaim() }.is_some() {
                self.unwritten(handle, w);
            }
        }
    }

    /// A future's request that was never written, given up by its future:
    /// the cell is this thread's (and in the keeping). A new request's
    /// cell names no lock; a conversion's or unlock's lock is still held.
    fn unwritten(&mut self, handle: &Core, w: Write) {
        match w.request {
            Request::New { .. } => handle.handoff().free(&w.cell),
            Request::Convert { lkid } | Request::Unlock { lkid } => self.write(
                handle,
                Work {
                    cell: w.cell,
                    step: Step::Convert {
                        lkid,
                        flags: sys::LKF_CONVERT,
                    },
                    reaped: false,
                    refusals: 0,
                },
            ),
        }
    }

    /// Writes the work's next request, or schedules it again.
    fn write(&mut self, handle: &Core, mut work: Work) {
        let (op, mode, flags) = match work.step {
            Step::Convert { lkid, flags } => (Op::Convert { lkid }, Mode::Nl, flags),
            Step::Unlock { lkid, flags } => (Op::Unlock { lkid }, Mode::Nl, flags),
        };
        // SAFETY: the reaper owns the cell (given by `give_up` or
        // `release`, or back with its answer) and nothing of it is in
        // flight; it stays in the lockspace's keeping until freed.
        match unsafe { request::write(handle, &work.cell, Wake::Reaper, op, mode, flags) } {
            Ok(_) => {
                self.waiting.insert(work.cell.addr(), work);
            }
            Err(e @ (Error::InProgress | Error::Unreachable | Error::LockspaceStopped)) => {
                if !matches!(e, Error::LockspaceStopped) {
                    crate::stats::count_retry(&e);
                }
                work.refusals += 1;
                let delay =
                    Duration::from_millis(2u64 << work.refusals.min(9)).min(Duration::from_secs(1));
                self.retry.push((Instant::now() + delay, work));
            }
            Err(Error::LockspaceGone) => {
                // The lock went with the lockspace; the cell stays kept
                // until the handle closes.
            }
            Err(_) => crate::stats::count(&crate::stats::RELEASE_FAILURES),
        }
    }
}

/// The code a refused future's write is handed over as (see
/// [`error_of_failure`]): the `errno`, or a negative code for the crate's
/// own refusals.
/// The failure code of a write never made because its future's timeout
/// cancelled it first.
const TIMED_OUT: i32 = -3;

fn failure_code(e: &Error) -> i32 {
    match e {
        Error::LockspaceStopped => -1,
        Error::LockspaceGone => -2,
        Error::InProgress => libc::EBUSY,
        Error::Unreachable => libc::ENOBUFS,
        e => e.raw_os_error().unwrap_or(libc::EIO),
    }
}

/// The error of a future's write the worker could not make.
pub(crate) fn error_of_failure(unlock: bool, code: i32) -> Error {
    match code {
        -1 => Error::LockspaceStopped,
        -2 => Error::LockspaceGone,
        TIMED_OUT => Error::TimedOut,
        code => {
            let op_name = if unlock {
                "dlm_ls_unlock"
            } else {
                "dlm_ls_lock"
            };
            Error::from_errno(op_name, code)
        }
    }
}
