//! Poll-mode handles only: built as is (on the threaded libdlm) and, by
//! ci/test, with the `lt` feature (on libdlm_lt, which has no thread). Two
//! poll-mode handles contend for locks, pass a value block, and wait for
//! each other; with `lt` the test checks that libdlm_lt is what runs.

mod common;

use common::{can_take, ls_name};
use dlm::{Error, LockOptions, Lockspace, LockspaceBuilder, Mode, Release};
use std::time::{Duration, Instant};

/// The libdlm this process has mapped: `libdlm_lt.so` or `libdlm.so`.
fn mapped_libdlm() -> Vec<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mut libs: Vec<String> = maps
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .filter(|f| f.starts_with("libdlm"))
        .map(str::to_string)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

#[test]
fn the_library_is_the_one_asked_for() {
    let libs = mapped_libdlm();
    if cfg!(feature = "lt") {
        assert!(
            libs.iter().any(|l| l.starts_with("libdlm_lt.so")),
            "{libs:?}"
        );
        assert!(!libs.iter().any(|l| l.starts_with("libdlm.so")), "{libs:?}");
    } else {
        assert!(libs.iter().any(|l| l.starts_with("libdlm.so")), "{libs:?}");
    }
}

#[test]
fn poll_mode_handles_lock_wait_and_share_a_value() {
    require_cluster!();
    let name = ls_name("poll_lt");
    let a = Lockspace::builder(&name).poll_mode().join().unwrap();
    let b = Lockspace::builder(&name).poll_mode().open().unwrap();
    assert!(a.is_polled() && b.is_polled());

    // Exclusion, seen from the other handle.
    let mut g = a
        .lock_with("p", Mode::Ex, LockOptions::new().lvb())
        .unwrap();
    assert!(!can_take(&b, "p", Mode::Cr));
    assert!(matches!(b.try_lock("p", Mode::Pr), Err(Error::WouldBlock)));
    // A value written under EX; published by the conversion down to PR.
    g.set_lvb(b"from a").unwrap();

    // b waits (dispatching its own answers) until a lets go.
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let g = b
            .lock_with("p", Mode::Ex, LockOptions::new().lvb())
            .unwrap();
        let lvb = g.lvb().unwrap();
        assert!(lvb.valid);
        assert_eq!(&lvb.bytes[..6], b"from a");
        g.unlock().unwrap();
        (t.elapsed(), b)
    });
    std::thread::sleep(Duration::from_millis(300));
    g.convert(Mode::Pr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    g.unlock().unwrap();
    let (waited, b) = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(400), "{waited:?}");
    assert!(can_take(&b, "p", Mode::Ex));
    drop((a, b));
    dlm::leave(&name, Release::IfUnused).unwrap();
}

#[test]
fn the_builder_is_poll_mode_with_lt() {
    require_cluster!();
    let name = ls_name("poll_lt_builder");
    let ls = Lockspace::builder(&name).join().unwrap();
    assert_eq!(ls.is_polled(), cfg!(feature = "lt"));
    drop(ls);
    dlm::leave(&name, Release::IfUnused).unwrap();
    // And the default lockspace's builder.
    let d = LockspaceBuilder::default_lockspace()
        .poll_mode()
        .join()
        .unwrap();
    assert!(d.is_polled());
    let g = d.lock("poll_lt_default", Mode::Ex).unwrap();
    g.unlock().unwrap();
    drop(d);
    let _ = dlm::leave(dlm::DEFAULT_LOCKSPACE, Release::IfUnused);
}
