//! dlm-lock's command line: take, hold, convert and release one lock and
//! report each event; purge orphans; show versions.

use crate::help::{Example, ExitStatus, Extra, Term};
use crate::values::{self, ModeArg};
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// The lockspace dlm-lock uses unless told otherwise.
pub const DEFAULT_LOCKSPACE: &str = "dlm-lock";

/// dlm-lock's exit statuses.
pub mod status {
    /// Done: granted and released (or orphaned), adopted, purged.
    pub const OK: u8 = 0;
    /// A `--try` request or conversion was refused.
    pub const WOULD_BLOCK: u8 = 1;
    /// Not granted within `--timeout`.
    pub const TIMED_OUT: u8 = 3;
    /// Deadlock, or cancelled by someone else.
    pub const DEADLOCK: u8 = 4;
    /// `--adopt`: no orphan of that name, or one in another mode.
    pub const ORPHAN: u8 = 5;
    /// The lockspace could not be had (no DLM, no permission).
    pub const LOCKSPACE: u8 = 6;
    /// Any other error.
    pub const OTHER: u8 = 7;
    /// With `--timeout`, a DLM call did not return in time.
    pub const STUCK: u8 = 8;
    /// Usage error.
    pub const USAGE: u8 = crate::usage::EX_USAGE;
}

/// What to do on a blocking notification while holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnBlocking {
    /// Only report it.
    Ignore,
    /// Convert down to this mode, once.
    Downconvert(dlm::Mode),
    /// Release the lock and end.
    Release,
}

fn on_blocking(s: &str) -> Result<OnBlocking, String> {
    match s {
        "ignore" => Ok(OnBlocking::Ignore),
        "release" => Ok(OnBlocking::Release),
        _ => match s.strip_prefix("downconvert:") {
            Some(m) => m
                .parse::<dlm::Mode>()
                .map(OnBlocking::Downconvert)
                .map_err(|_| format!("unknown mode {m} (NL, CR, CW, PR, PW or EX)")),
            None => Err("expected ignore, release or downconvert:MODE".into()),
        },
    }
}

/// Every value `--on-blocking` takes, as completions offer them.
pub const ON_BLOCKING_VALUES: [&str; 8] = [
    "ignore",
    "release",
    "downconvert:NL",
    "downconvert:CR",
    "downconvert:CW",
    "downconvert:PR",
    "downconvert:PW",
    "downconvert:EX",
];

/// `--on-blocking`'s value parser: [`on_blocking`]'s answers, and its
/// values listed for the shell completions.
#[derive(Debug, Clone, Copy)]
struct OnBlockingParser;

impl clap::builder::TypedValueParser for OnBlockingParser {
    type Value = OnBlocking;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<OnBlocking, clap::Error> {
        let s = value.to_str().ok_or_else(|| {
            clap::Error::raw(
                clap::error::ErrorKind::InvalidUtf8,
                "--on-blocking takes ASCII",
            )
            .with_cmd(cmd)
        })?;
        on_blocking(s).map_err(|why| {
            let name = arg.map_or("--on-blocking".to_string(), |a| a.to_string());
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value '{s}' for '{name}': {why}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(
            ON_BLOCKING_VALUES
                .iter()
                .map(|v| clap::builder::PossibleValue::new(*v)),
        ))
    }
}

/// One step after the grant, in command-line order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Convert to this mode.
    Convert(dlm::Mode),
    /// Wait until this file exists, answering blocking notifications.
    WaitFile(PathBuf),
}

