//! poll-waiter LOCKSPACE RESOURCE: an untimed future on a poll-mode
//! handle, driven by the program's own loop, for
//! ci/scenarios/06-faults.sh (issue 15, defect 5: such a future must end
//! with `LockspaceStopped` when dlm_controld dies, not wait for ever).
//!
//! Joins LOCKSPACE in poll mode, prints `requesting EX`, and awaits
//! `lock_async(RESOURCE, Ex)` with no timeout (`pending` once its first
//! poll has handed the request over). Its loop is what a
//! single-threaded program without a runtime writes: `poll(2)` on the
//! handle's descriptor (100 ms at most), `Lockspace::dispatch` when it is
//! readable, and a poll of the future only when its waker was called (a
//! wake-up the crate does not send is never made up for by the loop).
//! Then prints `granted EX` (and releases the lock) or `error: MESSAGE`,
//! and exits 0; `dispatch-failed: MESSAGE` and exit status 2 if
//! `dispatch` fails. No blocking call of the crate is made. Each line
//! starts with the Unix time, as `dlm-lock -t` prints it.

use dlm::{Lockspace, Mode};
use std::future::Future;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

/// Prints `line` with a time stamp, at once.
fn say(line: &str) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{now:.6} {line}");
    let _ = out.flush();
}

/// A waker that sets a flag the loop reads.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::Release);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: poll-waiter LOCKSPACE RESOURCE");
        std::process::exit(64);
    }
    let ls = Lockspace::builder(&args[1])
        .poll_mode()
        .join()
        .expect("join in poll mode");
    let flag = Arc::new(Flag(AtomicBool::new(true)));
    let waker = Waker::from(flag.clone());
    let mut cx = Context::from_waker(&waker);
    say("requesting EX");
    let mut f = Box::pin(ls.lock_async(args[2].as_str(), Mode::Ex));
    let mut first = true;
    let answer = loop {
        if flag.0.swap(false, Ordering::AcqRel) {
            if let Poll::Ready(answer) = f.as_mut().poll(&mut cx) {
                break answer;
            }
            if first {
                // Handed to the handle's worker, which writes it.
                say("pending");
                first = false;
            }
        }
        let mut pfd = libc::pollfd {
            fd: ls.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, 100) };
        if ready > 0 {
            if let Err(e) = ls.dispatch() {
                say(&format!("dispatch-failed: {e}"));
                std::process::exit(2);
            }
        }
    };
    drop(f);
    match answer {
        Ok(guard) => {
            say("granted EX");
            // Released in the background (the handle's worker) as the
            // guard drops; the handle's close waits for nothing more.
            drop(guard);
        }
        Err(e) => say(&format!("error: {e}")),
    }
}
