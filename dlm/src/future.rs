//! The async front-end: futures over the same completion path.
//!
//! A future hands its request to its handle's worker thread (the reaper's,
//! see [`crate::reaper`]), which writes it, and registers its task's waker
//! in the lock's cell: the callback that delivers the answer (on libdlm's
//! thread in the default mode, on the thread that calls
//! [`Lockspace::dispatch`] in poll mode) wakes the task. The kernel blocks
//! a write for as long as the DLM's recovery runs (1.5 s measured after a
//! peer's crash): no `poll` and no `drop` of a future makes a system call
//! that can block. No runtime is needed; deadlines (timeouts, liveness
//! checks) are kept by one process-wide timer thread. Every future is
//! `Send`.
//!
//! Dropping a future whose request is in flight asks the worker to cancel
//! the request (where a cancel may be written) and gives its cell up to the
//! lockspace, exactly as a blocking call that gives up: whatever the kernel
//! answers later, the reaper releases a lock it leaves held, and no memory
//! the kernel writes into is freed.

use crate::cell::{Abandon, Blocking, BlockingReceiver, CellRef, Job, Request, Wake};
use crate::error::{Error, Result};
use crate::guard::{needs_probe, DropBehavior, LockGuard, WithLockError};
use crate::handle::Handle;
use crate::lockspace::Lockspace;
use crate::mode::Mode;
use crate::name::MAX_RESOURCE_NAME;
use crate::options::LockOptions;
use crate::reaper;
use crate::request::{self, Answered, Op};
use crate::state::{Granted, ReleasePlan};
use crate::timer::Timer;
use crate::wait::{TickSlot, LIVENESS_PERIOD};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
enum Step {
    /// Not handed to the worker yet.
    Unsent,
    /// Handed to the handle's worker, which writes it: at `deadline`
    /// cancelled (where it may be), and given up when it passes again
    /// after that.
    Sent {
        deadline: Option<Instant>,
        timed_out: bool,
        /// The thread that wrote it (0: the handle's worker).
        writer_tid: u32,
    },
}

/// One request, handed to the handle's worker thread at the first poll
/// (the kernel can block a write for as long as a recovery runs: never on
/// the executor's thread), its answer awaited.
struct RequestFuture {
    handle: Arc<Handle>,
    cell: Option<CellRef>,
    how: Abandon,
    request: Request,
    mode: Mode,
    flags: u32,
    timeout: Option<Duration>,
    step: Step,
    timer: Timer,
    /// The future's place among those the watchdog wakes at each tick
    /// (taken at the first poll that waits), and the tick at which the
    /// lockspace's liveness was last looked at.
    tick_slot: Option<TickSlot>,
    checked_tick: Option<u32>,
    /// The instant the timer is set for, and the task it wakes.
    armed: Option<(Instant, std::task::Waker)>,
}

impl RequestFuture {
    fn new(
        handle: Arc<Handle>,
        cell: CellRef,
        how: Abandon,
        request: Request,
        mode: Mode,
        flags: u32,
        timeout: Option<Duration>,
    ) -> RequestFuture {
        RequestFuture {
            handle,
            cell: Some(cell),
            how,
            request,
            mode,
            flags,
            timeout,
            step: Step::Unsent,
            timer: Timer::default(),
            tick_slot: None,
            checked_tick: None,
            armed: None,
        }
    }

    /// Gives the cell up (its answer did not come in time, or the
    /// lockspace is gone).
    fn give_up(&mut self) {
        if let Some(cell) = self.cell.take() {
            if let Some(cell) = reaper::give_up(&self.handle, cell, self.how) {
                self.unsent(cell);
            }
        }
    }

    /// The cell of a request never written: a held lock's goes to the
    /// reaper, which releases the lock; a new request's names no lock.
    fn unsent(&self, cell: CellRef) {
        match self.request {
            Request::Convert { lkid } | Request::Unlock { lkid } => {
                reaper::release(&self.handle, cell, lkid, None);
            }
            Request::New { .. } => drop(cell),
        }
    }

