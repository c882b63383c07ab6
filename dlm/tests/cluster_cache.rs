//! Cached locks against the real DLM: what the cache holds is checked from
//! a second handle (another DLM holder, as another process would be), and
//! each failure case of the module docs is provoked.

mod common;

use dlm::{CacheOptions, Error, GiveUp, LockOptions, Lockspace, Mode, Release};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn setup(test: &str) -> (String, Lockspace, Lockspace) {
    let name = common::ls_name(test);
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let obs = Lockspace::open(&name).unwrap();
    (name, ls, obs)
}

fn teardown(name: &str, handles: impl IntoIterator<Item = Lockspace>) {
    for h in handles {
        drop(h);
    }
    dlm::leave(name, Release::IfUnused).unwrap();
}

fn counter(lvb: Option<dlm::Lvb>) -> u64 {
    lvb.map_or(0, |l| u64::from_le_bytes(l.bytes[..8].try_into().unwrap()))
}

/// A plain holder's round on `res`: EX with the value block, the counter
/// read and written back plus one, unlocked. The counter read.
fn bump(ls: &Lockspace, res: &str) -> u64 {
    let mut g = ls
        .lock_with(
            res,
            Mode::Ex,
            LockOptions::new().lvb().timeout(Duration::from_secs(10)),
        )
        .unwrap();
    let n = counter(g.lvb());
    g.set_lvb(&(n + 1).to_le_bytes()).unwrap();
    g.unlock().unwrap();
    n
}

/// Waits until `f()` holds, for at most `limit`; how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    None
}

#[test]
fn cached_and_uncached_holders_exclude_each_other() {
    require_cluster!();
    let (name, ls, obs) = setup("cexcl");
    let cache = ls.cached("r", CacheOptions::new()).unwrap();
    let g = cache.lock(Mode::Ex).unwrap();
    assert!(!common::can_take(&obs, "r", Mode::Cr));
    drop(g);
    // Released locally, still held in the DLM by the cache.
    assert_eq!(cache.held(), Mode::Ex);
    assert!(!common::can_take(&obs, "r", Mode::Cr));
    // Hits: no DLM call.
    let t = Instant::now();
    for _ in 0..1000 {
        let g = cache.lock(Mode::Ex).unwrap();
        drop(g);
    }
    let per_hit = t.elapsed() / 1000;
    let s = cache.stats();
    println!("1000 hits, {per_hit:?} each; {s:?}");
    assert_eq!((s.hits, s.takes, s.give_ups), (1000, 1, 0));
    // A waiting holder elsewhere makes the cache give the lock up.
    let t = Instant::now();
    let other = obs
        .lock_with(
            "r",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_secs(5)),
        )
        .unwrap();
    println!("the other handle granted {:?} after asking", t.elapsed());
    // The helper records the give-up just after the kernel answers it.
    assert!(within(Duration::from_secs(1), || cache.held() == Mode::Nl).is_some());
    assert_eq!(cache.stats().give_ups, 1);
    // Now the cache's takes wait for it.
    assert!(matches!(cache.try_lock(Mode::Pr), Err(Error::WouldBlock)));
    assert!(matches!(
        cache.lock_with(
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_millis(200))
        ),
        Err(Error::TimedOut)
    ));
    // Shared local holders share one DLM PR lock, which lets others read.
    other.unlock().unwrap();
    let a = cache.lock(Mode::Pr).unwrap();
    let b = cache.try_lock(Mode::Pr).unwrap();
    assert!(common::can_take(&obs, "r", Mode::Pr));
    assert!(!common::can_take(&obs, "r", Mode::Pw));
    // A local EX must wait for the local PR holders.
    assert!(matches!(cache.try_lock(Mode::Ex), Err(Error::WouldBlock)));
    drop((a, b));
    // Bad options are refused before anything is sent.
    assert!(matches!(
        cache.lock_with(Mode::Ex, LockOptions::new().persistent()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        ls.cached(vec![b'x'; 65], CacheOptions::new()),
        Err(Error::InvalidName(_))
    ));
    drop(cache);
    // Dropping the cache unlocks the DLM lock.
    assert!(within(Duration::from_secs(2), || common::can_take(
        &obs,
        "r",
        Mode::Ex
    ))
    .is_some());
    teardown(&name, [ls, obs]);
}

