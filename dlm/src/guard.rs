//! A lock's life: request, conversion, value block, unlock, orphaning.

use crate::ast::{
    blocking_ast, completion_ast, Abandoned, Blocking, Completion, Limit, LockCell, Waiter, CANCEL,
    MAIN,
};
use crate::error::{errno, set_errno, Error, Result};
use crate::flags::{self, LockFlags, Request};
use crate::lockspace::{Inner, Lockspace};
use crate::lvb::{Lvb, LVB_LEN};
use crate::mode::Mode;
use crate::name;
use crate::options::LockOptions;
use crossbeam_channel::Receiver;
use dlm_sys as sys;
use std::ffi::c_void;
use std::fmt;
use std::time::{Duration, Instant};

/// How long a cancelled request may take to answer before its waiter gives
/// up on it (the lock is then released by the AST thread if it is granted
/// later, so it is never left held).
pub const CANCEL_GRACE: Duration = Duration::from_secs(10);

/// How long an unlock may take to complete before
/// [`LockGuard::unlock`] gives up with [`Error::TimedOut`]; the kernel
/// still carries the unlock out when it can.
pub const UNLOCK_PATIENCE: Duration = Duration::from_secs(60);

/// What a grant or conversion gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The mode now held: the requested one, or PR/CW when an alternate
    /// mode was accepted ([`LockOptions::alt_pr`], [`LockOptions::alt_cw`]).
    pub mode: Mode,
    /// The DLM granted the alternate mode instead of the requested one
    /// (`DLM_SBF_ALTMODE`).
    pub alternate: bool,
    /// The granted mode was demoted to NL to break a conversion deadlock
    /// before this conversion was granted (`DLM_SBF_DEMOTED`, with
    /// [`LockOptions::demote_on_deadlock`]): other holders may have changed
    /// the protected state meanwhile.
    pub demoted: bool,
}

/// A granted DLM lock. Dropping it unlocks it.
///
/// The guard owns the lock: it can be converted ([`convert`](Self::convert)),
/// its lock value block read and written, its blocking notifications
/// received ([`blocking`](Self::blocking)), and it is unlocked by
/// [`unlock`](Self::unlock) or on drop. It keeps its lockspace open.
///
/// Dropping the guard unlocks the lock (`dlm_ls_unlock`) and waits for the
/// unlock to complete, so a later request of the same resource by this
/// process cannot find its own lock still there. The drop never panics;
/// use [`unlock`](Self::unlock) to see errors.
#[must_use = "dropping the guard unlocks the lock at once"]
pub struct LockGuard {
    /// `None` once unlocked, orphaned or given up.
    cell: Option<Box<LockCell>>,
    ls: Lockspace,
    lkid: u32,
    granted: Granted,
    blocking: Option<Receiver<Blocking>>,
    persistent: bool,
    /// The lock reads (and can write) the LVB (`LKF_VALBLK`).
    valblk: bool,
    /// The kernel's flags of the last request may include VALBLK: then an
    /// unlock in PW/EX would copy libdlm's uninitialised bytes into the
    /// LVB, so the lock is first converted down.
    exflags_valblk: bool,
    /// The LVB buffer holds a value read from the DLM, valid or not.
    lvb_read: bool,
    lvb_valid: bool,
    /// `set_lvb` gave a value not yet published.
    lvb_dirty: bool,
    /// `invalidate_lvb` was called and not yet carried out.
    lvb_invalidate: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lockspace", &self.ls.name())
            .field("lkid", &self.lkid)
            .field("mode", &self.granted.mode)
            .field("persistent", &self.persistent)
            .finish_non_exhaustive()
    }
}

/// The end of a wait for a completion.
enum Waited {
    /// The completion came; `cancelled`: this wait's timeout cancelled the
    /// request first.
    Completed {
        completion: Completion,
        cancelled: bool,
    },
    /// No completion came in time or the lockspace went away: the cell
    /// must be given up.
    GaveUp(Error),
}

/// The BAST function to register: only for locks that asked for
/// notifications, so the kernel sends none to the others.
fn bast_fn(cell: &LockCell) -> Option<unsafe extern "C" fn(*mut c_void)> {
    cell.wants_blocking()
        .then_some(blocking_ast as unsafe extern "C" fn(*mut c_void))
}

/// A channel for blocking notifications, when `wanted`.
fn blocking_channel(
    wanted: bool,
) -> (
    Option<crossbeam_channel::Sender<Blocking>>,
    Option<Receiver<Blocking>>,
) {
    if !wanted {
        return (None, None);
    }
    let (tx, rx) = crossbeam_channel::bounded(1);
    (Some(tx), Some(rx))
}

