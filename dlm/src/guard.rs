//! A lock's life: request, conversion, value block, unlock, orphaning.
//!
//! The guard keeps one model of the kernel's lock ([`LockState`]); every
//! answer goes through it, and what each call sends is derived from it.
//! Every request goes through [`request::run`](crate::request), which owns
//! the lock's cell while the kernel may write into it.

use crate::cell::{Abandon, Blocking, BlockingReceiver, CellRef};
use crate::error::{Error, Result};
use crate::flags::{self, LockFlags, Request};
use crate::lockspace::Lockspace;
use crate::lvb::{Lvb, LVB_LEN};
use crate::mode::Mode;
use crate::name;
use crate::options::LockOptions;
use crate::reaper;
use crate::request::{self, thread_id, Op, Wait};
use crate::state::{Granted, LockState, LvbState, ReleasePlan, Sent};
use dlm_sys as sys;
use std::fmt;
use std::time::{Duration, Instant};

/// A granted DLM lock. Dropping it unlocks it.
///
/// The guard owns the lock: it can be converted ([`convert`](Self::convert)),
/// its lock value block read and written, its blocking notifications
/// received ([`blocking`](Self::blocking)), and it is unlocked by
/// [`unlock`](Self::unlock) or on drop. It keeps its lockspace open.
///
/// Dropping the guard unlocks the lock (`dlm_ls_unlock`) and, by default
/// ([`DropBehavior::Wait`]), waits for the unlock to complete, so a later
/// request of the same resource by this process cannot find its own lock
/// still there; guards from the `_async` calls release it in the
/// background instead ([`DropBehavior::Background`]; see
/// [`set_drop_behavior`](Self::set_drop_behavior)). The drop never panics;
/// use [`unlock`](Self::unlock) to see errors.
#[must_use = "dropping the guard unlocks the lock at once"]
pub struct LockGuard {
    /// `None` once unlocked, orphaned or given up.
    cell: Option<CellRef>,
    ls: Lockspace,
    lkid: u32,
    /// What the kernel holds for the lock.
    state: LockState,
    /// What the last grant or conversion gave.
    granted: Granted,
    /// The thread that made the last request the kernel accepted.
    owner_tid: u32,
    /// The value block as the model says it is (read, published, or set
    /// and pending). Kept apart from the cell's buffer, which libdlm and
    /// the kernel overwrite at every answer of a lock that ever used the
    /// value block, whatever the request asked.
    value: [u8; LVB_LEN],
    /// What a drop does: wait for the unlock, or hand the release to the
    /// reaper thread.
    drop_behavior: DropBehavior,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lockspace", &self.ls.name())
            .field("lkid", &self.lkid)
            .field("mode", &self.state.mode)
            .field("persistent", &self.state.persistent())
            .field("held", &self.cell.is_some())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    /// A new lock: `dlm_ls_lock`, then its completion.
    pub(crate) fn request(
        ls: &Lockspace,
        name: &[u8],
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        let (name, cell) = LockGuard::prepare_new(ls, name, mode, options)?;
        let (cell, result) = request::run(
            &ls.inner,
            cell,
            Abandon::Request,
            Op::New {
                name,
                xid: options.xid,
            },
            mode,
            options.flags.bits(),
            Wait::Timeout(options.timeout),
        );
        LockGuard::from_answer(ls, cell, mode, options, result?)
    }

