//! Waiting for an answer: a thread's registration for waits, the limits of
//! a wait, and the process-wide watchdog that gives untimed waits their
//! liveness check without a clock read.
//!
//! Waiting costs what the same design costs in C (a condition variable):
//! the callback stores the answer and unparks (one futex wake), the waiter
//! parks (one futex wait). An untimed wait reads no clock — under
//! user-mode Linux, for one, every clock read is a system call — so it
//! cannot time itself: the watchdog thread advances [`ticks`] every
//! [`LIVENESS_PERIOD`] (sooner when a lockspace is seen going away) and
//! wakes the threads parked in untimed waits and the tasks that asked for
//! its tick, which then check that their lockspace still exists.

use crate::cell::{Delivered, Handshake, Wake};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often a wait checks that its lockspace still exists.
pub(crate) const LIVENESS_PERIOD: Duration = Duration::from_secs(1);

/// A thread's registration for waits: its handle, and whether it is
/// parked in an untimed wait (for the watchdog).
#[derive(Debug)]
pub(crate) struct Waiter {
    #[cfg_attr(dlm_loom, allow(dead_code))]
    thread: Thread,
    parked: Arc<AtomicBool>,
}

/// How long a wait may go on.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Limit {
    /// Until the answer comes or the lockspace is gone.
    Forever,
    /// At most about this many watchdog ticks.
    Ticks(u32),
    /// Until this instant (a timed request; reads the clock).
    Deadline(Instant),
}

impl Limit {
    /// The limit of a wait of `timeout` from now: a timeout too large to
    /// add to the clock means no deadline.
    pub(crate) fn after(timeout: Option<Duration>) -> Limit {
        match timeout.and_then(|t| Instant::now().checked_add(t)) {
            Some(deadline) => Limit::Deadline(deadline),
            None => Limit::Forever,
        }
    }
}

/// Why a wait ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NoAnswer {
    /// The limit passed.
    Expired,
    /// The lockspace is gone: no answer will come.
    Gone,
}

/// Watchdog ticks so far.
static TICKS: AtomicU32 = AtomicU32::new(0);
/// The threads that have waited, for the watchdog.
#[allow(clippy::type_complexity)]
static PARKED: parking_lot::Mutex<Vec<(Thread, Arc<AtomicBool>)>> =
    parking_lot::const_mutex(Vec::new());

/// Tasks to wake at the watchdog's next tick (async waits without a
/// deadline, for their liveness check). A channel, not a locked list: a
/// send never waits for another thread (the watchdog only ever takes
/// what is there, so no receiver blocks on it and a send takes no lock),
/// where a poll that locked a list could wait for a preempted holder.
static TICK_WAKERS: std::sync::LazyLock<(
    crossbeam_channel::Sender<std::task::Waker>,
    crossbeam_channel::Receiver<std::task::Waker>,
)> = std::sync::LazyLock::new(crossbeam_channel::unbounded);

/// Wakes `waker` at the watchdog's next tick.
pub(crate) fn wake_at_next_tick(waker: &std::task::Waker) {
    let _ = TICK_WAKERS.0.send(waker.clone());
}

/// The watchdog's tick count (advances about once a second): a clock that
/// costs no system call.
pub(crate) fn ticks() -> u32 {
    TICKS.load(Ordering::SeqCst)
}

/// The watchdog thread was started (in this process generation).
static WATCHDOG: crate::fork::StartedIn = crate::fork::StartedIn::new();

/// How long a poll-mode wait polls the descriptor at a time while the
/// watchdog runs, so that it sees the watchdog's verdict on the lockspace
/// (a release by force, dlm_controld gone) within this much.
const POLL_SLICE_MS: i32 = 50;

/// Starts the watchdog thread, once per process (again in a fork's child,
/// which has no threads but the forking one).
pub(crate) fn start_watchdog() {
    if !WATCHDOG.first() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dlm-watchdog".into())
        .spawn(|| {
            // Deletions in the device directory (a lockspace released,
            // possibly by force by another process), and dlm_controld's
            // exit (every lockspace of the node stopped), make it tick at
            // once.
            let deletions = crate::health::device_watch();
            let mut daemon = None;
            loop {
                if daemon.is_none() {
                    daemon = crate::health::daemon_pidfd();
                }
                if wait_for_events(deletions.as_ref(), daemon.as_ref()) {
                    daemon = None;
                }
                crate::health::update();
                tick();
            }
        });
    // Without the watchdog, untimed waits only lose their liveness check;
    // they still end when their answer comes.
    drop(spawned);
}

/// Waits up to [`LIVENESS_PERIOD`] for a deletion in the device directory
/// (`deletions`, drained) or dlm_controld's exit (`daemon`, a pidfd);
/// whether the daemon exited.
fn wait_for_events(
    deletions: Option<&std::os::fd::OwnedFd>,
    daemon: Option<&std::os::fd::OwnedFd>,
) -> bool {
    use std::os::fd::AsRawFd;
    let pfd = |fd: Option<&std::os::fd::OwnedFd>| libc::pollfd {
        fd: fd.map_or(-1, |f| f.as_raw_fd()),
        events: libc::POLLIN,
        revents: 0,
    };
    let mut pfds = [pfd(deletions), pfd(daemon)];
    if deletions.is_none() && daemon.is_none() {
        std::thread::sleep(LIVENESS_PERIOD);
        return false;
    }
    // SAFETY: two valid pollfds (a negative descriptor is ignored).
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), 2, LIVENESS_PERIOD.as_millis() as i32) };
    if n <= 0 {
        return false;
    }
    if let Some(fd) = deletions.filter(|_| pfds[0].revents != 0) {
        let mut buf = [0u8; 4096];
        // SAFETY: a valid buffer of that length; the descriptor is
        // non-blocking.
        while unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) } > 0 {}
    }
    pfds[1].revents != 0
}

