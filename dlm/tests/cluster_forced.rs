//! A lockspace released by force by another process, against the real
//! DLM: the handle of this process sees it within the bound and grants
//! nothing more, its guards say so, and its waits end.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::time::{Duration, Instant};

/// Set in the child process: the lockspace to release by force.
const RELEASER: &str = "DLM_TEST_FORCE_RELEASE";

/// Waits until `f()` holds, for at most `limit`; how long it took.
fn within(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    None
}

#[test]
fn a_lockspace_released_by_force_elsewhere_grants_nothing_more() {
    common::force_release_child(RELEASER);
    require_cluster!();
    for polled in [false, true] {
        let name = common::ls_name(if polled { "forcedp" } else { "forced" });
        let ls = Lockspace::builder(&name);
        let ls = if polled { ls.poll_mode() } else { ls }
            .create_exclusive()
            .unwrap();
        let mut g = ls
            .lock_with("r", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
        assert!(g.is_held() && ls.is_alive());
        // Waits already under way when the release comes: a timed and an
        // untimed blocking lock, and a timed and an untimed future, all on
        // the resource the guard holds (the same handle: they wait).
        let waits: Vec<_> = (0..4)
            .map(|kind| {
                let ls = ls.clone();
                std::thread::spawn(move || {
                    let timed = LockOptions::new().timeout(Duration::from_secs(30));
                    let r = match kind {
                        0 => ls.lock_with("r", Mode::Ex, timed).map(drop),
                        1 => ls.lock("r", Mode::Ex).map(drop),
                        2 => futures::executor::block_on(ls.lock_with_async("r", Mode::Ex, timed))
                            .map(drop),
                        _ => futures::executor::block_on(ls.lock_async("r", Mode::Ex)).map(drop),
                    };
                    (kind, r, Instant::now())
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(200));
        // A program that only selects on the guard's raw receiver hears of
        // the loss: notifications until one says the lockspace is gone
        // (the waits above made the kernel notify too).
        let rx = g.blocking().unwrap().clone();
        let listener = std::thread::spawn(move || {
            let limit = Instant::now() + Duration::from_secs(5);
            loop {
                match rx.recv_deadline(limit) {
                    Ok(b) if b.lockspace_gone() => {
                        assert_eq!(b.mode(), None);
                        return Some(Instant::now());
                    }
                    Ok(_) => {}
                    Err(_) => return None,
                }
            }
        });
        let start = Instant::now();
        let mut child = common::spawn_force_release(
            RELEASER,
            "a_lockspace_released_by_force_elsewhere_grants_nothing_more",
            &name,
        );
        // The kernel removes the device first thing, tells dlm_controld to
        // leave the lockspace, and then waits for every handle of it, this
        // one included, to close: the other process's call returns only
        // after this handle is dropped. Seen within the bound: inotify on
        // the device directory wakes the watchdog (else its next tick,
        // within a second).
        let seen = within(Duration::from_secs(5), || !ls.is_alive());
        println!("polled {polled}: the forced release seen {seen:?} after it began");
        assert!(
            seen.is_some_and(|t| t < Duration::from_millis(500)),
            "the forced release was not seen within 500 ms: {seen:?}"
        );
        let heard = listener.join().unwrap();
        let heard = heard.map(|t| t.saturating_duration_since(start));
        println!(
            "polled {polled}: the receiver heard of the loss {heard:?} after the release began"
        );
        assert!(
            heard.is_some_and(|t| t < Duration::from_secs(1)),
            "polled {polled}: the raw blocking receiver did not hear of the loss: {heard:?}"
        );
        for w in waits {
            let (kind, r, at) = w.join().unwrap();
            let took = at.saturating_duration_since(start);
            println!(
                "polled {polled}: wait kind {kind} ended {took:?} after the release began: {r:?}"
            );
            assert!(
                matches!(r, Err(Error::LockspaceGone)),
                "polled {polled}: wait kind {kind}: {r:?}"
            );
            assert!(
                took < Duration::from_secs(1),
                "polled {polled}: wait kind {kind} ended only {took:?} after the release"
            );
        }
        // Nothing more is granted through the handle, and the guard says so.
        assert!(!g.is_held(), "a guard of a released lockspace says held");
        assert!(matches!(ls.lock("r2", Mode::Ex), Err(Error::LockspaceGone)));
        assert!(matches!(
            ls.try_lock("r", Mode::Ex),
            Err(Error::LockspaceGone)
        ));
        assert!(matches!(g.convert(Mode::Pr), Err(Error::LockspaceGone)));
        // A wait for a blocking notification ends instead of waiting on.
        let t = Instant::now();
        assert!(matches!(
            g.wait_blocking(Some(Duration::from_secs(10))),
            Err(Error::LockspaceGone)
        ));
        assert!(t.elapsed() < Duration::from_secs(2));
        // Dropping the guard and the handle neither hangs nor panics, and
        // lets the other process's release finish.
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
}
