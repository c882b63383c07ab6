//! dlm-flock's command line: flock(1)'s options, with the same meanings
//! and exit statuses, plus the cluster's own (`--lockspace`, `--mode`).

use crate::help::{Example, ExitStatus, Extra};
use crate::values::{self, ModeArg};
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::time::Duration;

/// The lockspace dlm-flock uses unless told otherwise.
pub const DEFAULT_LOCKSPACE: &str = "dlm-flock";

/// Exit status of `-n` and `-w` when the lock is not had, unless `-E`.
pub const DEFAULT_CONFLICT_EXIT_CODE: u8 = 1;
/// Exit status when there is no DLM (`EX_UNAVAILABLE`).
pub const EX_UNAVAILABLE: u8 = 69;
/// Exit status for any other DLM error (`EX_OSERR`).
pub const EX_OSERR: u8 = 71;
/// Exit status when the lockspace may not be created or opened
/// (`EX_NOPERM`).
pub const EX_NOPERM: u8 = 77;

/// dlm-flock's arguments.
#[derive(Debug, Parser)]
#[command(
    name = "dlm-flock",
    version,
    about = "Run a command while holding a cluster-wide DLM lock: flock(1) for the cluster",
    long_about = "Run a command while holding a cluster-wide DLM lock: flock(1) for the cluster.\n\n\
Takes the lock RESOURCE in the Linux Distributed Lock Manager (DLM), which \
excludes holders on every node of the corosync cluster, runs COMMAND (or \
`/bin/sh -c STRING` with -c) while holding it, releases it when the command \
ends, whatever ends it, and exits with the command's exit status. The end \
signals SIGINT, SIGTERM and SIGHUP sent to dlm-flock are sent on to the \
command. A dlm-flock still waiting for the lock when such a signal (or \
SIGKILL) ends it leaves no request behind.",
    after_help = "Unlike flock(1): no `flock FD` form, no -u, no -F (a DLM lock belongs to a process, not to a descriptor). See --help for why, notes, exit statuses and examples.",
    override_usage = "dlm-flock [OPTIONS] RESOURCE COMMAND [ARGUMENTS...]\n       dlm-flock [OPTIONS] RESOURCE -c STRING\n       dlm-flock --generate KIND"
)]
pub struct FlockArgs {
    /// Take a shared lock (mode PR): other shared holders may hold it at the same time
    #[arg(short = 's', long, action = ArgAction::SetTrue, overrides_with_all = ["exclusive", "mode", "shared"])]
    pub shared: bool,

    /// Take an exclusive lock (mode EX), the default (-e is the same)
    #[arg(short = 'x', long, visible_short_alias = 'e', action = ArgAction::SetTrue, overrides_with_all = ["shared", "mode", "exclusive"])]
    pub exclusive: bool,

    /// Take the lock in MODE (NL, CR, CW, PR, PW, EX, any case); -s is PR, -x is EX
    #[arg(long, value_name = "MODE", ignore_case = true, overrides_with_all = ["shared", "exclusive", "mode"])]
    pub mode: Option<ModeArg>,

    /// Fail rather than wait if the lock cannot be had at once (exit with the conflict exit code); --nb is the same
    #[arg(short = 'n', long = "nonblock", visible_alias = "nb")]
    pub nonblock: bool,

    /// Fail if the lock is not had within SECONDS (fractions allowed; 0 is -n); --wait is the same
    #[arg(short = 'w', long = "timeout", visible_alias = "wait", value_name = "SECONDS", value_parser = values::seconds)]
    pub timeout: Option<Duration>,

    /// Exit status when the lock is not had with -n or -w (0 to 255)
    #[arg(short = 'E', long, value_name = "N", default_value_t = DEFAULT_CONFLICT_EXIT_CODE)]
    pub conflict_exit_code: u8,

    /// Accepted for flock(1) compatibility; does nothing: the command never inherits the lock's descriptor
    #[arg(short = 'o', long)]
    pub close: bool,

