//! The end signals, SIGINT, SIGTERM and SIGHUP, as the tools take them.
//!
//! - [`forward_to_command`] (dlm-flock): until a command runs, a signal
//!   ends the tool as it would have without a handler (the kernel then
//!   removes the tool's waiting request with its lockspace descriptor);
//!   while the command runs, each signal sent to the tool (by `kill`) is
//!   sent on to the command, and the tool waits for the command to end.
//!   A signal the terminal sent to its foreground process group is not
//!   sent again: the command, in that group too, had it already.
//! - [`catch`] (dlm-lock `--until-signal`): a signal is recorded, for the
//!   holder to see ([`caught`]) and release.
//!
//! The handlers only read and write atomics and call `kill`, `raise` and
//! `sigaction`, which are async-signal-safe.

use std::sync::atomic::{AtomicI32, AtomicU8, Ordering};

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

/// Sends a pending signal to the command `pid`, once.
fn flush_pending(pid: i32) {
    let sig = PENDING.swap(0, Ordering::SeqCst);
    if sig != 0 {
        // SAFETY: kill has no memory preconditions.
        unsafe { libc::kill(pid, sig) };
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
                // SAFETY: pid is the command's, not yet reaped (COMMAND
                // turns ENDED before the tool reaps it).
                unsafe { libc::kill(pid, sig) };
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

/// The command is about to be started: signals from now on are kept for
/// it.
pub fn spawning() {
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
