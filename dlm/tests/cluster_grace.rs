//! The give-up path against the real DLM, reached on purpose: a handle
//! whose cancel grace is zero (`LockspaceBuilder::cancel_grace`) gives up
//! every timed-out request as soon as its cancel is written, so the
//! cancel's answer, or a grant that crossed it, reaches the handle's
//! worker instead of the caller. Seeded rounds race the timeout against
//! the holder's unlock (blocking calls, futures under `block_on`, and
//! conversions); after each round a second handle must be able to take
//! the lock (nothing left held), and at the end the counters must agree
//! with the outcomes the caller saw.
//!
//! The seed is printed; `DLM_GRACE_SEED` replays one and
//! `DLM_GRACE_ROUNDS` runs more rounds (default 150). One test in this
//! file: the counters are per process.

mod common;

use dlm::{stats, Error, LockOptions, Lockspace, Mode};
use std::time::{Duration, Instant};

/// Waits until the observer can take `res` in EX (a try, released at
/// once), for at most 5 s; whether it could.
fn free_within_5s(obs: &Lockspace, res: &str) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) {
        if common::can_take(obs, res, Mode::Ex) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

#[test]
fn zero_cancel_grace_gives_up_and_the_worker_cleans_up() {
    require_cluster!();
    let seed = common::seed("DLM_GRACE_SEED");
    let rounds: u64 = common::env_number("DLM_GRACE_ROUNDS", 150);
    println!("seed {seed} (DLM_GRACE_SEED replays it), {rounds} rounds");
    let mut rng = common::Rng(seed);
    let name = common::ls_name("grace");
    let obs = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let a = Lockspace::builder(&name)
        .cancel_grace(Duration::ZERO)
        .open()
        .unwrap();
    let before = stats();
    let (mut granted, mut timed_out) = (0u64, 0u64);
    for round in 0..rounds {
        let res = format!("r{}", round % 7);
        let holder = obs.lock(&res, Mode::Ex).unwrap();
        // The holder lets go around the moment the waiter times out.
        let delay = Duration::from_micros(rng.below(30_000));
        let timeout = Duration::from_millis(15);
        let release = std::thread::spawn(move || {
            std::thread::sleep(delay);
            drop(holder);
        });
        let how = rng.below(3);
        let outcome = match how {
            0 => a
                .lock_with(&res, Mode::Ex, LockOptions::new().timeout(timeout))
                .map(drop),
            1 => futures::executor::block_on(a.lock_with_async(
                &res,
                Mode::Ex,
                LockOptions::new().timeout(timeout),
            ))
            .map(drop),
            _ => {
                // A conversion from NL, timed out the same way.
                match a.lock(&res, Mode::Nl) {
                    Ok(mut g) => g
                        .convert_with(Mode::Ex, LockOptions::new().timeout(timeout))
                        .map(|_| drop(g)),
                    Err(e) => Err(e),
                }
            }
        };
        release.join().unwrap();
        match outcome {
            Ok(()) => granted += 1,
            Err(Error::TimedOut) => timed_out += 1,
            Err(e) => panic!("round {round} (seed {seed}, kind {how}): unexpected {e:?}"),
        }
        assert!(
            free_within_5s(&obs, &res),
            "round {round} (seed {seed}, kind {how}): {res} still held 5 s after the round"
        );
    }
    let after = stats();
    let given_up = after.given_up - before.given_up;
    let reaped = after.reaped - before.reaped;
    println!(
        "{granted} granted, {timed_out} timed out; given up {given_up}, reaped {reaped}, \
         release failures {}",
        after.release_failures - before.release_failures
    );
    assert!(granted > 0 && timed_out > 0, "both outcomes must occur");
    assert!(given_up > 0, "a zero grace must reach the give-up path");
    assert!(
        given_up <= timed_out,
        "a request given up is one whose caller saw TimedOut"
    );
    assert!(reaped <= given_up, "only a given-up request is reaped");
    assert_eq!(after.release_failures, before.release_failures);
    drop(a);
    obs.release(dlm::Release::IfUnused).unwrap();
}
