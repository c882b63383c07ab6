//! Writing one request to the kernel and waiting for its answer: the one
//! path every lock, conversion and unlock takes (the reaper's too).
//!
//! - `dlm_ls_lock` / `dlm_ls_unlock` with this crate's callback, retried
//!   while the kernel answers `EBUSY` (an earlier operation on the lock
//!   still in progress: on several nodes a grant can cross a cancel on the
//!   wire) or `ENOBUFS` (the resource's master is leaving the cluster and
//!   recovery has not started), for at most [`BUSY_PATIENCE`] (a blocking
//!   caller sleeps between tries; a future or the reaper try again later
//!   on their own timers).
//! - The wait: untimed, timed (then cancelled with `LKF_CANCEL` where
//!   [`may_cancel`] allows, and given [`CANCEL_GRACE`] to answer), or
//!   bounded in watchdog ticks.
//! - [`InFlight`]: from the moment a request is written until its answer is
//!   seen, the cell is owned by a guard whose drop — on a give-up, an early
//!   return or a panic unwinding — gives it up to the reaper
//!   ([`reaper::give_up`]) instead of freeing memory the kernel will still
//!   write into.

use crate::cell::{may_cancel, Abandon, CellRef, Delivered, Wake, CANCEL, MAIN};
use crate::error::{errno, set_errno, Error};
use crate::handle::{Core, Handle};
use crate::mode::Mode;
use crate::reaper;
use crate::wait::{Limit, NoAnswer, Waiter};
use dlm_sys as sys;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cancelled request may take to answer before its waiter gives
/// up on it (the lock is then released by the reaper if it is granted
/// later; if no answer ever comes, the kernel holds the request until the
/// lockspace handle closes). A timed-out try (`NOQUEUE`), which is never
/// cancelled (see the crate docs), gets the same grace. The default of a
/// handle; [`LockspaceBuilder::cancel_grace`](crate::LockspaceBuilder::cancel_grace)
/// sets another.
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How long an unlock may take to complete before
/// [`LockGuard::unlock`](crate::LockGuard::unlock) gives up with
/// [`Error::TimedOut`] (the kernel still carries the unlock out when it
/// can). This bounds the wait for the *answer*; it cannot bound the write
/// of the request itself, which the kernel blocks uninterruptibly while
/// the lockspace is stopped for a recovery that does not run (see the
/// crate docs, "When the cluster fails"). The default of a handle;
/// [`LockspaceBuilder::unlock_patience`](crate::LockspaceBuilder::unlock_patience)
/// sets another.
pub const UNLOCK_PATIENCE: Duration = Duration::from_secs(60);

/// How long a request is retried while the kernel answers `EBUSY` (an
/// operation on the lock still in progress) or `ENOBUFS` (the resource's
/// master unreachable while the membership changes) before
/// [`Error::InProgress`] or [`Error::Unreachable`]. The default of a
/// handle; [`LockspaceBuilder::busy_patience`](crate::LockspaceBuilder::busy_patience)
/// sets another.
pub const BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// A handle's patiences: [`CANCEL_GRACE`], [`UNLOCK_PATIENCE`] and
/// [`BUSY_PATIENCE`] unless its builder set others
/// ([`LockspaceBuilder::cancel_grace`](crate::LockspaceBuilder::cancel_grace)
/// and the two beside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Patience {
    pub(crate) cancel_grace: Duration,
    pub(crate) unlock: Duration,
    pub(crate) busy: Duration,
}

impl Default for Patience {
    fn default() -> Patience {
        Patience {
            cancel_grace: CANCEL_GRACE,
            unlock: UNLOCK_PATIENCE,
            busy: BUSY_PATIENCE,
        }
    }
}

/// What a request does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// A new lock on the resource `name`, with the transaction id `xid`
    /// (0: none, `dlm_ls_lock`; else `dlm_ls_lockx`).
    New { name: &'a [u8], xid: u64 },
    /// A conversion of the lock `lkid` (flags include `LKF_CONVERT`).
    Convert { lkid: u32 },
    /// An unlock of the lock `lkid`.
    Unlock { lkid: u32 },
}

impl Op<'_> {
    pub(crate) fn is_new(&self) -> bool {
        matches!(self, Op::New { .. })
    }

    pub(crate) fn is_unlock(&self) -> bool {
        matches!(self, Op::Unlock { .. })
    }
}