/// dlm-lock's subcommands.
#[derive(Debug, Subcommand)]
pub enum LockCommand {
    /// Print the DLM device protocol versions of the running kernel and of libdlm
    Versions {
        /// One JSON object on one line instead of text
        #[arg(long)]
        json: bool,
    },
    /// List this node's lockspaces, their members and each node's state, as dlm_controld reports them (like dlm_tool ls)
    Ls {
        /// One JSON array on one line instead of text
        #[arg(long)]
        json: bool,
        /// Also list every node the daemon knows in each lockspace, former members included (like dlm_tool ls -n)
        #[arg(short = 'n', long)]
        nodes: bool,
        /// Only this lockspace
        #[arg(value_name = "LOCKSPACE", value_parser = values::listed_lockspace, value_hint = clap::ValueHint::Other)]
        name: Option<String>,
    },
    /// Watch dlm_controld's view change (polling): one line per change of quorum, of a node's state in the cluster, of a lockspace, or of a member's state in a lockspace; first a line "watching" (with --json, {"event": "watching", ...})
    Watch {
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
        /// Milliseconds between polls
        #[arg(long, value_name = "MS", default_value_t = 500)]
        interval: u64,
        /// Stop after this many seconds (default: never)
        #[arg(long = "for", value_name = "SECONDS", value_parser = values::seconds)]
        duration: Option<Duration>,
    },
    /// Show this node's view of the cluster: quorum, each node, failures and fencing (like dlm_tool status)
    Status {
        /// One JSON object on one line instead of dlm_tool's text
        #[arg(long)]
        json: bool,
    },
}

