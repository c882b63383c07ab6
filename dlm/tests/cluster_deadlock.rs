//! `Lockspace::deadlock_cancel` (`dlm_ls_deadlock_cancel`) against the
//! kernel: another handle's waiting conversion is cancelled as a deadlock
//! victim; a granted lock is left alone; unknown ids are errors.

mod common;

use common::{can_take, ls_name};
use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use std::time::Duration;

#[test]
fn another_handles_waiting_conversion_is_cancelled_as_a_deadlock() {
    require_cluster!();
    let name = ls_name("dlck_conv");
    let holder = Lockspace::join(&name, 0o600).unwrap();
    let victim = Lockspace::open(&name).unwrap();
    let admin = Lockspace::open(&name).unwrap();

    let ex = holder
        .lock_with("r", Mode::Ex, LockOptions::new().notify_blocking())
        .unwrap();
    let mut nl = victim.lock("r", Mode::Nl).unwrap();
    let lkid = nl.lkid();
    let waiter = std::thread::spawn(move || {
        let r = nl.convert(Mode::Ex);
        (r, nl)
    });
    // The holder's blocking notification says the conversion is queued.
    ex.blocking()
        .unwrap()
        .recv_timeout(Duration::from_secs(20))
        .expect("the victim's conversion waits behind EX");

    admin.deadlock_cancel(lkid).unwrap();
    let (r, mut nl) = waiter.join().unwrap();
    assert!(
        matches!(r, Err(Error::Deadlock)),
        "the victim sees EDEADLK: {r:?}"
    );
    assert_eq!(
        nl.mode(),
        Mode::Nl,
        "the lock is still held in its old mode"
    );
    // The holder kept EX: nobody else gets PR.
    assert!(!can_take(&admin, "r", Mode::Pr));
    assert_eq!(ex.mode(), Mode::Ex);
    ex.unlock().unwrap();
    // The victim's lock is alive: it converts now.
    nl.convert(Mode::Ex).unwrap();
    assert!(!can_take(&admin, "r", Mode::Cr), "the victim holds EX");
    nl.unlock().unwrap();
    drop((holder, victim, admin));
    dlm::leave(&name, Release::IfUnused).unwrap();
}

#[test]
fn a_granted_lock_is_left_alone() {
    require_cluster!();
    let name = ls_name("dlck_granted");
    let holder = Lockspace::join(&name, 0o600).unwrap();
    let admin = Lockspace::open(&name).unwrap();
    let ex = holder.lock("g", Mode::Ex).unwrap();
    admin.deadlock_cancel(ex.lkid()).unwrap();
    assert!(!can_take(&admin, "g", Mode::Pr), "EX still held");
    assert_eq!(ex.mode(), Mode::Ex);
    ex.unlock().unwrap();
    assert!(can_take(&admin, "g", Mode::Ex));
    drop((holder, admin));
    dlm::leave(&name, Release::IfUnused).unwrap();
}

#[test]
fn unknown_lock_ids_are_errors() {
    require_cluster!();
    let name = ls_name("dlck_unknown");
    let ls = Lockspace::join(&name, 0o600).unwrap();
    let e = ls.deadlock_cancel(0x7fff_fff0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{e:?}");
    assert!(matches!(
        ls.deadlock_cancel(0),
        Err(Error::InvalidArgument(_))
    ));
    drop(ls);
    dlm::leave(&name, Release::IfUnused).unwrap();
}
