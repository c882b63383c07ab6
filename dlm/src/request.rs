//! Writing one request to the kernel and waiting for its answer: the one
//! path every lock, conversion, unlock (and the reaper's clean-up) takes.
//!
//! - `dlm_ls_lock` / `dlm_ls_unlock` with this crate's AST, retried while
//!   the kernel answers `EBUSY` (an earlier operation on the lock still in
//!   progress: on several nodes a grant can cross a cancel on the wire) or
//!   `ENOBUFS` (the resource's master is leaving the cluster and recovery
//!   has not started), for at most [`BUSY_PATIENCE`].
//! - The wait: untimed, timed (then cancelled with `LKF_CANCEL` and given
//!   [`CANCEL_GRACE`] to answer), or bounded in watchdog ticks.
//! - [`InFlight`]: from the moment a request is written until its answer is
//!   seen, the cell is owned by a guard whose drop — on a give-up, an early
//!   return or a panic unwinding — abandons it to its lockspace instead of
//!   freeing memory the kernel will still write into.

use crate::ast::{Abandon, CellBox, Delivered, Limit, LockCell, NoAnswer, Waiter, CANCEL, MAIN};
use crate::error::{errno, set_errno, Error};
use crate::lockspace::Inner;
use crate::mode::Mode;
use dlm_sys as sys;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a cancelled request may take to answer before its waiter gives
/// up on it (the lock is then released by the reaper if it is granted
/// later; if no answer ever comes, the kernel holds the request until the
/// lockspace handle closes).
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How long an unlock may take to complete before
/// [`LockGuard::unlock`](crate::LockGuard::unlock) gives up with
/// [`Error::TimedOut`] (the kernel still carries the unlock out when it
/// can). This bounds the wait for the *answer*; it cannot bound the write
/// of the request itself, which the kernel blocks uninterruptibly while
/// the lockspace is stopped for a recovery that does not run (see the
/// crate docs, "When the cluster fails").
pub const UNLOCK_PATIENCE: Duration = Duration::from_secs(60);

/// How long a request is retried while the kernel answers `EBUSY` (an
/// operation on the lock still in progress) or `ENOBUFS` (the resource's
/// master unreachable while the membership changes) before
/// [`Error::InProgress`] or [`Error::Unreachable`].
pub const BUSY_PATIENCE: Duration = Duration::from_secs(10);

/// What a request does.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    /// A new lock on the resource `name`.
    New { name: &'a [u8] },
    /// A conversion of the lock `lkid` (flags include `LKF_CONVERT`).
    Convert { lkid: u32 },
    /// An unlock of the lock `lkid`.
    Unlock { lkid: u32 },
}

/// How a request's answer is waited for.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Wait {
    /// As long as it takes, or until the timeout: then the request is
    /// cancelled and its answer awaited for [`CANCEL_GRACE`] more.
    Timeout(Option<Duration>),
    /// At most about this many seconds, not cancelled (unlocks).
    Patience(Duration),
}

/// The answer to a request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answered {
    pub(crate) delivered: Delivered,
    /// This request's timeout cancelled it first.
    pub(crate) timed_out: bool,
}

