//! `lvb-counter`: a counter kept in a lock value block, incremented under EX.
//!
//! ```text
//! lvb-counter [--lockspace NAME] [--resource NAME] [--increments N] [--read]
//! ```
//!
//! The counter is a little-endian `u64` in the first 8 bytes of the LVB of
//! RESOURCE. The program keeps one lock for its whole run, as lvmlockd does:
//! NL between increments (which keeps the LVB alive in the DLM), converted
//! to EX to increment (reading the LVB), and back to NL (publishing it).
//! With `--read` it prints the value under PR and exits.
//!
//! Prints `counter VALUE` (and `valid`/`not-valid`) when done.

use dlm::{LockOptions, Lockspace, Mode};
use std::process::ExitCode;

fn value(bytes: &[u8; 32]) -> u64 {
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

fn run() -> Result<(), String> {
    let mut lockspace = "lvb-counter".to_string();
    let mut resource = "counter".to_string();
    let mut increments = 1u64;
    let mut read_only = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--lockspace" => lockspace = args.next().ok_or("--lockspace needs a name")?,
            "--resource" => resource = args.next().ok_or("--resource needs a name")?,
            "--increments" => {
                let n = args.next().ok_or("--increments needs a number")?;
                increments = n.parse().map_err(|_| format!("bad number {n}"))?;
            }
            "--read" => read_only = true,
            "-h" | "--help" => {
                println!("Usage: lvb-counter [--lockspace NAME] [--resource NAME] [--increments N] [--read]");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let ls =
        Lockspace::join(&lockspace, 0o600).map_err(|e| format!("lockspace {lockspace}: {e}"))?;
    if read_only {
        let g = ls
            .lock_with(&resource, Mode::Pr, LockOptions::new().lvb())
            .map_err(|e| e.to_string())?;
        let lvb = g.lvb().expect("requested with lvb");
        println!(
            "counter {} {}",
            value(&lvb.bytes),
            if lvb.valid { "valid" } else { "not-valid" }
        );
        return Ok(());
    }
    // One NL lock for the whole run, converted up and down.
    let mut lock = ls
        .lock_with(&resource, Mode::Nl, LockOptions::new().lvb().expedite())
        .map_err(|e| format!("lock {resource}: {e}"))?;
    let mut last = 0;
    let mut valid = true;
    for _ in 0..increments {
        lock.convert(Mode::Ex)
            .map_err(|e| format!("convert to EX: {e}"))?;
        let lvb = lock.lvb().expect("requested with lvb");
        valid &= lvb.valid;
        last = value(&lvb.bytes) + 1;
        lock.set_lvb(&last.to_le_bytes())
            .map_err(|e| e.to_string())?;
        lock.convert(Mode::Nl)
            .map_err(|e| format!("convert to NL: {e}"))?;
    }
    println!(
        "counter {last} {}",
        if valid { "valid" } else { "not-valid" }
    );
    lock.unlock().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lvb-counter: {e}");
            ExitCode::FAILURE
        }
    }
}
