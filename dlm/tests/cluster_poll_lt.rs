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

/// Runs `f` to completion on this thread, dispatching `ls` (poll mode)
/// whenever its descriptor is readable: what a program on libdlm_lt with
/// its own event loop does.
fn drive<F: std::future::Future>(ls: &Lockspace, f: F) -> F::Output {
    use std::os::fd::AsRawFd;
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        assert!(Instant::now() < end, "no answer within 60 s");
        let mut pfd = libc::pollfd {
            fd: ls.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            ls.dispatch().unwrap();
        }
    }
}

#[test]
fn futures_are_answered_by_the_programs_own_dispatch() {
    require_cluster!();
    let name = ls_name("poll_lt_async");
    let a = Lockspace::builder(&name).poll_mode().join().unwrap();
    let b = Lockspace::builder(&name).poll_mode().open().unwrap();
    // a holds EX (a future, answered by a's dispatch).
    let ga = drive(&a, a.lock_async("f", Mode::Ex)).unwrap();
    // b's try is refused, its blocking request waits for a's release.
    let refused = drive(&b, b.try_lock_async("f", Mode::Pr));
    assert!(matches!(refused, Err(Error::WouldBlock)), "{refused:?}");
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drive(&a, ga.unlock_async()).unwrap();
        a
    });
    let t = Instant::now();
    let mut gb = drive(&b, b.lock_async("f", Mode::Ex)).unwrap();
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    let a = releaser.join().unwrap();
    drive(&b, gb.convert_async(Mode::Pr)).unwrap();
    assert!(can_take(&a, "f", Mode::Pr));
    assert!(!can_take(&a, "f", Mode::Ex));
    drive(&b, gb.unlock_async()).unwrap();
    assert!(can_take(&a, "f", Mode::Ex));
    drop((a, b));
    dlm::leave(&name, Release::IfUnused).unwrap();
}
