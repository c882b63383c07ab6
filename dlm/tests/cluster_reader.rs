//! Poll-mode handles whose answers the crate reads from the lockspace
//! device itself (issue 16): value blocks read, written and not valid;
//! blocking notifications with the mode they wait for; orphans; a
//! thousand requests in flight; cancels racing grants; a handle closed
//! with answers unread. ci/lib/cluster-tests also runs it under valgrind.

mod common;

use common::{can_take, ls_name};
use dlm::{Error, LockOptions, Lockspace, Mode};
use futures::future::join_all;
use std::future::Future;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

fn fixture(test: &str) -> (Lockspace, Lockspace, String) {
    let name = ls_name(test);
    let a = Lockspace::builder(&name)
        .poll_mode()
        .create_exclusive()
        .unwrap();
    let b = Lockspace::builder(&name).poll_mode().open().unwrap();
    (a, b, name)
}

/// Checks that every answer read was applied, that no lock is left, and
/// removes the lockspace.
fn finish(name: &str) {
    assert_eq!(dlm::stats().bad_answers, 0, "answers the reader refused");
    common::leave_when_unused(name);
}

/// Runs `f` to completion on this thread, dispatching `ls` whenever its
/// descriptor is readable.
fn drive<F: std::future::Future>(ls: &Lockspace, f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
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
fn the_descriptor_is_non_blocking_and_dispatch_with_nothing_to_read_returns() {
    require_cluster!();
    let (a, b, name) = fixture("rd_fd");
    // SAFETY: fcntl F_GETFL on the handle's open descriptor.
    let flags = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
    assert!(flags & libc::O_NONBLOCK != 0, "flags {flags:#x}");
    a.dispatch().unwrap();
    let g = a.lock("x", Mode::Ex).unwrap();
    // The answer was read by the lock itself: nothing left to read.
    a.dispatch().unwrap();
    g.unlock().unwrap();
    drop((a, b));
    finish(&name);
}

#[test]
fn value_blocks_read_written_and_not_valid() {
    require_cluster!();
    let (a, b, name) = fixture("rd_lvb");
    let opts = || LockOptions::new().lvb();
    // Written under EX, published by the conversion down to NL (the NL
    // lock keeps the resource, and its value block, alive).
    let mut keep = a.lock_with("v", Mode::Ex, opts()).unwrap();
    keep.set_lvb(b"read straight from the device").unwrap();
    keep.convert_with(Mode::Nl, opts()).unwrap();
    // Read by another handle's grant (the value block follows the result).
    let g = b.lock_with("v", Mode::Pr, opts()).unwrap();
    let lvb = g.lvb().unwrap();
    assert!(lvb.valid);
    assert_eq!(&lvb.bytes[..29], b"read straight from the device");
    // A grant with no value block asked: no bytes.
    let h = b.lock("v", Mode::Cr).unwrap();
    assert!(h.lvb().is_none());
    h.unlock().unwrap();
    g.unlock().unwrap();
    // Invalidated by an EX holder: the next reader is told it is not valid.
    keep.convert_with(Mode::Ex, opts()).unwrap();
    keep.invalidate_lvb().unwrap();
    keep.convert_with(Mode::Nl, opts()).unwrap();
    let g = b.lock_with("v", Mode::Pr, opts()).unwrap();
    assert!(!g.lvb().unwrap().valid);
    g.unlock().unwrap();
    keep.unlock().unwrap();
    // Conversions read and write it too: NL -> EX reads, EX -> NL writes.
    let mut g = a.lock_with("w", Mode::Nl, opts()).unwrap();
    for i in 0..20u8 {
        g.convert_with(Mode::Ex, opts()).unwrap();
        let seen = g.lvb().map_or(0, |l| l.bytes[0]);
        assert_eq!(seen, i);
        g.set_lvb(&[i + 1]).unwrap();
        g.convert_with(Mode::Nl, opts()).unwrap();
    }
    g.unlock().unwrap();
    drop((a, b));
    finish(&name);
}

#[test]
fn blocking_notifications_carry_the_mode_waited_for() {
    require_cluster!();
    let (a, b, name) = fixture("rd_bast");
    for (held, wanted) in [
        (Mode::Ex, Mode::Pr),
        (Mode::Pr, Mode::Ex),
        (Mode::Ex, Mode::Cr),
    ] {
        let mut g = a
            .lock_with("n", held, LockOptions::new().notify_blocking())
            .unwrap();
        let b2 = b.clone();
        let waiter = std::thread::spawn(move || b2.lock("n", wanted).unwrap().unlock().unwrap());
        let note = g
            .wait_blocking(Some(Duration::from_secs(10)))
            .unwrap()
            .expect("a blocking notification");
        assert_eq!(note.mode(), Some(wanted), "held {held}, wanted {wanted}");
        g.unlock().unwrap();
        waiter.join().unwrap();
    }
    // With libdlm's thread the mode is not known.
    let t = Lockspace::open(&name).unwrap();
    let mut g = t
        .lock_with("m", Mode::Ex, LockOptions::new().notify_blocking())
        .unwrap();
    let b2 = b.clone();
    let waiter = std::thread::spawn(move || b2.lock("m", Mode::Pr).unwrap().unlock().unwrap());
    let note = g.wait_blocking(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(note.expect("a notification").mode(), None);
    g.unlock().unwrap();
    waiter.join().unwrap();
    drop((a, b, t));
    finish(&name);
}

/// After a cancel the kernel names the cancel's status block in every
/// result of the lock, blocking notifications included (whose argument is
/// still the one the last request gave): they must be delivered, not
/// refused as answers of another lock.
#[test]
fn blocking_notifications_after_a_cancel_are_delivered() {
    require_cluster!();
    let (a, b, name) = fixture("rd_bast_cancel");
    let mut g = a
        .lock_with("c", Mode::Pr, LockOptions::new().notify_blocking())
        .unwrap();
    let other = b.lock("c", Mode::Pr).unwrap();
    // Blocked by the other PR holder: cancelled at the timeout, and the
    // lock stays PR.
    let e = g
        .convert_with(
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_millis(200)),
        )
        .unwrap_err();
    assert!(matches!(e, Error::TimedOut), "{e:?}");
    assert_eq!(g.mode(), Mode::Pr);
    assert!(g.is_held());
    // The other holder now wants EX: this lock is told, with the mode.
    let converter = std::thread::spawn(move || {
        let mut other = other;
        other.convert(Mode::Ex).unwrap();
        other.unlock().unwrap();
    });
    let note = g
        .wait_blocking(Some(Duration::from_secs(10)))
        .unwrap()
        .expect("a blocking notification after the cancel");
    assert_eq!(note.mode(), Some(Mode::Ex));
    g.unlock().unwrap();
    converter.join().unwrap();
    drop((a, b));
    finish(&name);
}

/// The fallback a kernel of an unknown device protocol gets, asked for
/// here: libdlm's `dlm_dispatch` reads the answers of a poll-mode handle,
/// and every call still works (with no blocking mode to tell).
#[test]
fn the_libdlm_dispatch_fallback_serves_the_same_calls() {
    require_cluster!();
    let (b, c, name) = fixture("rd_libdlm");
    let a = Lockspace::builder(&name)
        .poll_mode()
        .libdlm_dispatch()
        .open()
        .unwrap();
    // libdlm's dispatch, not the crate's reader: the descriptor is left
    // blocking between dispatches.
    // SAFETY: fcntl F_GETFL on the handle's open descriptor.
    let flags = unsafe { libc::fcntl(a.as_raw_fd(), libc::F_GETFL) };
    assert_eq!(flags & libc::O_NONBLOCK, 0, "flags {flags:#x}");
    // Plain calls, seen from another handle.
    let g = a.lock("f", Mode::Ex).unwrap();
    assert!(!can_take(&b, "f", Mode::Cr));
    g.unlock().unwrap();
    assert!(can_take(&b, "f", Mode::Ex));
    // Value blocks, written here and read there, and back.
    let opts = || LockOptions::new().lvb();
    let mut g = a.lock_with("v", Mode::Ex, opts()).unwrap();
    g.set_lvb(b"through dlm_dispatch").unwrap();
    g.convert_with(Mode::Nl, opts()).unwrap();
    let mut h = b.lock_with("v", Mode::Ex, opts()).unwrap();
    assert_eq!(&h.lvb().unwrap().bytes[..20], b"through dlm_dispatch");
    h.set_lvb(b"and back").unwrap();
    h.unlock().unwrap();
    g.convert_with(Mode::Pr, opts()).unwrap();
    assert_eq!(&g.lvb().unwrap().bytes[..8], b"and back");
    g.unlock().unwrap();
    // A blocking notification, with no mode (libdlm drops it).
    let mut g = a
        .lock_with("n", Mode::Ex, LockOptions::new().notify_blocking())
        .unwrap();
    let c2 = c.clone();
    let waiter = std::thread::spawn(move || c2.lock("n", Mode::Pr).unwrap().unlock().unwrap());
    let note = g
        .wait_blocking(Some(Duration::from_secs(10)))
        .unwrap()
        .expect("a blocking notification");
    assert_eq!(note.mode(), None);
    g.unlock().unwrap();
    waiter.join().unwrap();
    // A refused try-lock, a timeout, and many futures in flight.
    let held = b.lock("t", Mode::Ex).unwrap();
    assert!(matches!(a.try_lock("t", Mode::Ex), Err(Error::WouldBlock)));
    let opts = LockOptions::new().timeout(Duration::from_millis(100));
    assert!(matches!(
        a.lock_with("t", Mode::Ex, opts),
        Err(Error::TimedOut)
    ));
    held.unlock().unwrap();
    let names: Vec<String> = (0..200).map(|i| format!("l{i}")).collect();
    let guards = drive(
        &a,
        join_all(names.iter().map(|n| a.lock_async(n, Mode::Ex))),
    );
    let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
    assert!(!can_take(&b, "l0", Mode::Cr) && !can_take(&b, "l199", Mode::Cr));
    drive(&a, join_all(guards.into_iter().map(|g| g.unlock_async())))
        .into_iter()
        .for_each(Result::unwrap);
    assert!(can_take(&b, "l0", Mode::Ex) && can_take(&b, "l199", Mode::Ex));
    drop((a, b, c));
    finish(&name);
}

#[test]
fn orphans_are_adopted_and_answer_nothing() {
    require_cluster!();
    let (a, b, name) = fixture("rd_orphan");
    let g = a
        .lock_with("o", Mode::Pr, LockOptions::new().persistent())
        .unwrap();
    assert!(g.orphan().is_ok(), "orphaned");
    drop(a);
    assert!(!can_take(&b, "o", Mode::Ex));
    let adopted = b.adopt_orphan("o", Mode::Pr, LockOptions::new()).unwrap();
    // No answer comes for an adoption: nothing to read.
    b.dispatch().unwrap();
    adopted.unlock().unwrap();
    assert!(can_take(&b, "o", Mode::Ex));
    drop(b);
    finish(&name);
}

#[test]
fn a_thousand_in_flight_then_blocking_calls_among_them() {
    require_cluster!();
    let (a, b, name) = fixture("rd_many");
    let names: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
    let guards = drive(
        &a,
        join_all(names.iter().map(|n| a.lock_async(n, Mode::Ex))),
    );
    let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
    assert!(!can_take(&b, "m0", Mode::Cr) && !can_take(&b, "m999", Mode::Cr));
    // The unlocks' answers are read by a blocking call's wait, which
    // applies the others' on the way to its own.
    let mut unlocks: Vec<_> = guards
        .into_iter()
        .map(|g| Box::pin(g.unlock_async()))
        .collect();
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    for u in &mut unlocks {
        let _ = u.as_mut().poll(&mut cx);
    }
    let g = a.lock("in-between", Mode::Ex).unwrap();
    g.unlock().unwrap();
    drive(&a, join_all(unlocks))
        .into_iter()
        .for_each(Result::unwrap);
    assert!(can_take(&b, "m0", Mode::Ex) && can_take(&b, "m999", Mode::Ex));
    drop((a, b));
    finish(&name);
}

#[test]
fn cancels_racing_grants_leave_nothing_held() {
    require_cluster!();
    let (a, b, name) = fixture("rd_cancel");
    let t = Lockspace::open(&name).unwrap();
    let (mut granted, mut timed_out) = (0, 0);
    for i in 0..300u32 {
        // Another handle holds EX and lets go at about the moment the
        // timeout cancels the request.
        let h = t.lock("c", Mode::Ex).unwrap();
        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(u64::from(i % 7) * 300));
            h.unlock().unwrap();
        });
        let opts = LockOptions::new().timeout(Duration::from_micros(u64::from(i % 5) * 400));
        match a.lock_with("c", Mode::Ex, opts) {
            Ok(g) => {
                granted += 1;
                g.unlock().unwrap();
            }
            Err(Error::TimedOut) => timed_out += 1,
            Err(e) => panic!("round {i}: {e}"),
        }
        release.join().unwrap();
    }
    eprintln!("{granted} granted, {timed_out} timed out");
    // Nothing left behind by either outcome (a late grant is released by
    // the worker, whose answers a dispatch reads).
    let until = Instant::now() + Duration::from_secs(10);
    while !can_take(&b, "c", Mode::Ex) {
        assert!(Instant::now() < until, "a lock left held");
        a.dispatch().unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    drop((a, b, t));
    finish(&name);
}

#[test]
fn a_handle_closed_with_answers_unread() {
    require_cluster!();
    let (a, b, name) = fixture("rd_close");
    let c = Lockspace::builder(&name)
        .poll_mode()
        .async_writes(dlm::AsyncWrites::InPoll)
        .open()
        .unwrap();
    // Requests written (in poll), answered by the kernel, never read.
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut pending: Vec<_> = (0..50)
        .map(|i| Box::pin(c.lock_async(format!("u{i}"), Mode::Ex)))
        .collect();
    for f in &mut pending {
        assert!(f.as_mut().poll(&mut cx).is_pending());
    }
    std::thread::sleep(Duration::from_millis(100));
    drop(pending);
    drop(c);
    // The kernel unlocked them when the descriptor closed.
    let until = Instant::now() + Duration::from_secs(10);
    while !can_take(&b, "u0", Mode::Ex) || !can_take(&b, "u49", Mode::Ex) {
        assert!(Instant::now() < until, "locks left held");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop((a, b));
    finish(&name);
}