/// dlm-lock's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "dlm-lock",
    version,
    about = "Take, hold, convert and release a cluster-wide DLM lock, reporting each event",
    long_about = "Take, hold, convert and release a cluster-wide DLM lock, reporting each event.\n\n\
Takes the lock RESOURCE in MODE in the Linux Distributed Lock Manager (or adopts \
an orphan, --adopt), carries out the steps given (--convert, --wait-file) in \
their order, holds it (--hold, --hold-until-file, --until-signal) answering \
blocking notifications (--on-blocking), then releases it (or leaves it as an \
orphan, --orphan). Each event is one line on standard output, flushed at \
once; the events are listed below. With --json each event is instead one JSON \
object on a line: {\"event\": \"granted\", \"mode\": \"EX\", \"time\": \
1712345678.123456} (fields: event, time, and mode, lvb, valid, node, pid, \
signal or message as the event has them).",
    after_help = "See --help for the events, notes, exit statuses and examples.",
    override_usage = "dlm-lock [OPTIONS] RESOURCE [MODE]\n       dlm-lock [--lockspace NAME] --purge NODEID [PID]\n       dlm-lock versions [--json]\n       dlm-lock ls [-n] [--json] [LOCKSPACE]\n       dlm-lock status [--json]\n       dlm-lock watch [--json] [--interval MS] [--for SECONDS]\n       dlm-lock --generate KIND",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct LockArgs {
    /// Subcommand
    #[command(subcommand)]
    pub command: Option<LockCommand>,

    /// The lockspace; created (device mode 0600) if it does not exist, which needs CAP_SYS_ADMIN
    #[arg(short = 'l', long, value_name = "NAME", default_value = DEFAULT_LOCKSPACE, value_parser = values::lockspace, value_hint = clap::ValueHint::Other)]
    pub lockspace: String,

    /// The lock's name (1 to 64 bytes)
    #[arg(value_name = "RESOURCE", value_parser = values::resource, required_unless_present = "purge", value_hint = clap::ValueHint::Other)]
    pub resource: Option<String>,

    /// The mode to request or adopt: NL, CR, CW, PR, PW or EX (any case; default EX)
    #[arg(value_name = "MODE", ignore_case = true, conflicts_with = "mode")]
    pub mode_arg: Option<ModeArg>,

    /// The mode, as an option (the same as MODE)
    #[arg(short = 'm', long = "mode", value_name = "MODE", ignore_case = true)]
    pub mode: Option<ModeArg>,

    /// Fail at once instead of waiting (LKF_NOQUEUE), for the request and each conversion
    #[arg(short = 'n', long = "try")]
    pub try_lock: bool,

    /// Give up on the request, and on each conversion, if not granted within SECONDS (it is cancelled). Also arms a watchdog: a DLM call still running SECONDS + 15 s after it began (the kernel can block a cancel for ever while the lockspace is stopped) prints `error: stuck: ...` and ends the program (status 8)
    #[arg(short = 'w', long, value_name = "SECONDS", value_parser = values::seconds)]
    pub timeout: Option<Duration>,

    /// A persistent lock (LKF_PERSISTENT): it survives this process as an orphan if not released
    #[arg(short = 'p', long)]
    pub persistent: bool,

    /// Grant a new NL request at once (LKF_EXPEDITE)
    #[arg(long)]
    pub expedite: bool,

    /// Read the lock value block (LKF_VALBLK) and print it at the grant and at each conversion that reads it; --lvb is the same
    #[arg(long, visible_alias = "lvb")]
    pub lvb_read: bool,

    /// Write VALUE into the lock value block once the lock is held in PW or EX, published by the next conversion down or the release: text, or bytes in hex after 0x; at most 32 bytes (implies --lvb-read)
    #[arg(long, value_name = "VALUE", value_parser = values::lvb_value)]
    pub lvb_write: Option<values::LvbValue>,

    /// Ask for blocking notifications and print `blocking` for each
    #[arg(long)]
    pub notify: bool,

    /// On a blocking notification while holding: ignore (only print it, the default), release (unlock and end), downconvert:MODE (convert down to MODE). Implies --notify
    #[arg(long, value_name = "ACTION", value_parser = OnBlockingParser, hide_possible_values = true)]
    pub on_blocking: Option<OnBlocking>,

    /// Adopt an orphan held in MODE (LKF_ORPHAN) instead of requesting the lock
    #[arg(long, conflicts_with_all = ["try_lock", "timeout", "expedite"])]
    pub adopt: bool,

    /// After the grant, convert to MODE (a step; steps run in the order given)
    #[arg(long, value_name = "MODE", ignore_case = true)]
    pub convert: Vec<ModeArg>,

    /// After the grant, wait until PATH exists, answering blocking notifications (a step)
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub wait_file: Vec<PathBuf>,

    /// Hold the lock SECONDS before releasing it
    #[arg(long, value_name = "SECONDS", value_parser = values::seconds)]
    pub hold: Option<Duration>,

    /// Hold the lock until SIGINT, SIGTERM or SIGHUP, then release it and exit 0
    #[arg(long, conflicts_with = "hold")]
    pub until_signal: bool,

    /// Hold the lock until PATH exists (with --hold or --until-signal: whichever comes first)
    #[arg(long, value_name = "PATH", value_hint = clap::ValueHint::FilePath)]
    pub hold_until_file: Option<PathBuf>,

    /// At the end leave the lock as an orphan instead of releasing it (needs --persistent or --adopt)
    #[arg(long)]
    pub orphan: bool,

    /// Purge the orphans of node NODEID (0: this node) and owner PID (0 or none: every owner), then exit. The owner the kernel records is the thread that made the request; dlm-lock makes its requests from its main thread, so the owner of its orphans is the pid it printed (`orphaned PID`)
    #[arg(long, value_names = ["NODEID", "PID"], num_args = 1..=2,
          conflicts_with_all = ["resource", "mode", "mode_arg", "adopt", "orphan", "persistent", "convert", "wait_file", "hold", "until_signal", "hold_until_file", "lvb_read", "lvb_write", "try_lock", "notify", "on_blocking", "expedite"])]
    pub purge: Option<Vec<u32>>,

    /// Start each line with the wall-clock time: seconds since the epoch, with microseconds
    #[arg(short = 't', long)]
    pub timestamps: bool,

    /// Print each event as one JSON object on a line
    #[arg(long)]
    pub json: bool,
}

impl LockArgs {
    /// The mode to request or adopt (default EX).
    pub fn lock_mode(&self) -> dlm::Mode {
        self.mode_arg
            .or(self.mode)
            .map_or(dlm::Mode::Ex, dlm::Mode::from)
    }

    /// `--purge`'s node id and owner pid.
    pub fn purge_target(&self) -> Option<(u32, u32)> {
        let p = self.purge.as_ref()?;
        Some((p[0], p.get(1).copied().unwrap_or(0)))
    }

    /// Whether the LVB is used.
    pub fn uses_lvb(&self) -> bool {
        self.lvb_read || self.lvb_write.is_some()
    }

