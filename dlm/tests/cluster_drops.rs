//! Futures dropped at every await point, against the real DLM: for each
//! async call (lock, try, timed, convert, convert_with, unlock, blocking,
//! with_lock), dropped before its write, after its write, after its answer
//! arrived but before it was polled, while its cancel is in flight, and
//! with its cell already given to the reaper (the handle dropped right
//! after); on threaded and poll-mode handles; while another thread takes
//! and releases locks of the same lockspace without pause, so that every
//! lock id freed is given out again at once. After each round the
//! resource must be free (checked from a second handle) and the churning
//! thread must not be stuck; at the end no lock is left and `stats()` has
//! counted at least the give-ups this test made.
//!
//! The seed is printed; `DLM_DROP_SEED` replays one, `DLM_DROP_ROUNDS`
//! changes the number of rounds (default 400).

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Lock,
    Try,
    Timed,
    Convert,
    ConvertWith,
    Unlock,
    Blocking,
    WithLock,
}

const CALLS: [Call; 8] = [
    Call::Lock,
    Call::Try,
    Call::Timed,
    Call::Convert,
    Call::ConvertWith,
    Call::Unlock,
    Call::Blocking,
    Call::WithLock,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Point {
    /// Never polled: nothing written.
    BeforeWrite,
    /// Polled once: written, unanswered (the resource is held elsewhere).
    AfterWrite,
    /// Polled once, its answer read into the cell, not polled again.
    AfterAnswer,
    /// Timed out and cancelled, the cancel's answer not read yet.
    CancelInFlight,
    /// Given up (dropped after its write), then its handle dropped at
    /// once, with the cell at the reaper.
    WithReaper,
}

const POINTS: [Point; 5] = [
    Point::BeforeWrite,
    Point::AfterWrite,
    Point::AfterAnswer,
    Point::CancelInFlight,
    Point::WithReaper,
];

fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    f.poll(&mut Context::from_waker(&waker))
}