    /// Checks a new request and makes its cell.
    pub(crate) fn prepare_new<'n>(
        ls: &Lockspace,
        name: &'n [u8],
        mode: Mode,
        options: LockOptions,
    ) -> Result<(&'n [u8], CellRef)> {
        ls.inner.check_new()?;
        let name = name::resource_name(name)?;
        flags::check(Request::New, mode, options.flags)?;
        Ok((name, ls.inner.new_cell(options.notify_blocking)))
    }

    /// The guard of a new request's answer, or the error it failed with.
    pub(crate) fn from_answer(
        ls: &Lockspace,
        cell: Option<CellRef>,
        mode: Mode,
        options: LockOptions,
        answered: request::Answered,
    ) -> Result<LockGuard> {
        let sent = Sent {
            mode,
            flags: options.flags.bits(),
            timed_out: answered.timed_out,
        };
        // A failed new request ends the lock: no more ASTs, the cell goes.
        let (state, granted) = LockState::granted_new(
            sent,
            answered.delivered.answer,
            options.flags.contains(LockFlags::VALBLK),
        )?;
        let value = match (&cell, state.lvb) {
            // SAFETY: the answer was seen on this thread; nothing in flight.
            (Some(cell), LvbState::Read { .. }) => unsafe { cell.lvb() },
            _ => [0; LVB_LEN],
        };
        Ok(LockGuard {
            cell,
            ls: ls.clone(),
            lkid: answered.delivered.lkid,
            state,
            granted,
            owner_tid: answered.writer_tid,
            value,
            drop_behavior: DropBehavior::Wait,
        })
    }

    /// Adopts an orphan: `dlm_ls_lock` with `LKF_ORPHAN`, answered by the
    /// `write` itself, with no AST.
    pub(crate) fn adopt(
        ls: &Lockspace,
        name: &[u8],
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        let inner = &ls.inner;
        inner.check_new()?;
        let name = name::resource_name(name)?;
        if !options
            .flags
            .without(LockFlags::VALBLK | LockFlags::PERSISTENT)
            .is_empty()
            || options.timeout.is_some()
            || options.xid != 0
        {
            return Err(Error::InvalidArgument(
                "adopting an orphan takes only the lvb and notify_blocking options",
            ));
        }
        let cell = inner.new_cell(options.notify_blocking);
        let uses_lvb = options.flags.contains(LockFlags::VALBLK);
        let flags =
            sys::LKF_PERSISTENT | sys::LKF_ORPHAN | if uses_lvb { sys::LKF_VALBLK } else { 0 };
        // The kernel answers in the write and names the cell as the lock's
        // AST argument from now on; no completion comes for the adoption.
        let written = request::write_only(inner, &cell, Op::New { name, xid: 0 }, mode, flags);
        let lkid = written.map_err(|e| match e {
            Error::WouldBlock => Error::OrphanModeMismatch,
            e if e.raw_os_error() == Some(libc::ENOENT) && inner.is_alive() => {
                Error::OrphanNotFound
            }
            e => e,
        })?;
        Ok(LockGuard {
            cell: Some(cell),
            ls: ls.clone(),
            lkid,
            state: LockState::adopted(mode, flags),
            granted: Granted {
                mode,
                alternate: false,
                demoted: false,
            },
            owner_tid: thread_id(),
            value: [0; LVB_LEN],
            drop_behavior: DropBehavior::Wait,
        })
    }

    /// The mode held now.
    pub fn mode(&self) -> Mode {
        self.state.mode
    }

    /// What the last grant or conversion gave.
    pub fn granted(&self) -> Granted {
        self.granted
    }

    /// The DLM's lock id (`sb_lkid`), as `dlm_tool lockdebug` shows it.
    pub fn lkid(&self) -> u32 {
        self.lkid
    }

    /// The lockspace of this lock.
    pub fn lockspace(&self) -> &Lockspace {
        &self.ls
    }

    /// Whether the kernel will keep the lock as an orphan when its
    /// lockspace handle closes (`LKF_PERSISTENT` in the flags of the lock's
    /// last request: this crate repeats it on every conversion of a
    /// persistent lock).
    pub fn is_persistent(&self) -> bool {
        self.state.persistent()
    }

    /// Whether the guard still holds the lock: `false` after a conversion
    /// it had to give up on (its answer never came, see
    /// [`LockOptions::timeout`]), when the lock was released by the reaper
    /// instead.
    pub fn is_held(&self) -> bool {
        self.cell.is_some() && !self.ls.inner.is_gone()
    }

    /// The id of the thread the kernel records as the lock's owner: the one
    /// that made the lock's last request or conversion (`gettid`; the
    /// process id for a main thread). It is the owner to give
    /// [`Lockspace::purge_orphans`] ([`Owner::Thread`](crate::Owner::Thread))
    /// for this lock once orphaned. For an adopted orphan, the adopting
    /// thread (the kernel records it at the adoption).
    pub fn owner_tid(&self) -> u32 {
        match self.owner_tid {
            // Written by the handle's worker thread (an async call).
            0 => self.ls.inner.handoff().worker_tid(),
            tid => tid,
        }
    }

    /// Blocking notifications (BASTs): a value arrives when another request
    /// waits for a mode this lock's mode blocks; the holder can then
    /// convert down or unlock. In poll mode the notification says which
    /// mode is waited for ([`Blocking::mode`]); with libdlm's thread it
    /// cannot (libdlm drops it). Pending notifications are coalesced into
    /// one, and a granted conversion drops the ones that came before it
    /// (the DLM notifies again if the new mode blocks someone). `None`
    /// unless the lock was requested with
    /// [`LockOptions::notify_blocking`]. The receiver works with
    /// [`crossbeam_channel::select!`](crate::crossbeam_channel::select); to
    /// just wait, prefer [`wait_blocking`](Self::wait_blocking), which
    /// sleeps at once where the receiver's `recv` first spins and yields.
    /// When the handle finds the lockspace released by force (by another
    /// process), the receiver gets one more notification, whose
    /// [`Blocking::lockspace_gone`] is `true`: the lock is gone. A
    /// lockspace stopped for good (dlm_controld gone) is not told on the
    /// receiver (the lock is not lost, only nothing moves);
    /// `wait_blocking` and `blocking_async` report it, and a program that
    /// selects on the receiver should look at
    /// [`Lockspace::is_alive`](crate::Lockspace::is_alive) now and then.
    pub fn blocking(&self) -> Option<&BlockingReceiver> {
        self.cell.as_ref()?.blocking_rx()
    }

    /// Waits for a blocking notification (see [`blocking`](Self::blocking))
    /// for at most `timeout` (with no timeout, for as long as the lockspace
    /// exists). Returns the notification when one came (and takes it),
    /// `None` when `timeout` passed first. [`blocking_async`](Self::blocking_async) is
    /// the same wait as a future.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock was requested with
    /// [`LockOptions::notify_blocking`]; [`Error::LockspaceGone`];
    /// [`Error::LockspaceStopped`]; [`Error::BadAnswer`] (poll mode);
    /// [`Error::Forked`].
    pub fn wait_blocking(&mut self, timeout: Option<Duration>) -> Result<Option<Blocking>> {
        self.ls.inner.check()?;
        let Some(cell) = self.cell.as_ref() else {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        };
        let Some(rx) = cell.blocking_rx() else {
            return Err(Error::InvalidArgument(
                "the lock was not requested with notify_blocking",
            ));
        };
        // The loss of the lockspace comes as a notification too: it is
        // this wait's error.
        let taken = |n: Blocking| {
            if n.lockspace_gone() {
                Err(Error::LockspaceGone)
            } else {
                Ok(Some(n))
            }
        };
        if let Ok(notification) = rx.try_recv() {
            return taken(notification);
        }
        // A wait: none on a handle whose reader refused an answer.
        self.ls.inner.check_new()?;
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        cell.set_bast_waiter(Some(std::thread::current()));
        let result = loop {
            // A notification sent after this check also unparks us.
            if let Ok(notification) = rx.try_recv() {
                break taken(notification);
            }
            let check_alive = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Ok(None);
                    }
                    let left = (d - now).min(Duration::from_secs(1));
                    if self.ls.inner.is_polled() {
                        self.ls.inner.drive(left.as_micros().div_ceil(1000) as i32);
                    } else {
                        std::thread::park_timeout(left);
                    }
                    true
                }
                // No clock read: the watchdog's tick says when to check
                // (in poll mode, also after answers were read: one may
                // have been refused).
                None if self.ls.inner.is_polled() => {
                    self.ls.inner.drive(1000);
                    true
                }
                None => crate::wait::Waiter::with(|w| w.park_untimed()),
            };
            if check_alive && !self.ls.inner.is_alive() {
                break Err(self.ls.inner.gone_error());
            }
        };
        cell.set_bast_waiter(None);
        result
    }

    /// The lock value block: as last read from the DLM (at the grant or an
    /// up-conversion with [`LockOptions::lvb`]), as published by this lock,
    /// or as set by [`set_lvb`](Self::set_lvb) and not yet published.
    /// `None` if nothing was read yet (the lock does not use the LVB, or is
    /// an adopted orphan not yet converted up).
    pub fn lvb(&self) -> Option<Lvb> {
        let valid = match self.state.lvb {
            LvbState::NotRead => return None,
            LvbState::Read { valid } => valid,
            LvbState::Set => true,
            LvbState::Invalidate => false,
        };
        self.cell.as_ref()?;
        Some(Lvb {
            bytes: self.value,
            valid,
        })
    }

    /// Sets the lock value block to `value` (at most 32 bytes; the rest is
    /// zeroed). It is published to the DLM by the next conversion that
    /// writes (down from PW/EX), or when the lock is released or
    /// [orphaned](Self::orphan) — never by the unlock call itself, which in
    /// libdlm sends uninitialised bytes. A conversion PW -> EX (which would
    /// read the block) keeps the value pending.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock is held in PW or EX, or
    /// if `value` is longer than 32 bytes.
    pub fn set_lvb(&mut self, value: &[u8]) -> Result<()> {
        if !self.state.mode.writes_lvb() {
            return Err(Error::InvalidArgument(
                "only a PW or EX holder can write the lock value block",
            ));
        }
        if value.len() > LVB_LEN {
            return Err(Error::InvalidArgument(
                "a lock value block holds at most 32 bytes",
            ));
        }
        if self.cell.is_none() {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        }
        self.value = [0; LVB_LEN];
        self.value[..value.len()].copy_from_slice(value);
        self.state.lvb = LvbState::Set;
        self.state.uses_lvb = true;
        Ok(())
    }

    /// Marks the lock value block not valid for the next holders
    /// (`LKF_IVVALBLK`), at the next conversion down from PW/EX or when the
    /// lock is released. Cancels a pending [`set_lvb`](Self::set_lvb).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock is held in PW or EX.
    pub fn invalidate_lvb(&mut self) -> Result<()> {
        if !self.state.mode.writes_lvb() {
            return Err(Error::InvalidArgument(
                "only a PW or EX holder can invalidate the lock value block",
            ));
        }
        self.state.lvb = LvbState::Invalidate;
        Ok(())
    }

    /// Converts the lock to `mode`, up or down, waiting until granted
    /// (`dlm_ls_lock` with `LKF_CONVERT`).
    ///
    /// # Errors
    /// See [`convert_with`](Self::convert_with).
    pub fn convert(&mut self, mode: Mode) -> Result<Granted> {
        self.convert_with(mode, LockOptions::new())
    }

    /// Converts the lock to `mode` with `options` (`dlm_ls_lock` with
    /// `LKF_CONVERT`; with a timeout, cancelled by `dlm_ls_unlock` with
    /// `LKF_CANCEL` when it expires). A pending [`set_lvb`](Self::set_lvb)
    /// or [`invalidate_lvb`](Self::invalidate_lvb) is carried out by a
    /// conversion that writes (down from PW/EX). A persistent lock stays
    /// persistent (the flag is repeated: the kernel replaces a lock's flags
    /// with each request's); [`LockOptions::persistent`] makes a lock
    /// persistent from this conversion on.
    ///
    /// # Errors
    /// On [`Error::WouldBlock`], [`Error::Deadlock`], [`Error::TimedOut`]
    /// or [`Error::Cancelled`] the lock is still held in its old mode;
    /// on [`Error::Demoted`] it is held in NL (the DLM demoted it to break
    /// a conversion deadlock, with [`LockOptions::demote_on_deadlock`]).
    /// With `demote_on_deadlock`, the DLM can demote the lock and a cancel's
    /// answer not say so: after such a failure the guard asks for its old
    /// mode again without waiting ([`Error::Demoted`] if it cannot have
    /// it), and drops a pending [`set_lvb`](Self::set_lvb): others may
    /// have written since.
    /// [`Error::InvalidArgument`] for flags the kernel rejects (nothing is
    /// sent); [`Error::InProgress`] if the kernel still had an operation
    /// on the lock in progress, [`Error::Unreachable`] if the resource's
    /// master could not be reached (nothing changed in either case);
    /// [`Error::LockspaceGone`];
    /// [`Error::Forked`]. If the conversion's answer never came (its
    /// cancel unanswered for [`CANCEL_GRACE`](crate::CANCEL_GRACE), or the
    /// lockspace gone), the guard gives the lock up: [`is_held`](Self::is_held)
    /// is then `false` and the lock is released in the background.
    pub fn convert_with(&mut self, mode: Mode, options: LockOptions) -> Result<Granted> {
        let flags = self.prepare_convert(mode, options)?;
        self.convert_raw(mode, flags, options.timeout)
    }

    /// Checks a conversion; its raw flags.
    pub(crate) fn prepare_convert(&mut self, mode: Mode, options: LockOptions) -> Result<u32> {
        // A conversion down is granted at once (it gives other holders
        // room, and a handle whose reader refused an answer still makes
        // it); one that can wait is a new wait.
        if crate::cache::covers(self.state.mode, mode) {
            self.ls.inner.check()?;
        } else {
            self.ls.inner.check_new()?;
        }
        flags::check(
            Request::Convert {
                from: self.state.mode,
            },
            mode,
            options.flags,
        )?;
        let Some(cell) = self.cell.as_ref() else {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        };
        if options.notify_blocking && cell.blocking_rx().is_none() {
            return Err(Error::InvalidArgument(
                "blocking notifications are asked for when the lock is requested",
            ));
        }
        let flags = self.state.convert_flags(mode, options.flags);
        if options.flags.contains(LockFlags::VALBLK) {
            self.state.uses_lvb = true;
        }
        Ok(flags)
    }

    /// Sends a conversion with these raw flags and applies its answer (and
    /// probes for a demotion its answer could not show).
    fn convert_raw(
        &mut self,
        mode: Mode,
        flags: u32,
        timeout: Option<Duration>,
    ) -> Result<Granted> {
        let from = self.state.mode;
        match self.convert_once(mode, flags, timeout) {
            Err(e) if needs_probe(flags, &e) => Err(self.probe_demotion(from, e)),
            other => other,
        }
    }

    fn convert_once(
        &mut self,
        mode: Mode,
        flags: u32,
        timeout: Option<Duration>,
    ) -> Result<Granted> {
        let cell = self.take_cell(flags)?;
        let (cell, result) = request::run(
            &self.ls.inner,
            cell,
            Abandon::Held,
            Op::Convert { lkid: self.lkid },
            mode,
            flags,
            Wait::Timeout(timeout),
        );
        self.finish_convert(mode, flags, cell, result)
    }

    /// The cell, for a conversion with these flags: with `VALBLK` libdlm
    /// sends the cell's buffer, so it gets the model's value.
    pub(crate) fn take_cell(&mut self, flags: u32) -> Result<CellRef> {
        let Some(cell) = self.cell.take() else {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        };
        if flags & sys::LKF_VALBLK != 0 {
            // SAFETY: the guard owns the cell; nothing is in flight.
            unsafe { cell.set_lvb(&self.value) };
        }
        Ok(cell)
    }

    /// Applies a conversion's answer (or failure) to the guard.
    pub(crate) fn finish_convert(
        &mut self,
        mode: Mode,
        flags: u32,
        cell: Option<CellRef>,
        result: Result<request::Answered>,
    ) -> Result<Granted> {
        // `None`: given up; the reaper releases the lock whatever comes.
        self.cell = cell;
        let answered = result?;
        self.owner_tid = answered.writer_tid;
        let sent = Sent {
            mode,
            flags,
            timed_out: answered.timed_out,
        };
        let (granted, read) = self.state.apply_convert(sent, answered.delivered.answer)?;
        if read {
            if let Some(cell) = &self.cell {
                // SAFETY: the answer was seen on this thread.
                self.value = unsafe { cell.lvb() };
            }
        }
        self.granted = granted;
        Ok(granted)
    }

    /// After a failed or cancelled conversion with `CONVDEADLK`: the DLM
    /// may have demoted the lock to NL on the way, and a cancel's answer
    /// does not say so (the kernel clears the flags of the answer when it
    /// takes the cancel). Asks again for the old mode without waiting: a
    /// lock still in `from` gets it at once (a conversion to the same
    /// mode); a demoted one gets it only if nothing blocks it, else it is
    /// known to be NL. Either way the guard's mode is true afterwards. A
    /// pending value block write is dropped: after a possible demotion it
    /// may no longer be the newest.
    fn probe_demotion(&mut self, from: Mode, cause: Error) -> Error {
        self.state.maybe_demoted(false);
        if from == Mode::Nl {
            return cause;
        }
        let flags = self.probe_flags(from);
        let probed = self.convert_once(from, flags, None);
        self.probed(probed, cause)
    }

    /// After a failed `CONVDEADLK` conversion: a pending value block write
    /// can no longer be trusted to be the newest (see `probe_demotion`).
    pub(crate) fn drop_pending_after_failure(&mut self) {
        self.state.maybe_demoted(false);
    }

    /// The lockspace and the cell, for a wait for blocking notifications.
    pub(crate) fn blocking_parts(
        &self,
    ) -> Result<(std::sync::Arc<crate::handle::Handle>, CellRef)> {
        let Some(cell) = self.cell.as_ref() else {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        };
        if cell.blocking_rx().is_none() {
            return Err(Error::InvalidArgument(
                "the lock was not requested with notify_blocking",
            ));
        }
        Ok((self.ls.inner.clone(), cell.clone()))
    }

    /// The flags of the demotion probe: the old mode, without waiting.
    pub(crate) fn probe_flags(&self, from: Mode) -> u32 {
        self.state.convert_flags(from, LockFlags::NOQUEUE) & !sys::LKF_VALBLK
    }

    /// What the probe's answer says of the failed conversion.
    pub(crate) fn probed(&mut self, probed: Result<Granted>, cause: Error) -> Error {
        match probed {
            Ok(_) => cause,
            Err(Error::WouldBlock) => {
                self.state.maybe_demoted(true);
                Error::Demoted(Box::new(cause))
            }
            Err(other) => other,
        }
    }

    /// Unlocks the lock (`dlm_ls_unlock`) and waits for the unlock to
    /// complete. A pending [`set_lvb`](Self::set_lvb) is published first,
    /// by a conversion to NL with `LKF_VALBLK`; a lock whose last request
    /// carried `LKF_VALBLK` in PW or EX is converted to NL without it first,
    /// so that the kernel copies nothing into the value block.
    ///
    /// # Errors
    /// [`Error::LockspaceGone`] if the lockspace was released by force
    /// (its locks went with it); [`Error::TimedOut`] if the unlock's answer
    /// did not come within [`UNLOCK_PATIENCE`](crate::UNLOCK_PATIENCE) (or the handle's [`unlock_patience`](crate::LockspaceBuilder::unlock_patience)) (the kernel completes it
    /// later); [`Error::Forked`] in a fork's child (the lock is the
    /// parent's: nothing is done to it); other errors of `dlm_ls_unlock`
    /// (the lock is then released in the background).
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    /// Leaves a [persistent](LockOptions::persistent) lock behind on
    /// purpose: it stays held, and becomes an orphan when this process's
    /// lockspace handle closes (or the process exits); another process can
    /// then [adopt](Lockspace::adopt_orphan) it, or
    /// [purge](Lockspace::purge_orphans) it. A pending
    /// [`set_lvb`](Self::set_lvb) or invalidation is published first, by a
    /// conversion to the same mode.
    ///
    /// # Errors
    /// Gives the guard back if the lock is not persistent (closing would
    /// unlock it rather than orphan it), if the publication failed, or in
    /// a fork's child.
    #[allow(clippy::result_large_err)]
    pub fn orphan(mut self) -> std::result::Result<(), LockGuard> {
        if !self.state.persistent() || self.cell.is_none() || self.ls.inner.check().is_err() {
            return Err(self);
        }
        if let Some(flags) = self.state.publish_in_place_flags() {
            let mode = self.state.mode;
            if self.convert_raw(mode, flags, None).is_err() || !self.state.persistent() {
                return Err(self);
            }
        }
        // The kernel may still send blocking ASTs to the cell until the
        // lockspace closes: keep it until then.
        if let Some(cell) = self.cell.take() {
            self.ls.inner.keep(cell);
        }
        Ok(())
    }

    fn release(&mut self) -> Result<()> {
        let flags = match self.release_start()? {
            ReleasePlan::Unlock(flags) => flags,
            ReleasePlan::ConvertFirst(flags) => {
                let converted = self.convert_once(Mode::Nl, flags, None);
                self.after_release_conversion(converted)?
            }
        };
        let cell = self.cell.take().ok_or(Error::GivenUp)?;
        let (cell, result) = request::run(
            &self.ls.inner,
            cell,
            Abandon::Unlock,
            Op::Unlock { lkid: self.lkid },
            Mode::Nl,
            flags,
            Wait::Patience(self.ls.inner.patience().unlock),
        );
        self.release_end(cell, result)
    }

    /// The first step of a release: the checks, and the plan.
    pub(crate) fn release_start(&mut self) -> Result<ReleasePlan> {
        if self.cell.is_none() {
            // Only a give-up leaves a guard without its cell (unlock and
            // orphan consume the guard).
            return Err(Error::GivenUp);
        }
        match self.ls.inner.check() {
            Ok(()) => Ok(self.state.release_plan()),
            Err(Error::Forked) => {
                // A fork's child: the lock and the cell's memory are the
                // parent's (the kernel writes the parent's copy); leave both.
                std::mem::forget(self.cell.take());
                Err(Error::Forked)
            }
            Err(e) => {
                // Stalled: an unlock would block for ever. The lock stays
                // (the kernel drops it when the handle finally closes);
                // its cell stays with the lockspace.
                if let Some(cell) = self.cell.take() {
                    self.ls.inner.keep(cell);
                }
                Err(e)
            }
        }
    }

    /// The unlock's flags after the conversion down that a release makes
    /// first.
    pub(crate) fn after_release_conversion(&mut self, converted: Result<Granted>) -> Result<u32> {
        match converted {
            Ok(_) => Ok(0),
            // The conversion was given up: the reaper releases the lock.
            Err(_) if self.cell.is_none() => Err(Error::GivenUp),
            // Not accepted: the kernel's flags are unchanged. Mark the
            // block not valid rather than let garbage in.
            Err(_) => Ok(self.state.fallback_unlock_flags()),
        }
    }

    /// The end of a release: the unlock's answer.
    pub(crate) fn release_end(
        &mut self,
        cell: Option<CellRef>,
        result: Result<request::Answered>,
    ) -> Result<()> {
        let inner = &self.ls.inner;
        let lkid = self.lkid;
        match (cell, result) {
            (Some(_), Ok(a)) if a.delivered.answer.status == sys::EUNLOCK => Ok(()),
            (Some(cell), Ok(a)) => {
                // The unlock failed: the lock is still held.
                reaper::release(inner, cell, lkid, None);
                Err(Error::from_status(a.delivered.answer.status)
                    .unwrap_or(Error::InvalidArgument("unexpected unlock status")))
            }
            (Some(cell), Err(e @ (Error::LockspaceGone | Error::LockspaceStopped))) => {
                inner.keep(cell);
                Err(e)
            }
            (Some(cell), Err(e)) => {
                // Refused before it reached the kernel: still held.
                reaper::release(inner, cell, lkid, None);
                Err(e)
            }
            // Given up: the lockspace keeps the cell.
            (None, result) => result.and(Err(Error::TimedOut)),
        }
    }

    /// Sets what dropping the guard does (see [`DropBehavior`]): wait for
    /// the unlock to complete, or release the lock in the background (the
    /// crate's reaper thread converts and unlocks it). Guards from the
    /// `_async` calls start with [`DropBehavior::Background`], so that a
    /// drop never blocks an executor's thread; others with
    /// [`DropBehavior::Wait`].
    pub fn set_drop_behavior(&mut self, behavior: DropBehavior) {
        self.drop_behavior = behavior;
    }

    /// What dropping the guard does (see
    /// [`set_drop_behavior`](Self::set_drop_behavior)).
    pub fn drop_behavior(&self) -> DropBehavior {
        self.drop_behavior
    }

    /// Releases the lock without waiting for it, writing the unlock on
    /// the calling thread where the release is a plain unlock (see
    /// [`reaper::unlock_without_waiting`]: only for a thread that may
    /// block in a DLM write), else as [`DropBehavior::Background`] does.
    /// The cache uses it for the NL lock a new one replaced, right after
    /// a give-up, on the thread that made it (its helper, or a blocking
    /// caller).
    pub(crate) fn unlock_without_waiting(mut self) {
        self.drop_behavior = DropBehavior::Background;
        // A conversion first, or an error (a fork's child, a stalled
        // lockspace: `release_start` has dealt with the cell): the drop
        // does the rest.
        let Ok(ReleasePlan::Unlock(flags)) = self.release_start() else {
            return;
        };
        if let Some(cell) = self.cell.take() {
            reaper::unlock_without_waiting(&self.ls.inner, cell, self.lkid, flags);
        }
    }

    /// Hands the release to the reaper (see [`DropBehavior::Background`]).
    fn release_in_background(&mut self) {
        let Ok(plan) = self.release_start() else {
            return;
        };
        let Some(cell) = self.cell.take() else {
            return;
        };
        if let ReleasePlan::ConvertFirst(flags) = plan {
            if flags & sys::LKF_VALBLK != 0 {
                // SAFETY: the guard owns the cell; nothing is in flight.
                unsafe { cell.set_lvb(&self.value) };
            }
        }
        reaper::release(&self.ls.inner, cell, self.lkid, Some(plan));
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if self.cell.is_some() {
            match self.drop_behavior {
                DropBehavior::Background => self.release_in_background(),
                DropBehavior::Wait => {
                    let _ = self.release();
                }
            }
        }
    }
}

