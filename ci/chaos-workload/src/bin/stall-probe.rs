//! stall-probe LOCKSPACE SECONDS \[RESOURCES \[in-poll\]\]: how long the crate's futures
//! block an executor's thread. One current-thread tokio runtime runs a
//! ticker task (a 1 ms sleep in a loop: the gap between two ticks beyond
//! that is time the thread was blocked) and four workers that take and
//! release RESOURCES (default 24) locks in turn with `lock_async`,
//! `try_lock_async` and timed `lock_with_async`, and drop requests
//! half-way (a `select!` timeout of 1-10 ms for a quarter of them, 500 ms
//! for another quarter: the future's drop cancels and gives up); a fifth
//! worker writes a new request every few milliseconds whatever the others
//! wait for (a new name each time), dropping it after 5 ms. Once a second it prints
//! `second UNIX_TIME max_stall_ms MS ops N errors E max_poll_ms MS
//! max_blocked_poll_ms MS blocked_polls N`: the ticker's longest gap, the
//! longest single poll or drop of a future or guard (wall time), and the
//! longest of those during which the thread blocked of its own accord (a
//! voluntary context switch inside it, `getrusage(RUSAGE_THREAD)`: a
//! system call that slept, a lock waited for) with how many did; a poll
//! that was only preempted is long but did not block. At the end the same
//! maxima over the whole run and the error kinds seen.
//! Used by ci/scenarios/10-executor-stall.sh around a node crash.
//!
//! `STALL_PROBE_PAUSE_FILE=PATH`: while PATH exists, the fifth worker
//! writes nothing (checked every 20 ms by a thread of its own). The
//! scenario creates it before the crash and removes it once the survivors
//! have recovered: a new request made while the kernel has already dropped
//! its connection to the crashed node but the lockspace has not stopped
//! yet, whose directory node is the crashed one, is left with no master,
//! and its cancel panics the node (a kernel defect: the crate's docs, "When
//! the cluster fails"). The other four workers go on through the crash.

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: stall-probe LOCKSPACE SECONDS [RESOURCES [in-poll]]");
        std::process::exit(64);
    }
    let name = args[1].clone();
    let seconds: u64 = args[2].parse().expect("SECONDS");
    let resources: usize = args.get(3).map_or(24, |r| r.parse().expect("RESOURCES"));
    // `in-poll`: the futures write their requests in poll
    // (AsyncWrites::InPoll) instead of the handle's worker: the contrast.
    let writes = if args.get(4).is_some_and(|a| a == "in-poll") {
        dlm::AsyncWrites::InPoll
    } else {
        dlm::AsyncWrites::Worker
    };
    let ls = Lockspace::builder(&name)
        .async_writes(writes)
        .join()
        .expect("join");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    // STALL_PROBE_SAMPLE=1: a sampler thread reads, while a poll or drop
    // has run for over 2 ms, where the runtime's thread is in the kernel
    // (/proc/self/task/TID/syscall and wchan), and prints what it saw most
    // at the end: what a blocked poll waits for.
    // SAFETY: gettid has no preconditions.
    EXEC_TID.store(
        unsafe { libc::gettid() },
        std::sync::atomic::Ordering::Relaxed,
    );
    let sampler = std::env::var_os("STALL_PROBE_SAMPLE").map(|_| std::thread::spawn(sample));
    let worst = local.block_on(&rt, run(ls, seconds, resources));
    if let Some(s) = sampler {
        SAMPLING_DONE.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = s.join();
    }
    println!("max_stall_ms {:.1}", worst.as_secs_f64() * 1000.0);
}

/// Set while the file `STALL_PROBE_PAUSE_FILE` names exists (a thread
/// looks every 20 ms); never set without that variable.
fn pause_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(path) = std::env::var_os("STALL_PROBE_PAUSE_FILE") {
        let f = flag.clone();
        let path = std::path::PathBuf::from(path);
        f.store(path.exists(), std::sync::atomic::Ordering::Relaxed);
        std::thread::spawn(move || loop {
            f.store(path.exists(), std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(20));
        });
    }
    flag
}

/// The longest single poll or drop of the crate's futures so far (ns).
static LONGEST_POLL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// The longest poll or drop during which the thread went to sleep of its
/// own accord (a voluntary context switch: it blocked in a system call or
/// waited for a lock), wall time (ns). A poll that took long only because
/// the thread was preempted (the guest's one CPU given to another thread
/// or guest) is not counted here.
static LONGEST_BLOCKED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// Polls and drops that blocked so (voluntary switches inside them).
static BLOCKED_POLLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// When a poll started, and the thread's context switches then.
struct Start {
    t: Instant,
    voluntary: i64,
}

