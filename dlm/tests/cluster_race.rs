//! The race test: 8 threads, 4 resources, 20,000 lock requests with random
//! short timeouts (cancels racing grants), try-locks and conversions, on
//! one lockspace handle. While it runs, every grant is checked against the
//! modes the other threads hold (the DLM's exclusion as this crate reports
//! it); afterwards no lock may be left in the lockspace.
//!
//! `DLM_RACE_REQUESTS` changes the number of requests (ci/test runs it
//! again, smaller, under valgrind memcheck).

mod common;

use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode, Release};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

const THREADS: usize = 8;
const RESOURCES: usize = 4;

/// Per resource, how many locks this test holds in each mode.
struct Held([[AtomicUsize; 6]; RESOURCES]);

impl Held {
    fn add(&self, r: usize, m: Mode) {
        self.0[r][m as usize].fetch_add(1, Ordering::SeqCst);
    }
    fn remove(&self, r: usize, m: Mode) {
        self.0[r][m as usize].fetch_sub(1, Ordering::SeqCst);
    }
    /// Panics if a lock just granted in `m` (already counted) conflicts
    /// with another one held.
    fn check(&self, r: usize, m: Mode) {
        for other in Mode::ALL {
            let n = self.0[r][other as usize].load(Ordering::SeqCst);
            let others = if other == m { n.saturating_sub(1) } else { n };
            assert!(
                others == 0 || m.is_compatible(other),
                "resource {r}: granted {m} while {others} lock(s) hold {other}"
            );
        }
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn mode(&mut self) -> Mode {
        [Mode::Nl, Mode::Cr, Mode::Pr, Mode::Pw, Mode::Ex, Mode::Ex][self.below(6) as usize]
    }
    fn options(&mut self) -> LockOptions {
        match self.below(3) {
            0 => LockOptions::new().no_wait(),
            // 0-3 ms: often expires while the request is being granted.
            _ => LockOptions::new().timeout(Duration::from_micros(self.below(3000))),
        }
    }
}

#[derive(Default)]
struct Counts {
    granted: AtomicU64,
    timed_out: AtomicU64,
    would_block: AtomicU64,
    converted: AtomicU64,
    conversion_failed: AtomicU64,
}

fn worker(ls: &Lockspace, held: &Held, counts: &Counts, seed: u64, requests: usize) {
    let mut rng = Rng(seed | 1);
    for _ in 0..requests {
        let r = rng.below(RESOURCES as u64) as usize;
        let mode = rng.mode();
        let name = format!("race{r}");
        let mut guard: LockGuard = match ls.lock_with(&name, mode, rng.options()) {
            Ok(g) => g,
            Err(Error::TimedOut) => {
                counts.timed_out.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(Error::WouldBlock) => {
                counts.would_block.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Err(e) => panic!("request {name} {mode}: {e}"),
        };
        counts.granted.fetch_add(1, Ordering::Relaxed);
        held.add(r, guard.mode());
        held.check(r, guard.mode());
        if rng.below(2) == 0 {
            let to = rng.mode();
            let from = guard.mode();
            let down = to < from;
            if down {
                // Claim the weaker mode before asking: nothing can be
                // granted against it until the conversion completes.
                held.remove(r, from);
                held.add(r, to);
            }
            match guard.convert_with(to, rng.options()) {
                Ok(g) => {
                    counts.converted.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(g.mode, to);
                    if !down {
                        held.remove(r, from);
                        held.add(r, to);
                        held.check(r, to);
                    }
                }
                Err(Error::TimedOut | Error::WouldBlock | Error::Deadlock) => {
                    counts.conversion_failed.fetch_add(1, Ordering::Relaxed);
                    assert_eq!(guard.mode(), from, "a failed conversion changed the mode");
                    if down {
                        held.remove(r, to);
                        held.add(r, from);
                    }
                }
                Err(e) => panic!("convert {name} {from}->{to}: {e}"),
            }
        }
        if rng.below(4) == 0 {
            std::thread::yield_now();
        }
        held.remove(r, guard.mode());
        if rng.below(2) == 0 {
            guard.unlock().unwrap();
        } else {
            drop(guard);
        }
    }
}

#[test]
fn eight_threads_four_resources_twenty_thousand_requests() {
    require_cluster!();
    let requests: usize = std::env::var("DLM_RACE_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let name = common::ls_name("race");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let held = Held(Default::default());
    let counts = Counts::default();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (ls, held, counts) = (&ls, &held, &counts);
            s.spawn(move || {
                worker(
                    ls,
                    held,
                    counts,
                    0x9e37_79b9_7f4a_7c15 ^ (t as u64 * 0x1234_5678_9abc),
                    requests / THREADS,
                )
            });
        }
    });
    let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
    eprintln!(
        "race: {} granted, {} timed out, {} would block, {} converted, {} conversions failed",
        c(&counts.granted),
        c(&counts.timed_out),
        c(&counts.would_block),
        c(&counts.converted),
        c(&counts.conversion_failed)
    );
    let total = c(&counts.granted) + c(&counts.timed_out) + c(&counts.would_block);
    assert_eq!(
        total as usize,
        requests / THREADS * THREADS,
        "every request has one outcome"
    );
    assert!(
        c(&counts.granted) > 0 && c(&counts.would_block) > 0,
        "the run did not exercise contention"
    );
    // The timeouts are what races cancels against grants: some must have
    // expired, or the run did not test that race at all.
    assert!(
        c(&counts.timed_out) > 0,
        "no request timed out: cancels never raced grants"
    );
    for r in 0..RESOURCES {
        for m in Mode::ALL {
            assert_eq!(held.0[r][m as usize].load(Ordering::SeqCst), 0);
        }
    }
    // Independent check: a fresh handle sees every resource free...
    let other = Lockspace::open(&name).unwrap();
    for r in 0..RESOURCES {
        other
            .try_lock(format!("race{r}"), Mode::Ex)
            .expect("a lock was left held")
            .unlock()
            .unwrap();
    }
    drop(other);
    drop(ls);
    // ... and the kernel has no lock at all left in the lockspace (NL
    // included): a release without force fails while any exists.
    dlm::leave(&name, Release::IfUnused).expect("locks left in the lockspace after the race");
}