/// Writes the request, retrying while the kernel answers `EBUSY` or
/// `ENOBUFS`.
///
/// # Safety
/// No request of `cell` is in flight, and `cell` stays at its address
/// until the request's answer is seen or the cell is abandoned.
///
/// `w`: the waiting thread (`None` for an async request, whose task is
/// woken through the cell). Without it, an `EBUSY` or `ENOBUFS` is not
/// slept on but answered [`Error::InProgress`] or [`Error::Unreachable`]
/// at once, for the future to retry later.
pub(crate) unsafe fn write(
    inner: &Inner,
    cell: &LockCell,
    w: Option<&Waiter>,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Result<(), Error> {
    let mut busy_since = None::<Instant>;
    let mut backoff = Duration::from_millis(1);
    loop {
        if inner.is_stalled() {
            // The kernel would block this write for ever.
            return Err(Error::LockspaceStopped);
        }
        // SAFETY: no request in flight (the caller's contract).
        unsafe { cell.prepare(w) };
        set_errno(0);
        // SAFETY: the caller's contract keeps the lksb and LVB buffer alive
        // and fixed until the answer; libdlm copies the name during the
        // call.
        let rc = unsafe {
            match op {
                Op::New { name } => sys::dlm_ls_lock(
                    inner.handle(),
                    mode.as_raw(),
                    cell.lksb_ptr(MAIN),
                    flags,
                    name.as_ptr().cast(),
                    name.len() as u32,
                    0,
                    Some(crate::ast::completion_ast),
                    cell.arg(MAIN),
                    cell.bast_fn(),
                    std::ptr::null_mut(),
                ),
                // libdlm takes the lock id from the lksb, where it has been
                // since the lock's first answer.
                Op::Convert { .. } => sys::dlm_ls_lock(
                    inner.handle(),
                    mode.as_raw(),
                    cell.lksb_ptr(MAIN),
                    flags,
                    std::ptr::null(),
                    0,
                    0,
                    Some(crate::ast::completion_ast),
                    cell.arg(MAIN),
                    cell.bast_fn(),
                    std::ptr::null_mut(),
                ),
                Op::Unlock { lkid } => sys::dlm_ls_unlock(
                    inner.handle(),
                    lkid,
                    flags,
                    cell.lksb_ptr(MAIN),
                    cell.arg(MAIN),
                ),
            }
        };
        if rc == 0 {
            return Ok(());
        }
        let code = errno();
        // Refused: no AST will come for this request.
        cell.unprepare();
        // EBUSY: an earlier operation on the lock still in progress.
        // ENOBUFS: no message could be made for the resource's master (it
        // is leaving the cluster; recovery has not started). Both pass:
        // sent again, for at most BUSY_PATIENCE.
        if matches!(code, libc::EBUSY | libc::ENOBUFS) {
            let retry = Error::from_errno("dlm_ls_lock", code);
            if w.is_none() {
                // The future retries on its own timer.
                return Err(retry);
            }
            let since = *busy_since.get_or_insert_with(Instant::now);
            if since.elapsed() < BUSY_PATIENCE {
                crate::stats::count_retry(&retry);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_millis(50));
                continue;
            }
            return Err(retry);
        }
        let op_name = match op {
            Op::Unlock { .. } => "dlm_ls_unlock",
            _ => "dlm_ls_lock",
        };
        return Err(match code {
            _ if !inner.is_alive() => Error::LockspaceGone,
            code => Error::from_errno(op_name, code),
        });
    }
}

/// A cell with a request in flight. Dropped before the answer was seen —
/// a give-up, an early return, a panic unwinding — it abandons the cell to
/// its lockspace (see [`give_up`]), never frees it.
pub(crate) struct InFlight<'a> {
    inner: &'a Arc<Inner>,
    cell: Option<CellBox>,
    how: Abandon,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Some(cell) = self.cell.take() {
            give_up(self.inner, cell, self.how);
        }
    }
}

/// Gives up on the request in flight on `cell`: if its answer has not
/// come, the cell goes to the lockspace's keeping and the AST deals with
/// the answer; if it has, a lock it leaves held goes to the reaper.
pub(crate) fn give_up(inner: &Arc<Inner>, cell: CellBox, how: Abandon) {
    crate::stats::count(&crate::stats::GIVEN_UP);
    // In the lockspace's keeping first: once the abandon is published, a
    // late answer can reach the reaper, which frees the cell from there.
    let addr = cell.addr();
    // SAFETY: the cell lives in the graveyard until the lockspace closes
    // (it cannot close: `inner` is held) or the reaper frees it, which it
    // does only after the abandon below.
    let cell_ref = unsafe { &*(addr as *const LockCell) };
    inner.park(cell);
    match cell_ref.abandon(how, inner) {
        Ok(()) => {}
        Err(d) if how.leaves_held(d.answer.status) => {
            cell_ref.set_reaping();
            crate::reaper::reap_later(Arc::downgrade(inner), cell_ref, d.lkid);
        }
        // The answer ended the lock: no AST names the cell any more.
        Err(_) => inner.free_parked(addr),
    }
}

/// Gives a held lock nobody owns to the reaper.
pub(crate) fn hand_to_reaper(inner: &Arc<Inner>, cell: CellBox, lkid: u32) {
    cell.set_reaping();
    let addr = cell.addr();
    inner.park(cell);
    // SAFETY: the cell is alive in `inner`'s keeping, and `inner` is open.
    crate::reaper::reap_later(
        Arc::downgrade(inner),
        unsafe { &*(addr as *const LockCell) },
        lkid,
    );
}

/// Makes one request of `cell` and waits for its answer as `wait` says.
///
/// Returns the cell with the answer; with an error, the cell too if the
/// request was refused before it reached the kernel (nothing in flight),
/// or `None` if it was given up (the lockspace keeps it).
pub(crate) fn run(
    inner: &Arc<Inner>,
    cell: CellBox,
    how: Abandon,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
    wait: Wait,
) -> (Option<CellBox>, Result<Answered, Error>) {
    Waiter::with(|w| {
        // SAFETY: no request of the cell is in flight (each caller owns
        // the cell between requests); the cell is boxed, and from here on
        // it is either returned after its answer or abandoned by `flight`.
        if let Err(e) = unsafe { write(inner, &cell, Some(w), op, mode, flags) } {
            return (Some(cell), Err(e));
        }
        let mut flight = InFlight {
            inner,
            cell: Some(cell),
            how,
        };
        let result = await_answer(inner, flight.cell.as_deref().expect("set"), w, op, wait);
        match result {
            Ok(answered) => (flight.cell.take(), Ok(answered)),
            // `flight` drops here: the cell is given up.
            Err(e) => (None, Err(e)),
        }
    })
}