    /// Whether blocking notifications are asked for.
    pub fn notifies(&self) -> bool {
        self.notify || self.on_blocking.is_some()
    }
}

/// dlm-lock's event lines and what each means.
pub const EVENTS: &[Term] = &[
    Term {
        term: "requesting MODE",
        meaning: "a new request is about to be sent",
    },
    Term {
        term: "granted MODE",
        meaning: "the request was granted",
    },
    Term {
        term: "adopted MODE",
        meaning: "an orphan was adopted (--adopt)",
    },
    Term {
        term: "lvb valid|not-valid HEX",
        meaning: "the lock value block read (--lvb-read), 64 hex digits",
    },
    Term {
        term: "set-lvb HEX",
        meaning: "the value of --lvb-write, published by the next conversion down or the release",
    },
    Term {
        term: "converting MODE",
        meaning: "a conversion is about to be sent",
    },
    Term {
        term: "converted MODE",
        meaning: "the conversion was granted",
    },
    Term {
        term: "blocking",
        meaning: "another request waits for this lock (--notify)",
    },
    Term {
        term: "signal NAME",
        meaning: "--until-signal: the signal that ends the hold",
    },
    Term {
        term: "unlocking",
        meaning: "the unlock is about to be sent",
    },
    Term {
        term: "released",
        meaning: "the lock is unlocked",
    },
    Term {
        term: "orphaned PID",
        meaning: "left as an orphan of owner PID (--orphan)",
    },
    Term {
        term: "purged NODEID PID",
        meaning: "orphans were purged (--purge)",
    },
    Term {
        term: "would-block",
        meaning: "a --try request or conversion was refused",
    },
    Term {
        term: "timed-out",
        meaning: "not granted within --timeout",
    },
    Term {
        term: "deadlock",
        meaning: "the request failed in a deadlock",
    },
    Term {
        term: "cancelled",
        meaning: "the request was cancelled by someone else",
    },
    Term {
        term: "no-orphan",
        meaning: "--adopt found no orphan of that name",
    },
    Term {
        term: "orphan-mode-mismatch",
        meaning: "--adopt found an orphan in another mode",
    },
    Term {
        term: "error: MESSAGE",
        meaning: "anything else that failed",
    },
];

/// Notes, exit statuses and examples of dlm-lock.
pub const EXTRA: Extra = Extra {
    other_forms: &["[--lockspace NAME] --purge NODEID [PID]"],
    events: EVENTS,
    notes: &[
        "The default lockspace is dlm-lock. dlm-lock creates a lockspace that does not exist, which needs CAP_SYS_ADMIN (root), and leaves it in place (remove it with `dlm_tool leave NAME`).",
        "A resource named `versions` is written after `--`: dlm-lock -- versions EX.",
        "Lock value blocks live as long as some lock (an NL lock will do) is held on the resource somewhere in the cluster: hold one, e.g. `dlm-lock RES NL --until-signal &`, to keep a value between holders.",
        "Without --hold, --hold-until-file or --until-signal the lock is released as soon as the steps are done. A dlm-lock killed while it waits or holds leaves nothing behind, but a --persistent lock, which the kernel keeps as an orphan.",
    ],
    exit_statuses: &[
        ExitStatus {
            code: "0",
            meaning: "done: granted and released (or orphaned), adopted, purged, versions, ls or status shown, watch ended",
        },
        ExitStatus {
            code: "1",
            meaning: "would-block: a --try request or conversion was refused",
        },
        ExitStatus {
            code: "3",
            meaning: "timed-out: not granted within --timeout",
        },
        ExitStatus {
            code: "4",
            meaning: "deadlock, or cancelled by someone else",
        },
        ExitStatus {
            code: "5",
            meaning: "--adopt: no orphan of that name, or one in another mode",
        },
        ExitStatus {
            code: "6",
            meaning: "the lockspace could not be had (no DLM; creating it needs CAP_SYS_ADMIN)",
        },
        ExitStatus {
            code: "7",
            meaning: "any other error (ls, status and watch: dlm_controld not answering, an unknown lockspace)",
        },
        ExitStatus {
            code: "8",
            meaning: "stuck: with --timeout, a DLM call did not return in time (its thread may stay blocked in the kernel)",
        },
        ExitStatus {
            code: "64",
            meaning: "usage error: unknown option, bad number, mode or name",
        },
    ],
    examples: &[
        Example {
            what: "Is anybody holding `config` in a mode that excludes PR? (exit 1 if so):",
            command: "dlm-lock --try config PR",
        },
        Example {
            what: "Hold EX on `config` until Ctrl-C, printing what happens as JSON:",
            command: "dlm-lock --json --notify config EX --until-signal",
        },
        Example {
            what: "Write a value into the lock value block, then read it from another node:",
            command: "dlm-lock counter EX --lvb-write 'epoch 7'\ndlm-lock counter PR --lvb-read",
        },
        Example {
            what: "Leave a persistent lock behind, adopt it later, purge the orphans of node 2:",
            command: "dlm-lock --persistent --orphan job-42 EX\ndlm-lock --adopt job-42 EX\ndlm-lock --purge 2",
        },
        Example {
            what: "Take EX, step down to NL when another node asks, hold for 30 s:",
            command: "dlm-lock --on-blocking downconvert:NL --hold 30 leader",
        },
        Example {
            what: "Show the kernel's and libdlm's DLM protocol versions:",
            command: "dlm-lock versions",
        },
    ],
    see_also: &["dlm-flock(1)", "dlm_tool(8)", "dlm_controld(8)"],
};