#[test]
fn a_remote_waiter_is_granted_while_a_local_loop_keeps_taking() {
    require_cluster!();
    let (name, ls, obs) = setup("cstarve");
    let cache = Arc::new(ls.cached("r", CacheOptions::new()).unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let looper = {
        let (cache, stop, count, inside) =
            (cache.clone(), stop.clone(), count.clone(), inside.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let g = cache.lock(Mode::Ex).unwrap();
                inside.store(true, Ordering::SeqCst);
                count.fetch_add(1, Ordering::Relaxed);
                inside.store(false, Ordering::SeqCst);
                drop(g);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let before = count.load(Ordering::Relaxed);
        let t = Instant::now();
        let g = obs
            .lock_with(
                "r",
                Mode::Ex,
                LockOptions::new().timeout(Duration::from_secs(10)),
            )
            .unwrap();
        let waited = t.elapsed();
        worst = worst.max(waited);
        // While the other handle holds it, no local holder is inside.
        let during = count.load(Ordering::Relaxed);
        for _ in 0..50 {
            assert!(!inside.load(Ordering::SeqCst), "a local holder overlapped");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(
            count.load(Ordering::Relaxed) <= during + 1,
            "local takes went on"
        );
        g.unlock().unwrap();
        println!(
            "round {round}: granted after {waited:?} ({} local takes while it waited)",
            during - before
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    looper.join().unwrap();
    let s = cache.stats();
    println!("worst wait {worst:?}; {s:?}");
    assert!(
        worst < Duration::from_secs(2),
        "the remote waiter waited {worst:?}"
    );
    assert!(s.give_ups >= 5 && s.hits > s.takes);
    drop(cache);
    teardown(&name, [ls, obs]);
}

/// Two caches (two handles, as two processes or nodes would be) hand the
/// lock back and forth with no minimum hold time, while a third holder
/// makes new requests: each is granted within a bound. Before a take from
/// NL became a new request, the two caches' conversions up from NL were
/// always granted first (the kernel serves its convert queue before its
/// wait queue) and the third holder waited for ever.
#[test]
fn new_requests_are_granted_while_two_caches_hand_the_lock_over() {
    require_cluster!();
    let (name, ls, obs) = setup("chand");
    let ls2 = Lockspace::open(&name).unwrap();
    let opts = CacheOptions::new().min_hold(Duration::ZERO);
    let caches = [
        Arc::new(ls.cached("r", opts).unwrap()),
        Arc::new(ls2.cached("r", opts).unwrap()),
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let takes = Arc::new(AtomicU64::new(0));
    // Three local takers a cache: one of them always waits, so a cache
    // asks for the lock again as soon as it gave it up.
    let loops: Vec<_> = caches
        .iter()
        .flat_map(|cache| [cache.clone(), cache.clone(), cache.clone()])
        .map(|cache| {
            let (cache, stop, takes) = (cache.clone(), stop.clone(), takes.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let g = cache.lock(Mode::Ex).unwrap();
                    takes.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_micros(200));
                    drop(g);
                }
            })
        })
        .collect();
    // Both caches take the lock in turns before the third holder asks.
    assert!(
        within(Duration::from_secs(10), || takes.load(Ordering::Relaxed)
            > 20)
        .is_some(),
        "the two caches made no progress"
    );
    let mut worst = Duration::ZERO;
    for round in 0..10 {
        let t = Instant::now();
        let g = obs.lock_with(
            "r",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_secs(10)),
        );
        let waited = t.elapsed();
        let g =
            g.unwrap_or_else(|e| panic!("round {round}: the third holder: {e} after {waited:?}"));
        worst = worst.max(waited);
        g.unlock().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
    let before = takes.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let after = takes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }
    let [a, b] = [caches[0].stats(), caches[1].stats()];
    println!("worst wait of the third holder {worst:?}; caches {a:?} {b:?}");
    assert!(after > before, "the caches stopped taking the lock");
    assert!(a.takes > 10 && b.takes > 10, "both caches took the lock");
    assert!(
        worst < Duration::from_secs(2),
        "the third holder waited {worst:?}"
    );
    drop(caches);
    teardown(&name, [ls, ls2, obs]);
}

/// Two threads increment a counter in the value block through the cache
/// and a third through a plain lock of another handle: no increment is
/// lost.
///
/// The DLM frees a resource's value block with the resource's last lock
/// (see [`dlm::Lvb`]): a plain holder that unlocks while no other lock
/// exists on the resource throws its value away, and the next holder reads
/// zeros. So an NL lock (`keep`) holds the block for the whole test. Without
/// it the test lost every plain increment made before the cache's first
/// request reached the kernel (1 run in 40 with the three threads started
/// together; every run since the plain thread goes `EARLY` rounds first).
#[test]
fn lvb_counter_is_exact_under_cached_and_uncached_writers() {
    require_cluster!();
    let (name, ls, obs) = setup("clvb");
    let keep = obs.lock("n", Mode::Nl).unwrap();
    let cache = Arc::new(ls.cached("n", CacheOptions::new().lvb()).unwrap());
    const CACHED: u64 = 2000;
    const PLAIN: u64 = 50;
    // Plain rounds before the cache's threads start (the cache holds no
    // lock yet: only `keep` keeps the value block).
    const EARLY: u64 = 10;
    let barrier = Arc::new(Barrier::new(3));
    let mut threads = Vec::new();
    for _ in 0..2 {
        let (cache, barrier) = (cache.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            barrier.wait();
            for _ in 0..CACHED {
                let mut g = cache.lock(Mode::Ex).unwrap();
                let n = counter(g.lvb());
                g.set_lvb(&(n + 1).to_le_bytes()).unwrap();
            }
            Vec::new()
        }));
    }
    {
        let (obs, barrier) = (obs.clone(), barrier.clone());
        threads.push(std::thread::spawn(move || {
            // The values the plain holder read, printed on a failure.
            let mut reads = Vec::new();
            for i in 0..PLAIN {
                if i == EARLY {
                    barrier.wait();
                }
                let mut g = obs
                    .lock_with("n", Mode::Ex, LockOptions::new().lvb())
                    .unwrap();
                let n = counter(g.lvb());
                reads.push(n);
                g.set_lvb(&(n + 1).to_le_bytes()).unwrap();
                g.unlock().unwrap();
            }
            reads
        }));
    }
    let reads: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    // A reader through the other handle makes the cache publish.
    let g = obs
        .lock_with("n", Mode::Pr, LockOptions::new().lvb())
        .unwrap();
    let s = cache.stats();
    println!("counter {} ; {s:?}", counter(g.lvb()));
    assert_eq!(
        counter(g.lvb()),
        2 * CACHED + PLAIN,
        "the plain holder read {:?}",
        reads[2]
    );
    assert!(g.lvb().unwrap().valid);
    // The cache, shared with the reader, sees the same value.
    g.unlock().unwrap();
    let c = cache.lock(Mode::Pr).unwrap();
    assert_eq!(counter(c.lvb()), 2 * CACHED + PLAIN);
    drop(c);
    drop(cache);
    keep.unlock().unwrap();
    teardown(&name, [ls, obs]);
}

