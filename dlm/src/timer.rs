//! Deadlines for futures, with no runtime: one process-wide thread wakes
//! the tasks whose deadline passed (a timed request to cancel, and its
//! liveness checks; untimed futures are woken by the watchdog's tick).
//!
//! A future's `poll` or drop never waits for the timer thread: it pushes
//! its registration (or its removal) onto a lock-free stack
//! ([`Stack`](crate::cell::Stack): one compare-and-swap) and, only when
//! its deadline comes before the one the thread sleeps until, unparks the
//! thread. The thread alone owns the map of registrations. (It was a map
//! under a mutex that the thread held while it scanned: a poll then
//! waited for the thread whenever the thread was preempted inside, for as
//! long as the CPU was taken from it; under load in the chaos suite, polls
//! blocked for 11-66 ms.)
//!
//! The hand-over, one atomic at its centre (the stack's head):
//!
//! | who | step | ordering argument |
//! |---|---|---|
//! | thread | takes every pushed operation (a swap of the head), applies them, wakes the due tasks, stores the deadline it will sleep until in `sleeping_until`, then places its sleep mark in the head only if the head is still empty (compare-and-swap); parks only if the mark was placed | the store comes before the mark's release exchange |
//! | poller | pushes (compare-and-swap on the head), then reads `sleeping_until`; unparks the thread if its deadline is earlier | its exchange reads either the mark (then it acquires the mark's release and reads the thread's `sleeping_until` or a later one), or another poller's node pushed after the mark (the same: read-modify-writes on the head continue the mark's release sequence), or a head the mark could not replace (then the mark fails and the thread looks at the stack again before sleeping) |
//!
//! So no registration is missed: either the thread sees it before it
//! sleeps, or the poller sees the deadline the thread sleeps until. An
//! unpark while the thread is awake only makes its next park return at
//! once. `timer::loom_tests` checks every interleaving of the small cases.

use crate::cell::sync::{self, AtomicPtr, Ordering};
use crate::cell::Stack;
use std::collections::HashMap;
use std::task::Waker;
use std::time::{Duration, Instant};

#[cfg(dlm_loom)]
use loom::sync::atomic::AtomicU64;
#[cfg(not(dlm_loom))]
use std::sync::atomic::AtomicU64;

/// A registration's change, from a future to the timer thread.
enum Op {
    /// Wake `waker` at `at` (replacing the registration `id`'s earlier one).
    Set { id: u64, at: Instant, waker: Waker },
    /// Forget registration `id`.
    Cancel { id: u64 },
}

/// `sleeping_until` while the thread sleeps until it is woken.
const UNTIL_WOKEN: u64 = u64::MAX;

/// The timer thread's queue (one per process; the model checker makes its
/// own).
pub(crate) struct Queue {
    ops: Stack<Op>,
    /// The deadline the thread sleeps (or will sleep) until, in
    /// nanoseconds after `base`; [`UNTIL_WOKEN`] when it has none.
    sleeping_until: AtomicU64,
    base: Instant,
    /// The thread to unpark: leaked at its start (a fork's child starts its
    /// own and leaks the parent's handle), so never freed while read.
    thread: AtomicPtr<sync::Thread>,
    next_id: AtomicU64,
}

impl Queue {
    pub(crate) fn new() -> Queue {
        Queue {
            ops: Stack::default(),
            sleeping_until: AtomicU64::new(UNTIL_WOKEN),
            base: Instant::now(),
            thread: AtomicPtr::new(std::ptr::null_mut()),
            next_id: AtomicU64::new(1),
        }
    }

    fn nanos(&self, at: Instant) -> u64 {
        let ns = at.saturating_duration_since(self.base).as_nanos();
        u64::try_from(ns)
            .unwrap_or(UNTIL_WOKEN - 1)
            .min(UNTIL_WOKEN - 1)
    }

    /// A new registration id.
    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers (or moves) `id` to wake `waker` at `at`; never waits.
    pub(crate) fn set(&self, id: u64, at: Instant, waker: Waker) {
        let ns = self.nanos(at);
        self.ops.push(Op::Set { id, at, waker });
        // Acquire: see the module's table (the push's exchange already
        // synchronised with the thread's mark when it replaced it).
        if ns < self.sleeping_until.load(Ordering::Acquire) {
            self.unpark();
        }
    }

    /// Removes registration `id`; never waits, never wakes the thread (a
    /// removal makes it sleep no shorter).
    pub(crate) fn cancel(&self, id: u64) {
        self.ops.push(Op::Cancel { id });
    }

