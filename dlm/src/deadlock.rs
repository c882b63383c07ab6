//! Breaking a deadlock from outside: `dlm_ls_deadlock_cancel`.
//!
//! The kernel (`fs/dlm/user.c` `device_user_deadlock`, `lock.c`
//! `dlm_user_deadlock`) looks the lock up by its id among every lock of
//! the lockspace on this node, whichever process or handle holds it, and
//! cancels its waiting request or conversion as an `LKF_CANCEL` unlock
//! would, marked as a deadlock cancel: the owner's completion then reports
//! `EDEADLK` ([`Error::Deadlock`]) instead of `ECANCEL`. Unlike a cancel
//! written through the owner's own handle, it leaves the lock's callback
//! argument and status block alone, so the owner's waiter is woken through
//! its own callback. A lock that is granted with nothing waiting is left
//! as it is, and the call succeeds (the kernel's `EBUSY` is dropped).
//!
//! Its user was dlm_controld's cluster-wide deadlock detection
//! (`enable_deadlk`, off by default), which picks a victim in a cycle of
//! waiting locks and cancels it by lock id. Today it is for a supervisor
//! that knows the lock ids of other programs' waiting requests (for
//! instance from `dlm_tool lockdebug`, or from programs that report their
//! own [`LockGuard::lkid`](crate::LockGuard::lkid)) and must break a wait
//! that would never end. The kernel does not check who asks: any process
//! that can open the lockspace can cancel any waiting request on this node.

use crate::error::{set_errno, Error, Result};
use crate::lockspace::Lockspace;
use dlm_sys as sys;

impl Lockspace {
    /// Cancels the waiting request or conversion of the lock `lkid`, held
    /// by any process or handle of this node in this lockspace, as a
    /// deadlock victim (`dlm_ls_deadlock_cancel`; see the module docs of
    /// `deadlock.rs`, repeated here):
    ///
    /// - a waiting conversion fails with [`Error::Deadlock`] and the lock
    ///   stays held in its old mode;
    /// - a waiting new request fails with [`Error::Deadlock`] and the lock
    ///   is gone;
    /// - a granted lock with nothing waiting is not touched, and this call
    ///   succeeds all the same.
    ///
    /// Lock ids are reused at once once freed: a lock id read earlier may
    /// name another lock now.
    ///
    /// Name conversions only (what the DLM's own deadlock detection
    /// cancelled), unless the victim's owner is known not to cancel the
    /// request itself. A deadlock cancel of a waiting *new* request ends
    /// the lock, and the kernel frees its id when the owner reads the
    /// answer; if the owner is at that moment cancelling the same request
    /// (a timed lock of this crate whose time ran out, or a C program's
    /// `dlm_ls_unlock` with `LKF_CANCEL`), its cancel names a freed id,
    /// which the kernel may already have given to another request of the
    /// node. This crate's own cancels rely on that not happening (see
    /// `may_cancel` in `cell.rs`).
    ///
    /// ```no_run
    /// # let ls = dlm::Lockspace::open("myapp")?;
    /// // The victim's id, as its owner reported it.
    /// let victim: u32 = 0x1000_0002;
    /// ls.deadlock_cancel(victim)?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for the lock id 0; [`Error::Forked`];
    /// `ENOENT` when no lock of the lockspace has that id, and other
    /// errors of the write, as [`Error::Os`].
    pub fn deadlock_cancel(&self, lkid: u32) -> Result<()> {
        self.inner.check()?;
        if lkid == 0 {
            return Err(Error::InvalidArgument("lock id 0 names no lock"));
        }
        set_errno(0);
        // SAFETY: the handle is open for as long as `self` lives; the call
        // writes one request naming the lock id and reads nothing of ours.
        let rc = unsafe { sys::dlm_ls_deadlock_cancel(self.as_raw(), lkid, 0) };
        if rc != 0 {
            return Err(Error::last("dlm_ls_deadlock_cancel"));
        }
        Ok(())
    }
}
