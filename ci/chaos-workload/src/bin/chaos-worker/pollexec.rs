//! The `poll` kind's executor: many futures on one thread, which waits
//! with `poll(2)` on two descriptors, the poll-mode lockspace handle's
//! (readable: an answer is there, and `Lockspace::dispatch` runs its
//! callbacks, which wake the futures) and an eventfd (a wake-up from
//! another thread: the handle's worker thread, which writes the futures'
//! requests, or the harness's command loop spawning a task), with a
//! timeout to the next timer. The program shape of a C daemon around
//! `dlm_dispatch` (rgmanager, mdadm), with the crate's futures in it.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// A task: a boxed future of the workload.
pub type Task = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// What other threads reach: the ready queue, new tasks, the eventfd.
#[derive(Debug)]
struct Shared {
    efd: OwnedFd,
    ready: Mutex<VecDeque<u64>>,
    next_id: AtomicU64,
}

impl Shared {
    fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe {
            libc::write(
                self.efd.as_raw_fd(),
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<u64>(),
            )
        };
    }

    fn push(&self, id: u64) {
        self.ready
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(id);
        self.notify();
    }
}

/// A spawned task not yet taken by the executor, and its abort flag.
type Injected = (u64, Task, Arc<AtomicBool>);

/// The handle other threads (and tasks) spawn through.
#[derive(Debug, Clone)]
pub struct Spawner {
    shared: Arc<Shared>,
    inject: Arc<Mutex<Vec<InjectedDbg>>>,
}

/// [`Injected`] with a Debug that says nothing of the future.
pub struct InjectedDbg(Injected);

impl std::fmt::Debug for InjectedDbg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "task {}", self.0 .0)
    }
}

impl Spawner {
    /// Spawns `task`; the returned function aborts it (drops it at the
    /// executor's next turn, if it has not ended).
    pub fn spawn(&self, task: Task) -> impl Fn() + Send + Sync + 'static {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let abort = Arc::new(AtomicBool::new(false));
        self.inject
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(InjectedDbg((id, task, Arc::clone(&abort))));
        self.shared.notify();
        let shared = Arc::clone(&self.shared);
        move || {
            abort.store(true, Ordering::Relaxed);
            shared.push(id);
        }
    }
}

/// A task's waker: one per task, so that a future sees the same waker
/// at every poll (`will_wake`); queued once however often it is woken.
struct TaskWaker {
    id: u64,
    queued: AtomicBool,
    shared: Arc<Shared>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.shared.push(self.id);
        }
    }
}

thread_local! {
    /// Timers of the executor's thread: (deadline, waker).
    static TIMERS: RefCell<Vec<(Instant, Waker)>> = const { RefCell::new(Vec::new()) };
}

/// A sleep on the executor's timers (poll it on the executor's thread
/// only).
#[derive(Debug)]
pub struct Sleep {
    at: Instant,
}

impl Sleep {
    pub fn new(d: Duration) -> Sleep {
        Sleep {
            at: Instant::now() + d,
        }
    }
}

impl Future for Sleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.at {
            return Poll::Ready(());
        }
        TIMERS.with(|t| t.borrow_mut().push((self.at, cx.waker().clone())));
        Poll::Pending
    }
}

/// The executor.
#[derive(Debug)]
pub struct Exec {
    shared: Arc<Shared>,
    inject: Arc<Mutex<Vec<InjectedDbg>>>,
}

/// What the executor counted.
#[derive(Debug, Default)]
pub struct ExecStats {
    pub dispatches: u64,
    pub dispatch_errors: u64,
    /// The longest poll of one task (its whole turn, records included).
    pub longest_task_poll: Duration,
    /// The longest time `ppoll` returned after its timeout.
    pub longest_ppoll_late: Duration,
    /// The longest turn of the loop (everything but the wait in `ppoll`),
    /// and the most task polls in one turn.
    pub longest_turn: Duration,
    pub most_polls: u64,
}

