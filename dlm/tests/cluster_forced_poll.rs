//! A forced release by another process, seen by a poll-mode program that
//! uses no future and no blocking wait: only a lock's raw blocking
//! receiver. The receiver hears of the loss (the crate's watchdog, started
//! by a lock that asks for notifications, tells it). Its own test binary:
//! the watchdog is process-wide, and any future of another test would
//! start it.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::process::Command;
use std::time::{Duration, Instant};

/// Set in the child process: the lockspace to release by force.
const RELEASER: &str = "DLM_TEST_FORCE_RELEASE_POLL";

/// The child: releases the lockspace by force with libdlm's own calls.
fn releaser(name: &str) -> ! {
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(30));
        std::process::exit(9);
    });
    let cname = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid C string; the handle is released once, not used after.
    let code = unsafe {
        let h = dlm_sys::dlm_open_lockspace(cname.as_ptr());
        if h.is_null() {
            2
        } else if dlm_sys::dlm_release_lockspace(cname.as_ptr(), h, 1) != 0 {
            3
        } else {
            0
        }
    };
    std::process::exit(code);
}

#[test]
fn a_poll_mode_receiver_hears_of_a_forced_release() {
    if let Ok(name) = std::env::var(RELEASER) {
        releaser(&name);
    }
    require_cluster!();
    let name = common::ls_name("forcedrx");
    let ls = Lockspace::builder(&name)
        .poll_mode()
        .create_exclusive()
        .unwrap();
    let g = ls
        .lock_with("r", Mode::Ex, LockOptions::new().notify_blocking())
        .unwrap();
    let rx = g.blocking().unwrap().clone();
    let start = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_poll_mode_receiver_hears_of_a_forced_release",
            "--test-threads=1",
        ])
        .env(RELEASER, &name)
        .spawn()
        .unwrap();
    // Nothing dispatches, nothing waits in the crate: only the receiver.
    let heard = rx.recv_timeout(Duration::from_secs(5));
    let took = start.elapsed();
    println!("the receiver heard {heard:?} {took:?} after the release began");
    match heard {
        Ok(b) => assert!(b.lockspace_gone(), "a notification, not the loss: {b:?}"),
        Err(e) => panic!("the raw receiver heard nothing of the forced release: {e}"),
    }
    assert!(!g.is_held());
    assert!(matches!(ls.lock("r2", Mode::Ex), Err(Error::LockspaceGone)));
    drop(g);
    drop(ls);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the other process's forced release did not return after the handle closed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(status.success(), "the forced release failed: {status}");
}