impl<'a> Op<'a> {
    /// The operation of a future's owned request.
    pub(crate) fn of(request: &'a crate::cell::Request) -> Op<'a> {
        match request {
            crate::cell::Request::New { name, len, xid } => Op::New {
                name: &name[..*len as usize],
                xid: *xid,
            },
            crate::cell::Request::Convert { lkid } => Op::Convert { lkid: *lkid },
            crate::cell::Request::Unlock { lkid } => Op::Unlock { lkid: *lkid },
        }
    }
}

/// How a request's answer is waited for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// As long as it takes, or until the timeout: then the request is
    /// cancelled (where it may be) and its answer awaited for
    /// [`CANCEL_GRACE`] more.
    Timeout(Option<Duration>),
    /// At most about this many seconds, not cancelled (unlocks).
    Patience(Duration),
}

/// The answer to a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    pub(crate) delivered: Delivered,
    /// This request's timeout expired first (and cancelled it where it
    /// could be).
    pub(crate) timed_out: bool,
    /// The thread that wrote the request: the kernel records it as the
    /// lock's owner (0: the handle's worker thread).
    pub(crate) writer_tid: u32,
}

/// The calling thread's kernel id (`gettid`), cached per thread (a system
/// call is dear on the hot path) and per process generation (a fork's
/// child has its own).
pub(crate) fn thread_id() -> u32 {
    thread_local! {
        static TID: std::cell::Cell<(u32, u32)> = const { std::cell::Cell::new((u32::MAX, 0)) };
    }
    let generation = crate::fork::generation();
    TID.with(|t| {
        let (g, tid) = t.get();
        if g == generation {
            return tid;
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        t.set((generation, tid));
        tid
    })
}

/// The libdlm call of one request: `Ok` with the lock id it names (for a
/// new request, the id libdlm stored on this thread after the write), or
/// the `errno` of a refusal.
///
/// # Safety
/// The cell's handshake is `WAITING` for this request (or it is answered
/// in the write: an adoption), its owner is the caller, and the cell stays
/// owned until the request's answer is seen.
pub(crate) unsafe fn syscall(
    handle: &Core,
    cell: &CellRef,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Result<u32, i32> {
    set_errno(0);
    // SAFETY: the caller's contract keeps the status block and value block
    // buffer alive and fixed until the answer; libdlm copies the name (and
    // reads the transaction id from its local) during the call.
    let rc = unsafe {
        match op {
            Op::New { name, xid } if xid != 0 => {
                let mut xid = xid;
                sys::dlm_ls_lockx(
                    handle.raw(),
                    mode.as_raw(),
                    cell.lksb_ptr(MAIN),
                    flags,
                    name.as_ptr().cast(),
                    name.len() as u32,
                    0,
                    Some(crate::cell::completion_ast),
                    cell.arg(MAIN),
                    cell.bast_fn(),
                    &mut xid,
                    std::ptr::null_mut(),
                )
            }
            Op::New { name, .. } => sys::dlm_ls_lock(
                handle.raw(),
                mode.as_raw(),
                cell.lksb_ptr(MAIN),
                flags,
                name.as_ptr().cast(),
                name.len() as u32,
                0,
                Some(crate::cell::completion_ast),
                cell.arg(MAIN),
                cell.bast_fn(),
                std::ptr::null_mut(),
            ),
            // libdlm takes the lock id from the status block, where it has
            // been since the lock's first answer.
            Op::Convert { .. } => sys::dlm_ls_lock(
                handle.raw(),
                mode.as_raw(),
                cell.lksb_ptr(MAIN),
                flags,
                std::ptr::null(),
                0,
                0,
                Some(crate::cell::completion_ast),
                cell.arg(MAIN),
                cell.bast_fn(),
                std::ptr::null_mut(),
            ),
            Op::Unlock { lkid } => sys::dlm_ls_unlock(
                handle.raw(),
                lkid,
                flags,
                cell.lksb_ptr(MAIN),
                cell.arg(MAIN),
            ),
        }
    };
    if rc == 0 {
        return Ok(match op {
            Op::New { .. } => cell.lkid_after_request(),
            Op::Convert { lkid } | Op::Unlock { lkid } => lkid,
        });
    }
    Err(errno())
}

/// The error of a refused write.
pub(crate) fn refusal(handle: &Core, op: Op<'_>, code: i32) -> Error {
    let op_name = if op.is_unlock() {
        "dlm_ls_unlock"
    } else {
        "dlm_ls_lock"
    };
    match code {
        // EBUSY: an earlier operation on the lock still in progress.
        // ENOBUFS: no message could be made for the resource's master (it
        // is leaving the cluster; recovery has not started).
        libc::EBUSY | libc::ENOBUFS => Error::from_errno(op_name, code),
        _ if handle.is_down() => handle.gone_error(),
        code => Error::from_errno(op_name, code),
    }
}

/// Writes the request once; on success, the lock id it names (for a new
/// request, the id libdlm stored on this thread after the write).
///
/// `EBUSY` and `ENOBUFS` are slept on and sent again for up to
/// [`BUSY_PATIENCE`] when `wake` is a thread; for the reaper they are
/// returned at once ([`Error::InProgress`], [`Error::Unreachable`]), to be
/// tried again on its timer.
///
/// # Safety
/// The caller owns `cell` and no request of it is in flight; the cell
/// stays owned (by the caller, or given up to the reaper) until the
/// request's answer is seen.
pub(crate) unsafe fn write(
    handle: &Core,
    cell: &CellRef,
    wake: Wake,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Result<u32, Error> {
    let mut busy_since = None::<Instant>;
    let mut backoff = Duration::from_millis(1);
    let sleeps = matches!(wake, Wake::Thread(_));
    loop {
        if handle.is_stalled() {
            // The kernel would block this write for ever.
            return Err(Error::LockspaceStopped);
        }
        // SAFETY: the caller owns the cell and nothing is in flight.
        unsafe { cell.hs.begin(wake.clone()) };
        // SAFETY: WAITING for this request (just above); the caller's
        // contract.
        let code = match unsafe { syscall(handle, cell, op, mode, flags) } {
            Ok(lkid) => return Ok(lkid),
            Err(code) => code,
        };
        // SAFETY: refused: no answer will come for this request.
        unsafe { cell.hs.refused() };
        let error = refusal(handle, op, code);
        if matches!(error, Error::InProgress | Error::Unreachable) && sleeps {
            let since = *busy_since.get_or_insert_with(Instant::now);
            if since.elapsed() < handle.patience().busy {
                crate::stats::count_retry(&error);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
                continue;
            }
        }
        return Err(error);
    }
}

/// A cell with a request in flight. Dropped before the answer was seen —
/// a give-up, an early return, a panic unwinding — it gives the cell up to
/// the reaper ([`reaper::give_up`]), never frees it.
struct InFlight<'a> {
    handle: &'a Arc<Handle>,
    cell: Option<CellRef>,
    how: Abandon,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            // A blocking request is written by this thread: never refused
            // by the worker, so nothing is given back.
            drop(reaper::give_up(self.handle, cell, self.how));
        }
    }
}