    fn unpark(&self) {
        let p = self.thread.load(Ordering::Acquire);
        // A non-null `thread` came from `Box::into_raw` in
        // `register_thread` (published by its release swap, read here with
        // acquire) and is never freed.
        // SAFETY: so the reference is valid for as long as the process lives.
        if let Some(t) = unsafe { p.as_ref() } {
            t.unpark();
        }
    }

    /// Records the calling thread as the timer thread (at its start).
    pub(crate) fn register_thread(&self) {
        let t = Box::into_raw(Box::new(sync::current()));
        // The previous handle (a fork's parent's thread) is leaked, not
        // freed: a poller may be reading it.
        let _ = self.thread.swap(t, Ordering::AcqRel);
    }

    /// One turn of the timer thread at `now`: applies the pushed changes
    /// to `entries` (the thread's own map), wakes the tasks due, and
    /// returns how long to park (`Some(None)`: until unparked), or `None`
    /// when something was pushed meanwhile (turn again).
    pub(crate) fn turn(
        &self,
        entries: &mut HashMap<u64, (Instant, Waker)>,
        now: Instant,
    ) -> Option<Option<Duration>> {
        for op in self.ops.take_all() {
            match op {
                Op::Set { id, at, waker } => {
                    entries.insert(id, (at, waker));
                }
                Op::Cancel { id } => {
                    entries.remove(&id);
                }
            }
        }
        let mut due = Vec::new();
        let mut next = None::<Instant>;
        entries.retain(|_, e| {
            if e.0 <= now {
                due.push(e.1.clone());
                false
            } else {
                next = Some(next.map_or(e.0, |n: Instant| n.min(e.0)));
                true
            }
        });
        for waker in due {
            // A task's waker is the executor's code: a panic in it must not
            // end the thread (registrations would pile up unread).
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake()));
        }
        if entries.capacity() > 64 && entries.len() * 4 < entries.capacity() {
            entries.shrink_to_fit();
        }
        let until = next.map_or(UNTIL_WOKEN, |n| self.nanos(n));
        // Before the mark (its release exchange publishes it).
        self.sleeping_until.store(until, Ordering::Relaxed);
        if self.ops.sleep_if_empty() {
            Some(next.map(|n| n.saturating_duration_since(now)))
        } else {
            None
        }
    }
}

/// Set when the timer thread could not be started: registrations are not
/// queued (nobody would take them: they would only pile up).
#[cfg(not(dlm_loom))]
static NO_THREAD: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A registration; dropping it removes it.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    id: Option<u64>,
}

#[cfg(not(dlm_loom))]
static QUEUE: std::sync::LazyLock<Queue> = std::sync::LazyLock::new(Queue::new);

#[cfg_attr(dlm_loom, allow(dead_code))]
impl Timer {
    /// Wakes `waker` at `deadline` (replacing an earlier registration of
    /// this timer). Never waits for another thread.
    pub(crate) fn set(&mut self, deadline: Instant, waker: &Waker) {
        #[cfg(not(dlm_loom))]
        {
            start();
            if NO_THREAD.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            let id = *self.id.get_or_insert_with(|| QUEUE.id());
            QUEUE.set(id, deadline, waker.clone());
        }
        #[cfg(dlm_loom)]
        let _ = (deadline, waker);
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        #[cfg(not(dlm_loom))]
        if let Some(id) = self.id {
            QUEUE.cancel(id);
        }
    }
}