    /// Asks the worker to cancel the request (it does where a cancel may
    /// be written, and only if it wrote the request and it is unanswered).
    fn cancel(&self, cell: &CellRef) {
        if matches!(self.request, Request::Unlock { .. }) {
            return;
        }
        // Before the job: the worker clears it once done with the cancel.
        cell.hs.queue_cancel();
        self.handle.handoff().push(Job::Cancel {
            cell: cell.clone(),
            request: self.request,
            flags: self.flags,
        });
    }

    /// The liveness check of a request in flight: the error to end with
    /// if the lockspace is gone.
    fn gone(&mut self) -> Option<Error> {
        if self.handle.is_alive() {
            return None;
        }
        let e = self.handle.gone_error();
        self.give_up();
        Some(e)
    }
}

impl Future for RequestFuture {
    type Output = (Option<CellRef>, Result<Answered>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let Some(cell) = this.cell.as_ref() else {
            return Poll::Ready((None, Err(Error::GivenUp)));
        };
        // Registered before every check, so an answer delivered after the
        // check wakes this task.
        cell.hs.task.register(cx.waker());
        if let Step::Unsent = this.step {
            if let Err(e) = this.handle.check() {
                // The cell goes back to its owner: not with this task's
                // waker (a held lock's cell keeps no task alive).
                cell.hs.task.clear();
                return Poll::Ready((this.cell.take(), Err(e)));
            }
            // The liveness checks of futures come from the watchdog's
            // ticks (a poll-mode handle does not start it at open).
            crate::wait::start_watchdog();
            reaper::start(&this.handle);
            // SAFETY: the future owns the cell and nothing of it is in
            // flight; from here on the cell is either returned after its
            // answer (or the worker's refusal) or given up (poll or drop).
            unsafe { cell.hs.begin(Wake::Task) };
            let mut writer_tid = 0;
            let mut queue = true;
            if this.handle.writes_in_poll() {
                let op = Op::of(&this.request);
                // SAFETY: WAITING for this request (above); the future owns
                // the cell until the answer or gives it up.
                match unsafe { request::syscall(&this.handle, cell, op, this.mode, this.flags) } {
                    Ok(lkid) => {
                        if op.is_new() {
                            cell.written_lkid.store(lkid, Ordering::Release);
                        }
                        writer_tid = request::thread_id();
                        queue = false;
                    }
                    // Refused for a while: the worker tries again.
                    Err(libc::EBUSY | libc::ENOBUFS) => {}
                    Err(code) => {
                        // SAFETY: refused: no answer will come.
                        unsafe { cell.hs.refused() };
                        cell.hs.task.clear();
                        let e = request::refusal(&this.handle, op, code);
                        return Poll::Ready((this.cell.take(), Err(e)));
                    }
                }
            }
            if queue {
                this.handle.handoff().push(Job::Write {
                    cell: cell.clone(),
                    request: this.request,
                    mode: this.mode,
                    flags: this.flags,
                });
            }
            this.step = Step::Sent {
                deadline: this.timeout.and_then(|t| Instant::now().checked_add(t)),
                timed_out: false,
                writer_tid,
            };
        }
        let Step::Sent {
            deadline,
            timed_out,
            writer_tid,
        } = this.step
        else {
            unreachable!("handed over above")
        };
        // Not while a cancel it queued is pending: the worker wakes the task
        // once it has written or skipped it.
        if cell.hs.may_take() {
            if let Some(delivered) = cell.hs.take() {
                let cell = this.cell.take().expect("checked above");
                // The task's waker, registered for this answer: not kept
                // while the lock is held.
                cell.hs.task.clear();
                let answered = Answered {
                    delivered,
                    timed_out,
                    // 0: the handle's worker wrote it; its id is looked up
                    // when asked for (`LockGuard::owner_tid`).
                    writer_tid,
                };
                return Poll::Ready(request::settle(&this.handle, cell, answered));
            }
            if let Some(code) = cell.hs.take_failure() {
                // Refused before it reached the kernel: nothing in flight,
                // the cell is the future's again.
                let unlock = matches!(this.request, Request::Unlock { .. });
                let e = reaper::error_of_failure(unlock, code);
                cell.hs.task.clear();
                return Poll::Ready((this.cell.take(), Err(e)));
            }
        }
        // The watchdog wakes the task at each tick (about once a second,
        // and at once when a lockspace's device is deleted or dlm_controld
        // exits; through the future's place among those it wakes, no
        // clock read), and the poll after a tick checks that the
        // lockspace can still answer. Registered before the tick is read:
        // the watchdog advances the count before it wakes the places, so
        // a tick this poll does not see wakes the task again.
        this.tick_slot
            .get_or_insert_with(TickSlot::new)
            .register(cx.waker());
        let tick = crate::wait::ticks();
        if this.checked_tick != Some(tick) {
            let checked = this.checked_tick.replace(tick);
            if checked.is_some() {
                if let Some(e) = this.gone() {
                    return Poll::Ready((None, Err(e)));
                }
            }
        }
        let Some(mut deadline) = deadline else {
            return Poll::Pending;
        };
        let now = Instant::now();
        if now >= deadline {
            if timed_out {
                this.give_up();
                return Poll::Ready((None, Err(Error::TimedOut)));
            }
            if let Some(cell) = this.cell.as_ref() {
                this.cancel(cell);
            }
            deadline = now + this.handle.patience().cancel_grace;
            this.step = Step::Sent {
                deadline: Some(deadline),
                timed_out: true,
                writer_tid,
            };
        }
        // Woken at the deadline, or in a second to check that the
        // lockspace still exists.
        let at = deadline.min(now + LIVENESS_PERIOD);
        // Armed for this task at or before `at`, and not yet passed: that
        // wake-up comes first (a poll then arms again); no new
        // registration.
        let same = this
            .armed
            .as_ref()
            .is_some_and(|(t, w)| *t <= at && *t > now && w.will_wake(cx.waker()));
        if !same {
            this.timer.set(at, cx.waker());
            this.armed = Some((at, cx.waker().clone()));
        }
        Poll::Pending
    }
}

