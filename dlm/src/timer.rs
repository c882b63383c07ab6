//! Deadlines for futures, with no runtime: one process-wide thread wakes
//! the tasks whose deadline passed (a timed request to cancel, and its
//! liveness checks; untimed futures are woken by the watchdog's tick). Registrations are kept in a map by id; the thread is
//! woken only when a registration comes earlier than the deadline it
//! sleeps until (most come a second from now: no wake-up for them).

use parking_lot::{Condvar, Mutex};
use std::collections::HashMap;
use std::task::Waker;
use std::time::Instant;

struct Timers {
    /// id -> (deadline, task).
    entries: Option<HashMap<u64, (Instant, Waker)>>,
    next_id: u64,
    /// The deadline the thread sleeps until (`None`: until told).
    sleeping_until: Option<Instant>,
}

static TIMERS: Mutex<Timers> = parking_lot::const_mutex(Timers {
    entries: None,
    next_id: 1,
    sleeping_until: None,
});
static CHANGED: Condvar = Condvar::new();

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
        let id = *self.id.get_or_insert_with(|| {
            let id = t.next_id;
            t.next_id += 1;
            id
        });
        let entries = t.entries.get_or_insert_with(HashMap::new);
        match entries.get_mut(&id) {
            Some(e) => {
                e.0 = deadline;
                if !e.1.will_wake(waker) {
                    e.1 = waker.clone();
                }
            }
            None => {
                entries.insert(id, (deadline, waker.clone()));
            }
        }
        if t.sleeping_until.is_none_or(|s| deadline < s) {
            t.sleeping_until = Some(deadline);
            drop(t);
            CHANGED.notify_one();
        }
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            if let Some(entries) = TIMERS.lock().entries.as_mut() {
                entries.remove(&id);
            }
        }
    }
}

/// Starts the timer thread, once per process generation.
fn start() {
    static STARTED: crate::fork::StartedIn = crate::fork::StartedIn::new();
    if !STARTED.first() {
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
        let mut next = None::<Instant>;
        if let Some(entries) = t.entries.as_mut() {
            entries.retain(|_, e| {
                if e.0 <= now {
                    due.push(e.1.clone());
                    false
                } else {
                    next = Some(next.map_or(e.0, |n: Instant| n.min(e.0)));
                    true
                }
            });
        }
        t.sleeping_until = next;
        if !due.is_empty() {
            drop(t);
            due.into_iter().for_each(Waker::wake);
            t = TIMERS.lock();
            continue;
        }
        match next {
            Some(next) => {
                CHANGED.wait_until(&mut t, next);
            }
            None => CHANGED.wait(&mut t),
        }
    }
}
