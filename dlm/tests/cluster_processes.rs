//! What crosses processes: an orphan survives its process's exit and is
//! adopted by another process; a lockspace released by force by another
//! process ends this one's waits. The tests run their own executable again
//! as the other process.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "DLM_TEST_ORPHAN_CHILD";
const RELEASER: &str = "DLM_TEST_RELEASER_CHILD";

#[test]
fn orphan_survives_process_exit_and_is_adopted() {
    if let Ok(name) = std::env::var(CHILD) {
        // The child: take a persistent EX lock, write the LVB, leave the
        // lock behind and exit without unlocking.
        let ls = Lockspace::open(&name).unwrap();
        let keeper = ls
            .lock_with("lvbkeep", Mode::Nl, LockOptions::new().persistent())
            .unwrap();
        keeper.orphan().unwrap();
        let g = ls
            .lock_with("orphaned", Mode::Ex, LockOptions::new().persistent())
            .unwrap();
        println!("child holds lock {:#x}", g.lkid());
        g.orphan().unwrap();
        std::process::exit(0);
    }
    require_cluster!();
    let name = common::ls_name("orphproc");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "orphan_survives_process_exit_and_is_adopted",
            "--nocapture",
        ])
        .env(CHILD, &name)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("child holds lock"));
    // The child is gone; its lock is not.
    assert!(matches!(
        ls.try_lock("orphaned", Mode::Cr),
        Err(Error::WouldBlock)
    ));
    let adopted = ls
        .adopt_orphan("orphaned", Mode::Ex, LockOptions::new())
        .unwrap();
    assert!(adopted.is_persistent());
    // Adopted: it is ours now, and unlocks like any other lock.
    let other = Lockspace::open(&name).unwrap();
    assert!(matches!(
        other.try_lock("orphaned", Mode::Cr),
        Err(Error::WouldBlock)
    ));
    adopted.unlock().unwrap();
    other
        .try_lock("orphaned", Mode::Ex)
        .unwrap()
        .unlock()
        .unwrap();
    ls.adopt_orphan("lvbkeep", Mode::Nl, LockOptions::new())
        .unwrap()
        .unlock()
        .unwrap();
    drop((ls, other));
    dlm::leave(&name, Release::IfUnused).expect("locks left behind");
}

#[test]
fn forced_release_by_another_process_ends_waits() {
    if let Ok(name) = std::env::var(RELEASER) {
        // The other process: release the lockspace by force. The kernel
        // finishes only once the test process has closed its handles.
        dlm::leave(&name, Release::Force).unwrap();
        println!("released");
        std::process::exit(0);
    }
    require_cluster!();
    let name = common::ls_name("gone");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let holder = ls.lock("held", Mode::Ex).unwrap();
    let start = Instant::now();
    let (result, releaser) = std::thread::scope(|s| {
        // A waiter that would wait for ever: the lock is never unlocked.
        let waiter = s.spawn(|| ls.lock("held", Mode::Ex));
        std::thread::sleep(Duration::from_millis(300));
        let releaser = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "forced_release_by_another_process_ends_waits",
                "--nocapture",
            ])
            .env(RELEASER, &name)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        (waiter.join().unwrap(), releaser)
    });
    assert!(matches!(result, Err(Error::LockspaceGone)), "{result:?}");
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "took {:?}",
        start.elapsed()
    );
    assert!(!ls.is_alive());
    // The holder's unlock fails or succeeds, but returns; then closing our
    // handles lets the other process's release finish.
    let _ = holder.unlock();
    drop(ls);
    let out = releaser.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("released"));
    assert!(matches!(
        Lockspace::open(&name),
        Err(Error::LockspaceNotFound)
    ));
}
