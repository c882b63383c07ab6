//! The soak: 8 threads, 16 resources, random operations on one lockspace;
//! each resource's value block holds a counter that threads increment under
//! EX (read at the grant, published by the unlock's conversion down), with
//! timed requests that sometimes expire, try-locks, conversions, and shared
//! readers. Checked: no exclusion violation (counted inside the critical
//! sections), every counter exact at the end (the increments made), no
//! lock left, and the process's memory flat from the first tenth of the run
//! to its end.
//!
//! `DLM_SOAK_OPS` sets the number of operations (default 8,000; the full
//! soak is 200,000).

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const THREADS: usize = 8;
const RESOURCES: usize = 16;

fn rss_kib() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4
}

fn counter(bytes: &[u8; dlm::LVB_LEN]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().unwrap())
}

#[test]
fn soak_counters_stay_exact() {
    require_cluster!();
    let ops: u64 = std::env::var("DLM_SOAK_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8_000);
    let name = common::ls_name("soak");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    // NL keepers: the value blocks live as long as the test.
    let keepers: Vec<_> = (0..RESOURCES)
        .map(|r| ls.lock(format!("s{r}"), Mode::Nl).unwrap())
        .collect();
    let increments: Vec<AtomicU64> = (0..RESOURCES).map(|_| AtomicU64::new(0)).collect();
    // Writers (+1000) and readers (+1) inside critical sections.
    let inside: Vec<AtomicI64> = (0..RESOURCES).map(|_| AtomicI64::new(0)).collect();
    let done = AtomicU64::new(0);
    let timed_out = AtomicU64::new(0);
    let refused = AtomicU64::new(0);
    let rss_early = AtomicU64::new(0);
    let t = Instant::now();
    std::thread::scope(|s| {
        for th in 0..THREADS {
            let (ls, increments, inside, done) = (&ls, &increments, &inside, &done);
            let (timed_out, refused, rss_early) = (&timed_out, &refused, &rss_early);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ (th as u64 + 1);
                let mut rnd = |n: u64| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % n
                };
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed);
                    if n >= ops {
                        break;
                    }
                    if n == ops / 10 {
                        rss_early.store(rss_kib(), Ordering::Relaxed);
                    }
                    let r = rnd(RESOURCES as u64) as usize;
                    let res = format!("s{r}");
                    match rnd(10) {
                        // Increment under EX, sometimes with a short timeout.
                        0..=5 => {
                            let mut o = LockOptions::new().lvb();
                            if rnd(3) == 0 {
                                o = o.timeout(Duration::from_millis(rnd(4)));
                            }
                            let mut g = match ls.lock_with(&res, Mode::Ex, o) {
                                Ok(g) => g,
                                Err(Error::TimedOut) => {
                                    timed_out.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                Err(e) => panic!("EX {res}: {e}"),
                            };
                            let before = inside[r].fetch_add(1000, Ordering::SeqCst);
                            assert_eq!(before, 0, "{res}: EX granted while held");
                            let v = g.lvb().expect("read");
                            assert!(v.valid, "{res}: value block not valid");
                            let c = counter(&v.bytes);
                            g.set_lvb(&(c + 1).to_le_bytes()).unwrap();
                            increments[r].fetch_add(1, Ordering::SeqCst);
                            inside[r].fetch_sub(1000, Ordering::SeqCst);
                            if rnd(2) == 0 {
                                g.unlock().unwrap();
                            } else {
                                // Publish by converting down, then drop.
                                g.convert(Mode::Nl).unwrap();
                                drop(g);
                            }
                        }
                        // Shared readers, try or waiting.
                        6..=7 => {
                            let o = if rnd(2) == 0 {
                                LockOptions::new().lvb().no_wait()
                            } else {
                                LockOptions::new().lvb()
                            };
                            match ls.lock_with(&res, Mode::Pr, o) {
                                Ok(g) => {
                                    let before = inside[r].fetch_add(1, Ordering::SeqCst);
                                    assert!(before < 1000, "{res}: PR granted under EX");
                                    assert!(g.lvb().unwrap().valid);
                                    inside[r].fetch_sub(1, Ordering::SeqCst);
                                    drop(g);
                                }
                                Err(Error::WouldBlock) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) => panic!("PR {res}: {e}"),
                            }
                        }
                        // NL, then a conversion up to EX with a timeout,
                        // incrementing if granted.
                        _ => {
                            let mut g = ls.lock(&res, Mode::Nl).unwrap();
                            let o = LockOptions::new()
                                .lvb()
                                .timeout(Duration::from_millis(1 + rnd(5)));
                            match g.convert_with(Mode::Ex, o) {
                                Ok(_) => {
                                    let before = inside[r].fetch_add(1000, Ordering::SeqCst);
                                    assert_eq!(before, 0, "{res}: converted to EX while held");
                                    let c = counter(&g.lvb().unwrap().bytes);
                                    g.set_lvb(&(c + 1).to_le_bytes()).unwrap();
                                    increments[r].fetch_add(1, Ordering::SeqCst);
                                    inside[r].fetch_sub(1000, Ordering::SeqCst);
                                }
                                Err(Error::TimedOut) => {
                                    timed_out.fetch_add(1, Ordering::Relaxed);
                                    assert_eq!(g.mode(), Mode::Nl);
                                }
                                Err(e) => panic!("NL -> EX {res}: {e}"),
                            }
                            g.unlock().unwrap();
                        }
                    }
                }
            });
        }
    });
    let took = t.elapsed();
    for (r, made) in increments.iter().enumerate() {
        let g = ls
            .lock_with(format!("s{r}"), Mode::Pr, LockOptions::new().lvb())
            .unwrap();
        let v = g.lvb().unwrap();
        assert!(v.valid);
        assert_eq!(
            counter(&v.bytes),
            made.load(Ordering::SeqCst),
            "resource s{r}: counter"
        );
        drop(g);
    }
    let (early, end) = (rss_early.load(Ordering::Relaxed), rss_kib());
    eprintln!(
        "soak: {ops} operations in {:.1} s ({:.0} ops/s), {} increments, {} timed out, {} refused; RSS {} KiB at 10%, {} KiB at the end",
        took.as_secs_f64(),
        ops as f64 / took.as_secs_f64(),
        increments.iter().map(|c| c.load(Ordering::SeqCst)).sum::<u64>(),
        timed_out.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
        early,
        end
    );
    assert!(
        end <= early + 4096,
        "memory grew from {early} KiB to {end} KiB"
    );
    drop(keepers);
    drop(ls);
    dlm::leave(&name, Release::IfUnused).unwrap();
}