/// Why the test above keeps an NL lock: a holder alone on a resource reads
/// zeros each time, its value freed with its lock.
#[test]
fn a_value_block_is_freed_with_the_last_lock() {
    require_cluster!();
    let (name, ls, obs) = setup("clvbfree");
    let plain_round = || bump(&obs, "n");
    assert_eq!([plain_round(), plain_round(), plain_round()], [0, 0, 0]);
    let keep = ls.lock("n", Mode::Nl).unwrap();
    assert_eq!([plain_round(), plain_round(), plain_round()], [0, 1, 2]);
    keep.unlock().unwrap();
    teardown(&name, [ls, obs]);
}

/// Two caches (two handles, as two nodes would be) hold PR and both take
/// EX at once: the DLM refuses one conversion with EDEADLK (unless the
/// blocking notification came first, then that cache waits instead).
/// Nobody hangs, a refused cache keeps its mode and can take again, and
/// the two never hold EX together.
#[test]
fn conversion_deadlock_converting_up() {
    require_cluster!();
    let (name, ls, obs) = setup("cdeadlk");
    let a = Arc::new(ls.cached("r", CacheOptions::new()).unwrap());
    let b = Arc::new(obs.cached("r", CacheOptions::new()).unwrap());
    let inside = Arc::new(AtomicU64::new(0));
    let mut deadlocks = 0;
    for _ in 0..30 {
        drop(a.lock(Mode::Pr).unwrap());
        drop(b.lock(Mode::Pr).unwrap());
        let barrier = Arc::new(Barrier::new(2));
        let ts: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|c| {
                let (barrier, inside) = (barrier.clone(), inside.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    let opts = LockOptions::new().timeout(Duration::from_secs(10));
                    let mut deadlocked = false;
                    let g = match c.lock_with(Mode::Ex, opts) {
                        Ok(g) => g,
                        Err(Error::Deadlock) => {
                            deadlocked = true;
                            // Still held in its old mode (or already given up).
                            assert!(matches!(c.held(), Mode::Pr | Mode::Nl));
                            c.lock_with(Mode::Ex, opts).unwrap()
                        }
                        Err(e) => panic!("{e}"),
                    };
                    assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two EX holders");
                    std::thread::sleep(Duration::from_millis(5));
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(g);
                    deadlocked
                })
            })
            .collect();
        for t in ts {
            deadlocks += t.join().unwrap() as u32;
        }
    }
    println!("30 rounds, {deadlocks} conversion deadlocks refused");
    drop((a, b));
    teardown(&name, [ls, obs]);
}

