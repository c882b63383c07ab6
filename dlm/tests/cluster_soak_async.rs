//! The async soak: tasks on a multi-threaded tokio runtime take, try,
//! time out, convert and release locks on a few resources through two
//! handles (one threaded, one in poll mode driven by `dlm::tokio::drive`),
//! and drop futures at random moments — before their answer, and after it
//! (a `select!`-style timeout racing the grant) — and guards in the
//! background. An observer handle on its own thread takes the resources
//! too. Checked: no two incompatible locks held at once (every grant is
//! checked against the modes the others hold, the observer's included), no
//! operation stalls (each is bounded), each resource's value-block counter
//! equals the increments made under EX, no lock left, and the counters of
//! `stats()` moved only by give-ups and releases.
//!
//! `DLM_ASOAK_OPS` sets the number of operations (default 4,000; the long
//! run is 300,000); the seed is printed, `DLM_ASOAK_SEED` replays it.

mod common;

use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RESOURCES: usize = 6;
const TASKS: usize = 12;
/// Any one operation longer than this is a stall.
const STALL: Duration = Duration::from_secs(30);

/// Per resource, how many locks are held in each mode (as the holders
/// know it: counted after the grant, uncounted before the release).
struct Held([[AtomicUsize; 6]; RESOURCES]);

impl Held {
    fn add(&self, r: usize, m: Mode) {
        self.0[r][m as usize].fetch_add(1, Ordering::SeqCst);
        for other in Mode::ALL {
            let n = self.0[r][other as usize].load(Ordering::SeqCst);
            let others = if other == m { n.saturating_sub(1) } else { n };
            assert!(
                others == 0 || m.is_compatible(other),
                "resource {r}: granted {m} while {others} lock(s) hold {other}"
            );
        }
    }
    fn remove(&self, r: usize, m: Mode) {
        self.0[r][m as usize].fetch_sub(1, Ordering::SeqCst);
    }
}

struct Shared {
    held: Held,
    increments: Vec<AtomicU64>,
    done: AtomicU64,
    ops: u64,
    dropped: AtomicU64,
    granted: AtomicU64,
}

fn counter(g: &LockGuard) -> u64 {
    g.lvb()
        .filter(|v| v.valid)
        .map_or(0, |v| u64::from_le_bytes(v.bytes[..8].try_into().unwrap()))
}

/// Under EX with the value block: adds one to the counter.
fn increment(sh: &Shared, r: usize, g: &mut LockGuard) {
    let n = counter(g) + 1;
    g.set_lvb(&n.to_le_bytes()).unwrap();
    sh.increments[r].fetch_add(1, Ordering::SeqCst);
}

