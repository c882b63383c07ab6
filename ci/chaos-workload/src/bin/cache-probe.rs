//! cache-probe: the node-side program of ci/scenarios/13-cached-locks.sh
//! (cached locks, issue 17), with one subcommand per role. Every program
//! joins LOCKSPACE (default `cache13`, or $CACHE_PROBE_LS) and prints
//! `key value` lines, flushed at once, that the scenario reads.
//!
//! ```text
//! cache-probe counter RES SECONDS ROLE...    # writers and readers of a counter in RES's value block
//! cache-probe hammer RES SECONDS THREADS MIN_HOLD_MS HOLD_US
//! cache-probe waiter RES SECONDS PAUSE_MS TIMEOUT_MS
//! cache-probe read RES                       # the counter, from a plain PR lock
//! cache-probe pwex RES                       # a PW holder's value, then a take in EX
//! cache-probe release                        # the lockspace released without force
//! ```
//!
//! **counter**: ROLEs are `cw=N` (N threads of cached EX writers sharing one
//! [`CachedLock`] made with [`CacheOptions::lvb`]: read the counter from the
//! guard's value block, hold, `set_lvb` the counter plus one), `pw=N`
//! (plain EX writers: `lock_with(EX, lvb)`, the same, published by the
//! unlock), `cr=N` (cached PR readers on that same cache), `pr=N` (plain
//! PR readers), `hold=US` (how long a writer holds between its read and
//! its write, default 500: an overlap of two writers would lose an
//! increment), `give-up=unlock` (the cache unlocks instead of converting
//! down), `min-hold=MS`. Runs SECONDS, then drops every guard and the cache
//! and prints `increments N` (writers), `reads N regressions N max V`
//! (readers: a reader that sees the counter go down counts a regression),
//! the cache's `stats hits H takes T give_ups G idle_releases I`,
//! `deadlocks N` (cached takes refused with a conversion deadlock, as
//! documented when two caches holding PR convert up to EX; tried again)
//! and `errors N` (any failed take or a value block not as written: the
//! counter's magic missing, or not valid). Exit 1 if errors > 0.
//!
//! **hammer**: THREADS threads take RES in EX from one cache
//! (`min_hold(MIN_HOLD_MS)`), hold HOLD_US, release, and take again at
//! once, for SECONDS; prints `ops N` and the cache's stats.
//!
//! **waiter**: plain (uncached) EX requests on RES, one after the other
//! (PAUSE_MS between them), each with a TIMEOUT_MS timeout, for SECONDS;
//! prints `wait MS` for each, then `grants N timeouts N max_ms MS
//! mean_ms MS`.
//!
//! **release** (no RES, no join): opens the lockspace from a fresh handle
//! and releases it without force (`Release::IfUnused`), again until it is
//! gone (each process that created it counts once); prints `released
//! after N` or `refused N: ERROR` (exit 1: a lock is left on this node).
//!
//! **pwex**: on one cache with the value block: PW, `set_lvb` (counter
//! 1), release; then EX, which converts the DLM lock PW -> EX: prints `ex
//! sees N` (the value the EX holder reads from the cache: 1 unless the
//! PW holder's value was lost).
use dlm::{CacheOptions, CachedLock, Error, GiveUp, LockOptions, Lockspace, Lvb, Mode, Release};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes 8..16 of a value block this probe wrote.
const MAGIC: &[u8; 8] = b"CACHE13\0";

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn usage() -> ! {
    eprintln!(
        "usage: cache-probe counter RES SECONDS ROLE... | hammer RES SECONDS THREADS MIN_HOLD_MS HOLD_US \
         | waiter RES SECONDS PAUSE_MS TIMEOUT_MS | read RES | pwex RES | release"
    );
    std::process::exit(64)
}

fn num<T: std::str::FromStr>(s: Option<&String>) -> T {
    s.and_then(|s| s.parse().ok()).unwrap_or_else(|| usage())
}

