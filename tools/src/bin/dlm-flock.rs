//! `dlm-flock`: flock(1) for the cluster. Holds a cluster-wide DLM lock
//! while a command runs and exits with the command's status.
//!
//! ```text
//! dlm-flock [OPTIONS] RESOURCE COMMAND [ARGUMENTS...]
//! dlm-flock [OPTIONS] RESOURCE -c STRING
//! ```
//!
//! `dlm-flock --help` (or `man dlm-flock`) describes every option and
//! exit status.

use dlm::{Error, LockOptions};
use dlm_tools::command::{self, Outcome};
use dlm_tools::flock_cli::{self, EX_NOPERM, EX_OSERR, EX_UNAVAILABLE};
use dlm_tools::lockspace::{open_or_create, Failure};
use dlm_tools::{generate, signals, usage};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const NAME: &str = "dlm-flock";

fn main() -> ExitCode {
    let matches = usage::parse_env(flock_cli::command());
    if let Some(code) = generate::answer(&matches, flock_cli::command(), &flock_cli::EXTRA) {
        return ExitCode::from(code);
    }
    let args = match flock_cli::from_matches(&matches) {
        Ok(a) => a,
        Err(e) => return ExitCode::from(usage::report(NAME, &usage::one_line(NAME, &e))),
    };
    let checked = args
        .check()
        .and_then(|()| args.program().ok_or_else(|| "no command given".to_string()));
    let (program, program_args) = match checked {
        Ok(p) => p,
        Err(why) => return ExitCode::from(usage::report(NAME, &why)),
    };

    // From here on an end signal ends the tool (and with it any waiting
    // request) until the command runs; then it goes to the command.
    signals::forward_to_command();

    let ls = match open_or_create(&args.lockspace) {
        Ok(ls) => ls,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(match e.failure {
                Failure::Unavailable => EX_UNAVAILABLE,
                Failure::Permission => EX_NOPERM,
                Failure::Other => EX_OSERR,
            });
        }
    };

    let mut options = LockOptions::new();
    match args.timeout {
        _ if args.nonblock => options = options.no_wait(),
        Some(t) if t == Duration::ZERO => options = options.no_wait(),
        Some(t) => options = options.timeout(t),
        None => {}
    }
    let started = Instant::now();
    let guard = match ls.lock_with(&args.resource, args.lock_mode(), options) {
        Ok(g) => g,
        Err(Error::WouldBlock) => {
            if args.verbose {
                eprintln!("{NAME}: failed to get lock");
            }
            return ExitCode::from(args.conflict_exit_code);
        }
        Err(Error::TimedOut) => {
            if args.verbose {
                eprintln!("{NAME}: timeout while waiting to get lock");
            }
            return ExitCode::from(args.conflict_exit_code);
        }
        Err(e) => {
            eprintln!("{NAME}: {}: {e}", args.resource);
            return ExitCode::from(match e {
                Error::NotAvailable { .. } => EX_UNAVAILABLE,
                Error::PermissionDenied { .. } => EX_NOPERM,
                _ => EX_OSERR,
            });
        }
    };
    if args.verbose {
        let took = started.elapsed();
        eprintln!(
            "{NAME}: getting lock took {}.{:06} seconds",
            took.as_secs(),
            took.subsec_micros()
        );
        eprintln!("{NAME}: executing {}", program.to_string_lossy());
    }

    let outcome = command::run(&program, &program_args);
    if let Outcome::NotStarted(e) = &outcome {
        eprintln!("{NAME}: {}: {e}", program.to_string_lossy());
    }
    // Released whatever ended the command; should the unlock fail, the
    // lock still goes when this process closes the lockspace, at exit.
    if let Err(e) = guard.unlock() {
        eprintln!("{NAME}: unlocking {}: {e}", args.resource);
    }
    ExitCode::from(outcome.exit_code())
}