/// What dropping a [`LockGuard`] that still holds its lock does
/// ([`LockGuard::set_drop_behavior`]). Either way the lock is released and
/// a pending [`set_lvb`](LockGuard::set_lvb) is published first; the drop
/// never panics and reports no error (use
/// [`unlock`](LockGuard::unlock) or [`unlock_async`](LockGuard::unlock_async)
/// to see them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DropBehavior {
    /// The drop unlocks the lock (`dlm_ls_unlock`) and waits for the
    /// unlock to complete, as [`unlock`](LockGuard::unlock) does: a later
    /// request of the same resource by this process cannot find the lock
    /// still held. The default of guards from the blocking calls.
    Wait,
    /// The drop hands the release to the crate's reaper thread (one per
    /// lockspace handle), which converts and unlocks the lock, and returns
    /// at once: it never blocks, which suits an executor's thread. A later
    /// request of the same resource by this process may then still find
    /// the lock held for a moment: it waits behind it (a try says
    /// [`Error::WouldBlock`]; await [`unlock_async`](LockGuard::unlock_async)
    /// for a release that is complete when it returns). The default of
    /// guards from the `_async` calls.
    Background,
}

/// Whether a failed conversion sent with `flags` may hide a demotion.
pub(crate) fn needs_probe(flags: u32, e: &Error) -> bool {
    flags & sys::LKF_CONVDEADLK != 0
        && !matches!(e, Error::Demoted(_) | Error::GivenUp)
        && !matches!(
            e,
            Error::LockspaceGone | Error::LockspaceStopped | Error::Forked | Error::BadAnswer(_)
        )
        // Refused before it was queued: nothing happened to the lock.
        && !matches!(e, Error::InProgress | Error::Unreachable)
}