/// dlm-lock's full clap definition, help text included.
pub fn command() -> clap::Command {
    LockArgs::command()
        .arg(crate::generate::arg())
        .after_long_help(EXTRA.help_text())
}

/// What to run, from a successful parse of [`command`].
#[derive(Debug)]
pub struct Parsed {
    /// The arguments.
    pub args: LockArgs,
    /// `--convert` and `--wait-file` steps, in command-line order.
    pub steps: Vec<Step>,
}

/// The arguments from matches of [`command`], checked for the
/// combinations clap cannot express.
///
/// # Errors
/// One line saying what is wrong (a usage error).
pub fn from_matches(m: &clap::ArgMatches) -> Result<Parsed, String> {
    let args = LockArgs::from_arg_matches(m).map_err(|e| crate::usage::one_line("dlm-lock", &e))?;
    let mut steps: Vec<(usize, Step)> = Vec::new();
    if let Some(idx) = m.indices_of("convert") {
        steps.extend(
            idx.zip(&args.convert)
                .map(|(i, c)| (i, Step::Convert((*c).into()))),
        );
    }
    if let Some(idx) = m.indices_of("wait_file") {
        steps.extend(
            idx.zip(&args.wait_file)
                .map(|(i, p)| (i, Step::WaitFile(p.clone()))),
        );
    }
    steps.sort_by_key(|(i, _)| *i);
    let steps: Vec<Step> = steps.into_iter().map(|(_, s)| s).collect();
    if args.command.is_none() && args.purge.is_none() {
        if args.orphan && !(args.persistent || args.adopt) {
            return Err(
                "--orphan needs --persistent (or --adopt): only persistent locks become orphans"
                    .into(),
            );
        }
        if args.lvb_write.is_some() {
            let modes =
                std::iter::once(args.lock_mode()).chain(steps.iter().filter_map(|s| match s {
                    Step::Convert(m) => Some(*m),
                    Step::WaitFile(_) => None,
                }));
            if !modes.into_iter().any(dlm::Mode::writes_lvb) {
                return Err("--lvb-write needs the lock held in PW or EX at some step".into());
            }
        }
    }
    Ok(Parsed { args, steps })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{parse, Parsed as P};

    fn run(v: &[&str]) -> Result<Parsed, String> {
        let mut all = vec!["dlm-lock"];
        all.extend_from_slice(v);
        match parse(command(), all) {
            P::Run(m) => from_matches(&m),
            P::Usage(l) => Err(l),
            P::Print(t) => Err(format!("printed {t}")),
        }
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn mode_as_argument_or_option() {
        assert_eq!(run(&["r"]).unwrap().args.lock_mode(), dlm::Mode::Ex);
        assert_eq!(run(&["r", "pr"]).unwrap().args.lock_mode(), dlm::Mode::Pr);
        assert_eq!(
            run(&["--mode", "NL", "r"]).unwrap().args.lock_mode(),
            dlm::Mode::Nl
        );
        assert!(run(&["--mode", "NL", "r", "EX"]).is_err());
        assert!(run(&["r", "XX"]).is_err());
    }

    #[test]
    fn steps_keep_their_order() {
        let p = run(&[
            "--wait-file",
            "go",
            "--convert",
            "NL",
            "--wait-file",
            "more",
            "--convert",
            "ex",
            "r",
        ])
        .unwrap();
        assert_eq!(
            p.steps,
            [
                Step::WaitFile("go".into()),
                Step::Convert(dlm::Mode::Nl),
                Step::WaitFile("more".into()),
                Step::Convert(dlm::Mode::Ex)
            ]
        );
    }

    #[test]
    fn purge_takes_node_and_pid() {
        assert_eq!(
            run(&["--purge", "1"]).unwrap().args.purge_target(),
            Some((1, 0))
        );
        assert_eq!(
            run(&["--purge", "2", "345"]).unwrap().args.purge_target(),
            Some((2, 345))
        );
        assert!(run(&["--purge", "x"]).is_err());
        assert!(run(&["--purge", "1", "2", "r"]).is_err());
        assert!(run(&["--purge", "-1"]).is_err());
    }

    #[test]
    fn versions_subcommand() {
        let p = run(&["versions"]).unwrap();
        assert!(matches!(
            p.args.command,
            Some(LockCommand::Versions { json: false })
        ));
        let p = run(&["versions", "--json"]).unwrap();
        assert!(matches!(
            p.args.command,
            Some(LockCommand::Versions { json: true })
        ));
        let p = run(&["--", "versions", "EX"]).unwrap();
        assert_eq!(p.args.resource.as_deref(), Some("versions"));
    }

    #[test]
    fn bad_combinations_are_usage_errors() {
        for bad in [
            &["--orphan", "r"][..],
            &["--lvb-write", "x", "r", "PR"],
            &["--lvb-write", &"x".repeat(33), "r"],
            &["--adopt", "--try", "r"],
            &["--hold", "1", "--until-signal", "r"],
            &["--hold", "1e30", "r"],
            &["--timeout", "NaN", "r"],
            &["--on-blocking", "explode", "r"],
            &["--on-blocking", "downconvert:XX", "r"],
            &["--lockspace", "a b", "r"],
            &["--lockspace", "plock", "r"],
            &["--lockspace", "a\u{1}b", "r"],
            &["ls", ""],
            &["ls", &"l".repeat(65)],
            &["--bogus", "r"],
            &[],
        ] {
            let e = run(bad).expect_err(&format!("{bad:?} accepted"));
            assert!(!e.contains('\n'), "{e}");
        }
        assert!(run(&["--lvb-write", "x", "r", "PR", "--convert", "EX"]).is_ok());
        assert!(run(&["--persistent", "--orphan", "r"]).is_ok());
        assert!(run(&["ls", "-n", "myapp"]).is_ok());
        assert!(run(&["--on-blocking", "downconvert:pr", "r"]).is_ok());
        for v in ON_BLOCKING_VALUES {
            assert!(run(&["--on-blocking", v, "r"]).is_ok(), "{v}");
        }
    }

    #[test]
    fn help_describes_every_option() {
        let help = command().render_long_help().to_string();
        for needle in [
            "--lockspace",
            "--mode",
            "--try",
            "--timeout",
            "--persistent",
            "--expedite",
            "--lvb-read",
            "--lvb-write",
            "--notify",
            "--on-blocking",
            "--adopt",
            "--convert",
            "--wait-file",
            "--hold",
            "--until-signal",
            "--hold-until-file",
            "--orphan",
            "--purge",
            "--timestamps",
            "--json",
            "versions",
            "Examples:",
            "Exit status:",
        ] {
            assert!(help.contains(needle), "{needle} missing from --help");
        }
    }
}
