//! The end signals, SIGINT, SIGTERM and SIGHUP, as the tools take them.
//!
//! - [`forward_to_command`] (dlm-flock): until a command runs, a signal
//!   ends the tool as it would have without a handler (the kernel then
//!   removes the tool's waiting request with its lockspace descriptor);
//!   while the command runs, each signal sent to the tool (by `kill`) is
//!   sent on to the command, and the tool waits for the command to end.
//!   A signal sent to a whole process group reaches the command once (see
//!   [`Group`]): a signal the terminal sent to its foreground process
//!   group is not sent again (the command, in that group too, had it
//!   already); otherwise the tool and the command are never in the same
//!   group while the command runs.
//! - [`catch`] (dlm-lock `--until-signal`): a signal is recorded, for the
//!   holder to see ([`caught`]) and release.
//!
//! The handlers only read and write atomics and call `kill`, `raise` and
//! `sigaction`, which are async-signal-safe.

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU8, Ordering};

/// The signals handled.
pub const END_SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

const NO_COMMAND: i32 = 0;
const SPAWNING: i32 = -1;
const ENDED: i32 = -2;

const FORWARD: u8 = 1;
const CATCH: u8 = 2;

/// What the handler does.
static HOW: AtomicU8 = AtomicU8::new(0);
/// The command's pid, or one of the states above.
static COMMAND: AtomicI32 = AtomicI32::new(NO_COMMAND);
/// Whether the command leads a process group of its own, which forwarded
/// signals go to (see [`Group`]).
static OWN_GROUP: AtomicBool = AtomicBool::new(false);
/// A signal that came while the command was being started.
static PENDING: AtomicI32 = AtomicI32::new(0);
/// The last signal [`catch`] caught.
static CAUGHT: AtomicI32 = AtomicI32::new(0);

/// Ends the process by `sig` as if it had no handler: the parent sees the
/// death by that signal.
fn die_by(sig: libc::c_int) {
    // SAFETY: sigaction with a zeroed struct and SIG_DFL restores the
    // default action; raise() sends the signal to this thread, where it
    // is delivered (killing the process) once this handler returns.
    unsafe {
        let mut dfl: libc::sigaction = std::mem::zeroed();
        dfl.sa_sigaction = libc::SIG_DFL;
        libc::sigaction(sig, &dfl, std::ptr::null_mut());
        libc::raise(sig);
    }
}

/// Sends `sig` to the command `pid`: to its process group when it leads
/// one of its own (as a signal to the tool's group would have reached
/// every process of it), else to it alone.
fn send(pid: i32, sig: libc::c_int) {
    let target = if OWN_GROUP.load(Ordering::SeqCst) {
        -pid
    } else {
        pid
    };
    // SAFETY: kill has no memory preconditions.
    unsafe { libc::kill(target, sig) };
}

/// Sends a pending signal to the command `pid`, once.
fn flush_pending(pid: i32) {
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        send(pid, sig);
    }
}

