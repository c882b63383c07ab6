//! `many-in-flight`: many lock requests in flight at once from one thread,
//! for the multi-node scenario where the resources' master is another node.
//!
//! ```text
//! cargo run --example many-in-flight              # both roles, in this process
//! many-in-flight master  LOCKSPACE PREFIX N HOLD_FILE
//! many-in-flight acquire LOCKSPACE PREFIX N HOLD_FILE
//! ```
//!
//! `master` takes an EX lock on PREFIX0 .. PREFIX{N-1} (the first node to
//! ask for a resource masters it), prints `mastered N`, and keeps them
//! until HOLD_FILE exists, then unlocks them. `acquire` asks for all N in
//! EX at once from one thread (futures joined, driven by
//! `futures::executor::block_on`); once every request is written and none
//! answered it prints `in flight N`; when all are granted, `granted N in
//! MS ms` (timed from the last write); it holds them until HOLD_FILE
//! exists, then releases them all at once and prints `released`.
//!
//! Without arguments both roles run in this process (lockspace
//! `many-in-flight`, 100 resources `in-flight-0` ...): the master's thread
//! lets its locks go once the acquirer's requests are all in flight, and
//! the acquirer releases as soon as it is granted.

use dlm::{Lockspace, Mode};
use std::cell::Cell;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: many-in-flight [master|acquire LOCKSPACE PREFIX N HOLD_FILE] (no arguments: both roles, 100 requests)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let result = if args.is_empty() {
        both("many-in-flight", "in-flight-", 100)
    } else {
        let [role, ls_name, prefix, n, hold] = &args[..] else {
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        };
        let Ok(n) = n.parse::<usize>() else {
            eprintln!("many-in-flight: N is a whole number");
            return ExitCode::from(64);
        };
        let hold = PathBuf::from(hold);
        let ls = match Lockspace::join(ls_name, 0o600) {
            Ok(ls) => ls,
            Err(e) => {
                println!("error: join: {e}");
                return ExitCode::FAILURE;
            }
        };
        let names = names(prefix, n);
        match role.as_str() {
            "master" => master(&ls, &names, || wait_for(&hold)),
            "acquire" => acquire(&ls, &names, || {}, || wait_for(&hold)),
            _ => Err(format!("unknown role {role}")),
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// Both roles: the master on a thread of its own, holding until the
/// acquirer's requests are all in flight.
fn both(ls_name: &str, prefix: &str, n: usize) -> Result<(), String> {
    let ls = Lockspace::join(ls_name, 0o600).map_err(|e| format!("join: {e}"))?;
    let names = names(prefix, n);
    let (mastered_tx, mastered) = mpsc::channel();
    let (in_flight, in_flight_rx) = mpsc::channel();
    let master_ls = ls.clone();
    let master_names = names.clone();
    let master_thread = std::thread::spawn(move || {
        master(&master_ls, &master_names, || {
            let _ = mastered_tx.send(());
            let _ = in_flight_rx.recv();
        })
    });
    // The acquirer starts once the master holds every lock (or has failed).
    let _ = mastered.recv();
    let acquired = acquire(
        &ls,
        &names,
        || {
            let _ = in_flight.send(());
        },
        || {},
    );
    // Should the acquirer fail before its requests were all in flight, the
    // master still lets go.
    drop(in_flight);
    let mastered = master_thread
        .join()
        .unwrap_or_else(|_| Err("the master panicked".into()));
    mastered.and(acquired)
}

fn wait_for(file: &Path) {
    while !file.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Takes every lock of `names` in EX, prints `mastered N`, calls `hold`,
/// then unlocks them.
fn master(ls: &Lockspace, names: &[String], hold: impl FnOnce()) -> Result<(), String> {
    let guards = names
        .iter()
        .map(|r| ls.lock(r, Mode::Ex))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("EX: {e}"))?;
    println!("mastered {}", guards.len());
    hold();
    drop(guards);
    println!("released");
    Ok(())
}

/// Asks for every lock of `names` in EX at once; calls `in_flight` once
/// all are written and none answered; once granted, calls `hold`, then
/// releases them all.
fn acquire(
    ls: &Lockspace,
    names: &[String],
    in_flight: impl Fn(),
    hold: impl FnOnce(),
) -> Result<(), String> {
    let n = names.len();
    let outstanding = Cell::new(0usize);
    let answered = Cell::new(0usize);
    let all_out = Cell::new(None::<Instant>);
    let (outstanding, answered, all_out, in_flight) =
        (&outstanding, &answered, &all_out, &in_flight);
    let requests = names.iter().map(|r| {
        let mut f = Box::pin(ls.lock_async(r, Mode::Ex));
        let mut started = false;
        std::future::poll_fn(move |cx| {
            let first = !started;
            started = true;
            let r = f.as_mut().poll(cx);
            if first {
                outstanding.set(outstanding.get() + 1);
                if outstanding.get() == n && answered.get() == 0 {
                    println!("in flight {n}");
                    all_out.set(Some(Instant::now()));
                    in_flight();
                }
            }
            if r.is_ready() {
                answered.set(answered.get() + 1);
            }
            r
        })
    });
    let results = futures::executor::block_on(futures::future::join_all(requests));
    let guards = results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("EX: {e}"))?;
    let since = all_out.get().map_or(0, |t| t.elapsed().as_millis());
    println!("granted {} in {since} ms", guards.len());
    hold();
    let unlocks = futures::future::join_all(guards.into_iter().map(|g| g.unlock_async()));
    for r in futures::executor::block_on(unlocks) {
        r.map_err(|e| format!("unlock: {e}"))?;
    }
    println!("released");
    Ok(())
}