/// The error of [`with_lock`] and its variants ([`with_lock_with`],
/// [`with_lock_async`](crate::with_lock_async),
/// [`with_lock_with_async`](crate::with_lock_with_async)): the lock could
/// not be taken, or the closure ran and the unlock after it failed (its
/// value is kept).
#[derive(Debug)]
pub enum WithLockError<T> {
    /// Taking the lock failed; the closure did not run.
    Lock(Error),
    /// The closure ran and returned `value`, then the unlock failed.
    Unlock {
        /// Why the unlock failed.
        error: Error,
        /// What the closure returned.
        value: T,
    },
}

impl<T> WithLockError<T> {
    /// The error, whichever step failed.
    pub fn error(&self) -> &Error {
        match self {
            WithLockError::Lock(e) | WithLockError::Unlock { error: e, .. } => e,
        }
    }
}

impl<T> fmt::Display for WithLockError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WithLockError::Lock(e) => write!(f, "taking the lock failed: {e}"),
            WithLockError::Unlock { error, .. } => {
                write!(f, "unlocking after the closure failed: {error}")
            }
        }
    }
}

impl<T: fmt::Debug> std::error::Error for WithLockError<T> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.error())
    }
}

impl<T> From<WithLockError<T>> for Error {
    fn from(e: WithLockError<T>) -> Error {
        match e {
            WithLockError::Lock(e) | WithLockError::Unlock { error: e, .. } => e,
        }
    }
}

