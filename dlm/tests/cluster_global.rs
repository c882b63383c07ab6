//! A lockspace call the kernel blocks holds up no other lockspace call of
//! the process (issue 15, defect 6), against the real DLM.
//!
//! A lockspace stopped for recovery (here stopped by hand, as
//! dlm_controld stops it when a node fails: `0` written to its sysfs
//! `control` file) blocks the close of a handle: the kernel clears the
//! handle's locks only once recovery is done. While one
//! thread of this process is blocked so, another thread creates, opens,
//! uses, releases and leaves other lockspaces and asks for the kernel's
//! version; each round must finish within a bound. They did not while the
//! crate held its process-wide lock across create, open, close and
//! release. Then the lockspace is started again (`1`) and the close
//! completes.
//!
//! Not covered, because the kernel serialises it itself: a release that
//! waits for another process's handles holds the kernel's own lockspace
//! mutex, so every create and release on the node waits for it.

mod common;

use dlm::{Lockspace, Mode, Release};
use std::time::{Duration, Instant};

fn control(name: &str, value: &str) {
    let path = format!("/sys/kernel/dlm/{name}/control");
    std::fs::write(&path, value).unwrap_or_else(|e| panic!("write {value} to {path}: {e}"));
}

#[test]
fn a_blocked_close_holds_up_no_other_lockspace_call() {
    require_cluster!();
    let name = common::ls_name("blocked");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let other_handle = Lockspace::open(&name).unwrap();
    control(&name, "0");
    // If the calls below wait behind the blocked close, nothing below
    // would start the lockspace again: start it after 20 s whatever
    // happens, so that the test fails rather than hangs.
    {
        let name = name.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(20));
            let _ = std::fs::write(format!("/sys/kernel/dlm/{name}/control"), "1");
        });
    }
    let closed_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let closer = {
        let closed_at = closed_at.clone();
        std::thread::spawn(move || {
            drop(other_handle);
            *closed_at.lock().unwrap() = Some(Instant::now());
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let blocked = closed_at.lock().unwrap().is_none();
    if !blocked {
        control(&name, "1");
        panic!("the close did not block: the test proves nothing");
    }
    // Meanwhile: every other kind of lockspace call, on other lockspaces.
    let other = common::ls_name("unblocked");
    let mut slowest = Duration::ZERO;
    for round in 0..5 {
        let start = Instant::now();
        let a = Lockspace::create(&other, 0o600).unwrap();
        let b = Lockspace::open(&other).unwrap();
        let g = b.lock("r", Mode::Ex).unwrap();
        assert!(!common::can_take(&a, "r", Mode::Pr));
        drop(g);
        dlm::kernel_version().unwrap();
        drop(b);
        a.release(Release::IfUnused).unwrap();
        let third = common::ls_name("unblocked3");
        Lockspace::create(&third, 0o600).unwrap();
        dlm::leave(&third, Release::IfUnused).unwrap();
        let took = start.elapsed();
        println!("round {round}: create, open, lock, version, close, release, leave in {took:?}");
        slowest = slowest.max(took);
    }
    let still_blocked = closed_at.lock().unwrap().is_none();
    control(&name, "1");
    assert!(
        slowest < Duration::from_secs(2),
        "lockspace calls waited behind a blocked close: {slowest:?}"
    );
    assert!(
        still_blocked,
        "the close ended early: the test proves nothing"
    );
    // Started again: the close completes, and the lockspace works.
    closer.join().unwrap();
    let g = ls.lock("held", Mode::Ex).unwrap();
    g.unlock().unwrap();
    ls.release(Release::IfUnused).unwrap();
}