/// Starts the timer thread, once per process generation.
#[cfg(not(dlm_loom))]
fn start() {
    static STARTED: crate::fork::StartedIn = crate::fork::StartedIn::new();
    if !STARTED.first() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dlm-timer".into())
        .spawn(|| run(&QUEUE));
    // Without the thread, timed futures only lose their deadline and
    // liveness checks (nothing is queued for it); they still end when their
    // answer comes.
    if spawned.is_err() {
        NO_THREAD.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

#[cfg(not(dlm_loom))]
fn run(queue: &Queue) {
    queue.register_thread();
    let mut entries = HashMap::new();
    loop {
        if let Some(wait) = queue.turn(&mut entries, Instant::now()) {
            crate::cell::park(wait);
        }
    }
}

/// The hand-over between futures and the timer thread under the loom
/// model checker. Loom's parks have no timeout, so a timed sleep is a
/// sleep until unparked here: the worst case, where a registration that
/// comes earlier than the thread's deadline is found only through its
/// unpark. Run with
/// `RUSTFLAGS="--cfg dlm_loom" cargo test -p libdlm --lib --release loom_`.
#[cfg(all(test, dlm_loom))]
mod loom_tests {
    use super::*;
    use loom::sync::atomic::AtomicBool;
    use loom::thread;
    use std::task::Wake;

    /// A task: woken sets its flag and unparks its thread.
    struct Task {
        woken: AtomicBool,
        thread: loom::thread::Thread,
    }

    impl Wake for Task {
        fn wake(self: std::sync::Arc<Self>) {
            self.wake_by_ref();
        }
        fn wake_by_ref(self: &std::sync::Arc<Self>) {
            self.woken.store(true, Ordering::Release);
            self.thread.unpark();
        }
    }

    fn task() -> (std::sync::Arc<Task>, Waker) {
        let t = std::sync::Arc::new(Task {
            woken: AtomicBool::new(false),
            thread: thread::current(),
        });
        (t.clone(), Waker::from(t))
    }

    /// The timer thread until `stop`: turns, and parks as told.
    fn timer_thread(q: std::sync::Arc<Queue>, stop: std::sync::Arc<AtomicBool>) {
        q.register_thread();
        let mut entries = HashMap::new();
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            if let Some(_wait) = q.turn(&mut entries, Instant::now()) {
                if stop.load(Ordering::Acquire) {
                    return;
                }
                loom::thread::park();
            }
        }
    }

    /// A task registers a far deadline (the thread may sleep for it), then
    /// a due one, and waits for its wake-up: in every interleaving it comes
    /// (a lost unpark leaves the task parked for ever, which loom reports
    /// as a deadlock); the far one, removed, is never woken.
    ///
    /// Bounded to six preemptions (every interleaving with at most six
    /// forced switches; the timer thread's loop makes the unbounded space
    /// too large to finish).
    #[test]
    fn loom_an_earlier_deadline_wakes_the_sleeping_timer() {
        let mut model = loom::model::Builder::new();
        model.preemption_bound = Some(6);
        model.check(|| {
            let q = std::sync::Arc::new(Queue::new());
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let timer = {
                let (q, stop) = (q.clone(), stop.clone());
                thread::spawn(move || timer_thread(q, stop))
            };
            let (far, w) = task();
            q.set(1, Instant::now() + Duration::from_secs(3600), w);
            // Due before any turn began (`base`: the queue's creation), so
            // that a turn's clock, read before it takes the pushes, finds
            // it due: loom's parks have no timeout, and a deadline just
            // after a turn's clock would be met only by one.
            let (due, w) = task();
            q.set(2, q.base, w);
            while !due.woken.load(Ordering::Acquire) {
                loom::thread::park();
            }
            q.cancel(1);
            stop.store(true, Ordering::Release);
            q.unpark();
            timer.join().unwrap();
            assert!(!far.woken.load(Ordering::Acquire));
        });
    }
}

#[cfg(all(test, not(dlm_loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;
    use std::sync::Arc;
    use std::task::Wake;

    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    fn flag() -> (Arc<Flag>, Waker) {
        let f = Arc::new(Flag(AtomicBool::new(false)));
        (f.clone(), Waker::from(f))
    }

    /// The process's timer thread wakes a registration at its deadline,
    /// not a removed one, and a registration moved earlier while it
    /// sleeps for a later one (the unpark) on time.
    #[test]
    fn deadlines_wake_and_removals_do_not() {
        let (late, w) = flag();
        let mut far = Timer::default();
        far.set(Instant::now() + Duration::from_secs(30), &w);
        let (removed, w) = flag();
        let mut gone = Timer::default();
        gone.set(Instant::now() + Duration::from_millis(30), &w);
        drop(gone);
        let (soon, w) = flag();
        let mut t = Timer::default();
        let start = Instant::now();
        t.set(start + Duration::from_millis(50), &w);
        while !soon.0.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(start.elapsed() < Duration::from_secs(5), "never woken");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(start.elapsed() >= Duration::from_millis(50));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!removed.0.load(std::sync::atomic::Ordering::SeqCst));
        assert!(!late.0.load(std::sync::atomic::Ordering::SeqCst));
        // Moved from 30 s to now: woken although the thread sleeps for 30 s.
        far.set(Instant::now(), &Waker::from(late.clone()));
        let start = Instant::now();
        while !late.0.load(std::sync::atomic::Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "moved, never woken"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