fn voluntary_switches() -> i64 {
    // SAFETY: getrusage fills a zeroed struct for this thread.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru.ru_nvcsw
    }
}

/// The runtime's thread (for the sampler).
static EXEC_TID: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);
/// When the poll or drop under way began (ns since [`epoch`]; 0: none).
static POLL_SINCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static SAMPLING_DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn epoch() -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// The sampler (STALL_PROBE_SAMPLE): every 200 us, if a poll or drop has
/// run for over 2 ms, records the runtime thread's system call (number and
/// first argument: for a futex, the lock's address) and kernel wait
/// channel; prints the most frequent at the end, a futex address with the
/// mapping it lies in.
fn sample() {
    let tid = EXEC_TID.load(std::sync::atomic::Ordering::Relaxed);
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    while !SAMPLING_DONE.load(std::sync::atomic::Ordering::Relaxed) {
        std::thread::sleep(Duration::from_micros(200));
        let since = POLL_SINCE.load(std::sync::atomic::Ordering::Relaxed);
        if since == 0 || (epoch().elapsed().as_nanos() as u64).saturating_sub(since) < 2_000_000 {
            continue;
        }
        let sc =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).unwrap_or_default();
        let wchan =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/wchan")).unwrap_or_default();
        let mut f = sc.split_whitespace();
        let key = match (f.next(), f.next()) {
            (Some("running"), _) => "running".to_string(),
            (Some(nr), Some(a0)) => format!("syscall {nr} arg0 {a0} wchan {wchan}"),
            _ => format!("{} wchan {wchan}", sc.trim()),
        };
        *seen.entry(key).or_default() += 1;
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
    let mut v: Vec<_> = seen.into_iter().collect();
    v.sort_by_key(|b| std::cmp::Reverse(b.1));
    for (k, n) in v.iter().take(15) {
        let region = k
            .split_whitespace()
            .nth(3)
            .and_then(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            .and_then(|a| {
                maps.lines().find(|l| {
                    let r = l.split_whitespace().next().unwrap_or("");
                    let mut it = r
                        .split('-')
                        .map(|x| u64::from_str_radix(x, 16).unwrap_or(0));
                    let (lo, hi) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
                    lo <= a && a < hi
                })
            })
            .unwrap_or("");
        println!("sample {n} {k} in {region}");
    }
}

fn start() -> Start {
    POLL_SINCE.store(
        (epoch().elapsed().as_nanos() as u64).max(1),
        std::sync::atomic::Ordering::Relaxed,
    );
    Start {
        voluntary: voluntary_switches(),
        t: Instant::now(),
    }
}

fn note_poll(s: Start) {
    POLL_SINCE.store(0, std::sync::atomic::Ordering::Relaxed);
    let ns = s.t.elapsed().as_nanos() as u64;
    LONGEST_POLL.fetch_max(ns, std::sync::atomic::Ordering::Relaxed);
    if voluntary_switches() > s.voluntary {
        LONGEST_BLOCKED.fetch_max(ns, std::sync::atomic::Ordering::Relaxed);
        BLOCKED_POLLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A future of the crate, each of its polls and its drop timed.
struct Timed<F>(Option<std::pin::Pin<Box<F>>>);

impl<F: std::future::Future> std::future::Future for Timed<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let t = start();
        let r = self
            .0
            .as_mut()
            .expect("polled after ready")
            .as_mut()
            .poll(cx);
        note_poll(t);
        if r.is_ready() {
            let t = start();
            self.0 = None;
            note_poll(t);
        }
        r
    }
}

impl<F> Drop for Timed<F> {
    fn drop(&mut self) {
        let t = start();
        self.0 = None;
        note_poll(t);
    }
}

fn timed<F: std::future::Future>(f: F) -> Timed<F> {
    Timed(Some(Box::pin(f)))
}

#[derive(Default)]
struct Counts {
    ops: Cell<u64>,
    errors: std::cell::RefCell<BTreeMap<String, u64>>,
}

async fn run(ls: Lockspace, seconds: u64, resources: usize) -> Duration {
    let end = Instant::now() + Duration::from_secs(seconds);
    let counts = Rc::new(Counts::default());
    for w in 0..4u64 {
        let ls = ls.clone();
        let counts = counts.clone();
        tokio::task::spawn_local(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ ((w + 1) * 0x1234_5678);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            while Instant::now() < end {
                let r = format!("probe{}", next() % resources as u64);
                let kind = next() % 4;
                let mode = if next() % 2 == 0 { Mode::Ex } else { Mode::Pr };
                let outcome = match kind {
                    0 => {
                        // Dropped half-way: the drop cancels and gives up.
                        let f = timed(ls.lock_async(&r, mode));
                        let ms = 1 + next() % 10;
                        match tokio::time::timeout(Duration::from_millis(ms), f).await {
                            Ok(Ok(g)) => timed(g.unlock_async()).await,
                            Ok(Err(e)) => Err(e),
                            Err(_) => Ok(()),
                        }
                    }
                    1 => match timed(ls.try_lock_async(&r, mode)).await {
                        Ok(g) => timed(g.unlock_async()).await,
                        Err(Error::WouldBlock) => Ok(()),
                        Err(e) => Err(e),
                    },
                    2 => {
                        let o = LockOptions::new().timeout(Duration::from_millis(200));
                        match timed(ls.lock_with_async(&r, mode, o)).await {
                            Ok(g) => timed(g.unlock_async()).await,
                            Err(Error::TimedOut) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    _ => {
                        // Dropped after half a second at most (so that the
                        // workers keep writing through a recovery); a
                        // granted guard is dropped: released in the
                        // background.
                        let f = timed(ls.lock_async(&r, mode));
                        match tokio::time::timeout(Duration::from_millis(500), f).await {
                            Ok(Ok(g)) => {
                                let t = start();
                                drop(g);
                                note_poll(t);
                                Ok(())
                            }
                            Ok(Err(e)) => Err(e),
                            Err(_) => Ok(()),
                        }
                    }
                };
                counts.ops.set(counts.ops.get() + 1);
                if let Err(e) = outcome {
                    let key = format!("{e:?}");
                    *counts.errors.borrow_mut().entry(key).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    // A fifth worker writes without pause, whatever the others wait for:
    // a new request on a resource of its own, a new name each time,
    // dropped after 5 ms (its cancel written), so that requests and
    // cancels are written all through a recovery. A new name each time:
    // a request on a name whose master lookup was cancelled during the
    // recovery panics the node (a kernel defect: see
    // ci/kernel-defects/uncertain-master.sh), which a cycle of names here
    // ran into in nearly every run.
    {
        let ls = ls.clone();
        let counts = counts.clone();
        let paused = pause_flag();
        tokio::task::spawn_local(async move {
            let mut i = 0u64;
            while Instant::now() < end {
                if paused.load(std::sync::atomic::Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
                let f = timed(ls.lock_async(format!("fresh{i}"), Mode::Ex));
                match tokio::time::timeout(Duration::from_millis(5), f).await {
                    Ok(Ok(g)) => {
                        let t = start();
                        drop(g);
                        note_poll(t);
                    }
                    Ok(Err(e)) => {
                        *counts
                            .errors
                            .borrow_mut()
                            .entry(format!("{e:?}"))
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(_) => {}
                }
                counts.ops.set(counts.ops.get() + 1);
                i += 1;
            }
        });
    }
    // The ticker.
    let mut worst = Duration::ZERO;
    let mut second_worst = Duration::ZERO;
    let mut second_start = Instant::now();
    let mut last_ops = 0;
    let mut worst_poll = 0u64;
    let mut worst_blocked = 0u64;
    while Instant::now() < end {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let stall = t.elapsed().saturating_sub(Duration::from_millis(1));
        worst = worst.max(stall);
        second_worst = second_worst.max(stall);
        if second_start.elapsed() >= Duration::from_secs(1) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let errors: u64 = counts.errors.borrow().values().sum();
            let poll_ns = LONGEST_POLL.swap(0, std::sync::atomic::Ordering::Relaxed);
            let blocked_ns = LONGEST_BLOCKED.swap(0, std::sync::atomic::Ordering::Relaxed);
            let blocked = BLOCKED_POLLS.swap(0, std::sync::atomic::Ordering::Relaxed);
            worst_poll = worst_poll.max(poll_ns);
            worst_blocked = worst_blocked.max(blocked_ns);
            println!(
                "second {:.3} max_stall_ms {:.1} ops {} errors {} max_poll_ms {:.1} max_blocked_poll_ms {:.1} blocked_polls {}",
                now.as_secs_f64(),
                second_worst.as_secs_f64() * 1000.0,
                counts.ops.get() - last_ops,
                errors,
                poll_ns as f64 / 1e6,
                blocked_ns as f64 / 1e6,
                blocked
            );
            last_ops = counts.ops.get();
            second_worst = Duration::ZERO;
            second_start = Instant::now();
        }
    }
    let poll_ns = worst_poll.max(LONGEST_POLL.load(std::sync::atomic::Ordering::Relaxed));
    println!("max_poll_ms {:.1}", poll_ns as f64 / 1e6);
    let blocked_ns = worst_blocked.max(LONGEST_BLOCKED.load(std::sync::atomic::Ordering::Relaxed));
    println!("max_blocked_poll_ms {:.1}", blocked_ns as f64 / 1e6);
    for (kind, n) in counts.errors.borrow().iter() {
        println!("error {kind} {n}");
    }
    worst
}