/// The answer as the caller sees it: a lockspace known to be released by
/// now grants nothing (the lock went with it).
pub(crate) fn settle(
    handle: &Core,
    cell: CellRef,
    answered: Answered,
) -> (Option<CellRef>, Result<Answered, Error>) {
    if handle.is_gone() {
        // The kernel may still name the cell (blocking notifications):
        // kept until the handle closes.
        handle.keep(cell);
        return (None, Err(Error::LockspaceGone));
    }
    (Some(cell), Ok(answered))
}

/// Makes one request of `cell` and waits for its answer as `wait` says.
///
/// Returns the cell with the answer; with an error, the cell too if the
/// request was refused before it reached the kernel (nothing in flight),
/// or `None` if it was given up (to the reaper) or the lockspace is gone.
pub(crate) fn run(
    handle: &Arc<Handle>,
    cell: CellRef,
    how: Abandon,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
    wait: Wait,
) -> (Option<CellRef>, Result<Answered, Error>) {
    Waiter::with(|w| {
        // SAFETY: the caller owns the cell between requests and nothing is
        // in flight; from here on it is either returned after its answer or
        // given up by `flight`.
        let lkid = match unsafe { write(handle, &cell, w.wake(), op, mode, flags) } {
            Ok(lkid) => lkid,
            Err(e) => return (Some(cell), Err(e)),
        };
        let mut flight = InFlight {
            handle,
            cell: Some(cell),
            how,
        };
        let cell = flight.cell.as_ref().expect("set");
        match await_answer(handle, cell, w, op, lkid, flags, wait) {
            Ok((delivered, timed_out)) => {
                let cell = flight.cell.take().expect("set");
                let answered = Answered {
                    delivered,
                    timed_out,
                    writer_tid: thread_id(),
                };
                settle(handle, cell, answered)
            }
            // `flight` drops here: the cell is given up.
            Err(e) => (None, Err(e)),
        }
    })
}

