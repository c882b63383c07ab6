//! `dlm-flock`: flock(1) for the cluster. Holds a DLM lock while a command
//! runs and exits with the command's status.
//!
//! ```text
//! dlm-flock [-s|-x|--mode M] [-n] [-w SECONDS] [--lockspace NAME] RESOURCE COMMAND [ARGS...]
//! ```
//!
//! Run in the test cluster: `ci/vm cargo run --example dlm-flock -- -x res1 echo hi`.

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::process::{Command, ExitCode};
use std::time::Duration;

const USAGE: &str = "\
Usage: dlm-flock [OPTIONS] RESOURCE COMMAND [ARGS...]

Takes the cluster-wide DLM lock RESOURCE, runs COMMAND while holding it,
releases it, and exits with COMMAND's exit status.

Options:
  -x, --exclusive       take the lock in EX mode (the default)
  -s, --shared          take the lock in PR mode
      --mode MODE       take the lock in MODE: NL, CR, CW, PR, PW or EX
  -n, --nonblock        fail (exit 1) at once if the lock is held elsewhere
  -w, --timeout SECS    fail (exit 1) if the lock is not had within SECS
      --lockspace NAME  lockspace to use (default: dlm-flock; created if needed)
  -h, --help            show this help

Exit status: COMMAND's status; 1 when the lock was not had (-n, -w);
2 on a usage error; 3 on any other DLM error; 127 if COMMAND cannot be run.";

struct Args {
    mode: Mode,
    options: LockOptions,
    lockspace: String,
    resource: String,
    command: Vec<String>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut mode = Mode::Ex;
    let mut options = LockOptions::new();
    let mut lockspace = "dlm-flock".to_string();
    let mut positional = Vec::new();
    while let Some(arg) = args.next() {
        if !positional.is_empty() {
            positional.push(arg);
            positional.extend(args.by_ref());
            break;
        }
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-x" | "--exclusive" => mode = Mode::Ex,
            "-s" | "--shared" => mode = Mode::Pr,
            "--mode" => {
                let m = args.next().ok_or("--mode needs a value")?;
                mode = m.parse().map_err(|e: Error| e.to_string())?;
            }
            "-n" | "--nonblock" => options = options.no_wait(),
            "-w" | "--timeout" | "--wait" => {
                let s = args.next().ok_or("-w needs a number of seconds")?;
                let secs: f64 = s.parse().map_err(|_| format!("bad timeout: {s}"))?;
                if !(secs.is_finite() && secs >= 0.0) {
                    return Err(format!("bad timeout: {s}"));
                }
                options = options.timeout(Duration::from_secs_f64(secs));
            }
            "--lockspace" => lockspace = args.next().ok_or("--lockspace needs a name")?,
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ => positional.push(arg),
        }
    }
    if positional.len() < 2 {
        return Err("RESOURCE and COMMAND are required".into());
    }
    let resource = positional.remove(0);
    Ok(Args {
        mode,
        options,
        lockspace,
        resource,
        command: positional,
    })
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("dlm-flock: {msg}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let ls = match Lockspace::join(&args.lockspace, 0o600) {
        Ok(ls) => ls,
        Err(e) => {
            eprintln!("dlm-flock: lockspace {}: {e}", args.lockspace);
            return ExitCode::from(3);
        }
    };
    let guard = match ls.lock_with(&args.resource, args.mode, args.options) {
        Ok(g) => g,
        Err(Error::WouldBlock | Error::TimedOut) => {
            eprintln!("dlm-flock: {}: lock not had", args.resource);
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("dlm-flock: {}: {e}", args.resource);
            return ExitCode::from(3);
        }
    };
    let status = Command::new(&args.command[0])
        .args(&args.command[1..])
        .status();
    if let Err(e) = guard.unlock() {
        eprintln!("dlm-flock: unlock {}: {e}", args.resource);
    }
    match status {
        Ok(s) => match s.code() {
            Some(c) => ExitCode::from(c as u8),
            // Killed by a signal: 128 + signal, as shells report it.
            None => ExitCode::from(
                128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0) as u8,
            ),
        },
        Err(e) => {
            eprintln!("dlm-flock: {}: {e}", args.command[0]);
            ExitCode::from(127)
        }
    }
}