/// The counter in a value block: 0 for an empty (all-zero) block, `None`
/// for one not valid or not written by this probe.
fn decode(lvb: Option<Lvb>) -> Option<u64> {
    let l = lvb?;
    if l.bytes.iter().all(|&b| b == 0) {
        return Some(0);
    }
    if !l.valid || &l.bytes[8..16] != MAGIC {
        return None;
    }
    Some(u64::from_le_bytes(l.bytes[..8].try_into().ok()?))
}

fn encode(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_le_bytes());
    b[8..].copy_from_slice(MAGIC);
    b
}

fn spin_hold(us: u64) {
    if us > 0 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

fn stats_line(c: &CachedLock) -> String {
    let s = c.stats();
    format!(
        "stats hits {} takes {} give_ups {} idle_releases {}",
        s.hits, s.takes, s.give_ups, s.idle_releases
    )
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(cmd) = args.first() else { usage() };
    let ls_name = std::env::var("CACHE_PROBE_LS").unwrap_or_else(|_| "cache13".into());
    if cmd == "release" {
        std::process::exit(release(&ls_name));
    }
    let ls = Lockspace::join(&ls_name, 0o600).unwrap_or_else(|e| {
        eprintln!("cache-probe: join {ls_name}: {e}");
        std::process::exit(2)
    });
    let res = args.get(1).cloned().unwrap_or_else(|| usage());
    let rc = match cmd.as_str() {
        "counter" => counter(&ls, &res, num(args.get(2)), &args[3..]),
        "hammer" => hammer(
            &ls,
            &res,
            num(args.get(2)),
            num(args.get(3)),
            num(args.get(4)),
            num(args.get(5)),
        ),
        "waiter" => waiter(
            &ls,
            &res,
            num(args.get(2)),
            num(args.get(3)),
            num(args.get(4)),
        ),
        "read" => read(&ls, &res),
        "pwex" => pwex(&ls, &res),
        _ => usage(),
    };
    std::process::exit(rc)
}

#[derive(Default)]
struct Totals {
    increments: AtomicU64,
    reads: AtomicU64,
    regressions: AtomicU64,
    max_seen: AtomicU64,
    /// Conversion deadlocks converting up (two caches in PR both
    /// converting to EX): documented, the take is tried again.
    deadlocks: AtomicU64,
    errors: AtomicU64,
}

impl Totals {
    fn error(&self, what: &str) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("cache-probe: {what}");
    }

    fn saw(&self, v: u64, last: &mut u64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        if v < *last {
            self.regressions.fetch_add(1, Ordering::Relaxed);
            eprintln!("cache-probe: a reader saw {v} after {last}");
        }
        *last = v;
        self.max_seen.fetch_max(v, Ordering::Relaxed);
    }
}