/// Waits for the answer to the request in flight on `cell`.
fn await_answer(
    handle: &Core,
    cell: &CellRef,
    w: &Waiter,
    op: Op<'_>,
    lkid: u32,
    flags: u32,
    wait: Wait,
) -> Result<(Delivered, bool), Error> {
    let alive = || handle.is_alive();
    let drive = |ms: i32| handle.drive_until(ms, Some(&cell.hs));
    let drive: Option<&dyn Fn(i32) -> bool> = if handle.is_polled() {
        Some(&drive)
    } else {
        None
    };
    let (limit, cancels) = match wait {
        Wait::Timeout(t) => (Limit::after(t), true),
        Wait::Patience(p) => (Limit::Ticks(p.as_secs().max(1) as u32), false),
    };
    match w.wait(&cell.hs, limit, &alive, drive) {
        Ok(delivered) => return Ok((delivered, false)),
        Err(NoAnswer::Gone) => return Err(handle.gone_error()),
        Err(NoAnswer::Expired) if !cancels => return Err(Error::TimedOut),
        Err(NoAnswer::Expired) => {}
    }
    if handle.is_stalled() {
        // The cancel's write would block for ever.
        return Err(Error::LockspaceStopped);
    }
    cancel(handle, cell, op, lkid, flags);
    let grace = handle.patience().cancel_grace;
    match w.wait(&cell.hs, Limit::after(Some(grace)), &alive, drive) {
        Ok(delivered) => Ok((delivered, true)),
        Err(NoAnswer::Gone) => Err(handle.gone_error()),
        Err(NoAnswer::Expired) => Err(Error::TimedOut),
    }
}

/// Cancels the request in flight on `cell` (`dlm_ls_unlock` with
/// `LKF_CANCEL`, on the cell's second status block: the request's answer
/// may be arriving on libdlm's thread, and libdlm writes into the status
/// block it is given) — only where [`may_cancel`] proves that the lock id
/// can still be only this cell's, and only while the answer has not come.
/// A cancel that finds the lock granted succeeds quietly and the grant is
/// the answer; either way, one answer to the request comes. Returns
/// whether a cancel was written.
///
/// The caller owns the cell and its request (lock id `lkid`, sent with
/// `flags`) is in flight.
pub(crate) fn cancel(handle: &Core, cell: &CellRef, op: Op<'_>, lkid: u32, flags: u32) -> bool {
    if !cell.hs.is_waiting() {
        return false;
    }
    cancel_unanswered(handle, cell, op, lkid, flags)
}

/// [`cancel`] for a request whose answer the caller knows has not been
/// taken (waiting, or given up and unanswered): the [`may_cancel`] rule
/// alone decides.
pub(crate) fn cancel_unanswered(
    handle: &Core,
    cell: &CellRef,
    op: Op<'_>,
    lkid: u32,
    flags: u32,
) -> bool {
    if !may_cancel(op.is_new(), op.is_unlock(), flags) || lkid == 0 {
        return false;
    }
    if handle.is_stalled() || handle.forked() {
        return false; // the write would block for ever, or act on the parent's lock
    }
    // SAFETY: the cell is alive (the caller owns it, its request in
    // flight); the CANCEL status block is used by no other request; the
    // lock id is this cell's (`may_cancel`).
    unsafe {
        sys::dlm_ls_unlock(
            handle.raw(),
            lkid,
            sys::LKF_CANCEL,
            cell.lksb_ptr(CANCEL),
            cell.arg(CANCEL),
        )
    };
    true
}

/// Writes a request that the kernel answers in the `write` itself (the
/// adoption of an orphan): no answer comes for it. Returns the lock id.
pub(crate) fn write_only(
    handle: &Core,
    cell: &CellRef,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Result<u32, Error> {
    Waiter::with(|w| {
        // SAFETY: the caller's cell is new (nothing in flight) and on the
        // heap; no answer will name it for this request.
        let result = unsafe { write(handle, cell, w.wake(), op, mode, flags) };
        if result.is_ok() {
            // SAFETY: answered in the write: nothing is in flight.
            unsafe { cell.hs.refused() };
        }
        result
    })
}