/// Set in the child process: the lockspace to release by force.
const RELEASER: &str = "DLM_TEST_CACHE_FORCE_RELEASE";

#[test]
fn a_lockspace_gone_fails_takes_hits_included() {
    common::force_release_child(RELEASER);
    require_cluster!();
    let name = common::ls_name("cgone");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let cache = ls.cached("r", CacheOptions::new()).unwrap();
    let local = cache.lock(Mode::Ex).unwrap();
    let mut child = common::spawn_force_release(
        RELEASER,
        "a_lockspace_gone_fails_takes_hits_included",
        &name,
    );
    let seen = within(Duration::from_secs(5), || !ls.is_alive());
    println!("forced release seen after {seen:?}");
    assert!(seen.is_some());
    // A hit would be served from the cache: it is refused too.
    assert!(matches!(
        cache.try_lock(Mode::Cr),
        Err(Error::LockspaceGone)
    ));
    assert!(matches!(cache.lock(Mode::Ex), Err(Error::LockspaceGone)));
    let t = Instant::now();
    drop(local);
    drop(cache);
    drop(ls);
    // The helper thread lets its handle go: the release finishes.
    let status = common::wait_child(
        &mut child,
        t,
        Duration::from_secs(20),
        "the forced release did not finish after the cache was dropped",
    );
    println!("released {:?} after the drops", t.elapsed());
    assert!(status.success());
}

