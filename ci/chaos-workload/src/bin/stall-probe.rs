//! stall-probe LOCKSPACE SECONDS [RESOURCES]: how long the crate's futures
//! block an executor's thread. One current-thread tokio runtime runs a
//! ticker task (a 1 ms sleep in a loop: the gap between two ticks beyond
//! that is time the thread was blocked) and four workers that take and
//! release RESOURCES (default 24) locks in turn with `lock_async`,
//! `try_lock_async` and timed `lock_with_async`, and drop a quarter of
//! their requests half-way (a `select!` timeout of a few milliseconds:
//! the future's drop cancels and gives up). Once a second it prints
//! `second UNIX_TIME max_stall_ms MS ops N errors E`; at the end
//! `max_stall_ms MS` over the whole run and the error kinds seen.
//! Used by ci/scenarios/10-executor-stall.sh around a node crash.

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: stall-probe LOCKSPACE SECONDS [RESOURCES]");
        std::process::exit(64);
    }
    let name = args[1].clone();
    let seconds: u64 = args[2].parse().expect("SECONDS");
    let resources: usize = args.get(3).map_or(24, |r| r.parse().expect("RESOURCES"));
    let ls = Lockspace::join(&name, 0o600).expect("join");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    let worst = local.block_on(&rt, run(ls, seconds, resources));
    println!("max_stall_ms {:.1}", worst.as_secs_f64() * 1000.0);
}

#[derive(Default)]
struct Counts {
    ops: Cell<u64>,
    errors: std::cell::RefCell<BTreeMap<String, u64>>,
}

async fn run(ls: Lockspace, seconds: u64, resources: usize) -> Duration {
    let end = Instant::now() + Duration::from_secs(seconds);
    let counts = Rc::new(Counts::default());
    for w in 0..4u64 {
        let ls = ls.clone();
        let counts = counts.clone();
        tokio::task::spawn_local(async move {
            let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ ((w + 1) * 0x1234_5678);
            let mut next = move || {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed
            };
            while Instant::now() < end {
                let r = format!("probe{}", next() % resources as u64);
                let kind = next() % 4;
                let mode = if next() % 2 == 0 { Mode::Ex } else { Mode::Pr };
                let outcome = match kind {
                    0 => {
                        // Dropped half-way: the drop cancels and gives up.
                        let f = ls.lock_async(&r, mode);
                        let ms = 1 + next() % 10;
                        match tokio::time::timeout(Duration::from_millis(ms), f).await {
                            Ok(Ok(g)) => g.unlock_async().await,
                            Ok(Err(e)) => Err(e),
                            Err(_) => Ok(()),
                        }
                    }
                    1 => match ls.try_lock_async(&r, mode).await {
                        Ok(g) => g.unlock_async().await,
                        Err(Error::WouldBlock) => Ok(()),
                        Err(e) => Err(e),
                    },
                    2 => {
                        let o = LockOptions::new().timeout(Duration::from_millis(200));
                        match ls.lock_with_async(&r, mode, o).await {
                            Ok(g) => g.unlock_async().await,
                            Err(Error::TimedOut) => Ok(()),
                            Err(e) => Err(e),
                        }
                    }
                    _ => match ls.lock_async(&r, mode).await {
                        // Dropped: released in the background.
                        Ok(g) => {
                            drop(g);
                            Ok(())
                        }
                        Err(e) => Err(e),
                    },
                };
                counts.ops.set(counts.ops.get() + 1);
                if let Err(e) = outcome {
                    let key = format!("{e:?}");
                    *counts.errors.borrow_mut().entry(key).or_default() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        });
    }
    // The ticker.
    let mut worst = Duration::ZERO;
    let mut second_worst = Duration::ZERO;
    let mut second_start = Instant::now();
    let mut last_ops = 0;
    while Instant::now() < end {
        let t = Instant::now();
        tokio::time::sleep(Duration::from_millis(1)).await;
        let stall = t.elapsed().saturating_sub(Duration::from_millis(1));
        worst = worst.max(stall);
        second_worst = second_worst.max(stall);
        if second_start.elapsed() >= Duration::from_secs(1) {
            let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            let errors: u64 = counts.errors.borrow().values().sum();
            println!(
                "second {:.3} max_stall_ms {:.1} ops {} errors {}",
                now.as_secs_f64(),
                second_worst.as_secs_f64() * 1000.0,
                counts.ops.get() - last_ops,
                errors
            );
            last_ops = counts.ops.get();
            second_worst = Duration::ZERO;
            second_start = Instant::now();
        }
    }
    for (kind, n) in counts.errors.borrow().iter() {
        println!("error {kind} {n}");
    }
    worst
}
