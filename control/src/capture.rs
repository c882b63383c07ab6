//! Reading what `dlmc_print_status` prints: the library's only way to give
//! the daemon's status is `printf` to the C `stdout`.
//!
//! The call runs in a child process (`fork`) whose C `stdout` is a fresh
//! `FILE` on a pipe; the parent reads the pipe to its end and reaps the
//! child. The calling process's own `stdout` (descriptor and C stream) is
//! never touched, so nothing another thread prints is lost or captured.
//!
//! After `fork` of a multi-threaded process only the forking thread
//! exists in the child, and any lock another thread held stays held. The
//! child therefore never touches the parent's C `stdout` stream (whose
//! lock may be held): it opens a new stream with `fdopen`. It then runs
//! `dlmc_print_status` (socket calls, `malloc`, `printf` to the new
//! stream: glibc makes `malloc` and its stream list usable in a fork
//! child) and leaves with `_exit`, running no atexit handler and no Rust
//! code that could take a lock.

use crate::error::{Error, Result};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

extern "C" {
    /// glibc's C standard output stream (`<stdio.h>`'s `stdout`, a global
    /// variable that `printf` reads on each call).
    static mut stdout: *mut libc::FILE;
}

/// Exit status of the child when `fdopen` failed.
const NO_STREAM: i32 = 126;

/// Runs `dlmc_print_status(flags)` and returns what it printed.
///
/// # Errors
/// [`Error::NotRunning`] if the library could not reach `dlm_controld`;
/// [`Error::Io`] if the pipe, `fork` or `waitpid` failed.
pub(crate) fn print_status(flags: u32) -> Result<String> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error().into());
    }
    // SAFETY: pipe2 succeeded: both descriptors are new and owned by
    // nothing else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };

    // SAFETY: the child runs only `child`, which calls what is usable
    // after fork in a multi-threaded process (see the module docs) and
    // ends with _exit; the parent goes on normally.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error().into());
    }
    if pid == 0 {
        child(write_end.as_raw_fd(), flags);
    }
    drop(write_end);

    let mut text = Vec::new();
    let read = File::from(read_end).read_to_end(&mut text);
    let status = reap(pid);
    read?;
    let code = status?;
    match code {
        Some(0) => Ok(String::from_utf8_lossy(&text).into_owned()),
        Some(NO_STREAM) => Err(Error::Io(io::Error::other(
            "dlmc_print_status: could not open a stream on the pipe",
        ))),
        Some(errno) => Err(Error::from_query(-1, errno, Error::Daemon { code: errno })),
        // The child was killed by a signal.
        None => Err(Error::Io(io::Error::other(
            "dlmc_print_status: the child process was killed",
        ))),
    }
}

/// The child's side: prints the status into the pipe and exits with 0, or
/// with the `errno` of the failure (1..=125), never returning.
fn child(fd: libc::c_int, flags: u32) -> ! {
    // SAFETY: `fd` is the pipe's open write end; "w" is a valid
    // NUL-terminated mode.
    let stream = unsafe { libc::fdopen(fd, c"w".as_ptr()) };
    if stream.is_null() {
        // SAFETY: _exit ends the child at once.
        unsafe { libc::_exit(NO_STREAM) };
    }
    // SAFETY: only this thread exists in the child; `stdout` is glibc's
    // global stream pointer and `stream` a valid open stream.
    unsafe { stdout = stream };
    // SAFETY: __errno_location is this thread's errno.
    unsafe { *libc::__errno_location() = 0 };
    // SAFETY: dlmc_print_status takes only the flags; it prints to the
    // stream just installed.
    let rv = unsafe { dlmcontrol_sys::dlmc_print_status(flags) };
    // SAFETY: as above.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: `stream` is open; flushing writes its buffer to the pipe.
    unsafe { libc::fflush(stream) };
    let code = if rv >= 0 {
        0
    } else if (1..NO_STREAM).contains(&errno) {
        errno
    } else {
        libc::ECONNREFUSED
    };
    // SAFETY: _exit ends the child without atexit handlers.
    unsafe { libc::_exit(code) }
}

/// Waits for the child; its exit code, or `None` if a signal ended it.
fn reap(pid: libc::pid_t) -> Result<Option<i32>> {
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a live int; `pid` is our own child.
        let rv = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rv == pid {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            // SIGCHLD ignored by the program: the child was reaped by the
            // kernel; its output, read to the end, is all there is.
            Some(libc::ECHILD) => return Ok(Some(0)),
            _ => return Err(e.into()),
        }
    }
    if libc::WIFEXITED(status) {
        Ok(Some(libc::WEXITSTATUS(status)))
    } else {
        Ok(None)
    }
}