/// A value set by a local PW holder survives the cache's conversion up to
/// EX for the next local holder (the kernel's PW -> EX conversion reads
/// the resource's value block, which the cache has not written yet), and
/// is published when the cache gives the lock up: a reader on another
/// handle sees it.
#[test]
fn a_value_set_under_pw_survives_the_conversion_to_ex() {
    require_cluster!();
    let (name, ls, obs) = setup("cpwex");
    let cache = ls
        .cached("v", CacheOptions::new().lvb().idle_release(None))
        .unwrap();
    let mut g = cache.lock(Mode::Pw).unwrap();
    g.set_lvb(&7u64.to_le_bytes()).unwrap();
    drop(g);
    let g = cache.lock(Mode::Ex).unwrap();
    assert_eq!(
        counter(g.lvb()),
        7,
        "the EX holder sees the PW holder's value"
    );
    drop(g);
    let r = obs
        .lock_with(
            "v",
            Mode::Pr,
            LockOptions::new().lvb().timeout(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(counter(r.lvb()), 7, "published at the give-up");
    drop(r);
    drop(cache);
    teardown(&name, [ls, obs]);
}

#[test]
fn a_panic_in_a_local_holder_releases_it_and_drops_its_value() {
    require_cluster!();
    let (name, ls, obs) = setup("cpanic");
    let cache = Arc::new(ls.cached("r", CacheOptions::new().lvb()).unwrap());
    {
        let mut g = cache.lock(Mode::Ex).unwrap();
        g.set_lvb(&7u64.to_le_bytes()).unwrap();
    }
    let c = cache.clone();
    let r = std::thread::spawn(move || {
        let mut g = c.lock(Mode::Ex).unwrap();
        g.set_lvb(&42u64.to_le_bytes()).unwrap();
        panic!("a holder panics");
    })
    .join();
    assert!(r.is_err());
    // Not poisoned: the other handle is granted (the cache gives up) and
    // sees the value set before the panic.
    let g = obs
        .lock_with(
            "r",
            Mode::Pr,
            LockOptions::new().lvb().timeout(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(counter(g.lvb()), 7);
    g.unlock().unwrap();
    let g = cache.lock(Mode::Ex).unwrap();
    assert_eq!(counter(g.lvb()), 7);
    drop(g);
    drop(cache);
    teardown(&name, [ls, obs]);
}

#[test]
fn a_cache_dropped_while_local_guards_live_unlocks_after_the_last() {
    require_cluster!();
    let (name, ls, obs) = setup("cdrop");
    let cache = ls.cached("r", CacheOptions::new().lvb()).unwrap();
    let mut g = cache.lock(Mode::Ex).unwrap();
    g.set_lvb(&9u64.to_le_bytes()).unwrap();
    drop(cache);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        !common::can_take(&obs, "r", Mode::Cr),
        "released under a live guard"
    );
    assert_eq!(g.mode(), Mode::Ex);
    // The last guard's drop returns once the helper has unlocked.
    drop(g);
    assert!(common::can_take(&obs, "r", Mode::Ex));
    // The value set under the last guard was published on the way out. Keep
    // an NL lock meanwhile? No: the cache's own lock was the last one, so
    // the DLM freed the block; publication is checked while another lock
    // keeps it, below.
    let keep = obs
        .lock_with("s", Mode::Nl, LockOptions::new().lvb())
        .unwrap();
    let cache = ls.cached("s", CacheOptions::new().lvb()).unwrap();
    let mut g = cache.lock(Mode::Ex).unwrap();
    g.set_lvb(&11u64.to_le_bytes()).unwrap();
    drop(cache);
    drop(g);
    assert!(common::can_take(&obs, "s", Mode::Ex));
    let r = obs
        .lock_with("s", Mode::Pr, LockOptions::new().lvb())
        .unwrap();
    assert_eq!(counter(r.lvb()), 11);
    drop((r, keep));
    teardown(&name, [ls, obs]);
}

/// A cache dropped while a local guard lives: when the last guard's drop
/// returns, the helper thread has unlocked the DLM lock and let the
/// lockspace handle go, so the lockspace can be released at once (it was
/// refused with `HandlesOpen` while the helper was still on its way out).
#[test]
fn the_last_guard_of_a_dropped_cache_frees_the_handle() {
    require_cluster!();
    for round in 0..20 {
        let name = common::ls_name("cdroph");
        let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
        let cache = ls.cached("r", CacheOptions::new().lvb()).unwrap();
        let mut g = cache.lock(Mode::Ex).unwrap();
        g.set_lvb(&7u64.to_le_bytes()).unwrap();
        drop(cache);
        drop(g);
        drop(ls);
        if let Err(e) = dlm::leave(&name, Release::IfUnused) {
            // Leave nothing behind for the next test.
            std::thread::sleep(Duration::from_millis(500));
            dlm::leave(&name, Release::IfUnused).unwrap();
            panic!("round {round}: {e}");
        }
    }
}

#[test]
fn idle_release_and_unlock_on_give_up() {
    require_cluster!();
    let (name, ls, obs) = setup("cidle");
    let cache = ls
        .cached(
            "r",
            CacheOptions::new().idle_release(Some(Duration::from_millis(200))),
        )
        .unwrap();
    drop(cache.lock(Mode::Ex).unwrap());
    assert!(!common::can_take(&obs, "r", Mode::Ex));
    let seen = within(Duration::from_secs(3), || {
        common::can_take(&obs, "r", Mode::Ex)
    });
    println!("idle release seen after {seen:?}");
    assert!(seen.is_some_and(|t| t > Duration::from_millis(100)));
    assert_eq!(cache.stats().idle_releases, 1);
    drop(cache);
    // GiveUp::Unlock: the lock is gone after a give-up (an EX request with
    // NOQUEUE is granted, and the next take is a new request).
    let cache = ls
        .cached(
            "u",
            CacheOptions::new()
                .give_up(GiveUp::Unlock)
                .idle_release(None),
        )
        .unwrap();
    drop(cache.lock(Mode::Pr).unwrap());
    let g = obs
        .lock_with(
            "u",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_secs(5)),
        )
        .unwrap();
    g.unlock().unwrap();
    assert!(within(Duration::from_secs(1), || cache.held() == Mode::Nl).is_some());
    drop(cache.lock(Mode::Ex).unwrap());
    assert_eq!(cache.stats().takes, 2);
    drop(cache);
    teardown(&name, [ls, obs]);
}

#[test]
fn async_takes_hit_wait_and_cancel() {
    require_cluster!();
    let (name, ls, obs) = setup("casync");
    let cache = Arc::new(ls.cached("r", CacheOptions::new()).unwrap());
    futures::executor::block_on(async {
        let g = cache.lock_async(Mode::Ex).await.unwrap();
        drop(g);
        for _ in 0..100 {
            drop(cache.lock_async(Mode::Ex).await.unwrap());
        }
        assert_eq!(cache.stats().hits, 100);
        // A task waiting for a local holder is woken by its release.
        let held = cache.lock_async(Mode::Ex).await.unwrap();
        assert!(matches!(
            cache.try_lock_async(Mode::Pr).await,
            Err(Error::WouldBlock)
        ));
        let c = cache.clone();
        let waiter = std::thread::spawn(move || {
            futures::executor::block_on(
                c.lock_with_async(Mode::Pr, LockOptions::new().timeout(Duration::from_secs(5))),
            )
            .map(drop)
        });
        std::thread::sleep(Duration::from_millis(100));
        drop(held);
        waiter.join().unwrap().unwrap();
    });
    // A future converting up, dropped mid-way (the other handle holds the
    // lock): the cache goes on.
    let other = obs.lock("r2", Mode::Ex).unwrap();
    let c2 = ls.cached("r2", CacheOptions::new()).unwrap();
    let r = futures::executor::block_on(async {
        let fut = Box::pin(c2.lock_async(Mode::Ex));
        // Polled after the take's first poll: the take is dropped mid-way.
        let timer = Box::pin(async { std::thread::sleep(Duration::from_millis(1)) });
        match futures::future::select(fut, timer).await {
            futures::future::Either::Left(_) => "granted",
            futures::future::Either::Right(_) => "dropped",
        }
    });
    assert_eq!(r, "dropped");
    other.unlock().unwrap();
    drop(
        c2.lock_with(Mode::Ex, LockOptions::new().timeout(Duration::from_secs(5)))
            .unwrap(),
    );
    drop((c2, cache));
    teardown(&name, [ls, obs]);
}

#[test]
fn a_fork_child_cannot_use_the_parents_cache() {
    require_cluster!();
    let (name, ls, obs) = setup("cfork");
    let cache = ls.cached("r", CacheOptions::new()).unwrap();
    drop(cache.lock(Mode::Ex).unwrap());
    // SAFETY: the child only runs the closure below and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let code = (|| {
            // A hit in the child would be served from the parent's lock.
            if !matches!(cache.try_lock(Mode::Ex), Err(Error::Forked)) {
                return 10;
            }
            drop(cache);
            0
        })();
        // SAFETY: ends the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{status:#x}"
    );
    // The parent's cache still holds the lock and serves hits.
    assert!(!common::can_take(&obs, "r", Mode::Cr));
    let hits = cache.stats().hits;
    drop(cache.lock(Mode::Ex).unwrap());
    assert_eq!(cache.stats().hits, hits + 1);
    drop(cache);
    teardown(&name, [ls, obs]);
}

