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

/// A future's place among those the watchdog wakes at every tick (the
/// liveness checks of futures in flight), held for the future's life: the
/// future registers its task's waker in it at each poll, the watchdog
/// wakes it at each tick, and the drop gives the place back.
///
/// Why not [`wake_at_next_tick`] for the futures in flight: a waker sent
/// there stays until the next tick (up to [`LIVENESS_PERIOD`]), and with it
/// the memory of its task (for `try_join_all` and `FuturesUnordered`, each
/// future's own task, future included): a thousand requests in flight
/// kept a megabyte or more alive for a second after they were answered,
/// which the allocator then gave back to the system all at once and
/// faulted in again (measured: 250 page faults in one round of case 7 of
/// the benchmark, every few rounds; 50 µs each under user-mode Linux).
/// A place keeps nothing once its future is done, and its memory (a
/// waker slot, never freed) is reused by the next future.
#[derive(Debug)]
pub(crate) struct TickSlot(u32);

impl TickSlot {
    /// A free place (one compare-and-swap; a new one only while the number
    /// of futures in flight grows past what it ever was).
    pub(crate) fn new() -> TickSlot {
        TickSlot(SLOTS.acquire())
    }

    /// Registers `waker` for the next tick (as `AtomicWaker::register`:
    /// no clone when the registered waker would wake the same task).
    pub(crate) fn register(&self, waker: &std::task::Waker) {
        SLOTS.slot(self.0).waker.register(waker);
    }
}

impl Drop for TickSlot {
    fn drop(&mut self) {
        SLOTS.release(self.0);
    }
}

/// The places of [`TickSlot`]s: segments of doubling size (never freed, so
/// a reference to a slot is valid for the whole process), and a lock-free
/// stack of free places. The cost of that: the places stay as many as the
/// most futures ever in flight at once (32 bytes each, in segments of
/// doubling size, so up to twice that), and each tick (about once a
/// second) looks at every place, free or not: a burst of a million
/// futures leaves some 64 MB and two million atomic operations a second
/// behind it for the rest of the process. The stack's head carries a tag that every change
/// increments, so a pop that read a stale `next` fails its
/// compare-and-swap (no ABA problem).
struct Slots {
    segments: [std::sync::atomic::AtomicPtr<Slot>; SEGMENTS],
    /// Tag (high 32 bits) and the index + 1 of the first free slot (low
    /// 32 bits; 0: none free).
    free: std::sync::atomic::AtomicU64,
    /// Places handed out so far, free or not (the next new index).
    made: AtomicU32,
}

struct Slot {
    waker: atomic_waker::AtomicWaker,
    /// The next free place's index + 1, while this one is free.
    next: AtomicU32,
}

/// Places in the first segment; segment `k` holds `FIRST << k`.
const FIRST: u32 = 256;
/// Enough segments for every place a `u32` counts.
const SEGMENTS: usize = 25;

static SLOTS: Slots = Slots {
    segments: [const { std::sync::atomic::AtomicPtr::new(std::ptr::null_mut()) }; SEGMENTS],
    free: std::sync::atomic::AtomicU64::new(0),
    made: AtomicU32::new(0),
};

impl Slots {
    /// The segment of place `i` and its position in it.
    fn locate(i: u32) -> (usize, usize) {
        let k = (i / FIRST + 1).ilog2() as usize;
        (k, (u64::from(i) - Self::start(k)) as usize)
    }

    /// The first place of segment `k`: FIRST * (2^k - 1).
    fn start(k: usize) -> u64 {
        u64::from(FIRST) * ((1u64 << k) - 1)
    }

    /// The slot of place `i`, whose segment exists (made with the place).
    fn slot(&self, i: u32) -> &Slot {
        let (k, at) = Self::locate(i);
        let seg = self.segments[k].load(Ordering::Acquire);
        assert!(!seg.is_null(), "a tick slot's segment exists");
        // The segment holds FIRST << k slots (made by `segment`), `at` is
        // below that (`locate`), and segments are never freed.
        // SAFETY: `at` is inside the live, never freed segment (above).
        unsafe { &*seg.add(at) }
    }