fn counter(ls: &Lockspace, res: &str, seconds: u64, roles: &[String]) -> i32 {
    let (mut cw, mut pw, mut cr, mut pr, mut hold_us) = (0, 0, 0, 0, 500u64);
    let mut opts = CacheOptions::new().lvb();
    for r in roles {
        let (k, v) = r.split_once('=').unwrap_or_else(|| usage());
        let n: u64 = v.parse().unwrap_or(0);
        match k {
            "cw" => cw = n,
            "pw" => pw = n,
            "cr" => cr = n,
            "pr" => pr = n,
            "hold" => hold_us = n,
            "min-hold" => opts = opts.min_hold(Duration::from_millis(n)),
            "give-up" if v == "unlock" => opts = opts.give_up(GiveUp::Unlock),
            _ => usage(),
        }
    }
    let cache = Arc::new(ls.cached(res, opts).expect("cached"));
    let t = Arc::new(Totals::default());
    let until = Instant::now() + Duration::from_secs(seconds);
    let mut threads = Vec::new();
    for i in 0..cw {
        let (cache, t) = (Arc::clone(&cache), Arc::clone(&t));
        threads.push(std::thread::spawn(move || {
            let mut n = 0u64;
            while Instant::now() < until {
                // Now and then a timed take: the same local hold.
                let g = if n % 7 == i % 7 {
                    cache.lock_with(
                        Mode::Ex,
                        LockOptions::new().timeout(Duration::from_secs(10)),
                    )
                } else {
                    cache.lock(Mode::Ex)
                };
                let mut g = match g {
                    Ok(g) => g,
                    Err(Error::Deadlock) => {
                        t.deadlocks.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        t.error(&format!("cached EX take: {e}"));
                        continue;
                    }
                };
                let Some(v) = decode(g.lvb()) else {
                    t.error(&format!("cached writer read {:?}", g.lvb()));
                    continue;
                };
                spin_hold(hold_us);
                g.set_lvb(&encode(v + 1)).expect("set_lvb");
                drop(g);
                n += 1;
                t.increments.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for _ in 0..pw {
        let (ls, res, t) = (ls.clone(), res.to_string(), Arc::clone(&t));
        threads.push(std::thread::spawn(move || {
            while Instant::now() < until {
                let mut g = match ls.lock_with(res.as_str(), Mode::Ex, LockOptions::new().lvb()) {
                    Ok(g) => g,
                    Err(e) => {
                        t.error(&format!("plain EX lock: {e}"));
                        continue;
                    }
                };
                let Some(v) = decode(g.lvb()) else {
                    t.error(&format!("plain writer read {:?}", g.lvb()));
                    continue;
                };
                spin_hold(hold_us);
                g.set_lvb(&encode(v + 1)).expect("set_lvb");
                match g.unlock() {
                    Ok(()) => {
                        t.increments.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => t.error(&format!("plain unlock: {e}")),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }));
    }
    for _ in 0..cr {
        let (cache, t) = (Arc::clone(&cache), Arc::clone(&t));
        threads.push(std::thread::spawn(move || {
            let mut last = 0;
            while Instant::now() < until {
                match cache.lock(Mode::Pr) {
                    Ok(g) => match decode(g.lvb()) {
                        Some(v) => t.saw(v, &mut last),
                        None => t.error(&format!("cached reader read {:?}", g.lvb())),
                    },
                    Err(e) => t.error(&format!("cached PR take: {e}")),
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }));
    }
    for _ in 0..pr {
        let (ls, res, t) = (ls.clone(), res.to_string(), Arc::clone(&t));
        threads.push(std::thread::spawn(move || {
            let mut last = 0;
            while Instant::now() < until {
                match ls.lock_with(res.as_str(), Mode::Pr, LockOptions::new().lvb()) {
                    Ok(g) => {
                        match decode(g.lvb()) {
                            Some(v) => t.saw(v, &mut last),
                            None => t.error(&format!("plain reader read {:?}", g.lvb())),
                        }
                        let _ = g.unlock();
                    }
                    Err(e) => t.error(&format!("plain PR lock: {e}")),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }));
    }
    for h in threads {
        if h.join().is_err() {
            t.error("a thread panicked");
        }
    }
    let stats = stats_line(&cache);
    // The last guard is gone: dropping the cache unlocks the DLM lock and
    // publishes the last local value.
    drop(Arc::try_unwrap(cache).expect("no other reference to the cache"));
    say(&format!(
        "increments {}",
        t.increments.load(Ordering::Relaxed)
    ));
    say(&format!(
        "reads {} regressions {} max {}",
        t.reads.load(Ordering::Relaxed),
        t.regressions.load(Ordering::Relaxed),
        t.max_seen.load(Ordering::Relaxed)
    ));
    say(&stats);
    say(&format!(
        "deadlocks {}",
        t.deadlocks.load(Ordering::Relaxed)
    ));
    let errors = t.errors.load(Ordering::Relaxed);
    say(&format!("errors {errors}"));
    i32::from(errors > 0)
}

fn hammer(
    ls: &Lockspace,
    res: &str,
    seconds: u64,
    threads: u64,
    min_hold_ms: u64,
    hold_us: u64,
) -> i32 {
    let cache = Arc::new(
        ls.cached(
            res,
            CacheOptions::new().min_hold(Duration::from_millis(min_hold_ms)),
        )
        .expect("cached"),
    );
    let ops = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let until = Instant::now() + Duration::from_secs(seconds);
    say("hammering");
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let (cache, ops, failed) = (Arc::clone(&cache), Arc::clone(&ops), Arc::clone(&failed));
            std::thread::spawn(move || {
                while Instant::now() < until {
                    match cache.lock(Mode::Ex) {
                        Ok(g) => {
                            spin_hold(hold_us);
                            drop(g);
                            ops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            eprintln!("cache-probe: hammer take: {e}");
                            failed.store(true, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        let _ = h.join();
    }
    let stats = stats_line(&cache);
    drop(Arc::try_unwrap(cache).expect("no other reference to the cache"));
    say(&format!("ops {}", ops.load(Ordering::Relaxed)));
    say(&stats);
    i32::from(failed.load(Ordering::Relaxed))
}

fn waiter(ls: &Lockspace, res: &str, seconds: u64, pause_ms: u64, timeout_ms: u64) -> i32 {
    let until = Instant::now() + Duration::from_secs(seconds);
    let (mut grants, mut timeouts, mut max, mut sum) = (0u64, 0u64, 0f64, 0f64);
    let mut failed = false;
    while Instant::now() < until {
        let t = Instant::now();
        let r = ls.lock_with(
            res,
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_millis(timeout_ms)),
        );
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(g) => {
                grants += 1;
                sum += ms;
                max = f64::max(max, ms);
                say(&format!("wait {ms:.1}"));
                let _ = g.unlock();
            }
            Err(Error::TimedOut) => {
                timeouts += 1;
                max = f64::max(max, ms);
                say(&format!("timeout {ms:.1}"));
            }
            Err(e) => {
                eprintln!("cache-probe: waiter: {e}");
                failed = true;
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
    }
    let mean = if grants > 0 { sum / grants as f64 } else { 0.0 };
    say(&format!(
        "grants {grants} timeouts {timeouts} max_ms {max:.1} mean_ms {mean:.1}"
    ));
    i32::from(failed)
}

fn read(ls: &Lockspace, res: &str) -> i32 {
    match ls.lock_with(res, Mode::Pr, LockOptions::new().lvb()) {
        Ok(g) => {
            let v = decode(g.lvb());
            let valid = g.lvb().is_some_and(|l| l.valid);
            let _ = g.unlock();
            match v {
                Some(v) => {
                    say(&format!("counter {v} valid {valid}"));
                    0
                }
                None => {
                    say("counter unreadable");
                    1
                }
            }
        }
        Err(e) => {
            eprintln!("cache-probe: read: {e}");
            1
        }
    }
}

fn pwex(ls: &Lockspace, res: &str) -> i32 {
    let cache = ls
        .cached(res, CacheOptions::new().lvb().idle_release(None))
        .expect("cached");
    let mut g = cache.lock(Mode::Pw).expect("PW");
    let before = decode(g.lvb()).unwrap_or(0);
    g.set_lvb(&encode(before + 1)).expect("set_lvb");
    drop(g);
    say(&format!("pw set {}", before + 1));
    let g = cache.lock(Mode::Ex).expect("EX");
    let seen = decode(g.lvb());
    say(&format!("ex sees {}", seen.map_or(-1, |v| v as i64)));
    drop(g);
    drop(cache);
    i32::from(seen != Some(before + 1))
}

fn release(name: &str) -> i32 {
    for n in 1..=1000 {
        let ls = match Lockspace::open(name) {
            Ok(ls) => ls,
            Err(Error::LockspaceNotFound) => {
                say(&format!("released after {}", n - 1));
                return 0;
            }
            Err(e) => {
                say(&format!("open failed: {e}"));
                return 1;
            }
        };
        if let Err(e) = ls.release(Release::IfUnused) {
            say(&format!("refused {n}: {}", e.error()));
            return 1;
        }
    }
    say("still there after 1000 releases");
    1
}