/// Two caches (two handles: two DLM holders) take one resource in strict
/// turns, a counter in the value block saying whose turn it is (bench case
/// 10 in one node), one with blocking takes, the other with async ones: a
/// take that finds the lock drained or given up requests it anew at once
/// (an early request, installed once the give-up has answered). Every
/// turn is taken exactly once; the caches find the lock contended and
/// give it up at their releases unasked.
#[test]
fn strict_turns_between_a_blocking_and_an_async_cache() {
    require_cluster!();
    let (name, ls, obs) = setup("cturns");
    let opts = CacheOptions::new().lvb().min_hold(Duration::ZERO);
    let blocking = Arc::new(ls.cached("r", opts).unwrap());
    let tasks = Arc::new(obs.cached("r", opts).unwrap());
    const TURNS: u64 = 100;
    // One turn of `me` (0 or 1): whether it was this side's turn.
    fn turn(g: &mut dlm::CachedGuard, me: u64) -> bool {
        let c = counter(g.lvb());
        let mine = c % 2 == me && c < 2 * TURNS;
        if mine {
            g.set_lvb(&(c + 1).to_le_bytes()).unwrap();
        }
        mine
    }
    let start = Instant::now();
    let b = blocking.clone();
    let side0 = std::thread::spawn(move || {
        let mut done = 0;
        while done < TURNS {
            assert!(start.elapsed() < Duration::from_secs(60), "turn {done}");
            let mut g = b.lock(Mode::Ex).unwrap();
            if turn(&mut g, 0) {
                done += 1;
            }
            drop(g);
            std::thread::sleep(Duration::from_micros(50));
        }
    });
    let t = tasks.clone();
    let side1 = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let mut done = 0;
            while done < TURNS {
                assert!(start.elapsed() < Duration::from_secs(60), "turn {done}");
                let mut g = t.lock_async(Mode::Ex).await.unwrap();
                if turn(&mut g, 1) {
                    done += 1;
                }
                drop(g);
                std::thread::sleep(Duration::from_micros(50));
            }
        })
    });
    side0.join().unwrap();
    side1.join().unwrap();
    let g = tasks.lock(Mode::Ex).unwrap();
    assert_eq!(counter(g.lvb()), 2 * TURNS);
    drop(g);
    let [a, b] = [blocking.stats(), tasks.stats()];
    println!("strict turns: {a:?} {b:?} in {:?}", start.elapsed());
    // A take a turn at least. The lock is contended (each side asks for
    // it right after the other took it), so the caches give it up at their
    // releases without being asked, as plain locks would be released: a
    // take out of turn may then take the DLM lock too, and does at most
    // once per sleep of the other side's turn.
    assert!(a.takes >= TURNS && a.takes <= 3 * TURNS, "{a:?}");
    assert!(b.takes >= TURNS && b.takes <= 3 * TURNS, "{b:?}");
    assert!(a.contended_releases > 0 && b.contended_releases > 0);
    assert!(a.contended_releases <= a.give_ups && b.contended_releases <= b.give_ups);
    drop((blocking, tasks));
    teardown(&name, [ls, obs]);
}

