//! `timeout-race`: timed requests racing a holder's hand-overs, for the
//! multi-node scenario that drives the kernel's `EBUSY` answer (a grant
//! crossing a cancel on the wire leaves an operation in progress, and an
//! immediate unlock or conversion is refused until it ends; the crate
//! retries).
//!
//! ```text
//! cargo run --example timeout-race                      # both roles, in this process
//! timeout-race holder LOCKSPACE RESOURCE ROUNDS HOLD_MS
//! timeout-race racer  LOCKSPACE RESOURCE ROUNDS TIMEOUT_MS
//! timeout-race racer-poll LOCKSPACE RESOURCE ROUNDS TIMEOUT_MS
//! timeout-race racer-async LOCKSPACE RESOURCE ROUNDS TIMEOUT_MS
//! ```
//!
//! The holder takes EX, holds it `HOLD_MS`, unlocks, `ROUNDS` times. The
//! racer asks for EX with a timeout of `TIMEOUT_MS` (some expire, some are
//! granted as they expire), then unlocks or converts down at once,
//! `ROUNDS` times; `racer-poll` does the same on a poll-mode handle (whose
//! answers, cancels' included, the crate reads from the device itself);
//! `racer-async` does it with futures (their requests, cancels,
//! conversions and unlocks written by the handle's worker thread), and
//! drops every third one while it waits (its cancel, and the unlock of a
//! grant that crossed it, are the worker's too).
//! Both print `done granted=N timed-out=N busy-retries=N ...` and exit 0, or
//! print `error: ...` and exit 1 on any other answer. Without arguments the
//! two roles run on two threads of this process (lockspace `timeout-race`,
//! resource `race`, 200 rounds of 5 ms); the multi-node scenario runs them
//! on different nodes.

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: timeout-race [holder|racer|racer-poll|racer-async LOCKSPACE RESOURCE ROUNDS MS] (no arguments: both roles, 200 rounds of 5 ms)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.is_empty() {
        return both("timeout-race", "race", 200, Duration::from_millis(5));
    }
    let [role, ls_name, res, rounds, ms] = &args[..] else {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    };
    let (Ok(rounds), Ok(ms)) = (rounds.parse::<u32>(), ms.parse::<u64>()) else {
        eprintln!("timeout-race: ROUNDS and MS are whole numbers");
        return ExitCode::from(64);
    };
    report(
        "",
        run(role, ls_name, res, rounds, Duration::from_millis(ms)),
    )
}

/// Prints a role's result (`done ...` or `error: ...`), with `prefix`
/// before it; returns the exit status.
fn report(prefix: &str, result: Result<(u32, u32), String>) -> ExitCode {
    match result {
        Ok((granted, timed_out)) => {
            let s = dlm::stats();
            println!(
                "{prefix}done granted={granted} timed-out={timed_out} busy-retries={} given-up={} reaped={} release-failures={}",
                s.busy_retries, s.given_up, s.reaped, s.release_failures
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{prefix}error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Both roles at once, on two threads of this process.
fn both(ls_name: &str, res: &str, rounds: u32, ms: Duration) -> ExitCode {
    let (l, r) = (ls_name.to_string(), res.to_string());
    let holder = std::thread::spawn(move || run("holder", &l, &r, rounds, ms));
    // Let the holder take the lock first, so that the racer's first
    // requests meet it.
    std::thread::sleep(Duration::from_millis(50));
    let racer = run("racer", ls_name, res, rounds, ms);
    let holder = holder
        .join()
        .unwrap_or_else(|_| Err("the holder panicked".into()));
    let h = report("holder: ", holder);
    let r = report("racer: ", racer);
    if h == ExitCode::SUCCESS {
        r
    } else {
        h
    }
}

fn run(
    role: &str,
    ls_name: &str,
    res: &str,
    rounds: u32,
    ms: Duration,
) -> Result<(u32, u32), String> {
    let ls = if role == "racer-poll" {
        Lockspace::builder(ls_name).poll_mode().join()
    } else {
        Lockspace::join(ls_name, 0o600)
    }
    .map_err(|e| format!("join: {e}"))?;
    let (mut granted, mut timed_out) = (0, 0);
    // Times vary around `ms` (0.5x to 1.5x) so that grants and cancels
    // cross at every offset.
    let mut x = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    let mut jitter = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ms / 2 + Duration::from_micros(x % (ms.as_micros() as u64 + 1))
    };
    for i in 0..rounds {
        match role {
            "holder" => {
                let g = ls
                    .lock(res, Mode::Ex)
                    .map_err(|e| format!("round {i}: lock: {e}"))?;
                if i == 0 {
                    println!("holding");
                }
                std::thread::sleep(jitter());
                g.unlock().map_err(|e| format!("round {i}: unlock: {e}"))?;
                granted += 1;
                std::thread::sleep(Duration::from_micros(500));
            }
            "racer" | "racer-poll" => {
                match ls.lock_with(res, Mode::Ex, LockOptions::new().timeout(jitter())) {
                    Ok(mut g) => {
                        granted += 1;
                        // At once: the cancel may still be in progress.
                        if i % 2 == 0 {
                            g.convert(Mode::Nl)
                                .map_err(|e| format!("round {i}: convert: {e}"))?;
                        }
                        g.unlock().map_err(|e| format!("round {i}: unlock: {e}"))?;
                    }
                    Err(Error::TimedOut) => timed_out += 1,
                    Err(e) => return Err(format!("round {i}: lock: {e}")),
                }
            }
            "racer-async" => {
                use std::future::Future;
                use std::task::{Context, Poll};
                let timed = LockOptions::new().timeout(jitter());
                if i % 3 == 2 {
                    // Dropped while it waits: its cancel, and the unlock
                    // of a grant that crossed it, are the worker's.
                    let mut f = Box::pin(ls.lock_with_async(res, Mode::Ex, timed));
                    let waker = futures::task::noop_waker();
                    let first = f.as_mut().poll(&mut Context::from_waker(&waker));
                    if let Poll::Ready(r) = first {
                        match r {
                            Ok(g) => futures::executor::block_on(g.unlock_async())
                                .map_err(|e| format!("round {i}: unlock: {e}"))?,
                            Err(Error::TimedOut) => {}
                            Err(e) => return Err(format!("round {i}: lock: {e}")),
                        }
                        continue;
                    }
                    std::thread::sleep(jitter() / 2);
                    drop(f);
                    continue;
                }
                match futures::executor::block_on(ls.lock_with_async(res, Mode::Ex, timed)) {
                    Ok(mut g) => {
                        granted += 1;
                        if i % 2 == 0 {
                            futures::executor::block_on(g.convert_async(Mode::Nl))
                                .map_err(|e| format!("round {i}: convert: {e}"))?;
                        }
                        futures::executor::block_on(g.unlock_async())
                            .map_err(|e| format!("round {i}: unlock: {e}"))?;
                    }
                    Err(Error::TimedOut) => timed_out += 1,
                    Err(e) => return Err(format!("round {i}: lock: {e}")),
                }
            }
            _ => return Err(format!("unknown role {role}")),
        }
    }
    Ok((granted, timed_out))
}
