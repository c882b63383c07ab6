//! `poll-loop`: libdlm's poll mode from one thread, as a C program would
//! write it with `poll(2)` and `dlm_dispatch`: no libdlm thread, no helper
//! thread, the callbacks run on `main`.
//!
//! ```text
//! cargo run --example poll-loop [-- LOCKSPACE [RESOURCE [ROUNDS]]]
//! ```
//!
//! Defaults: lockspace `poll-loop`, resource `poll`, 3 rounds.
//!
//! Each round: takes RESOURCE in EX (a blocking call: it dispatches while
//! it waits), converts it to PR and back to EX, unlocks it; then puts eight
//! requests of other resources in flight at once as futures and drives them
//! with a `poll(2)` loop on the lockspace's descriptor, calling
//! `Lockspace::dispatch` when it is readable. Prints one line per round,
//! and `threads N` (the process's thread count, from /proc) after the first
//! round's blocking calls (1: the calls need no thread but `main`) and at
//! the end (futures add the crate's watchdog, for its check that the
//! lockspace is not stalled).

use dlm::{Lockspace, Mode};
use std::future::Future;
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::task::{Context, Poll};

const USAGE: &str = "usage: poll-loop [LOCKSPACE [RESOURCE [ROUNDS]]] (defaults: poll-loop poll 3)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.len() > 3 || args.iter().any(|a| a.starts_with('-')) {
        eprintln!("{USAGE}");
        return ExitCode::from(64);
    }
    let ls_name = args.first().map_or("poll-loop", String::as_str);
    let res = args.get(1).map_or("poll", String::as_str);
    let Ok(rounds) = args.get(2).map_or("3", String::as_str).parse::<u32>() else {
        eprintln!("poll-loop: ROUNDS is a whole number");
        return ExitCode::from(64);
    };
    match run(ls_name, res, rounds) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(ls_name: &str, res: &str, rounds: u32) -> Result<(), dlm::Error> {
    let ls = Lockspace::builder(ls_name).poll_mode().join()?;
    for round in 1..=rounds {
        let mut g = ls.lock(res, Mode::Ex)?;
        g.convert(Mode::Pr)?;
        g.convert(Mode::Ex)?;
        g.unlock()?;
        if round == 1 {
            println!("threads {} after blocking calls", threads());
        }
        // Eight requests in flight at once, driven by a poll(2) loop.
        let names: Vec<String> = (0..8).map(|i| format!("{res}-{i}")).collect();
        let all = async {
            let held =
                futures::future::try_join_all(names.iter().map(|n| ls.lock_async(n, Mode::Ex)))
                    .await?;
            futures::future::try_join_all(held.into_iter().map(|g| g.unlock_async())).await?;
            Ok::<(), dlm::Error>(())
        };
        event_loop(&ls, all)?;
        println!("round {round} done");
    }
    println!("threads {} at the end", threads());
    Ok(())
}

/// The process's thread count.
fn threads() -> String {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_string()))
        .unwrap_or_default()
}

/// The event loop: polls the future; when it waits, sleeps in `poll(2)`
/// on the lockspace's descriptor and dispatches what arrives.
fn event_loop<T>(ls: &Lockspace, f: impl Future<Output = T>) -> T {
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = Context::from_waker(waker);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let mut pfd = libc::pollfd {
            fd: ls.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 1000) } > 0 {
            if let Err(e) = ls.dispatch() {
                eprintln!("dispatch: {e}");
            }
        }
    }
}