impl Drop for RequestFuture {
    fn drop(&mut self) {
        let Some(cell) = self.cell.take() else {
            return;
        };
        if self.handle.forked() {
            // A fork's child: the lock and the cell's memory are the
            // parent's (the kernel writes the parent's copy); anything
            // written here would act on the parent's request. Leave both.
            std::mem::forget(cell);
            return;
        }
        match self.step {
            Step::Sent { timed_out, .. } => {
                // Cancelled by the worker where no answer can have ended
                // the lock (see `may_cancel`), and only while unanswered;
                // given up: the reaper takes whatever answer comes (or the
                // worker takes the cell back if it had not written it).
                // Nothing here writes: a drop never blocks.
                if !timed_out {
                    self.cancel(&cell);
                }
                if let Some(cell) = reaper::give_up(&self.handle, cell, self.how) {
                    self.unsent(cell);
                }
            }
            // Never handed over.
            Step::Unsent => self.unsent(cell),
        }
    }
}

impl Lockspace {
    /// [`lock`](Lockspace::lock) as a future: takes the lock `name` in
    /// `mode`, waiting as long as it takes, without blocking a thread.
    /// Dropping the future before it is ready cancels the request (a grant
    /// that comes anyway is released in the background).
    ///
    /// The guard it gives releases its lock in the background when dropped
    /// ([`DropBehavior::Background`]); await
    /// [`LockGuard::unlock_async`] for a release complete on return.
    ///
    /// # Errors
    /// As [`lock`](Lockspace::lock).
    pub async fn lock_async(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        self.lock_with_async(name, mode, LockOptions::new()).await
    }

    /// [`try_lock`](Lockspace::try_lock) as a future.
    ///
    /// # Errors
    /// As [`try_lock`](Lockspace::try_lock).
    pub async fn try_lock_async(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        self.lock_with_async(name, mode, LockOptions::new().no_wait())
            .await
    }