impl Exec {
    pub fn new() -> Exec {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
        // SAFETY: a new descriptor that nothing else owns.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        Exec {
            shared: Arc::new(Shared {
                efd,
                ready: Mutex::new(VecDeque::new()),
                next_id: AtomicU64::new(1),
            }),
            inject: Arc::new(Mutex::new(Vec::new())),
        }
    }

    pub fn spawner(&self) -> Spawner {
        Spawner {
            shared: Arc::clone(&self.shared),
            inject: Arc::clone(&self.inject),
        }
    }

    /// Runs the tasks until `done()` says so and no task is left; reads
    /// the answers of `ls` (a poll-mode handle) whenever its descriptor
    /// is readable. `dispatch` wraps each `Lockspace::dispatch` call (to
    /// time it).
    pub fn run(
        self,
        ls: &dlm::Lockspace,
        done: impl Fn() -> bool,
        dispatch: impl Fn(&dlm::Lockspace) -> dlm::Result<()>,
    ) -> ExecStats {
        let mut stats = ExecStats::default();
        let mut tasks: HashMap<u64, (Task, Arc<AtomicBool>, Arc<TaskWaker>, Waker)> =
            HashMap::new();
        let mut last_error = Instant::now() - Duration::from_secs(1);
        let mut turn = Instant::now();
        let mut polls = 0u64;
        loop {
            for InjectedDbg((id, t, a)) in self
                .inject
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
            {
                let tw = Arc::new(TaskWaker {
                    id,
                    queued: AtomicBool::new(false),
                    shared: Arc::clone(&self.shared),
                });
                let waker = Waker::from(Arc::clone(&tw));
                tasks.insert(id, (t, a, tw, waker.clone()));
                waker.wake();
            }
            // Expired timers.
            let now = Instant::now();
            let expired: Vec<Waker> = TIMERS.with(|t| {
                let mut t = t.borrow_mut();
                let mut out = Vec::new();
                t.retain(|(at, w)| {
                    if *at <= now {
                        out.push(w.clone());
                        false
                    } else {
                        true
                    }
                });
                out
            });
            for w in expired {
                w.wake();
            }
            let ready: Vec<u64> = self
                .shared
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .drain(..)
                .collect();
            for id in ready {
                let Some((task, abort, tw, waker)) = tasks.get_mut(&id) else {
                    continue;
                };
                if abort.load(Ordering::Relaxed) {
                    tasks.remove(&id);
                    continue;
                }
                tw.queued.store(false, Ordering::Release);
                let mut cx = Context::from_waker(waker);
                let t0 = Instant::now();
                let ready = task.as_mut().poll(&mut cx).is_ready();
                polls += 1;
                stats.longest_task_poll = stats.longest_task_poll.max(t0.elapsed());
                if ready {
                    tasks.remove(&id);
                }
            }
            if tasks.is_empty() && done() {
                break;
            }
            // Wait: for an answer, a wake-up, or the next timer (at most
            // 50 ms, to see `done`); not at all if tasks are ready (the
            // descriptors are still looked at: answers are read between
            // turns however busy the tasks keep the thread).
            let busy = !self
                .shared
                .ready
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty();
            let next = TIMERS.with(|t| t.borrow().iter().map(|(at, _)| *at).min());
            let wait = if busy {
                Duration::ZERO
            } else {
                next.map_or(Duration::from_millis(50), |at| {
                    at.saturating_duration_since(Instant::now())
                })
                .min(Duration::from_millis(50))
            };
            let ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: wait.as_nanos() as libc::c_long,
            };
            let mut fds = [
                libc::pollfd {
                    fd: ls.as_fd().as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: self.shared.efd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            let t0 = Instant::now();
            stats.longest_turn = stats.longest_turn.max(t0 - turn);
            stats.most_polls = stats.most_polls.max(polls);
            polls = 0;
            // SAFETY: two live pollfds and a live timespec.
            let n = unsafe { libc::ppoll(fds.as_mut_ptr(), 2, &ts, std::ptr::null()) };
            stats.longest_ppoll_late = stats
                .longest_ppoll_late
                .max(t0.elapsed().saturating_sub(wait));
            turn = Instant::now();
            if n <= 0 {
                continue;
            }
            if fds[0].revents != 0 {
                stats.dispatches += 1;
                if dispatch(ls).is_err() {
                    stats.dispatch_errors += 1;
                    // A descriptor that stays readable with an error
                    // (a stopped lockspace): do not spin on it.
                    if last_error.elapsed() < Duration::from_millis(100) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    last_error = Instant::now();
                }
            }
            if fds[1].revents != 0 {
                let mut v: u64 = 0;
                // SAFETY: reads 8 bytes into a live u64 from our eventfd.
                unsafe {
                    libc::read(
                        self.shared.efd.as_raw_fd(),
                        std::ptr::addr_of_mut!(v).cast(),
                        std::mem::size_of::<u64>(),
                    )
                };
            }
        }
        stats
    }
}