/// `dlm_ls_lock` with `cell`'s MAIN lksb and this crate's ASTs. `name` is
/// the resource for a new request or adoption, empty for a conversion.
///
/// # Safety
/// No request of `cell` is in flight, and `cell` stays at its address
/// until the lock's last AST (or, given up, until the lockspace closes).
unsafe fn ls_lock(inner: &Inner, cell: &LockCell, mode: Mode, flags: u32, name: &[u8]) -> i32 {
    // SAFETY: the caller's contract keeps the lksb and LVB buffer alive and
    // fixed; libdlm copies the name during the call.
    unsafe {
        sys::dlm_ls_lock(
            inner.handle(),
            mode.as_raw(),
            cell.lksb_ptr(MAIN),
            flags,
            if name.is_empty() {
                std::ptr::null()
            } else {
                name.as_ptr().cast()
            },
            name.len() as u32,
            0,
            Some(completion_ast),
            cell.arg(MAIN),
            bast_fn(cell),
            std::ptr::null_mut(),
        )
    }
}

/// Submits a request or conversion of `cell` from this thread and waits for
/// its completion (see [`await_completion`]). `Err` when libdlm refused the
/// request: then no AST will come.
///
/// # Safety
/// As for [`ls_lock`].
unsafe fn submit(
    inner: &Inner,
    cell: &LockCell,
    mode: Mode,
    flags: u32,
    name: &[u8],
    timeout: Option<Duration>,
    lkid: Option<u32>,
) -> Result<Waited> {
    Waiter::with(|w| {
        w.drain();
        // SAFETY: no request in flight (the caller's contract).
        let seq = unsafe { cell.prepare(w) };
        // SAFETY: the caller's contract.
        if unsafe { ls_lock(inner, cell, mode, flags, name) } != 0 {
            return Err(match errno() {
                libc::ENOENT if !inner.is_alive() => Error::LockspaceGone,
                code => Error::from_errno("dlm_ls_lock", code),
            });
        }
        Ok(await_completion(inner, cell, w, seq, timeout, lkid))
    })
}