/// Takes the lock `name` in `mode`, runs `f` with the guard, then unlocks
/// it (`dlm_ls_lock`, then `dlm_ls_unlock`; ocaml-dlm's `with_lock`). The
/// lock is released even if `f` panics. [`with_lock_with`] takes
/// [`LockOptions`]; [`with_lock_async`](crate::with_lock_async) and
/// [`with_lock_with_async`](crate::with_lock_with_async) are the async
/// counterparts.
///
/// # Errors
/// [`WithLockError::Lock`] with the errors of [`Lockspace::lock`];
/// [`WithLockError::Unlock`] with those of [`LockGuard::unlock`] and the
/// closure's value. Both convert into [`Error`] with `?`.
pub fn with_lock<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    f: impl FnOnce(&mut LockGuard) -> T,
) -> std::result::Result<T, WithLockError<T>> {
    with_lock_with(ls, name, mode, LockOptions::new(), f)
}

/// [`with_lock`] with request options (try, timeout, flags), as
/// [`Lockspace::lock_with`] takes them: takes the lock `name` in `mode`
/// with `options`, runs `f` with the guard, then unlocks it.
///
/// ```no_run
/// use dlm::{LockOptions, Lockspace, Mode};
/// use std::time::Duration;
/// let ls = Lockspace::join("myapp", 0o600)?;
/// let options = LockOptions::new().timeout(Duration::from_secs(5));
/// dlm::with_lock_with(&ls, "config", Mode::Ex, options, |_guard| {
///     // ... only this holder, on any node, is here ...
/// })?;
/// # Ok::<(), dlm::Error>(())
/// ```
///
/// # Errors
/// As [`with_lock`], with those of [`Lockspace::lock_with`] in
/// [`WithLockError::Lock`].
pub fn with_lock_with<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    options: LockOptions,
    f: impl FnOnce(&mut LockGuard) -> T,
) -> std::result::Result<T, WithLockError<T>> {
    let mut guard = ls
        .lock_with(name, mode, options)
        .map_err(WithLockError::Lock)?;
    let value = f(&mut guard);
    match guard.unlock() {
        Ok(()) => Ok(value),
        Err(error) => Err(WithLockError::Unlock { error, value }),
    }
}
