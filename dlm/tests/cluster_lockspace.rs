//! Lockspaces against the real kernel DLM: create, open, join, leave,
//! release, and what happens to guards and handles around them.

mod common;

use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use std::time::{Duration, Instant};

/// Whether another, fresh handle can open the lockspace.
fn exists(name: &str) -> bool {
    match Lockspace::open(name) {
        Ok(_) => true,
        Err(Error::LockspaceNotFound) => false,
        Err(e) => panic!("open {name}: {e}"),
    }
}

#[test]
fn create_exclusive_open_and_release() {
    require_cluster!();
    let name = common::ls_name("excl");
    assert!(matches!(
        Lockspace::open(&name),
        Err(Error::LockspaceNotFound)
    ));
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    assert_eq!(ls.name(), name);
    assert!(matches!(
        Lockspace::create_exclusive(&name, 0o600),
        Err(Error::LockspaceExists)
    ));
    assert!(exists(&name));
    ls.release(Release::IfUnused).unwrap();
    assert!(!exists(&name), "released lockspace can still be opened");
}

#[test]
fn join_and_leave_one_and_ten_lockspaces() {
    require_cluster!();
    for count in [1, 10] {
        let names: Vec<String> = (0..count)
            .map(|i| common::ls_name(&format!("jl{count}_{i}")))
            .collect();
        for n in &names {
            drop(dlm::join(n, 0o600).unwrap());
        }
        for n in &names {
            assert!(exists(n), "{n} not there after join");
        }
        for n in &names {
            dlm::leave(n, Release::IfUnused).unwrap();
        }
        for n in &names {
            assert!(!exists(n), "{n} still there after leave");
        }
    }
}

#[test]
fn join_leave_with_open_and_close() {
    require_cluster!();
    let name = common::ls_name("jloc");
    drop(dlm::join(&name, 0o600).unwrap());
    // Open and close it several times; it stays.
    for _ in 0..3 {
        let ls = Lockspace::open(&name).unwrap();
        drop(ls.lock("r", Mode::Ex).unwrap());
        drop(ls);
        assert!(exists(&name));
    }
    // A second join of an existing lockspace opens it.
    let ls = dlm::join(&name, 0o600).unwrap();
    // Leaving while this process has it open would wait for ever in the
    // kernel: refused.
    assert!(matches!(
        dlm::leave(&name, Release::IfUnused),
        Err(Error::HandlesOpen)
    ));
    assert!(!ls.created(), "a join of an existing lockspace opens it");
    drop(ls);
    dlm::leave(&name, Release::IfUnused).unwrap();
    assert!(!exists(&name));
}

#[test]
fn with_lockspace_creates_and_removes() {
    require_cluster!();
    let name = common::ls_name("withls");
    let seen = dlm::with_lockspace(&name, |ls| {
        let g = ls.lock("r", Mode::Pr).unwrap();
        (exists(ls.name()), g.mode())
    })
    .unwrap();
    assert_eq!(seen, (true, Mode::Pr));
    assert!(!exists(&name), "with_lockspace left the lockspace behind");
}

#[test]
fn release_without_force_fails_while_orphans_exist_and_force_removes() {
    require_cluster!();
    let name = common::ls_name("force");
    let ls = Lockspace::create(&name, 0o600).unwrap();
    let g = ls
        .lock_with("kept", Mode::Ex, LockOptions::new().persistent())
        .unwrap();
    g.orphan().unwrap();
    // The orphan is a lock the kernel still holds after our handle closes.
    let ls = {
        let again = Lockspace::create(&name, 0o600).unwrap(); // second create: count 2
        drop(ls);
        again
    };
    // Release one create: the count drops, nothing is removed.
    ls.release(Release::IfUnused).unwrap();
    assert!(exists(&name));
    // The last create, without force: the orphan keeps it busy.
    let ls = Lockspace::open(&name).unwrap();
    let refused = ls.release(Release::IfUnused).unwrap_err();
    assert!(matches!(refused.error(), Error::LockspaceBusy), "{refused}");
    assert!(exists(&name));
    // The refusal gives a working handle back.
    let ls = refused
        .into_lockspace()
        .expect("the lockspace is still there");
    assert!(ls.try_lock("other", Mode::Ex).is_ok());
    // With force it goes, orphan and all.
    ls.release(Release::Force).unwrap();
    assert!(!exists(&name));
}

#[test]
fn release_refuses_while_guards_or_handles_live_and_never_hangs() {
    require_cluster!();
    let name = common::ls_name("relbusy");
    let ls = Lockspace::create(&name, 0o600).unwrap();
    let guard = ls.lock("r", Mode::Ex).unwrap();
    let t = Instant::now();
    // The guard keeps the lockspace open: releasing would wait for it.
    let refused = ls.clone().release(Release::Force).unwrap_err();
    assert!(matches!(refused.error(), Error::HandlesOpen), "{refused}");
    // Given back unharmed: the refused clone still locks.
    let back = refused.into_lockspace().expect("refused before the call");
    assert!(back.try_lock("r2", Mode::Ex).is_ok());
    drop(back);
    assert!(matches!(
        dlm::leave(&name, Release::Force),
        Err(Error::HandlesOpen)
    ));
    assert!(t.elapsed() < Duration::from_secs(5));
    // Dropping the handle leaves the guard working: it holds its own.
    drop(ls);
    assert_eq!(guard.mode(), Mode::Ex);
    let other = Lockspace::open(&name).unwrap();
    assert!(matches!(
        other.try_lock("r", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    guard.unlock().unwrap();
    other.try_lock("r", Mode::Ex).unwrap().unlock().unwrap();
    other.release(Release::IfUnused).unwrap();
    assert!(!exists(&name));
}

#[test]
fn lockspace_names_are_checked_before_libdlm() {
    require_cluster!();
    assert!(matches!(
        Lockspace::create("", 0o600),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        Lockspace::create("a\0b", 0o600),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        Lockspace::create(&"n".repeat(65), 0o600),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(Lockspace::open("a/b"), Err(Error::InvalidName(_))));
    assert!(matches!(
        dlm::leave("", Release::IfUnused),
        Err(Error::InvalidName(_))
    ));
    // 64 bytes is the longest name the kernel takes.
    let mut long = common::ls_name("long");
    while long.len() < 64 {
        long.push('x');
    }
    let ls = Lockspace::create_exclusive(&long, 0o600).unwrap();
    ls.lock("r", Mode::Ex).unwrap().unlock().unwrap();
    ls.release(Release::IfUnused).unwrap();
}

#[test]
fn versions_are_plausible() {
    require_cluster!();
    let kernel = dlm::kernel_version().unwrap();
    assert_eq!(kernel.major, 6, "kernel protocol {kernel}");
    assert_eq!(dlm::library_version().major, 6);
}

#[test]
fn handles_are_shared_across_threads() {
    require_cluster!();
    let name = common::ls_name("threads");
    let ls = Lockspace::create(&name, 0o600).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            let ls = &ls;
            s.spawn(move || {
                for i in 0..20 {
                    let g = ls.lock(format!("r{}", (t + i) % 3), Mode::Ex).unwrap();
                    drop(g);
                }
            });
        }
    });
    ls.release(Release::IfUnused).unwrap();
}
