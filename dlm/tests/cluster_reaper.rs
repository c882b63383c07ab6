//! The reaper and the lockspace's liveness against the real DLM: one
//! handle's background releases never wait on another's (a poll-mode
//! handle nobody dispatches included); closing a poll-mode handle with a
//! release in flight frees its locks at once. Each checked from a second
//! handle.

mod common;

use common::can_take;
use dlm::{DropBehavior, Error, Lockspace, Mode, Release};
use std::time::{Duration, Instant};

/// Waits until `f()` holds, for at most `limit`; how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    None
}

#[test]
fn a_poll_mode_handle_nobody_dispatches_holds_up_no_other_release() {
    require_cluster!();
    let name = common::ls_name("reaper_poll");
    let obs = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let polled = Lockspace::builder(&name).poll_mode().open().unwrap();
    let threaded = Lockspace::open(&name).unwrap();
    for round in 0..3 {
        // The poll-mode handle's blocking call dispatches its own answer;
        // after that nobody dispatches it.
        let mut stuck = polled.lock("stuck", Mode::Ex).unwrap();
        stuck.set_drop_behavior(DropBehavior::Background);
        drop(stuck);
        // Its unlock is written (the kernel unlocks a lock mastered here at
        // once), its answer unread: the reaper waits for it without
        // waiting.
        std::thread::sleep(Duration::from_millis(50));
        // Another handle's background release is not held up behind it.
        let mut g = threaded.lock("free", Mode::Ex).unwrap();
        g.set_drop_behavior(DropBehavior::Background);
        drop(g);
        let took = within(Duration::from_secs(5), || can_take(&obs, "free", Mode::Ex));
        println!("round {round}: another handle's background release done after {took:?}");
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(2)),
            "round {round}: another handle's release waited behind a poll-mode handle: {took:?}"
        );
        // Dispatching now completes the poll-mode release.
        let done = within(Duration::from_secs(5), || {
            polled.dispatch().unwrap();
            can_take(&obs, "stuck", Mode::Ex)
        });
        assert!(
            done.is_some(),
            "round {round}: the dispatched release never completed"
        );
    }
    // A poll-mode handle with a release whose answer nobody reads closes
    // at once when dropped: no reaper keeps it open (the kernel unlocks
    // its locks at close), so the lockspace can be released right after.
    let mut g = polled.lock("unread", Mode::Ex).unwrap();
    g.set_drop_behavior(DropBehavior::Background);
    drop(g);
    std::thread::sleep(Duration::from_millis(50));
    drop(polled);
    drop(threaded);
    let start = Instant::now();
    let mut obs = obs;
    loop {
        match obs.release(Release::IfUnused) {
            Ok(()) => break,
            Err(e)
                if matches!(e.error(), Error::HandlesOpen)
                    && start.elapsed() < Duration::from_secs(2) =>
            {
                obs = e.into_lockspace().expect("given back");
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!(
                "{name} could not be released {:?} after its handles were dropped: {}",
                start.elapsed(),
                e.error()
            ),
        }
    }
    println!(
        "lockspace released {:?} after the handles were dropped",
        start.elapsed()
    );
}

/// A guard dropped in the background right before its handle: the release
/// still happens (the handle's worker keeps the libdlm handle open until it
/// is done), so a persistent lock is unlocked, not orphaned, and a value
/// set under EX is published. Threaded and poll mode.
#[test]
fn a_background_release_outlives_its_handle() {
    require_cluster!();
    let name = common::ls_name("linger");
    let obs = Lockspace::create_exclusive(&name, 0o600).unwrap();
    // Keeps the resources' value blocks alive.
    let keepers: Vec<_> = (0..2)
        .map(|i| obs.lock(format!("m{i}"), Mode::Nl).unwrap())
        .collect();
    for (i, polled) in [false, true].into_iter().enumerate() {
        let res = format!("m{i}");
        let b = Lockspace::builder(&name);
        let h = if polled { b.poll_mode() } else { b }.open().unwrap();
        let mut g = h
            .lock_with(&res, Mode::Ex, dlm::LockOptions::new().persistent().lvb())
            .unwrap();
        g.set_lvb(format!("published {i}").as_bytes()).unwrap();
        g.set_drop_behavior(dlm::DropBehavior::Background);
        drop(g);
        drop(h);
        let freed = within(Duration::from_secs(5), || can_take(&obs, &res, Mode::Ex));
        assert!(
            freed.is_some(),
            "polled {polled}: the lock stayed held (orphaned?) after its handle was dropped"
        );
        let r = obs
            .lock_with(&res, Mode::Pr, dlm::LockOptions::new().lvb())
            .unwrap();
        let v = r.lvb().expect("read");
        assert!(
            v.valid && v.bytes.starts_with(format!("published {i}").as_bytes()),
            "polled {polled}: the value set before the drop was not published: {v:?}"
        );
        r.unlock().unwrap();
    }
    drop(keepers);
    if let Err(e) = obs.release(dlm::Release::IfUnused) {
        panic!("locks left behind in {name}: {}", e.error());
    }
}
