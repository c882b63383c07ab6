//! Options of a lock request or conversion.

use crate::flags::LockFlags;
use std::time::Duration;

/// How to make a lock request or conversion: flags, a timeout, blocking
/// notifications. Built with chained calls; `Copy`, so one value can serve
/// many requests.
///
/// ```
/// use dlm::LockOptions;
/// use std::time::Duration;
/// let opts = LockOptions::new().timeout(Duration::from_secs(2)).lvb();
/// assert_eq!(opts.get_timeout(), Some(Duration::from_secs(2)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockOptions {
    pub(crate) flags: LockFlags,
    pub(crate) timeout: Option<Duration>,
    pub(crate) notify_blocking: bool,
    /// The transaction id of a new request (`dlm_ls_lockx`'s `xid`), 0
    /// for none.
    pub(crate) xid: u64,
}

impl LockOptions {
    /// A blocking request with no flags.
    pub fn new() -> LockOptions {
        LockOptions::default()
    }

    /// Adds raw request flags; the combination is checked when the request
    /// is made.
    pub fn flags(mut self, flags: LockFlags) -> LockOptions {
        self.flags |= flags;
        self
    }

    /// Fails at once with [`Error::WouldBlock`](crate::Error::WouldBlock)
    /// instead of waiting (`LKF_NOQUEUE`).
    pub fn no_wait(self) -> LockOptions {
        self.flags(LockFlags::NOQUEUE)
    }

    /// Waits at most `timeout` for the grant; then cancels the request
    /// (`dlm_ls_unlock` with `LKF_CANCEL`) and fails with
    /// [`Error::TimedOut`](crate::Error::TimedOut). Done by this crate: the
    /// kernel's own lock timeouts are gone from current kernels.
    ///
    /// If the grant races the cancel and wins, the request succeeds: the
    /// lock is held by the returned guard (or the conversion took effect),
    /// never left held without an owner. If the cancel is not answered
    /// within [`CANCEL_GRACE`](crate::CANCEL_GRACE), the request is given up
    /// ([`Error::TimedOut`](crate::Error::TimedOut)) and a late grant is
    /// released by the crate's reaper thread. A timeout too large for the
    /// clock (`Duration::MAX`) means no deadline. The timeout counts from
    /// the moment the kernel accepted the request: a write refused with
    /// `EBUSY` or `ENOBUFS` is first sent again for up to
    /// [`BUSY_PATIENCE`](crate::BUSY_PATIENCE).
    ///
    /// Limit: when a node's lockspace is stopped for a recovery that never
    /// runs (its `dlm_controld` died), the kernel blocks every write to the
    /// lockspace device, the cancel's included, uninterruptibly: the call
    /// then does not return until the node recovers or is restarted.
    pub fn timeout(mut self, timeout: Duration) -> LockOptions {
        self.timeout = Some(timeout);
        self
    }

    /// Reads the lock value block when the lock is granted, and keeps it in
    /// step on later conversions (`LKF_VALBLK`).
    pub fn lvb(self) -> LockOptions {
        self.flags(LockFlags::VALBLK)
    }

    /// Makes the lock survive its lockspace handle and process as an orphan
    /// (`LKF_PERSISTENT`); see [`LockGuard::orphan`](crate::LockGuard::orphan).
    pub fn persistent(self) -> LockOptions {
        self.flags(LockFlags::PERSISTENT)
    }

    /// Grants a new NL request at once (`LKF_EXPEDITE`).
    pub fn expedite(self) -> LockOptions {
        self.flags(LockFlags::EXPEDITE)
    }

    /// Grants as soon as compatible, ignoring queue order (`LKF_NOORDER`).
    pub fn no_order(self) -> LockOptions {
        self.flags(LockFlags::NOORDER)
    }

    /// Queues at the head of the wait queue (`LKF_HEADQUE`).
    pub fn head_queue(self) -> LockOptions {
        self.flags(LockFlags::HEADQUE)
    }

    /// Accepts PR if the requested mode cannot be granted (`LKF_ALTPR`);
    /// the guard's [`mode`](crate::LockGuard::mode) tells what was granted.
    pub fn alt_pr(self) -> LockOptions {
        self.flags(LockFlags::ALTPR)
    }

    /// Accepts CW if the requested mode cannot be granted (`LKF_ALTCW`).
    pub fn alt_cw(self) -> LockOptions {
        self.flags(LockFlags::ALTCW)
    }

    /// With [`no_wait`](Self::no_wait): still notify the holders that block
    /// this request (`LKF_NOQUEUEBAST`).
    pub fn no_queue_bast(self) -> LockOptions {
        self.flags(LockFlags::NOQUEUEBAST)
    }

    /// Exempts the request from deadlock cancellation (`LKF_NODLCKWT`).
    pub fn no_deadlock_wait(self) -> LockOptions {
        self.flags(LockFlags::NODLCKWT)
    }

    /// Conversions: queue behind waiting requests even when compatible
    /// (`LKF_QUECVT`).
    pub fn queue_conversion(self) -> LockOptions {
        self.flags(LockFlags::QUECVT)
    }

    /// Conversions: on a conversion deadlock, demote the granted mode to
    /// NL and go on instead of failing (`LKF_CONVDEADLK`); the result's
    /// [`Granted::demoted`](crate::Granted::demoted) reports it.
    pub fn demote_on_deadlock(self) -> LockOptions {
        self.flags(LockFlags::CONVDEADLK)
    }

    /// New requests: deliver blocking notifications (BASTs) for this lock
    /// to [`LockGuard::blocking`](crate::LockGuard::blocking).
    pub fn notify_blocking(mut self) -> LockOptions {
        self.notify_blocking = true;
        self
    }

    /// Tags a new lock request with a transaction id, `xid`
    /// (`dlm_ls_lockx` instead of `dlm_ls_lock`; 0, the default, is no
    /// transaction).
    ///
    /// What it does today (kernel `fs/dlm/user.c`, `device_user_lock`): the
    /// kernel keeps the value with the lock (`ua->xid`) and shows it only in
    /// its debugfs lock dumps (`dlm/NAME_locks`, read by `dlm_tool
    /// lockdebug`). It was meant for a cluster-wide deadlock detector that
    /// treats locks of one transaction as one waiter; no released
    /// dlm_controld uses it, and nothing in the lock's behaviour changes.
    /// Use it to find a program's locks in those dumps.
    ///
    /// Only new requests carry it (a conversion is sent without one, and
    /// the kernel then records 0); `dlm_ls_lockx`'s `timeout` argument is
    /// not used (libdlm 4.2 zeroes it; lock timeouts are gone from the
    /// kernel, see [`timeout`](LockOptions::timeout) for this crate's own).
    pub fn transaction_id(mut self, xid: u64) -> LockOptions {
        self.xid = xid;
        self
    }

    /// The transaction id set, 0 if none.
    pub fn get_transaction_id(&self) -> u64 {
        self.xid
    }

    /// The flags set so far.
    pub fn get_flags(&self) -> LockFlags {
        self.flags
    }

    /// The timeout set, if any.
    pub fn get_timeout(&self) -> Option<Duration> {
        self.timeout
    }
}
