//! `many-in-flight`: many lock requests in flight at once from one thread,
//! for the multi-node scenario where the resources' master is another node.
//!
//! ```text
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

use dlm::{Lockspace, Mode};
use std::cell::Cell;
use std::future::Future;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [role, ls_name, prefix, n, hold] = &args[..] else {
        eprintln!("usage: many-in-flight master|acquire LOCKSPACE PREFIX N HOLD_FILE");
        return ExitCode::from(64);
    };
    let Ok(n) = n.parse::<usize>() else {
        eprintln!("many-in-flight: N is a whole number");
        return ExitCode::from(64);
    };
    match run(role, ls_name, prefix, n, Path::new(hold)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            println!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn wait_for(file: &Path) {
    while !file.exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(role: &str, ls_name: &str, prefix: &str, n: usize, hold: &Path) -> Result<(), String> {
    let ls = Lockspace::join(ls_name, 0o600).map_err(|e| format!("join: {e}"))?;
    let names: Vec<String> = (0..n).map(|i| format!("{prefix}{i}")).collect();
    match role {
        "master" => {
            let guards = names
                .iter()
                .map(|r| ls.lock(r, Mode::Ex))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("EX: {e}"))?;
            println!("mastered {}", guards.len());
            wait_for(hold);
            drop(guards);
            println!("released");
        }
        "acquire" => {
            let outstanding = Cell::new(0usize);
            let answered = Cell::new(0usize);
            let all_out = Cell::new(None::<Instant>);
            let (outstanding, answered, all_out) = (&outstanding, &answered, &all_out);
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
            wait_for(hold);
            let unlocks = futures::future::join_all(guards.into_iter().map(|g| g.unlock_async()));
            for r in futures::executor::block_on(unlocks) {
                r.map_err(|e| format!("unlock: {e}"))?;
            }
            println!("released");
        }
        _ => return Err(format!("unknown role {role}")),
    }
    Ok(())
}
