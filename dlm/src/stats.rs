//! Process-wide counters of the crate's unhappy paths, for operators and
//! tests: how often the kernel said `EBUSY` or `ENOBUFS`, how often a waiter gave up,
//! how many locks the reaper released. Counted only on those paths: the
//! lock/unlock path pays nothing.

use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) static BUSY_RETRIES: AtomicU64 = AtomicU64::new(0);
pub(crate) static UNREACHABLE_RETRIES: AtomicU64 = AtomicU64::new(0);
pub(crate) static GIVEN_UP: AtomicU64 = AtomicU64::new(0);
pub(crate) static REAPED: AtomicU64 = AtomicU64::new(0);
pub(crate) static RELEASE_FAILURES: AtomicU64 = AtomicU64::new(0);
pub(crate) static CACHE_TAKES: AtomicU64 = AtomicU64::new(0);
pub(crate) static CACHE_GIVE_UPS: AtomicU64 = AtomicU64::new(0);
pub(crate) static BAD_ANSWERS: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters ([`stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Stats {
    /// Requests the kernel refused with `EBUSY` (an earlier operation on
    /// the lock still in progress, as when a grant crosses a cancel on the
    /// wire) and this crate sent again.
    pub busy_retries: u64,
    /// Requests the kernel refused with `ENOBUFS` (the resource's master
    /// node not reachable while the membership changes, see
    /// [`Error::Unreachable`](crate::Error::Unreachable)) and this crate
    /// sent again.
    pub unreachable_retries: u64,
    /// Requests whose waiter stopped waiting for the answer (a cancel not
    /// answered within [`CANCEL_GRACE`](crate::CANCEL_GRACE), a future
    /// dropped with its request in flight, a lockspace gone, a panic
    /// unwinding); their answers go to the reaper.
    pub given_up: u64,
    /// Locks left held with no owner (a late grant after a give-up) that
    /// the reaper thread released.
    pub reaped: u64,
    /// Background releases the reaper could not carry out (the kernel
    /// refused the write for a reason other than `EBUSY`/`ENOBUFS`, or
    /// refused the unlock in its answer): those locks stay held until
    /// their lockspace handle closes, when the kernel unlocks them.
    pub release_failures: u64,
    /// Takes of a [`CachedLock`](crate::CachedLock)'s DLM lock (new
    /// requests and conversions up granted), every cache of the process.
    /// Cache hits are counted per cache only
    /// ([`CachedLock::stats`](crate::CachedLock::stats)): the hit path
    /// touches no process-wide counter.
    pub cache_takes: u64,
    /// Times a cached lock's DLM lock was given up (asked for by another
    /// holder, or idle), every cache of the process.
    pub cache_give_ups: u64,
    /// Answers read from a poll-mode handle's descriptor that could not be
    /// applied ([`Error::BadAnswer`](crate::Error::BadAnswer)): none on a
    /// kernel that keeps its device protocol.
    pub bad_answers: u64,
}

/// The counters since the process started.
pub fn stats() -> Stats {
    Stats {
        busy_retries: BUSY_RETRIES.load(Ordering::Relaxed),
        unreachable_retries: UNREACHABLE_RETRIES.load(Ordering::Relaxed),
        given_up: GIVEN_UP.load(Ordering::Relaxed),
        reaped: REAPED.load(Ordering::Relaxed),
        release_failures: RELEASE_FAILURES.load(Ordering::Relaxed),
        cache_takes: CACHE_TAKES.load(Ordering::Relaxed),
        cache_give_ups: CACHE_GIVE_UPS.load(Ordering::Relaxed),
        bad_answers: BAD_ANSWERS.load(Ordering::Relaxed),
    }
}

/// Counts one retry of a write the kernel refused with `err`
/// ([`Error::InProgress`](crate::Error::InProgress) for `EBUSY`, else
/// [`Error::Unreachable`](crate::Error::Unreachable) for `ENOBUFS`).
pub(crate) fn count_retry(err: &crate::Error) {
    count(if matches!(err, crate::Error::InProgress) {
        &BUSY_RETRIES
    } else {
        &UNREACHABLE_RETRIES
    });
}

/// Adds one to `counter`.
pub(crate) fn count(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
