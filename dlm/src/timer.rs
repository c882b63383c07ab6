//! Deadlines for futures, with no runtime: one process-wide thread wakes
//! the tasks whose deadline passed (a timed request to cancel, a liveness
//! check to make). Registrations are kept in a small vector: the number of
//! futures with a deadline at once is the number of timed requests in
//! flight.

use parking_lot::{Condvar, Mutex};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::Waker;
use std::time::Instant;

struct Timers {
    /// (id, deadline, task).
    entries: Vec<(u64, Instant, Waker)>,
    next_id: u64,
}

static TIMERS: Mutex<Timers> = parking_lot::const_mutex(Timers {
    entries: Vec::new(),
    next_id: 1,
});
static CHANGED: Condvar = Condvar::new();
/// Batches of timers fired so far: a future that sees it unchanged knows
/// its own timer has not fired, without reading the clock.
static FIRED: AtomicU64 = AtomicU64::new(0);

/// The number of timer batches fired so far.
pub(crate) fn fired() -> u64 {
    FIRED.load(Ordering::Acquire)
}

/// A registration; dropping it removes it.
#[derive(Debug, Default)]
pub(crate) struct Timer {
    id: Option<u64>,
}

impl Timer {
    /// Wakes `waker` at `deadline` (replacing an earlier registration of
    /// this timer).
    pub(crate) fn set(&mut self, deadline: Instant, waker: &Waker) {
        start();
        let mut t = TIMERS.lock();
        if let Some(id) = self.id {
            if let Some(e) = t.entries.iter_mut().find(|e| e.0 == id) {
                e.1 = deadline;
                if !e.2.will_wake(waker) {
                    e.2 = waker.clone();
                }
                drop(t);
                CHANGED.notify_one();
                return;
            }
        }
        let id = t.next_id;
        t.next_id += 1;
        t.entries.push((id, deadline, waker.clone()));
        self.id = Some(id);
        drop(t);
        CHANGED.notify_one();
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            TIMERS.lock().entries.retain(|e| e.0 != id);
        }
    }
}

/// Starts the timer thread, once per process generation.
fn start() {
    static STARTED_IN: AtomicU32 = AtomicU32::new(u32::MAX);
    let generation = crate::fork::generation();
    if STARTED_IN.swap(generation, Ordering::AcqRel) == generation {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("dlm-timer".into())
        .spawn(run);
    // Without the thread, timed futures only lose their deadline and
    // liveness checks; they still end when their answer comes.
    drop(spawned);
}

fn run() {
    let mut t = TIMERS.lock();
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        t.entries.retain(|e| {
            if e.1 <= now {
                due.push(e.2.clone());
                false
            } else {
                true
            }
        });
        if !due.is_empty() {
            FIRED.fetch_add(1, Ordering::Release);
            drop(t);
            due.into_iter().for_each(Waker::wake);
            t = TIMERS.lock();
            continue;
        }
        match t.entries.iter().map(|e| e.1).min() {
            Some(next) => {
                CHANGED.wait_until(&mut t, next);
            }
            None => CHANGED.wait(&mut t),
        }
    }
}
