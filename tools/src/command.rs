//! Running dlm-flock's command while the lock is held.
//!
//! - The command does not inherit the DLM's descriptors (they are marked
//!   close-on-exec first): the lock belongs to the tool alone and goes
//!   when the tool unlocks it or ends, never later because of a process
//!   the command left behind. (flock(1)'s `-o` has nothing left to do.)
//! - The end signals given to the tool are sent on to the command, and a
//!   signal sent to the whole process group reaches it once (see
//!   [`crate::signals`]); the tool waits for the command to end, whatever
//!   ends it.
//! - Should the tool itself be killed (SIGKILL) while the command runs,
//!   the kernel drops the lock with the tool's descriptor and the command
//!   gets SIGTERM (`PR_SET_PDEATHSIG`): it would otherwise run on without
//!   the lock.

use crate::signals;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus};

/// Exit status when the command was not found (as shells and flock(1)).
pub const NOT_FOUND: u8 = 127;
/// Exit status when the command was found but could not be run.
pub const CANNOT_RUN: u8 = 126;

/// Marks every open descriptor of a DLM device (a lockspace's
/// `/dev/misc/dlm_*`, the control device) close-on-exec.
pub fn dlm_fds_close_on_exec() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for entry in dir.flatten() {
        let Some(fd) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<libc::c_int>().ok())
        else {
            continue;
        };
        let Ok(target) = std::fs::read_link(entry.path()) else {
            continue;
        };
        let t = target.to_string_lossy();
        if t.starts_with("/dev/misc/dlm") || t.starts_with("/dev/dlm") {
            // SAFETY: fcntl on a descriptor number only reads and sets its
            // flags; a descriptor closed meanwhile gives EBADF, ignored.
            unsafe {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
        }
    }
}

/// How the command ended, or why it did not run.
#[derive(Debug)]
pub enum Outcome {
    /// It ran and ended so.
    Ended(ExitStatus),
    /// It could not be started.
    NotStarted(io::Error),
}

impl Outcome {
    /// The tool's exit status for this outcome: the command's own; 128 +
    /// the signal that killed it; [`NOT_FOUND`] or [`CANNOT_RUN`].
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ended(s) => match (s.code(), s.signal()) {
                (Some(c), _) => (c & 0xff) as u8,
                (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
                (None, None) => CANNOT_RUN,
            },
            Outcome::NotStarted(e) if e.kind() == io::ErrorKind::NotFound => NOT_FOUND,
            Outcome::NotStarted(_) => CANNOT_RUN,
        }
    }
}

/// Runs `program` with `args`, forwarding end signals, and waits for it.
/// [`signals::forward_to_command`] must have been called.
pub fn run(program: &OsStr, args: &[OsString]) -> Outcome {
    dlm_fds_close_on_exec();
    // SAFETY: getpid has no preconditions.
    let tool = unsafe { libc::getpid() };
    let mut cmd = Command::new(program);
    cmd.args(args);
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only async-signal-safe functions (prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            );
            // The tool died before the prctl: no SIGTERM will come.
            if libc::getppid() != tool {
                libc::_exit(128 + libc::SIGTERM);
            }
            Ok(())
        })
    };
    let group = signals::Group::choose();
    if group == signals::Group::Command {
        cmd.process_group(0);
    }
    signals::spawning(group);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            signals::not_started();
            return Outcome::NotStarted(e);
        }
    };
    if group == signals::Group::ToolLeaves {
        // From here on a signal to the group the tool was started in
        // reaches the command, not the tool. (One sent between the fork
        // and this call reaches both, and the command gets it twice: a
        // window of the length of a fork and exec.)
        // SAFETY: setpgid on this process; it is not a group leader, so it
        // may make a group of its own.
        unsafe { libc::setpgid(0, 0) };
    }
    signals::started(child.id());
    wait_unreaped(child.id());
    signals::ended();
    match child.wait() {
        Ok(status) => Outcome::Ended(status),
        Err(e) => Outcome::NotStarted(e),
    }
}

/// Waits until process `pid` has ended, without reaping it (so that its
/// pid cannot be reused while a signal may still be sent to it).
fn wait_unreaped(pid: u32) {
    let pid: libc::id_t = pid;
    loop {
        // SAFETY: info is a valid siginfo_t to fill.
        let rc = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(libc::P_PID, pid, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}