/// Waits for the completion of request `seq` of `cell`; with a `timeout`,
/// cancels the request when it expires (for a new request the lock id is
/// the one libdlm stored; for a conversion, `lkid`) and waits
/// [`CANCEL_GRACE`] for its answer.
fn await_completion(
    ls: &Inner,
    cell: &LockCell,
    w: &Waiter,
    seq: u32,
    timeout: Option<Duration>,
    lkid: Option<u32>,
) -> Waited {
    let alive = || ls.is_alive();
    let limit = match timeout {
        Some(t) => Limit::Deadline(Instant::now() + t),
        None => Limit::Forever,
    };
    match w.wait(cell, seq, limit, &alive) {
        Ok(Some(completion)) => {
            return Waited::Completed {
                completion,
                cancelled: false,
            }
        }
        Ok(None) => {}
        Err(e) => return Waited::GaveUp(e),
    }
    let lkid = lkid.unwrap_or_else(|| cell.lkid_after_request());
    // The cancel uses the second lksb: the request's AST may be running on
    // libdlm's thread right now, and libdlm writes into the lksb it is
    // given. A cancel that finds the lock already granted succeeds quietly
    // and the grant is the answer; a cancel that fails (the request ended
    // meanwhile) leaves that end as the answer. Either way, one completion
    // of request `seq` comes.
    // SAFETY: the cell is alive; the CANCEL lksb is not in use by any
    // other request.
    unsafe {
        sys::dlm_ls_unlock(
            ls.handle(),
            lkid,
            sys::LKF_CANCEL,
            cell.lksb_ptr(CANCEL),
            cell.arg(CANCEL),
        )
    };
    match w.wait(
        cell,
        seq,
        Limit::Deadline(Instant::now() + CANCEL_GRACE),
        &alive,
    ) {
        Ok(Some(completion)) => Waited::Completed {
            completion,
            cancelled: true,
        },
        Ok(None) => Waited::GaveUp(Error::TimedOut),
        Err(e) => Waited::GaveUp(e),
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
        let name = name::resource_name(name)?;
        flags::check(Request::New, mode, options.flags)?;
        let (btx, brx) = blocking_channel(options.notify_blocking);
        let inner = &*ls.inner;
        let cell = LockCell::new(inner.handle(), btx);
        // SAFETY: the cell is new, and boxed: it stays where it is until its
        // last AST, or is parked in the lockspace if given up.
        let waited = unsafe {
            submit(
                inner,
                &cell,
                mode,
                options.flags.bits(),
                name,
                options.timeout,
                None,
            )
        }?;
        let (completion, cancelled) = match waited {
            Waited::Completed {
                completion,
                cancelled,
            } => (completion, cancelled),
            Waited::GaveUp(e) => {
                cell.abandon(Abandoned::Request);
                inner.park(cell);
                return Err(e);
            }
        };
        if let Some(e) = Error::from_status(completion.status) {
            // A failed new request ends the lock: no more ASTs, the cell
            // can go.
            return Err(match e {
                Error::Cancelled if cancelled => Error::TimedOut,
                e => e,
            });
        }
        let granted = granted(mode, options.flags, completion.sb_flags);
        let valblk = options.flags.contains(LockFlags::VALBLK);
        Ok(LockGuard {
            cell: Some(cell),
            ls: ls.clone(),
            lkid: completion.lkid,
            granted,
            blocking: brx,
            persistent: options.flags.contains(LockFlags::PERSISTENT),
            valblk,
            exflags_valblk: valblk,
            lvb_read: valblk,
            lvb_valid: completion.sb_flags & sys::DLM_SBF_VALNOTVALID as u8 == 0,
            lvb_dirty: false,
            lvb_invalidate: false,
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
        let name = name::resource_name(name)?;
        if !options
            .flags
            .without(LockFlags::VALBLK | LockFlags::PERSISTENT)
            .is_empty()
            || options.timeout.is_some()
        {
            return Err(Error::InvalidArgument(
                "adopting an orphan takes only the lvb and notify_blocking options",
            ));
        }
        let (btx, brx) = blocking_channel(options.notify_blocking);
        let inner = &*ls.inner;
        let cell = LockCell::new(inner.handle(), btx);
        let valblk = options.flags.contains(LockFlags::VALBLK);
        let flags =
            sys::LKF_PERSISTENT | sys::LKF_ORPHAN | if valblk { sys::LKF_VALBLK } else { 0 };
        set_errno(0);
        // SAFETY: the cell is new and boxed; the kernel answers in the write
        // and names the cell as the lock's AST argument from now on.
        let rc = unsafe { ls_lock(inner, &cell, mode, flags, name) };
        if rc != 0 {
            return Err(match errno() {
                libc::ENOENT => Error::OrphanNotFound,
                libc::EAGAIN => Error::OrphanModeMismatch,
                code => Error::from_errno("dlm_ls_lock (adopt orphan)", code),
            });
        }
        // No AST comes for an adoption: libdlm stored the lock id on this
        // thread.
        let lkid = cell.lkid_after_request();
        Ok(LockGuard {
            cell: Some(cell),
            ls: ls.clone(),
            lkid,
            granted: Granted {
                mode,
                alternate: false,
                demoted: false,
            },
            blocking: brx,
            persistent: true,
            valblk,
            // The orphan's last request is unknown: assume VALBLK.
            exflags_valblk: true,
            lvb_read: false,
            lvb_valid: false,
            lvb_dirty: false,
            lvb_invalidate: false,
        })
    }

    /// The mode held now.
    pub fn mode(&self) -> Mode {
        self.granted.mode
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

    /// Whether the lock is persistent (`LKF_PERSISTENT`).
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// Blocking notifications (BASTs): a value arrives when another request
    /// waits for a mode this lock's mode blocks; the holder can then
    /// convert down or unlock. Pending notifications are coalesced into
    /// one. `None` unless the lock was requested with
    /// [`LockOptions::notify_blocking`]. The receiver works with
    /// `crossbeam_channel::select!`; to just wait, prefer
    /// [`wait_blocking`](Self::wait_blocking), which sleeps at once where
    /// the receiver's `recv` first spins and yields.
    pub fn blocking(&self) -> Option<&Receiver<Blocking>> {
        self.blocking.as_ref()
    }

    /// Waits for a blocking notification (see [`blocking`](Self::blocking))
    /// for at most `timeout`, or as long as the lockspace exists. Returns
    /// whether one came (and takes it).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock was requested with
    /// [`LockOptions::notify_blocking`]; [`Error::LockspaceGone`].
    pub fn wait_blocking(&self, timeout: Option<Duration>) -> Result<bool> {
        let (Some(rx), Some(cell)) = (self.blocking.as_ref(), self.cell.as_ref()) else {
            return Err(Error::InvalidArgument(
                "the lock was not requested with notify_blocking",
            ));
        };
        if rx.try_recv().is_ok() {
            return Ok(true);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        cell.set_bast_waiter(Some(std::thread::current()));
        let result = loop {
            // A notification sent after this check also unparks us.
            if rx.try_recv().is_ok() {
                break Ok(true);
            }
            let check_alive = match deadline {
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        break Ok(false);
                    }
                    std::thread::park_timeout((d - now).min(Duration::from_secs(1)));
                    true
                }
                // No clock read: the watchdog's tick says when to check.
                None => Waiter::with(|w| w.park_untimed()),
            };
            if check_alive && !self.ls.inner.is_alive() {
                break Err(Error::LockspaceGone);
            }
        };
        cell.set_bast_waiter(None);
        result
    }

    /// The lock value block as last read from the DLM (at the grant or an
    /// up-conversion with [`LockOptions::lvb`]), or as set by
    /// [`set_lvb`](Self::set_lvb). `None` if the lock does not use the LVB
    /// or has not read it yet (an adopted orphan, until converted).
    pub fn lvb(&self) -> Option<Lvb> {
        if !self.valblk || !(self.lvb_read || self.lvb_dirty) {
            return None;
        }
        let cell = self.cell.as_ref()?;
        // SAFETY: `&self` means no request of this lock is in flight
        // (requests need `&mut self`), and the last completion was received
        // by the thread that made it, before the guard was handed on.
        let bytes = unsafe { cell.lvb() };
        Some(Lvb {
            bytes,
            valid: self.lvb_valid || self.lvb_dirty,
        })
    }

    /// Sets the lock value block to `value` (at most 32 bytes; the rest is
    /// zeroed). It is published to the DLM by the next conversion down
    /// from PW/EX, or when the lock is released — never by the unlock call
    /// itself, which in libdlm sends uninitialised bytes.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock uses the LVB
    /// ([`LockOptions::lvb`]) and is held in PW or EX, or if `value` is
    /// longer than 32 bytes.
    pub fn set_lvb(&mut self, value: &[u8]) -> Result<()> {
        if !self.valblk {
            return Err(Error::InvalidArgument(
                "the lock was not requested with the lvb option",
            ));
        }
        if !self.granted.mode.writes_lvb() {
            return Err(Error::InvalidArgument(
                "only a PW or EX holder can write the lock value block",
            ));
        }
        if value.len() > LVB_LEN {
            return Err(Error::InvalidArgument(
                "a lock value block holds at most 32 bytes",
            ));
        }
        let mut bytes = [0u8; LVB_LEN];
        bytes[..value.len()].copy_from_slice(value);
        let cell = self
            .cell
            .as_ref()
            .ok_or(Error::InvalidArgument("the lock is no longer held"))?;
        // SAFETY: `&mut self`: no request of this lock is in flight.
        unsafe { cell.set_lvb(&bytes) };
        self.lvb_dirty = true;
        self.lvb_invalidate = false;
        Ok(())
    }

    /// Marks the lock value block not valid for the next holders
    /// (`LKF_IVVALBLK`), at the next conversion down from PW/EX or when the
    /// lock is released. Cancels a pending [`set_lvb`](Self::set_lvb).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the lock is held in PW or EX.
    pub fn invalidate_lvb(&mut self) -> Result<()> {
        if !self.granted.mode.writes_lvb() {
            return Err(Error::InvalidArgument(
                "only a PW or EX holder can invalidate the lock value block",
            ));
        }
        self.lvb_invalidate = true;
        self.lvb_dirty = false;
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
    /// conversion down from PW/EX.
    ///
    /// # Errors
    /// On [`Error::WouldBlock`], [`Error::Deadlock`], [`Error::TimedOut`]
    /// or [`Error::Cancelled`] the lock is still held in its old mode and
    /// the guard stays valid. [`Error::InvalidArgument`] for flags the
    /// kernel rejects (nothing is sent); [`Error::LockspaceGone`].
    pub fn convert_with(&mut self, mode: Mode, options: LockOptions) -> Result<Granted> {
        let from = self.granted.mode;
        flags::check(Request::Convert { from }, mode, options.flags)?;
        let Some(cell) = self.cell.as_ref() else {
            return Err(Error::InvalidArgument("the lock is no longer held"));
        };
        if options.notify_blocking && !cell.wants_blocking() {
            return Err(Error::InvalidArgument(
                "blocking notifications are asked for when the lock is requested",
            ));
        }
        let valblk = self.valblk || options.flags.contains(LockFlags::VALBLK);
        // Conversions from PW/EX (except PW -> EX) write the LVB; all others
        // read it (the kernel's dlm_lvb_operations).
        let writes = from.writes_lvb() && !(from == Mode::Pw && mode == Mode::Ex);
        let mut flags = options.flags.without(LockFlags::VALBLK).bits() | sys::LKF_CONVERT;
        let (publish, invalidate) = if writes {
            (
                valblk
                    && (self.lvb_dirty || options.flags.contains(LockFlags::VALBLK))
                    && !self.lvb_invalidate,
                self.lvb_invalidate,
            )
        } else {
            (false, false)
        };
        if invalidate {
            flags |= sys::LKF_IVVALBLK;
        } else if publish || (valblk && !writes) {
            flags |= sys::LKF_VALBLK;
        }
        // SAFETY: `&mut self`: no request of this lock is in flight; the
        // cell is boxed and owned by the guard (or parked if given up).
        let waited = unsafe {
            submit(
                &self.ls.inner,
                cell,
                mode,
                flags,
                &[],
                options.timeout,
                Some(self.lkid),
            )
        }?;
        let (completion, cancelled) = match waited {
            Waited::Completed {
                completion,
                cancelled,
            } => (completion, cancelled),
            Waited::GaveUp(e) => {
                // The conversion's outcome is unknown: the guard can no
                // longer vouch for its mode. Give the lock up.
                self.give_up();
                return Err(e);
            }
        };
        if let Some(e) = Error::from_status(completion.status) {
            // A failed conversion leaves the lock granted in its old mode.
            return Err(match e {
                Error::Cancelled if cancelled => Error::TimedOut,
                e => e,
            });
        }
        self.granted = granted(mode, options.flags, completion.sb_flags);
        self.valblk = valblk;
        self.exflags_valblk = flags & sys::LKF_VALBLK != 0;
        if publish || invalidate {
            self.lvb_dirty = false;
            self.lvb_invalidate = false;
            self.lvb_valid = !invalidate;
            self.lvb_read = true;
        } else if valblk && !writes {
            self.lvb_read = true;
            self.lvb_valid = completion.sb_flags & sys::DLM_SBF_VALNOTVALID as u8 == 0;
            self.lvb_dirty = false;
        }
        Ok(self.granted)
    }

    /// Unlocks the lock (`dlm_ls_unlock`) and waits for the unlock to
    /// complete. A pending [`set_lvb`](Self::set_lvb) is published first,
    /// by a conversion to NL with `LKF_VALBLK`.
    ///
    /// # Errors
    /// [`Error::LockspaceGone`] if the lockspace was released by force
    /// (its locks went with it); [`Error::TimedOut`] if the unlock did not
    /// complete within [`UNLOCK_PATIENCE`] (the kernel completes it later);
    /// other errors of `dlm_ls_unlock`.
    pub fn unlock(mut self) -> Result<()> {
        self.release()
    }

    /// Leaves a [persistent](LockOptions::persistent) lock behind on
    /// purpose: it stays held, and becomes an orphan when this process's
    /// lockspace handle closes (or the process exits); another process can
    /// then [adopt](Lockspace::adopt_orphan) it, or
    /// [purge](Lockspace::purge_orphans) it.
    ///
    /// # Errors
    /// Gives the guard back if the lock is not persistent (closing would
    /// unlock it rather than orphan it).
    #[allow(clippy::result_large_err)]
    pub fn orphan(mut self) -> std::result::Result<(), LockGuard> {
        if !self.persistent {
            return Err(self);
        }
        // The kernel may still send blocking ASTs to the cell until the
        // lockspace closes: keep it until then.
        if let Some(cell) = self.cell.take() {
            self.ls.inner.park(cell);
        }
        Ok(())
    }

    /// Gives the cell to the lockspace (its last AST may still come) and
    /// forgets the lock.
    fn give_up(&mut self) {
        if let Some(cell) = self.cell.take() {
            cell.abandon(Abandoned::Held);
            self.ls.inner.park(cell);
        }
    }

    fn release(&mut self) -> Result<()> {
        if self.cell.is_none() {
            return Ok(());
        }
        let mut unlock_flags = 0;
        if self.granted.mode.writes_lvb() {
            if self.lvb_invalidate {
                // The kernel marks the LVB not valid and copies nothing.
                unlock_flags = sys::LKF_IVVALBLK;
            } else if self.lvb_dirty || self.exflags_valblk {
                // Publish (or, without VALBLK, clear the kernel's VALBLK
                // flag) by converting down first. If that fails the unlock
                // still goes ahead.
                let _ = self.convert_with(Mode::Nl, LockOptions::new());
            }
        }
        let Some(cell) = self.cell.take() else {
            return Err(Error::LockspaceGone);
        };
        let inner = &*self.ls.inner;
        let lkid = self.lkid;
        let result = Waiter::with(|w| {
            w.drain();
            // SAFETY: `&mut self`: no request of this lock is in flight.
            let seq = unsafe { cell.prepare(w) };
            // SAFETY: the cell stays alive until the unlock's completion is
            // received, or is parked below.
            let rc = unsafe {
                sys::dlm_ls_unlock(
                    inner.handle(),
                    lkid,
                    unlock_flags,
                    cell.lksb_ptr(MAIN),
                    cell.arg(MAIN),
                )
            };
            if rc != 0 {
                return Err(match errno() {
                    _ if !inner.is_alive() => Error::LockspaceGone,
                    code => Error::from_errno("dlm_ls_unlock", code),
                });
            }
            match w.wait(
                &cell,
                seq,
                Limit::Ticks(UNLOCK_PATIENCE.as_secs() as u32),
                &|| inner.is_alive(),
            ) {
                Ok(Some(c)) if c.status == sys::EUNLOCK => Ok(()),
                Ok(Some(c)) => Err(Error::from_status(c.status)
                    .unwrap_or(Error::InvalidArgument("unexpected unlock status"))),
                Ok(None) => Err(Error::TimedOut),
                Err(e) => Err(e),
            }
        });
        match result {
            Ok(()) => drop(cell),
            Err(_) => {
                cell.abandon(Abandoned::Unlock);
                inner.park(cell);
            }
        }
        result
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = self.release();
    }
}

/// The grant a completion describes for a request of `mode`.
fn granted(mode: Mode, flags: LockFlags, sb_flags: u8) -> Granted {
    let alternate = sb_flags & sys::DLM_SBF_ALTMODE as u8 != 0;
    let mode = match alternate {
        true if flags.contains(LockFlags::ALTPR) => Mode::Pr,
        true if flags.contains(LockFlags::ALTCW) => Mode::Cw,
        _ => mode,
    };
    Granted {
        mode,
        alternate,
        demoted: sb_flags & sys::DLM_SBF_DEMOTED as u8 != 0,
    }
}

/// Takes the lock `name` in `mode`, runs `f` with the guard, then unlocks
/// it (ocaml-dlm's `with_lock`). The lock is released even if `f` panics.
///
/// # Errors
/// The errors of [`Lockspace::lock`], and of [`LockGuard::unlock`] after
/// `f` returned.
pub fn with_lock<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    f: impl FnOnce(&mut LockGuard) -> T,
) -> Result<T> {
    with_lock_opts(ls, name, mode, LockOptions::new(), f)
}

/// [`with_lock`] with request options (try, timeout, flags).
///
/// # Errors
/// As [`with_lock`], and those of [`Lockspace::lock_with`].
pub fn with_lock_opts<T>(
    ls: &Lockspace,
    name: impl AsRef<[u8]>,
    mode: Mode,
    options: LockOptions,
    f: impl FnOnce(&mut LockGuard) -> T,
) -> Result<T> {
    let mut guard = ls.lock_with(name, mode, options)?;
    let value = f(&mut guard);
    guard.unlock()?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_modes_are_reported() {
        let alt = sys::DLM_SBF_ALTMODE as u8;
        assert_eq!(granted(Mode::Ex, LockFlags::ALTPR, alt).mode, Mode::Pr);
        assert_eq!(granted(Mode::Ex, LockFlags::ALTCW, alt).mode, Mode::Cw);
        assert_eq!(
            granted(Mode::Ex, LockFlags::ALTPR | LockFlags::ALTCW, alt).mode,
            Mode::Pr
        );
        let plain = granted(Mode::Ex, LockFlags::ALTPR, 0);
        assert_eq!(
            (plain.mode, plain.alternate, plain.demoted),
            (Mode::Ex, false, false)
        );
        assert!(granted(Mode::Ex, LockFlags::CONVDEADLK, sys::DLM_SBF_DEMOTED as u8).demoted);
    }
}