    /// [`lock_with`](Lockspace::lock_with) as a future: a timeout is kept
    /// by the crate's timer thread (no runtime needed), and cancels the
    /// request as the blocking call does.
    ///
    /// # Errors
    /// As [`lock_with`](Lockspace::lock_with).
    pub async fn lock_with_async(
        &self,
        name: impl AsRef<[u8]>,
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        let future = self.request_future(name.as_ref(), mode, options)?;
        let (cell, result) = future.await;
        let mut guard = LockGuard::from_answer(self, cell, mode, options, result?)?;
        guard.set_drop_behavior(DropBehavior::Background);
        Ok(guard)
    }

    fn request_future(
        &self,
        name: &[u8],
        mode: Mode,
        options: LockOptions,
    ) -> Result<RequestFuture> {
        let (name, cell) = LockGuard::prepare_new(self, name, mode, options)?;
        let mut owned = [0u8; MAX_RESOURCE_NAME];
        owned[..name.len()].copy_from_slice(name);
        Ok(RequestFuture::new(
            self.inner.clone(),
            cell,
            Abandon::Request,
            Request::New {
                name: owned,
                len: name.len() as u8,
                xid: options.xid,
            },
            mode,
            options.flags.bits(),
            options.timeout,
        ))
    }
}

impl LockGuard {
    /// [`convert`](LockGuard::convert) as a future.
    ///
    /// # Errors
    /// As [`convert_with`](LockGuard::convert_with).
    pub async fn convert_async(&mut self, mode: Mode) -> Result<Granted> {
        self.convert_with_async(mode, LockOptions::new()).await
    }

    /// [`convert_with`](LockGuard::convert_with) as a future. Dropping it
    /// before it is ready cancels the conversion and gives the lock up: it
    /// is released in the background, and [`is_held`](LockGuard::is_held)
    /// says `false`.
    ///
    /// # Errors
    /// As [`convert_with`](LockGuard::convert_with).
    pub async fn convert_with_async(
        &mut self,
        mode: Mode,
        options: LockOptions,
    ) -> Result<Granted> {
        let flags = self.prepare_convert(mode, options)?;
        let from = self.mode();
        match self.convert_once_async(mode, flags, options.timeout).await {
            Err(e) if needs_probe(flags, &e) => {
                // As `probe_demotion`, without blocking.
                self.drop_pending_after_failure();
                if from == Mode::Nl {
                    return Err(e);
                }
                let probe = self.probe_flags(from);
                let probed = self.convert_once_async(from, probe, None).await;
                Err(self.probed(probed, e))
            }
            other => other,
        }
    }

    async fn convert_once_async(
        &mut self,
        mode: Mode,
        flags: u32,
        timeout: Option<Duration>,
    ) -> Result<Granted> {
        let cell = self.take_cell(flags)?;
        let future = RequestFuture::new(
            self.lockspace().inner.clone(),
            cell,
            Abandon::Held,
            Request::Convert { lkid: self.lkid() },
            mode,
            flags,
            timeout,
        );
        let (cell, result) = future.await;
        self.finish_convert(mode, flags, cell, result)
    }

    /// [`unlock`](LockGuard::unlock) as a future: complete when the unlock
    /// (and the conversion down that publishes a value block first, if
    /// any) is.
    ///
    /// # Errors
    /// As [`unlock`](LockGuard::unlock).
    pub async fn unlock_async(mut self) -> Result<()> {
        let flags = match self.release_start()? {
            ReleasePlan::Unlock(flags) => flags,
            ReleasePlan::ConvertFirst(flags) => {
                // Boxed: only a lock whose value block is published on
                // release comes here, and the conversion's future kept
                // inline would make every unlock's future (moved into
                // its executor's task, e.g. `try_join_all`'s) about 150
                // bytes larger.
                let converted = Box::pin(self.convert_once_async(Mode::Nl, flags, None)).await;
                self.after_release_conversion(converted)?
            }
        };
        let cell = self.take_cell(0)?;
        let future = RequestFuture::new(
            self.lockspace().inner.clone(),
            cell,
            Abandon::Unlock,
            Request::Unlock { lkid: self.lkid() },
            Mode::Nl,
            flags,
            None,
        );
        let (cell, result) = future.await;
        self.release_end(cell, result)
    }