/// Lets answers arrive: on a poll-mode handle, reads them (`dispatch`).
fn settle(ls: &Lockspace, ms: u64) {
    let end = Instant::now() + Duration::from_millis(ms);
    while Instant::now() < end {
        if ls.is_polled() {
            ls.dispatch().unwrap();
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// A boxed future of any of the calls.
type Fut<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Runs one round: `call` on `res` through `ls`, dropped at `point`.
/// `blocker` (another handle) holds `res` in EX while the round needs the
/// request to wait. Returns whether the drop came after the write.
fn round(ls: Lockspace, obs: &Lockspace, res: &str, call: Call, point: Point) -> bool {
    // Whether the request should wait (unanswered) or be answered at once.
    let wait = matches!(
        point,
        Point::AfterWrite | Point::CancelInFlight | Point::WithReaper
    );
    // The lock the conversion, unlock and blocking calls start from.
    let mut guard = match call {
        Call::Convert | Call::ConvertWith => Some(ls.lock(res, Mode::Nl).unwrap()),
        Call::Unlock => Some(ls.lock(res, Mode::Ex).unwrap()),
        Call::Blocking => Some(
            ls.lock_with(res, Mode::Pr, LockOptions::new().notify_blocking())
                .unwrap(),
        ),
        _ => None,
    };
    // An unlock is answered at once whatever others hold; a blocking wait
    // waits until another asks for an incompatible mode.
    // A try dropped after its answer: the answer is a refusal (EAGAIN),
    // which frees the lock id at once for the churn to reuse: the case
    // where a drop used to cancel another request's lock.
    let refused_try = call == Call::Try && point == Point::AfterAnswer;
    let blocker = ((wait && !matches!(call, Call::Unlock | Call::Blocking)) || refused_try)
        .then(|| obs.lock(res, Mode::Ex).unwrap());
    let timed = LockOptions::new().timeout(Duration::from_millis(30));
    let written;
    {
        let mut fut: Fut<'_> = match call {
            Call::Lock => Box::pin(async {
                let _ = ls.lock_async(res, Mode::Ex).await;
            }),
            Call::Try => Box::pin(async {
                let _ = ls.try_lock_async(res, Mode::Ex).await;
            }),
            Call::Timed => Box::pin(async {
                let _ = ls.lock_with_async(res, Mode::Ex, timed).await;
            }),
            Call::Convert => {
                let g = guard.as_mut().unwrap();
                Box::pin(async move {
                    let _ = g.convert_async(Mode::Ex).await;
                })
            }
            Call::ConvertWith => {
                let g = guard.as_mut().unwrap();
                Box::pin(async move {
                    let _ = g.convert_with_async(Mode::Ex, timed).await;
                })
            }
            Call::Unlock => {
                let g = guard.take().unwrap();
                Box::pin(async move {
                    let _ = g.unlock_async().await;
                })
            }
            Call::Blocking => {
                let g = guard.as_mut().unwrap();
                Box::pin(async move {
                    let _ = g.blocking_async().await;
                })
            }
            Call::WithLock => Box::pin(async {
                let _ = dlm::with_lock_async(&ls, res, Mode::Ex, async |_| {
                    std::future::ready(()).await
                })
                .await;
            }),
        };
        written = point != Point::BeforeWrite;
        match point {
            Point::BeforeWrite => {}
            Point::AfterWrite | Point::WithReaper => {
                let _ = poll_once(fut.as_mut());
            }
            Point::AfterAnswer => {
                if poll_once(fut.as_mut()).is_pending() {
                    settle(&ls, 15);
                }
            }
            Point::CancelInFlight => {
                if poll_once(fut.as_mut()).is_pending() {
                    std::thread::sleep(Duration::from_millis(40));
                    // Past the deadline: this poll writes the cancel (where
                    // one may be written).
                    let _ = poll_once(fut.as_mut());
                }
            }
        }
        drop(fut);
    }
    if point == Point::WithReaper {
        drop(guard.take());
        drop(ls);
        drop(blocker);
        return written;
    }
    drop(blocker);
    drop(guard);
    settle(&ls, 5);
    // Nothing left held: the observer can take the resource soon (a
    // background release may still be under way; a poll-mode handle's
    // reaper needs its answers read).
    let start = Instant::now();
    loop {
        match obs.try_lock(res, Mode::Ex) {
            Ok(g) => {
                g.unlock().unwrap();
                break;
            }
            Err(Error::WouldBlock) if start.elapsed() < Duration::from_secs(5) => {
                settle(&ls, 5);
            }
            other => panic!(
                "{call:?} dropped at {point:?} (polled {}): {res} still held after {:?}: {other:?}",
                ls.is_polled(),
                start.elapsed()
            ),
        }
    }
    drop(ls);
    written
}

#[test]
fn futures_dropped_at_every_await_point_leave_nothing_behind() {
    require_cluster!();
    let seed = common::seed("DLM_DROP_SEED");
    let rounds: usize = common::env_number("DLM_DROP_ROUNDS", 400);
    println!("seed {seed} (DLM_DROP_SEED replays it), {rounds} rounds");
    let mut rng = common::Rng(seed);
    let name = common::ls_name("drops");
    let obs = Lockspace::create_exclusive(&name, 0o600).unwrap();
    // The churn: new locks taken and released without pause on another
    // handle, so that every lock id freed is reused at once; each of its
    // requests must finish (a cancel that hit one would leave it waiting).
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let churn = {
        let ls = Lockspace::open(&name).unwrap();
        let (stop, churned) = (stop.clone(), churned.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = format!("churn{}", i % 8);
                let g = ls
                    .lock_with(
                        &r,
                        Mode::Ex,
                        LockOptions::new().timeout(Duration::from_secs(10)),
                    )
                    .unwrap_or_else(|e| panic!("the churn's request {i} failed: {e}"));
                g.unlock().unwrap();
                churned.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let before = dlm::stats();
    let mut given_up = 0u64;
    let mut certain = 0u64;
    let mut seen = std::collections::BTreeSet::new();
    for r in 0..rounds {
        let call = CALLS[rng.below(CALLS.len() as u64) as usize];
        let point = POINTS[rng.below(POINTS.len() as u64) as usize];
        let polled = rng.below(2) == 0;
        let res = format!("r{}", rng.below(4));
        let ls = if polled {
            Lockspace::builder(&name).poll_mode().open().unwrap()
        } else {
            Lockspace::open(&name).unwrap()
        };
        if round(ls, &obs, &res, call, point) && point != Point::BeforeWrite {
            given_up += 1;
        }
        // A request that waits behind the blocker when its future is
        // dropped is in flight: that drop must give it up.
        if matches!(point, Point::AfterWrite | Point::CancelInFlight)
            && matches!(
                call,
                Call::Lock | Call::Timed | Call::Convert | Call::ConvertWith | Call::WithLock
            )
        {
            certain += 1;
        }
        seen.insert(format!("{call:?}/{point:?}"));
        assert!(
            !churn.is_finished(),
            "round {r}: the churning thread died (seed {seed})"
        );
    }
    // The churn still makes progress: none of its requests was hit.
    let n = churned.load(Ordering::Relaxed);
    let progressed = (0..500).any(|_| {
        std::thread::sleep(Duration::from_millis(10));
        churned.load(Ordering::Relaxed) > n
    });
    assert!(progressed, "the churning thread is stuck (seed {seed})");
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("the churn panicked");
    let after = dlm::stats();
    println!(
        "{} call/point pairs exercised; churn made {} requests; stats: given_up +{}, reaped +{}, release_failures +{}",
        seen.len(),
        churned.load(Ordering::Relaxed),
        after.given_up - before.given_up,
        after.reaped - before.reaped,
        after.release_failures - before.release_failures
    );
    assert_eq!(after.release_failures, before.release_failures);
    // Not every drop after a write gives up (a call answered within its
    // first poll has nothing in flight), so this is a lower bound check
    // of the other direction: give-ups never exceed drops in flight.
    assert!(
        after.given_up - before.given_up <= given_up,
        "more give-ups ({}) than drops after a write ({given_up})",
        after.given_up - before.given_up
    );
    assert!(
        after.given_up - before.given_up >= certain,
        "fewer give-ups ({}) than drops of requests surely in flight ({certain})",
        after.given_up - before.given_up
    );
    if rounds >= 200 {
        assert!(
            seen.len() >= 30,
            "only {} call/point pairs seen",
            seen.len()
        );
    }
    if let Err(e) = obs.release(Release::IfUnused) {
        panic!("locks left behind in {name}: {} (seed {seed})", e.error());
    }
}
