//! A forced release by another process, seen by a poll-mode program that
//! uses no future and no blocking wait: only a lock's raw blocking
//! receiver. The receiver hears of the loss (the crate's watchdog, started
//! by a lock that asks for notifications, tells it). Its own test binary:
//! the watchdog is process-wide, and any future of another test would
//! start it.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::time::{Duration, Instant};

/// Set in the child process: the lockspace to release by force.
const RELEASER: &str = "DLM_TEST_FORCE_RELEASE_POLL";

#[test]
fn a_poll_mode_receiver_hears_of_a_forced_release() {
    common::force_release_child(RELEASER);
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
    let mut child = common::spawn_force_release(
        RELEASER,
        "a_poll_mode_receiver_hears_of_a_forced_release",
        &name,
    );
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
    let status = common::wait_child(
        &mut child,
        start,
        Duration::from_secs(20),
        "the other process's forced release did not return after the handle closed",
    );
    assert!(status.success(), "the forced release failed: {status}");
}