/// One tick: advance the count, then wake every task and parked thread
/// that waits for it. The count is advanced before the wakers are taken,
/// so a task that registers after the take sees the new count.
fn tick() {
    TICKS.fetch_add(1, Ordering::SeqCst);
    let tasks: Vec<_> = TICK_WAKERS.1.try_iter().collect();
    tasks.into_iter().for_each(std::task::Waker::wake);
    for (thread, parked) in PARKED.lock().iter() {
        if parked.load(Ordering::SeqCst) {
            thread.unpark();
        }
    }
}

impl Waiter {
    fn new() -> Waiter {
        let parked = Arc::new(AtomicBool::new(false));
        let thread = std::thread::current();
        PARKED.lock().push((thread.clone(), parked.clone()));
        Waiter { thread, parked }
    }

    /// Runs `f` with the calling thread's waiter (or, during thread-local
    /// destruction, a fresh one).
    pub(crate) fn with<R>(f: impl FnOnce(&Waiter) -> R) -> R {
        thread_local! {
            static WAITER: Waiter = Waiter::new();
        }
        let mut f = Some(f);
        match WAITER.try_with(|w| (f.take().expect("called once"))(w)) {
            Ok(r) => r,
            Err(_) => (f.take().expect("not yet called"))(&Waiter::new()),
        }
    }

    /// The wake target of a request this thread waits for.
    pub(crate) fn wake(&self) -> Wake {
        #[cfg(not(dlm_loom))]
        {
            Wake::Thread(self.thread.clone())
        }
        #[cfg(dlm_loom)]
        {
            Wake::Thread(crate::cell::sync::current())
        }
    }

    /// Parks the thread with no clock read; the watchdog wakes it at its
    /// next tick if nothing else does. Returns whether a tick passed.
    pub(crate) fn park_untimed(&self) -> bool {
        let tick = TICKS.load(Ordering::SeqCst);
        self.parked.store(true, Ordering::SeqCst);
        std::thread::park();
        self.parked.store(false, Ordering::SeqCst);
        TICKS.load(Ordering::SeqCst) != tick
    }

    /// Parks the thread for at most `timeout`; the watchdog's next tick
    /// wakes it too.
    fn park_timed(&self, timeout: std::time::Duration) {
        self.parked.store(true, Ordering::SeqCst);
        std::thread::park_timeout(timeout);
        self.parked.store(false, Ordering::SeqCst);
    }

    /// Waits for the answer to the request in flight on `hs` within
    /// `limit`. After each tick of the watchdog (about once a second, and
    /// at once when a lockspace's device is deleted or dlm_controld exits)
    /// it asks `alive()` whether the lockspace can still answer: no answer
    /// will come from one that is gone or stalled.
    ///
    /// With `drive`, a poll-mode lockspace, the wait reads and applies the
    /// lockspace's answers itself instead of sleeping: `drive(ms)` waits up
    /// to `ms` for answers, applies them, and says whether the whole time
    /// passed with nothing to read.
    pub(crate) fn wait(
        &self,
        hs: &Handshake,
        limit: Limit,
        alive: &dyn Fn() -> bool,
        drive: Option<&dyn Fn(i32) -> bool>,
    ) -> Result<Delivered, NoAnswer> {
        let mut ticks = 0u32;
        let mut last_tick = TICKS.load(Ordering::SeqCst);
        loop {
            if let Some(d) = hs.take() {
                return Ok(d);
            }
            match limit {
                Limit::Deadline(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(NoAnswer::Expired);
                    }
                    // Cached flags (atomic loads), kept by the watchdog,
                    // whose tick wakes this thread when they change.
                    if !alive() {
                        return Err(NoAnswer::Gone);
                    }
                    let left = (deadline - now).min(LIVENESS_PERIOD);
                    match drive {
                        // Rounded up: poll's resolution is 1 ms.
                        Some(drive) => {
                            let mut ms = left.as_micros().div_ceil(1000) as i32;
                            if WATCHDOG.started() {
                                ms = ms.min(POLL_SLICE_MS);
                            }
                            drive(ms);
                        }
                        None => self.park_timed(left),
                    }
                }
                Limit::Forever | Limit::Ticks(_) => {
                    // A callback that delivered after the check above has
                    // also unparked us: park returns at once then. In poll
                    // mode, a second of nothing to read is a tick.
                    let ticked = match drive {
                        // The watchdog's ticks count; its verdict is
                        // looked at every slice.
                        Some(drive) if WATCHDOG.started() => {
                            drive(POLL_SLICE_MS);
                            let now = TICKS.load(Ordering::SeqCst);
                            if !alive() {
                                return Err(NoAnswer::Gone);
                            }
                            std::mem::replace(&mut last_tick, now) != now
                        }
                        Some(drive) => drive(LIVENESS_PERIOD.as_millis() as i32),
                        None => self.park_untimed(),
                    };
                    if ticked {
                        ticks += 1;
                        if !alive() {
                            return Err(NoAnswer::Gone);
                        }
                        if matches!(limit, Limit::Ticks(n) if ticks >= n) {
                            return Err(NoAnswer::Expired);
                        }
                    }
                }
            }
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        PARKED
            .lock()
            .retain(|(_, parked)| !Arc::ptr_eq(parked, &self.parked));
    }
}