    /// Run STRING with `/bin/sh -c` instead of COMMAND
    #[arg(
        short = 'c',
        long = "command",
        value_name = "STRING",
        conflicts_with = "argv"
    )]
    pub shell_command: Option<OsString>,

    /// Say on standard error how long getting the lock took, and what runs
    #[arg(long)]
    pub verbose: bool,

    /// flock(1)'s -u (unlock a descriptor): refused with the reason
    #[arg(short = 'u', long = "unlock", hide = true)]
    pub unlock: bool,

    /// flock(1)'s -F (no fork): refused with the reason
    #[arg(short = 'F', long = "no-fork", hide = true)]
    pub no_fork: bool,

    /// The lockspace of the lock; created (device mode 0600) if it does not exist, which needs CAP_SYS_ADMIN
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LOCKSPACE, value_parser = values::lockspace, value_hint = clap::ValueHint::Other)]
    pub lockspace: String,

    /// The lock's name (1 to 64 bytes), shared by every node of the cluster
    #[arg(value_name = "RESOURCE", value_parser = values::resource, value_hint = clap::ValueHint::Other)]
    pub resource: String,

    /// The command to run with the lock held, and its arguments
    #[arg(value_name = "COMMAND", trailing_var_arg = true, allow_hyphen_values = true, num_args = 0.., value_hint = clap::ValueHint::CommandWithArguments)]
    pub argv: Vec<OsString>,
}

impl FlockArgs {
    /// The mode to request: `--mode`, else PR for `-s`, else EX.
    pub fn lock_mode(&self) -> dlm::Mode {
        match (self.mode, self.shared) {
            (Some(m), _) => m.into(),
            (None, true) => dlm::Mode::Pr,
            (None, false) => dlm::Mode::Ex,
        }
    }

    /// What flock(1) would take but dlm-flock cannot do: `-u`, `-F`, the
    /// `flock FD` form (a number and no command), and no command at all.
    ///
    /// # Errors
    /// The usage error to print (one line): what was asked, and why
    /// dlm-flock does not do it.
    pub fn check(&self) -> Result<(), String> {
        if self.unlock {
            return Err(format!("-u (unlock): {NO_FD_FORM} (see dlm-flock --help)"));
        }
        if self.no_fork {
            return Err(format!(
                "-F (no fork): the lock cannot pass to the command: {NO_FD_FORM} (see dlm-flock --help)"
            ));
        }
        if self.program().is_none() {
            if !self.resource.is_empty() && self.resource.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "no `flock FD` form: {NO_FD_FORM}; give a command: dlm-flock {} COMMAND (see dlm-flock --help)",
                    self.resource
                ));
            }
            return Err(
                "no command given: dlm-flock RESOURCE COMMAND [ARGUMENTS...] or dlm-flock RESOURCE -c STRING (see dlm-flock --help)".into(),
            );
        }
        Ok(())
    }

    /// The program to run and its arguments; `None` when none was given.
    pub fn program(&self) -> Option<(OsString, Vec<OsString>)> {
        if let Some(s) = &self.shell_command {
            return Some(("/bin/sh".into(), vec!["-c".into(), s.clone()]));
        }
        let (first, rest) = self.argv.split_first()?;
        Some((first.clone(), rest.to_vec()))
    }
}

/// Why flock(1)'s descriptor forms have no counterpart, in a usage error.
const NO_FD_FORM: &str = "a DLM lock belongs to the process that took it (its lockspace descriptor), not to a file descriptor, and goes when dlm-flock ends";

