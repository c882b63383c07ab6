//! scale-probe: the programs behind ci/scale's measurements (run in the
//! test cluster's guests, through the crate's public API).
//!
//! ```text
//! scale-probe take LS N WINDOW END      take N EX locks k0..k{N-1} (WINDOW
//!                                       futures in flight), report time,
//!                                       memory; then END: `unlock` (all,
//!                                       WINDOW at a time, timed), or `exit`
//!                                       (the process exits holding them:
//!                                       the kernel drops them as the handle
//!                                       closes; the caller times the exit)
//! scale-probe hold LS PREFIX N MODE READY STOP
//!                                       take N locks PREFIX0.. in MODE (NL,
//!                                       EX, ...), create the file READY,
//!                                       hold them until the file STOP exists
//! scale-probe wait LS RES OUT           wait for RES in EX; write the grant's
//!                                       time (CLOCK_REALTIME ns) to OUT
//! scale-probe pingpong LS RES N         N times EX lock + unlock of RES
//!                                       (one at a time): latency figures
//! ```
//! Lines of output are `key value` pairs a script can read.

use dlm::{LockGuard, LockOptions, Lockspace, Mode};
use futures::stream::{FuturesUnordered, StreamExt};
use std::time::{Duration, Instant};

fn usage() -> ! {
    eprintln!("usage: see the header of ci/chaos-workload/src/bin/scale-probe.rs");
    std::process::exit(2)
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The guest kernel's slab memory (KiB): the DLM's locks and resources.
fn slab_kib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Slab:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn mode_of(s: &str) -> Mode {
    match s {
        "NL" => Mode::Nl,
        "CR" => Mode::Cr,
        "CW" => Mode::Cw,
        "PR" => Mode::Pr,
        "PW" => Mode::Pw,
        "EX" => Mode::Ex,
        _ => usage(),
    }
}

/// Takes `n` locks named `prefix{i}` in `mode`, `window` in flight.
fn take_many(ls: &Lockspace, prefix: &str, n: usize, mode: Mode, window: usize) -> Vec<LockGuard> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        let mut inflight = FuturesUnordered::new();
        let mut next = 0;
        while out.len() < n {
            while next < n && inflight.len() < window {
                let name = format!("{prefix}{next}");
                let opts = if mode == Mode::Nl {
                    LockOptions::new().expedite()
                } else {
                    LockOptions::new()
                };
                inflight.push(async move { ls.lock_with_async(name, mode, opts).await });
                next += 1;
            }
            match inflight.next().await {
                Some(Ok(g)) => out.push(g),
                Some(Err(e)) => {
                    eprintln!("scale-probe: lock: {e}");
                    std::process::exit(1);
                }
                None => break,
            }
        }
        out
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("take") if args.len() == 5 => take(&args[1], &args[2], &args[3], &args[4]),
        Some("hold") if args.len() == 7 => hold(&args[1..]),
        Some("wait") if args.len() == 4 => wait(&args[1], &args[2], &args[3]),
        Some("pingpong") if args.len() == 4 => pingpong(&args[1], &args[2], &args[3]),
        _ => usage(),
    }
}

fn take(name: &str, n: &str, window: &str, end: &str) {
    let n: usize = n.parse().unwrap_or_else(|_| usage());
    let window: usize = window.parse().unwrap_or_else(|_| usage());
    let ls = Lockspace::join(name, 0o600).expect("join");
    // One lock first: the crate's threads and buffers exist before the
    // baseline.
    drop(ls.lock("warm", Mode::Ex).expect("lock"));
    let rss0 = status_kib("VmRSS:");
    let slab0 = slab_kib();
    let t0 = Instant::now();
    let guards = take_many(&ls, "k", n, Mode::Ex, window);
    let took = t0.elapsed();
    let rss1 = status_kib("VmRSS:");
    let slab1 = slab_kib();
    println!("locks {n}");
    println!("take_s {:.3}", took.as_secs_f64());
    println!(
        "take_us_per_lock {:.2}",
        took.as_secs_f64() * 1e6 / n as f64
    );
    println!("rss_kib_before {rss0}");
    println!("rss_kib_after {rss1}");
    println!(
        "process_bytes_per_lock {:.1}",
        (rss1.saturating_sub(rss0) * 1024) as f64 / n as f64
    );
    println!(
        "kernel_slab_bytes_per_lock {:.1}",
        (slab1.saturating_sub(slab0) * 1024) as f64 / n as f64
    );
    match end {
        "unlock" => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            let t0 = Instant::now();
            rt.block_on(async {
                let mut inflight = FuturesUnordered::new();
                let mut it = guards.into_iter();
                loop {
                    while inflight.len() < window {
                        let Some(g) = it.next() else { break };
                        inflight.push(g.unlock_async());
                    }
                    match inflight.next().await {
                        Some(r) => r.expect("unlock"),
                        None => break,
                    }
                }
            });
            let took = t0.elapsed();
            println!("unlock_s {:.3}", took.as_secs_f64());
            let t0 = Instant::now();
            drop(ls);
            println!("close_after_unlock_s {:.3}", t0.elapsed().as_secs_f64());
        }
        "exit" => {
            // The kernel drops every lock as the process's descriptor
            // closes; no destructor runs.
            println!("exit_at_ns {}", dlm_chaos::now_ns());
            std::mem::forget(guards);
            std::process::exit(0);
        }
        _ => usage(),
    }
}

fn hold(a: &[String]) {
    let (name, prefix, n, mode, ready, stop) = (&a[0], &a[1], &a[2], &a[3], &a[4], &a[5]);
    let n: usize = n.parse().unwrap_or_else(|_| usage());
    let ls = Lockspace::join(name, 0o600).expect("join");
    let t0 = Instant::now();
    let guards = take_many(&ls, prefix, n, mode_of(mode), 256);
    println!(
        "held {} {mode} in {:.3} s",
        guards.len(),
        t0.elapsed().as_secs_f64()
    );
    std::fs::write(ready, "ready\n").expect("ready file");
    while !std::path::Path::new(stop).exists() {
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(guards);
}

fn wait(name: &str, res: &str, out: &str) {
    let ls = Lockspace::join(name, 0o600).expect("join");
    let g = ls.lock(res, Mode::Ex).expect("lock");
    let t = dlm_chaos::now_ns();
    std::fs::write(out, format!("{t}\n")).expect("out file");
    println!("granted_at_ns {t}");
    drop(g);
}

fn pingpong(name: &str, res: &str, n: &str) {
    let n: usize = n.parse().unwrap_or_else(|_| usage());
    let ls = Lockspace::join(name, 0o600).expect("join");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t0 = Instant::now();
        let g = ls.lock(res, Mode::Ex).expect("lock");
        g.unlock().expect("unlock");
        v.push(t0.elapsed());
    }
    v.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = v.iter().map(|d| us(*d)).sum::<f64>() / n as f64;
    println!("pairs {n}");
    println!("mean_us {mean:.1}");
    println!("median_us {:.1}", us(v[n / 2]));
    println!("p10_us {:.1}", us(v[n / 10]));
    println!("p99_us {:.1}", us(v[n * 99 / 100]));
}