/// A cache in a contended stretch (another handle asked right after its
/// take), whose takes are requests without blocking notifications: a
/// `lock_async` future dropped after each number of polls, its request
/// queued behind the other handle's EX or granted at once, leaves nothing
/// held and nothing stuck: the other handle is granted, and the cache takes
/// the lock again, every time.
#[test]
fn contended_async_takes_dropped_at_every_poll() {
    require_cluster!();
    let (name, ls, obs) = setup("cdrops");
    let cache = ls.cached("r", CacheOptions::new()).unwrap();
    let timeout = LockOptions::new().timeout(Duration::from_secs(5));
    // Contention: the other handle asks while the first take holds.
    let g = cache.lock(Mode::Ex).unwrap();
    let o = std::thread::scope(|s| {
        let t = s.spawn(|| obs.lock_with("r", Mode::Ex, timeout));
        std::thread::sleep(Duration::from_millis(100));
        drop(g);
        t.join().unwrap()
    });
    o.unwrap().unlock().unwrap();
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    for polls in 0..12 {
        // Even: the other handle holds EX (the request waits); odd: free.
        let other = (polls % 2 == 0).then(|| obs.lock_with("r", Mode::Ex, timeout).unwrap());
        let mut fut = Box::pin(cache.lock_async(Mode::Ex));
        let mut done = None;
        for _ in 0..polls {
            if let std::task::Poll::Ready(r) = std::future::Future::poll(fut.as_mut(), &mut cx) {
                done = Some(r);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(done.map(Result::unwrap));
        drop(fut);
        if let Some(o) = other {
            o.unlock().unwrap();
        }
        // The other handle is granted (the cache gives up whatever it
        // holds), then the cache takes the lock again.
        obs.lock_with("r", Mode::Ex, timeout)
            .unwrap_or_else(|e| panic!("after {polls} polls: {e}"))
            .unlock()
            .unwrap();
        drop(
            cache
                .lock_with(Mode::Ex, timeout)
                .unwrap_or_else(|e| panic!("after {polls} polls: {e}")),
        );
    }
    let s = cache.stats();
    println!("dropped at every poll: {s:?}");
    assert!(s.contended_releases > 0, "{s:?}");
    drop(cache);
    assert!(common::can_take(&obs, "r", Mode::Ex));
    teardown(&name, [ls, obs]);
}

/// A take from NL requests a new lock; the NL lock it replaces is
/// unlocked (without waiting) after the next give-up: after many
/// hand-overs between a cache and a plain holder on another handle, and
/// the cache dropped, no lock of the cache's is left on the resource (the
/// other handle finds its value block freed, which happens only with the
/// last lock). (The crate's global counters are not checked: the other
/// tests of this file run beside it.)
#[test]
fn replaced_nl_locks_are_unlocked() {
    require_cluster!();
    let (name, ls, obs) = setup("cnlgone");
    let plain_round = || bump(&obs, "r");
    let cache = ls.cached("r", CacheOptions::new().lvb()).unwrap();
    let rounds = 40;
    for i in 0..rounds {
        let mut g = cache.lock(Mode::Ex).unwrap();
        let n = counter(g.lvb());
        assert_eq!(n, 2 * i, "the cache's take sees every write");
        g.set_lvb(&(n + 1).to_le_bytes()).unwrap();
        drop(g);
        assert_eq!(plain_round(), 2 * i + 1);
    }
    let s = cache.stats();
    println!("{rounds} hand-overs each way: {s:?}");
    assert!(
        s.takes >= rounds,
        "every take after a hand-over is a DLM take"
    );
    drop(cache);
    // With no lock of the cache's left, the value block goes with the
    // plain holder's unlock: the next round reads 0. (The answers of the
    // unlocks written without waiting may still be on their way: a few
    // tries.)
    let freed = within(Duration::from_secs(2), || {
        plain_round();
        plain_round() == 0
    });
    assert!(
        freed.is_some(),
        "a lock of the cache's is left on the resource"
    );
    teardown(&name, [ls, obs]);
}