    /// Makes sure the segment of place `i` exists.
    fn segment(&self, i: u32) {
        let (k, _) = Self::locate(i);
        if !self.segments[k].load(Ordering::Acquire).is_null() {
            return;
        }
        let len = (FIRST as usize) << k;
        let fresh: Box<[Slot]> = (0..len)
            .map(|_| Slot {
                waker: atomic_waker::AtomicWaker::new(),
                next: AtomicU32::new(0),
            })
            .collect();
        let raw = Box::into_raw(fresh).cast::<Slot>();
        if self.segments[k]
            .compare_exchange(
                std::ptr::null_mut(),
                raw,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .is_err()
        {
            // Another thread made it first; `raw` was never published.
            // SAFETY: `raw` came from `Box::into_raw` of a slice of `len` slots just above.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(raw, len)) });
        }
    }

    fn acquire(&self) -> u32 {
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            let first = head as u32;
            if first == 0 {
                // SeqCst, as the watchdog's load of it and the tick count:
                // either the watchdog sees this place, or the future's
                // first poll sees the tick (no store-buffering between
                // the two).
                let i = self.made.fetch_add(1, Ordering::SeqCst);
                self.segment(i);
                return i;
            }
            let next = self.slot(first - 1).next.load(Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | u64::from(next);
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return first - 1,
                Err(now) => head = now,
            }
        }
    }

    fn release(&self, i: u32) {
        let slot = self.slot(i);
        // The waker, and what it keeps alive, goes now.
        drop(slot.waker.take());
        let mut head = self.free.load(Ordering::Acquire);
        loop {
            slot.next.store(head as u32, Ordering::Relaxed);
            let new = (((head >> 32) + 1) << 32) | u64::from(i + 1);
            match self
                .free
                .compare_exchange_weak(head, new, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }

    /// Wakes every registered place (free ones hold no waker).
    fn wake_all(&self) {
        let made = u64::from(self.made.load(Ordering::SeqCst));
        for (k, seg) in self.segments.iter().enumerate() {
            let start = Self::start(k);
            if start >= made {
                break;
            }
            // Null: still being made by the thread that took its first
            // place (which has not registered a waker yet).
            let seg = seg.load(Ordering::Acquire);
            if seg.is_null() {
                continue;
            }
            let len = (FIRST as usize) << k;
            for at in 0..len.min((made - start) as usize) {
                // SAFETY: as in `slot`.
                unsafe { &*seg.add(at) }.waker.wake();
            }
        }
    }
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
    SLOTS.wake_all();
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
                        // Poll mode: what is already there is read first,
                        // without waiting (a request this node masters is
                        // answered before its write returns).
                        if let Some(drive) = drive {
                            drive(0);
                        }
                        return hs.take().ok_or(NoAnswer::Gone);
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
                                return hs.take().ok_or(NoAnswer::Gone);
                            }
                            std::mem::replace(&mut last_tick, now) != now
                        }
                        Some(drive) => {
                            let quiet = drive(LIVENESS_PERIOD.as_millis() as i32);
                            // Answers were read, one maybe refused (which
                            // ends every wait of the handle): looked at
                            // now, not only after a quiet second.
                            if !quiet && !alive() {
                                return hs.take().ok_or(NoAnswer::Gone);
                            }
                            quiet
                        }
                        None => self.park_untimed(),
                    };
                    if ticked {
                        ticks += 1;
                        if !alive() {
                            return hs.take().ok_or(NoAnswer::Gone);
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

#[cfg(all(test, not(dlm_loom)))]
mod tick_slot_tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn places_map_onto_doubling_segments() {
        assert_eq!(Slots::locate(0), (0, 0));
        assert_eq!(Slots::locate(FIRST - 1), (0, FIRST as usize - 1));
        assert_eq!(Slots::locate(FIRST), (1, 0));
        assert_eq!(Slots::locate(3 * FIRST - 1), (1, 2 * FIRST as usize - 1));
        assert_eq!(Slots::locate(3 * FIRST), (2, 0));
        let (k, at) = Slots::locate(u32::MAX);
        assert!(k < SEGMENTS && at < (FIRST as usize) << k);
    }

    /// Places are reused once given back, a tick wakes the registered
    /// ones, and a place given back keeps no waker (nor its task).
    #[test]
    fn a_tick_wakes_the_registered_places_only() {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        // Many threads take and give back places at once.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..200 {
                        let held: Vec<_> = (0..10).map(|_| TickSlot::new()).collect();
                        drop(held);
                    }
                });
            }
        });
        let slots: Vec<_> = (0..300).map(|_| TickSlot::new()).collect();
        let mut places: Vec<u32> = slots.iter().map(|s| s.0).collect();
        places.sort_unstable();
        places.dedup();
        assert_eq!(places.len(), 300, "no place is handed out twice");
        for s in &slots[..100] {
            s.register(&waker);
        }
        let before = count.0.load(Ordering::SeqCst);
        SLOTS.wake_all();
        // Other tests' futures may hold places too: at least these.
        assert!(count.0.load(Ordering::SeqCst) >= before + 100);
        for s in &slots[..50] {
            s.register(&waker);
        }
        drop(slots);
        assert_eq!(
            Arc::strong_count(&count),
            2,
            "given-back places keep no waker"
        );
    }
}