async fn task(ls: Lockspace, sh: Arc<Shared>, mut x: u64) {
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    loop {
        let n = sh.done.fetch_add(1, Ordering::Relaxed);
        if n >= sh.ops {
            break;
        }
        let r = rnd(RESOURCES as u64) as usize;
        let res = format!("a{r}");
        let kind = rnd(6);
        let started = Instant::now();
        let op = async {
            match kind {
                // EX with the value block; released by unlock_async or
                // dropped in the background (the drop publishes too).
                0 | 1 => {
                    let mut g = ls
                        .lock_with_async(&res, Mode::Ex, LockOptions::new().lvb())
                        .await
                        .unwrap();
                    sh.held.add(r, Mode::Ex);
                    sh.granted.fetch_add(1, Ordering::Relaxed);
                    increment(&sh, r, &mut g);
                    tokio::task::yield_now().await;
                    sh.held.remove(r, Mode::Ex);
                    if kind == 0 {
                        g.unlock_async().await.unwrap();
                    } else {
                        drop(g);
                    }
                }
                // A request dropped at a random moment: before its answer,
                // or after it (the timeout races the grant).
                2 => {
                    let ms = rnd(4);
                    let f = ls.lock_with_async(&res, Mode::Ex, LockOptions::new().lvb());
                    match tokio::time::timeout(Duration::from_millis(ms), f).await {
                        Ok(Ok(mut g)) => {
                            sh.held.add(r, Mode::Ex);
                            sh.granted.fetch_add(1, Ordering::Relaxed);
                            increment(&sh, r, &mut g);
                            sh.held.remove(r, Mode::Ex);
                            g.unlock_async().await.unwrap();
                        }
                        Ok(Err(e)) => panic!("lock: {e}"),
                        Err(_) => {
                            sh.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                // A try for PR, converted to EX (or refused), released.
                3 => match ls.try_lock_async(&res, Mode::Pr).await {
                    Ok(mut g) => {
                        sh.held.add(r, Mode::Pr);
                        let up = g
                            .convert_with_async(
                                Mode::Ex,
                                LockOptions::new().timeout(Duration::from_millis(rnd(20) + 1)),
                            )
                            .await;
                        match up {
                            Ok(_) => {
                                sh.held.remove(r, Mode::Pr);
                                sh.held.add(r, Mode::Ex);
                                sh.held.remove(r, Mode::Ex);
                            }
                            Err(Error::TimedOut | Error::Deadlock | Error::WouldBlock) => {
                                sh.held.remove(r, Mode::Pr);
                            }
                            Err(e) => panic!("convert: {e}"),
                        }
                        g.unlock_async().await.unwrap();
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("try: {e}"),
                },
                // A timed PR reader.
                4 => {
                    let o = LockOptions::new().timeout(Duration::from_millis(rnd(30) + 1));
                    match ls.lock_with_async(&res, Mode::Pr, o).await {
                        Ok(g) => {
                            sh.held.add(r, Mode::Pr);
                            tokio::task::yield_now().await;
                            sh.held.remove(r, Mode::Pr);
                            g.unlock_async().await.unwrap();
                        }
                        Err(Error::TimedOut) => {}
                        Err(e) => panic!("timed: {e}"),
                    }
                }
                // A conversion dropped half-way: the lock is given up (the
                // guard says not held) and released in the background.
                _ => {
                    let mut g = ls.lock_async(&res, Mode::Nl).await.unwrap();
                    let f = g.convert_async(Mode::Ex);
                    match tokio::time::timeout(Duration::from_millis(rnd(3)), f).await {
                        Ok(Ok(_)) => {
                            sh.held.add(r, Mode::Ex);
                            sh.held.remove(r, Mode::Ex);
                        }
                        Ok(Err(e)) => panic!("convert: {e}"),
                        Err(_) => {
                            sh.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    drop(g);
                }
            }
        };
        if tokio::time::timeout(STALL, op).await.is_err() {
            panic!("operation {n} (kind {kind} on {res}) stalled for {STALL:?}");
        }
        assert!(started.elapsed() < STALL);
    }
}

#[test]
fn async_soak_with_dropped_futures_and_an_observer() {
    require_cluster!();
    let ops: u64 = std::env::var("DLM_ASOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000);
    let seed: u64 = common::seed("DLM_ASOAK_SEED");
    println!("async soak: seed {seed} (DLM_ASOAK_SEED replays it), {ops} operations");
    let name = common::ls_name("asoak");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    // Without feature `tokio` (no driver), the threaded handle serves all.
    let polled = if cfg!(feature = "tokio") {
        Lockspace::builder(&name).poll_mode().open().unwrap()
    } else {
        Lockspace::open(&name).unwrap()
    };
    let obs = Lockspace::open(&name).unwrap();
    // NL keepers: the value blocks live as long as the test.
    let keepers: Vec<_> = (0..RESOURCES)
        .map(|r| obs.lock(format!("a{r}"), Mode::Nl).unwrap())
        .collect();
    let sh = Arc::new(Shared {
        held: Held(std::array::from_fn(|_| {
            std::array::from_fn(|_| AtomicUsize::new(0))
        })),
        increments: (0..RESOURCES).map(|_| AtomicU64::new(0)).collect(),
        done: AtomicU64::new(0),
        ops,
        dropped: AtomicU64::new(0),
        granted: AtomicU64::new(0),
    });
    let before = dlm::stats();
    let t = Instant::now();
    // The observer: tries EX on the resources from its own thread, its
    // grants checked like every other.
    let observed = Arc::new(AtomicU64::new(0));
    let observer = {
        let (obs, sh, observed) = (obs.clone(), sh.clone(), observed.clone());
        std::thread::spawn(move || {
            let mut i = 0usize;
            while sh.done.load(Ordering::Relaxed) < sh.ops {
                let r = i % RESOURCES;
                i += 1;
                match obs.try_lock(format!("a{r}"), Mode::Ex) {
                    Ok(g) => {
                        sh.held.add(r, Mode::Ex);
                        observed.fetch_add(1, Ordering::Relaxed);
                        sh.held.remove(r, Mode::Ex);
                        g.unlock().unwrap();
                    }
                    Err(Error::WouldBlock) => {}
                    Err(e) => panic!("observer: {e}"),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        #[cfg(feature = "tokio")]
        let driver = tokio::spawn(dlm::tokio::drive(polled.clone()));
        let mut tasks = Vec::new();
        for k in 0..TASKS {
            let handle = if k % 3 == 0 {
                polled.clone()
            } else {
                ls.clone()
            };
            let s = seed ^ (k as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            tasks.push(tokio::spawn(task(handle, sh.clone(), s | 1)));
        }
        for t in tasks {
            t.await.expect("a task panicked");
        }
        // Background releases of the poll-mode handle need its answers
        // read: the driver runs until they are done.
        tokio::time::sleep(Duration::from_millis(300)).await;
        #[cfg(feature = "tokio")]
        driver.abort();
    });
    // The runtime drops the aborted driver (and its handle) only when it
    // shuts down.
    drop(rt);
    observer.join().expect("the observer panicked");
    let elapsed = t.elapsed();
    // Every counter equals the increments made (background releases
    // published theirs: wait for them).
    for (r, inc) in sh.increments.iter().enumerate() {
        let want = inc.load(Ordering::SeqCst);
        let start = Instant::now();
        loop {
            let g = obs
                .lock_with(
                    format!("a{r}"),
                    Mode::Pr,
                    LockOptions::new().lvb().timeout(Duration::from_secs(10)),
                )
                .unwrap();
            let got = counter(&g);
            g.unlock().unwrap();
            if got == want {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "resource {r}: counter {got}, increments {want} (seed {seed})"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let after = dlm::stats();
    println!(
        "async soak: {ops} operations in {:.1} s ({:.0}/s), {} grants under EX, {} futures dropped, observer granted {} times; \
         stats: given_up +{}, reaped +{}, busy retries +{}, release failures +{}",
        elapsed.as_secs_f64(),
        ops as f64 / elapsed.as_secs_f64(),
        sh.granted.load(Ordering::Relaxed),
        sh.dropped.load(Ordering::Relaxed),
        observed.load(Ordering::Relaxed),
        after.given_up - before.given_up,
        after.reaped - before.reaped,
        after.busy_retries - before.busy_retries,
        after.release_failures - before.release_failures
    );
    assert_eq!(after.release_failures, before.release_failures);
    // Every future dropped by its timeout was pending, so its request was
    // in flight (written or queued for the worker) and its drop gave it
    // up; nothing else here gives up (a timed call's cancel is answered
    // well within its grace).
    assert_eq!(
        after.given_up - before.given_up,
        sh.dropped.load(Ordering::Relaxed),
        "give-ups and dropped futures differ"
    );
    drop(keepers);
    drop((ls, polled));
    if let Err(e) = obs.release(dlm::Release::IfUnused) {
        panic!("locks left behind in {name}: {} (seed {seed})", e.error());
    }
}