/// Waits for the answer to the request in flight on `cell`.
fn await_answer(
    inner: &Inner,
    cell: &LockCell,
    w: &Waiter,
    op: Op<'_>,
    wait: Wait,
) -> Result<Answered, Error> {
    let alive = || inner.is_alive();
    let (limit, cancels) = match wait {
        Wait::Timeout(t) => (Limit::after(t), true),
        Wait::Patience(p) => (Limit::Ticks(p.as_secs().max(1) as u32), false),
    };
    let poll = inner.is_polled().then_some(inner);
    match w.wait(cell, limit, &alive, poll) {
        Ok(delivered) => {
            return Ok(Answered {
                delivered,
                timed_out: false,
            })
        }
        Err(NoAnswer::Gone) => return Err(inner.gone_error()),
        Err(NoAnswer::Expired) if !cancels => return Err(Error::TimedOut),
        Err(NoAnswer::Expired) => {}
    }
    if inner.is_stalled() {
        // The cancel's write would block for ever.
        return Err(Error::LockspaceStopped);
    }
    cancel(inner, cell, op);
    match w.wait(cell, Limit::after(Some(CANCEL_GRACE)), &alive, poll) {
        Ok(delivered) => Ok(Answered {
            delivered,
            timed_out: true,
        }),
        Err(NoAnswer::Gone) => Err(inner.gone_error()),
        Err(NoAnswer::Expired) => Err(Error::TimedOut),
    }
}

/// Cancels the request in flight on `cell` (`dlm_ls_unlock` with
/// `LKF_CANCEL`, on the cell's second lksb: the request's AST may be
/// running on libdlm's thread, and libdlm writes into the lksb it is
/// given). A cancel that finds the lock granted succeeds quietly and the
/// grant is the answer; either way, one answer to the request comes.
pub(crate) fn cancel(inner: &Inner, cell: &LockCell, op: Op<'_>) {
    if inner.is_stalled() {
        return; // the write would block for ever
    }
    let lkid = match op {
        Op::New { .. } => cell.lkid_after_request(),
        Op::Convert { lkid } | Op::Unlock { lkid } => lkid,
    };
    // SAFETY: the cell is alive (its request is in flight and its owner
    // holds it); the CANCEL lksb is used by no other request.
    unsafe {
        sys::dlm_ls_unlock(
            inner.handle(),
            lkid,
            sys::LKF_CANCEL,
            cell.lksb_ptr(CANCEL),
            cell.arg(CANCEL),
        )
    };
}

/// The reaper's request on a cell in the lockspace's keeping: write (with
/// `EBUSY` retries), wait about a minute. `Some(status)` when answered;
/// `None` when refused or given up again (a late answer then comes back to
/// the reaper).
pub(crate) fn run_parked(
    inner: &Arc<Inner>,
    cell: &LockCell,
    w: &Waiter,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Option<i32> {
    // SAFETY: the reaper owns the cell (REAPING: no request in flight); it
    // stays alive in `inner`'s keeping while `inner` is held.
    if unsafe { write(inner, cell, Some(w), op, mode, flags) }.is_err() {
        return None;
    }
    // In poll mode the program's own dispatching delivers the answer (the
    // reaper never reads a poll-mode descriptor: that would stall the
    // program's dispatch); the wait is timed, so that one lockspace whose
    // program stopped dispatching cannot hold up the reaper for ever.
    let limit = if inner.is_polled() {
        Limit::after(Some(UNLOCK_PATIENCE))
    } else {
        Limit::Ticks(UNLOCK_PATIENCE.as_secs() as u32)
    };
    match w.wait(cell, limit, &|| inner.is_alive(), None) {
        Ok(d) => Some(d.answer.status),
        Err(_) => match cell.abandon(
            match op {
                Op::Unlock { .. } => Abandon::Unlock,
                _ => Abandon::Held,
            },
            inner,
        ) {
            Ok(()) => None,
            Err(d) => Some(d.answer.status),
        },
    }
}

/// Writes a request that the kernel answers in the `write` itself (the
/// adoption of an orphan): no AST comes for it.
pub(crate) fn write_only(
    inner: &Inner,
    cell: &LockCell,
    op: Op<'_>,
    mode: Mode,
    flags: u32,
) -> Result<(), Error> {
    Waiter::with(|w| {
        // SAFETY: the caller's cell is new (no request in flight) and
        // boxed; no AST will name it for this request.
        let result = unsafe { write(inner, cell, Some(w), op, mode, flags) };
        cell.unprepare();
        result
    })
}