/// Notes, exit statuses and examples of dlm-flock.
pub const EXTRA: Extra = Extra {
    other_forms: &["[OPTIONS] RESOURCE -c STRING"],
    events: &[],
    notes: &[
        "The lock is the DLM's, not a file's: every node of the cluster that runs dlm-flock (or any DLM program) on the same RESOURCE in the same lockspace is excluded, and nothing is written to any file system. Modes other than EX and PR follow the DLM's compatibility table (NL is compatible with every mode; CR with all but EX; CW with NL, CR and CW; PR with NL, CR and PR; PW with NL and CR).",
        "The default lockspace is dlm-flock. dlm-flock creates a lockspace that does not exist yet, which needs CAP_SYS_ADMIN (root), and leaves it in place afterwards for the next user: remove it with `dlm_tool leave NAME`. Without that privilege, use a lockspace root has created (for instance with `dlm_tool join NAME`) and whose device (/dev/misc/dlm_NAME) you may open.",
        "SIGINT, SIGTERM and SIGHUP sent to dlm-flock are sent on to the command, and dlm-flock releases the lock and exits when the command ends. A signal sent to a whole process group (by the terminal, or `kill -TERM -- -PGID` as supervisors do) reaches the command once: in a terminal's foreground the command runs in dlm-flock's process group, and what the terminal sent to both is not sent again; otherwise, once the command runs, dlm-flock leaves the group it was started in to the command (or, when it leads that group, starts the command in a group of its own and passes the group's signals on to it). If dlm-flock is killed with SIGKILL, the kernel releases the lock and the command gets SIGTERM. If the lock is not had yet when such a signal ends dlm-flock, its request goes with it.",
        "As with flock(1), options go before RESOURCE, or between RESOURCE and the command; everything from the command's name on is the command's. Unlike flock(1), -c runs /bin/sh, not $SHELL.",
        "Differences from flock(1): flock(1) locks a file, and its lock belongs to an open file description that a shell can hold (the `flock FD` form: `exec 9>FILE; flock 9` locks for the rest of the script, or of a subshell), hand to the command (-F, no fork), or unlock early (-u). A DLM lock belongs to the process that took it, through its lockspace descriptor, which the command does not inherit (it is close-on-exec, so that a process the command leaves behind can never keep the lock). So dlm-flock has no FD form, no -u and no -F, and says so (exit 64) when given them: to hold a lock for a whole script or subshell, run it under dlm-flock (`dlm-flock RESOURCE sh script.sh`, or `dlm-flock RESOURCE -c '...'`); the lock goes when the command ends. flock(1)'s --fcntl has no counterpart either.",
    ],
    exit_statuses: &[
        ExitStatus {
            code: "0-255",
            meaning: "the command's own exit status",
        },
        ExitStatus {
            code: "1",
            meaning: "the lock was not had with -n or within -w (or the -E status)",
        },
        ExitStatus {
            code: "64",
            meaning: "usage error: unknown option, bad number or name, no command",
        },
        ExitStatus {
            code: "69",
            meaning: "no DLM here (no dlm module, corosync or dlm_controld)",
        },
        ExitStatus {
            code: "71",
            meaning: "any other DLM error",
        },
        ExitStatus {
            code: "77",
            meaning: "the lockspace may not be created (CAP_SYS_ADMIN) or opened",
        },
        ExitStatus {
            code: "126",
            meaning: "the command could not be run",
        },
        ExitStatus {
            code: "127",
            meaning: "the command was not found",
        },
        ExitStatus {
            code: "128+N",
            meaning: "the command was killed by signal N",
        },
    ],
    examples: &[
        Example {
            what: "Run a backup on one node of the cluster at a time:",
            command: "dlm-flock backup /usr/local/bin/backup --full",
        },
        Example {
            what: "Run a shell snippet if no other node is in it, else skip (exit 0):",
            command: "dlm-flock -n -E 0 nightly -c 'rotate-logs && prune'",
        },
        Example {
            what: "Wait at most 2.5 seconds for the lock, in the lockspace myapp:",
            command: "dlm-flock --lockspace myapp -w 2.5 config-update ./apply.sh",
        },
        Example {
            what: "Readers share the lock; a writer (-x) waits for them all:",
            command: "dlm-flock -s catalog cat /shared/catalog",
        },
        Example {
            what: "In a shell script (a pacemaker resource agent, say): take the lock or give up after 10 seconds:",
            command: "if ! dlm-flock -w 10 -E 75 vip-move -c 'ip addr add \"$VIP\" dev eth0'; then\n  echo \"another node is moving the address\" >&2\nfi",
        },
    ],
    see_also: &["flock(1)", "dlm-lock(1)", "dlm_tool(8)", "dlm_controld(8)"],
};

/// dlm-flock's full clap definition, help text included.
pub fn command() -> clap::Command {
    FlockArgs::command()
        .arg(crate::generate::arg())
        .after_long_help(EXTRA.help_text())
}