    /// [`wait_blocking`](LockGuard::wait_blocking) without a timeout, as a
    /// future: ready with the next blocking notification (or at once with
    /// a pending one), which it takes. For a bound, race it against the
    /// runtime's timer: a future dropped before it is ready takes no
    /// notification.
    ///
    /// # Errors
    /// As [`wait_blocking`](LockGuard::wait_blocking).
    pub async fn blocking_async(&mut self) -> Result<Blocking> {
        self.lockspace().inner.check_new()?;
        crate::wait::start_watchdog();
        let (inner, cell) = self.blocking_parts()?;
        BlockingFuture {
            handle: inner,
            cell,
        }
        .await
    }
}

/// Waits for a blocking notification.
struct BlockingFuture {
    handle: Arc<Handle>,
    cell: CellRef,
}

impl BlockingFuture {
    fn rx(&self) -> &BlockingReceiver {
        self.cell.blocking_rx().expect("checked by blocking_parts")
    }
}

impl Future for BlockingFuture {
    type Output = Result<Blocking>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<Blocking>> {
        let this = &mut *self;
        this.cell.bast_task.register(cx.waker());
        if let Ok(notification) = this.rx().try_recv() {
            // The loss of the lockspace comes as a notification too.
            if notification.lockspace_gone() {
                return Poll::Ready(Err(crate::Error::LockspaceGone));
            }
            return Poll::Ready(Ok(notification));
        }
        crate::wait::wake_at_next_tick(cx.waker());
        if !this.handle.is_alive() {
            return Poll::Ready(Err(this.handle.gone_error()));
        }
        Poll::Pending
    }
}

/// [`with_lock`](crate::with_lock) for async code: takes the lock `name`
/// in `mode` ([`Lockspace::lock_async`]), awaits `f` with the guard, then
/// awaits the unlock ([`LockGuard::unlock_async`]). If the returned future
/// is dropped half-way, the lock is released in the background.
///
/// ```no_run
/// # async fn example(ls: &dlm::Lockspace) -> Result<(), dlm::Error> {
/// use dlm::Mode;
/// dlm::with_lock_async(ls, "config", Mode::Ex, async |_guard| {
///     // ... only this holder, on any node, is here ...
/// })
/// .await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// As [`with_lock`](crate::with_lock).
pub async fn with_lock_async<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    f: impl AsyncFnOnce(&mut LockGuard) -> T,
) -> std::result::Result<T, WithLockError<T>> {
    with_lock_with_async(ls, name, mode, LockOptions::new(), f).await
}

/// [`with_lock_with`](crate::with_lock_with) for async code: takes the
/// lock `name` in `mode` with `options` ([`Lockspace::lock_with_async`]),
/// awaits `f` with the guard, then awaits the unlock
/// ([`LockGuard::unlock_async`]). If the returned future is dropped
/// half-way, the lock is released in the background.
///
/// ```no_run
/// # async fn example(ls: &dlm::Lockspace) -> Result<(), dlm::Error> {
/// use dlm::{LockOptions, Mode};
/// let n = dlm::with_lock_with_async(ls, "counter", Mode::Ex, LockOptions::new().lvb(), async |g| {
///     let n = g.lvb().map_or(0, |v| v.bytes[0]);
///     g.set_lvb(&[n + 1]).map(|()| n + 1)
/// })
/// .await??;
/// # let _ = n; Ok(()) }
/// ```
///
/// # Errors
/// As [`with_lock_with`](crate::with_lock_with).
pub async fn with_lock_with_async<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    options: LockOptions,
    f: impl AsyncFnOnce(&mut LockGuard) -> T,
) -> std::result::Result<T, WithLockError<T>> {
    let mut guard = ls
        .lock_with_async(name, mode, options)
        .await
        .map_err(WithLockError::Lock)?;
    let value = f(&mut guard).await;
    match guard.unlock_async().await {
        Ok(()) => Ok(value),
        Err(error) => Err(WithLockError::Unlock { error, value }),
    }
}
