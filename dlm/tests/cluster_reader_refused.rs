//! A poll-mode handle whose reader refuses an answer (issue 16's "bad
//! input from the device"): the refused answer's waiter cannot be told
//! which it was, so no wait of the handle may go on waiting for it. Its
//! own binary: it makes `Stats::bad_answers` count, which the other reader
//! tests check is 0.
//!
//! The kernel gives this crate no bad answer of its own accord; the test
//! makes one: a raw `dlm_ls_lock` on the handle with a callback that is
//! not the crate's, whose answer the reader must refuse.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode};
use std::time::{Duration, Instant};

unsafe extern "C" fn foreign_ast(_arg: *mut std::ffi::c_void) {}

#[test]
fn a_refused_answer_ends_every_wait_of_the_handle_with_an_error() {
    require_cluster!();
    let name = common::ls_name("rd_refused");
    let a = Lockspace::builder(&name)
        .poll_mode()
        .create_exclusive()
        .unwrap();
    let b = Lockspace::open(&name).unwrap();
    // Held by `a` before: released, and converted down, after.
    let kept = a.lock("z", Mode::Ex).unwrap();
    let mut down = a.lock("d", Mode::Ex).unwrap();
    let held = b.lock("x", Mode::Ex).unwrap();
    // A wait with no timeout on `a`, blocked by `b`'s EX; another with a
    // long timeout.
    let (a1, a2) = (a.clone(), a.clone());
    let forever = std::thread::spawn(move || {
        let t = Instant::now();
        (a1.lock("x", Mode::Ex).map(drop), t.elapsed())
    });
    let timed = std::thread::spawn(move || {
        let t = Instant::now();
        let opts = LockOptions::new().timeout(Duration::from_secs(60));
        (a2.lock_with("x", Mode::Pr, opts).map(drop), t.elapsed())
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(dlm::stats().bad_answers, 0);
    // A request the crate did not write, with a foreign callback: its
    // answer (a grant) is read by one of the waits above and refused
    // before anything of it is used. The status block is leaked: the
    // kernel's answer names it.
    // SAFETY: an all-zero dlm_lksb is valid (integers and a null pointer).
    let lksb: &'static mut dlm_sys::dlm_lksb = Box::leak(Box::new(unsafe { std::mem::zeroed() }));
    let arg = std::ptr::addr_of_mut!(*lksb).cast::<std::ffi::c_void>();
    // This breaks the reader's contract (every request on the descriptor
    // written by the crate, with its callbacks) on purpose: the reader
    // checks the callback before it uses the argument, and refuses the
    // result.
    // SAFETY: `a`'s raw handle, open while `a` lives; a valid name; a status block that outlives the request (leaked); the callback ignores its argument.
    let rc = unsafe {
        dlm_sys::dlm_ls_lock(
            a.as_raw(),
            Mode::Nl as u32,
            lksb,
            0,
            b"foreign".as_ptr().cast(),
            7,
            0,
            Some(foreign_ast),
            arg,
            None,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0);
    for (what, waiter) in [("no timeout", forever), ("a 60 s timeout", timed)] {
        let (r, took) = waiter.join().unwrap();
        assert!(
            matches!(r, Err(Error::BadAnswer(w)) if w.contains("not this crate's")),
            "the wait with {what}: {r:?}"
        );
        assert!(
            took < Duration::from_secs(10),
            "the wait with {what} ended after {took:?}"
        );
    }
    assert_eq!(dlm::stats().bad_answers, 1);
    assert!(!a.is_alive());
    // Requests that could wait are refused, before anything is written.
    assert!(matches!(
        a.try_lock("y", Mode::Ex),
        Err(Error::BadAnswer(_))
    ));
    // Conversions down and unlocks are still written: the other handle
    // sees them at once, whatever their callers are told.
    let _ = down.convert(Mode::Nl);
    assert!(common::can_take(&b, "d", Mode::Ex));
    assert!(matches!(down.convert(Mode::Ex), Err(Error::BadAnswer(_))));
    let _ = kept.unlock();
    assert!(common::can_take(&b, "z", Mode::Ex));
    // Closing the handle releases whatever it held: once `b` lets go, the
    // resource is free for a third handle.
    drop(down);
    drop(a);
    held.unlock().unwrap();
    let c = Lockspace::open(&name).unwrap();
    c.try_lock("x", Mode::Ex).unwrap().unlock().unwrap();
    drop((b, c));
    common::leave_when_unused(&name);
}