extern "C" fn on_signal(sig: libc::c_int, info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {
    if HOW.load(Ordering::SeqCst) == CATCH {
        CAUGHT.store(sig, Ordering::SeqCst);
        return;
    }
    let from_terminal = !info.is_null() && {
        // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO
        // handler.
        unsafe { (*info).si_code == libc::SI_KERNEL }
    };
    match COMMAND.load(Ordering::SeqCst) {
        NO_COMMAND => die_by(sig),
        ENDED => {}
        SPAWNING => {
            PENDING.store(sig, Ordering::SeqCst);
            // The command may have been recorded meanwhile.
            let pid = COMMAND.load(Ordering::SeqCst);
            if pid > 0 {
                flush_pending(pid);
            }
        }
        pid => {
            if !from_terminal {
                // pid is the command's, not yet reaped (COMMAND turns
                // ENDED before the tool reaps it).
                send(pid, sig);
            }
        }
    }
}

fn install(how: u8) {
    HOW.store(how, Ordering::SeqCst);
    for sig in END_SIGNALS {
        // SAFETY: the handler is async-signal-safe (atomics, kill, raise,
        // sigaction); the structs are fully initialised.
        unsafe {
            // A signal ignored by whoever started the tool (as shells do
            // for background jobs) stays ignored, for the command too.
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(sig, std::ptr::null(), &mut old);
            if old.sa_sigaction == libc::SIG_IGN {
                continue;
            }
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal
                as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void)
                as usize;
            sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// Installs the forwarding handlers (dlm-flock). Until [`spawning`] is
/// called, an end signal ends the process by that signal.
pub fn forward_to_command() {
    install(FORWARD);
}

/// Where the command runs, so that a signal sent to a whole process group
/// (`kill -TERM -- -PGID`, as supervisors do) reaches it once: either it
/// gets it directly and the tool does not (so nothing is forwarded), or
/// the tool gets it alone and forwards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// The tool's own group, which is the terminal's foreground: job
    /// control (Ctrl-C, Ctrl-Z) works as for any command; a signal from
    /// the terminal reached both and is not forwarded.
    Shared,
    /// The group the tool was started in, which the tool leaves once the
    /// command runs: a signal to that group reaches the command (and what
    /// it started) and not the tool; a signal sent to the tool alone is
    /// forwarded to the command alone.
    ToolLeaves,
    /// A group of the command's own: the tool leads its group (a shell job
    /// in the background, a service), so it cannot leave it; a signal to
    /// it reaches the tool alone, which forwards it to the command's group.
    Command,
}

impl Group {
    /// The arrangement for a tool in this process's situation: see the
    /// variants.
    pub fn choose() -> Group {
        // SAFETY: getpgrp, getpid have no preconditions; tcgetpgrp reads a
        // descriptor that is open (or fails with EBADF/ENOTTY).
        let (pgrp, pid) = unsafe { (libc::getpgrp(), libc::getpid()) };
        let foreground = [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO]
            .into_iter()
            // SAFETY: see above.
            .any(|fd| unsafe { libc::tcgetpgrp(fd) } == pgrp);
        if foreground {
            Group::Shared
        } else if pgrp != pid {
            Group::ToolLeaves
        } else {
            Group::Command
        }
    }
}

/// The command is about to be started (in `group`): signals from now on
/// are kept for it.
pub fn spawning(group: Group) {
    OWN_GROUP.store(group == Group::Command, Ordering::SeqCst);
    COMMAND.store(SPAWNING, Ordering::SeqCst);
}

/// The command runs as `pid`: kept signals are sent to it now, later ones
/// as they come.
pub fn started(pid: u32) {
    let pid = i32::try_from(pid).unwrap_or(i32::MAX);
    COMMAND.store(pid, Ordering::SeqCst);
    flush_pending(pid);
}

/// The command could not be started: a signal kept for it ends the
/// process now; later ones too.
pub fn not_started() {
    COMMAND.store(NO_COMMAND, Ordering::SeqCst);
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        die_by(sig);
    }
}

/// The command has ended (not yet reaped): signals are no longer sent to
/// it.
pub fn ended() {
    COMMAND.store(ENDED, Ordering::SeqCst);
}

/// Installs the catching handlers (dlm-lock `--until-signal`).
pub fn catch() {
    install(CATCH);
}

/// The last end signal caught since [`catch`], if any.
pub fn caught() -> Option<libc::c_int> {
    match CAUGHT.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// The conventional name of an end signal (`INT`, `TERM`, `HUP`), or its
/// number.
pub fn name(sig: libc::c_int) -> String {
    match sig {
        libc::SIGINT => "INT".into(),
        libc::SIGTERM => "TERM".into(),
        libc::SIGHUP => "HUP".into(),
        libc::SIGKILL => "KILL".into(),
        s => s.to_string(),
    }
}