/// The arguments from a successful parse of [`command`].
///
/// # Errors
/// clap's error when the matches do not fit (they always do when they
/// come from [`command`]).
pub fn from_matches(m: &clap::ArgMatches) -> Result<FlockArgs, clap::Error> {
    FlockArgs::from_arg_matches(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{parse, Parsed};

    fn args(v: &[&str]) -> FlockArgs {
        let mut all = vec!["dlm-flock"];
        all.extend_from_slice(v);
        match parse(command(), all) {
            Parsed::Run(m) => from_matches(&m).unwrap(),
            other => panic!("{v:?}: {other:?}"),
        }
    }

    fn usage(v: &[&str]) -> String {
        let mut all = vec!["dlm-flock"];
        all.extend_from_slice(v);
        match parse(command(), all) {
            Parsed::Usage(l) => l,
            other => panic!("{v:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn modes_last_one_wins() {
        assert_eq!(args(&["r", "true"]).lock_mode(), dlm::Mode::Ex);
        assert_eq!(args(&["-s", "r", "true"]).lock_mode(), dlm::Mode::Pr);
        assert_eq!(args(&["-s", "-x", "r", "true"]).lock_mode(), dlm::Mode::Ex);
        assert_eq!(args(&["-x", "-s", "r", "true"]).lock_mode(), dlm::Mode::Pr);
        assert_eq!(args(&["-e", "r", "true"]).lock_mode(), dlm::Mode::Ex);
        assert_eq!(
            args(&["--mode", "cw", "r", "true"]).lock_mode(),
            dlm::Mode::Cw
        );
        assert_eq!(
            args(&["--mode", "CW", "-s", "r", "true"]).lock_mode(),
            dlm::Mode::Pr
        );
    }

    #[test]
    fn the_command_keeps_its_options() {
        let a = args(&["-n", "r", "ls", "-l", "-n", "--", "x"]);
        assert!(a.nonblock);
        let (p, rest) = a.program().unwrap();
        assert_eq!(p, "ls");
        assert_eq!(rest, ["-l", "-n", "--", "x"]);
        let a = args(&["r", "-c", "echo hi"]);
        let (p, rest) = a.program().unwrap();
        assert_eq!(p, "/bin/sh");
        assert_eq!(rest, ["-c", "echo hi"]);
        let a = args(&["-w", "0.5", "-E", "7", "-o", "--verbose", "r", "--", "true"]);
        assert_eq!(a.timeout, Some(Duration::from_millis(500)));
        assert_eq!(a.conflict_exit_code, 7);
        assert!(a.close && a.verbose);
        assert_eq!(a.program().unwrap().0, "true");
        assert!(args(&["r"]).program().is_none());
        assert_eq!(args(&["r", "true"]).lockspace, DEFAULT_LOCKSPACE);
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for bad in [
            &["-w", "1e30", "r", "true"][..],
            &["-w", "-1", "r", "true"],
            &["-w", "NaN", "r", "true"],
            &["-w", "inf", "r", "true"],
            &["-E", "256", "r", "true"],
            &["-E", "-1", "r", "true"],
            &["--mode", "XX", "r", "true"],
            &["--bogus", "r", "true"],
            &["--lockspace", "..", "r", "true"],
            &["--lockspace", "a b", "r", "true"],
            &["--lockspace", "plock", "r", "true"],
            &["--lockspace", "a\u{7}b", "r", "true"],
            &[],
        ] {
            let l = usage(bad);
            assert!(!l.contains('\n'), "{l}");
        }
        assert!(usage(&[&"r".repeat(65), "true"]).contains("64 bytes"));
        assert!(usage(&["r", "-c", "x", "y"]).contains("cannot be used"));
    }

    #[test]
    fn flock_forms_without_a_counterpart_are_usage_errors() {
        let why = |v: &[&str]| args(v).check().unwrap_err();
        assert!(why(&["-u", "r", "true"]).starts_with("-u (unlock)"));
        assert!(why(&["-F", "r", "true"]).starts_with("-F (no fork)"));
        assert!(why(&["9"]).starts_with("no `flock FD` form"));
        assert!(why(&["r"]).starts_with("no command given"));
        for e in [why(&["-u", "r", "true"]), why(&["9"]), why(&["r"])] {
            assert!(
                !e.contains('\n') && e.ends_with("(see dlm-flock --help)"),
                "{e}"
            );
        }
        assert!(
            args(&["9", "true"]).check().is_ok(),
            "a number is a name with a command"
        );
        assert!(args(&["r", "-c", "x"]).check().is_ok());
    }

    #[test]
    fn help_describes_every_option() {
        let mut cmd = command();
        // Words as they are, whatever the wrapping.
        let help = cmd.render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for needle in [
            "--shared",
            "--exclusive",
            "--nonblock",
            "--timeout",
            "--conflict-exit-code",
            "--close",
            "--command",
            "--verbose",
            "--lockspace",
            "--mode",
            "--help",
            "--version",
            "Examples:",
            "Exit status:",
            "CAP_SYS_ADMIN",
            "does nothing",
            "Differences from flock(1)",
            "dlm-flock has no FD form, no -u and no -F",
        ] {
            assert!(help.contains(needle), "{needle} missing from --help");
        }
    }
}
