//! With no DLM on the machine (no `dlm` module, no `dlm_controld`), every
//! entry point gives a clean, typed error: no panic, no hang. Runs on the
//! host, where the kernel has no DLM; inside the test cluster it skips.

use dlm::{Error, Lockspace, Release};
use std::path::Path;
use std::time::{Duration, Instant};

fn no_dlm_here() -> bool {
    if Path::new("/dev/misc/dlm-control").exists() || Path::new("/dev/dlm-control").exists() {
        eprintln!("skipping: a DLM is present here; these tests are for machines without one");
        return false;
    }
    true
}

/// Runs `call` and checks that it fails cleanly, and promptly: the clock
/// starts before the call, so a call that hangs for a while fails here.
fn assert_no_dlm_error<T: std::fmt::Debug>(what: &str, call: impl FnOnce() -> dlm::Result<T>) {
    let start = Instant::now();
    let r = call();
    let took = start.elapsed();
    match r {
        Err(Error::NotAvailable { .. }) | Err(Error::PermissionDenied { .. }) => {}
        other => panic!("{what}: expected NotAvailable or PermissionDenied, got {other:?}"),
    }
    assert!(took < Duration::from_secs(30), "{what} took {took:?}");
}

#[test]
fn open_without_dlm_is_not_available() {
    if !no_dlm_here() {
        return;
    }
    let r = Lockspace::open("nodlm");
    assert!(matches!(r, Err(Error::NotAvailable { .. })), "{r:?}");
    let e = r.unwrap_err();
    assert!(e.to_string().contains("not available"), "{e}");
}

#[test]
fn create_and_join_without_dlm_fail_cleanly() {
    if !no_dlm_here() {
        return;
    }
    let t = Instant::now();
    assert_no_dlm_error("create", || Lockspace::create("nodlm", 0o600));
    assert_no_dlm_error("create_exclusive", || {
        Lockspace::create_exclusive("nodlm", 0o600)
    });
    assert_no_dlm_error("join", || dlm::join("nodlm", 0o600));
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn leave_and_with_lockspace_without_dlm_fail_cleanly() {
    if !no_dlm_here() {
        return;
    }
    assert_no_dlm_error("leave", || dlm::leave("nodlm", Release::IfUnused));
    assert_no_dlm_error("leave force", || dlm::leave("nodlm", Release::Force));
    let mut ran = false;
    assert_no_dlm_error("with_lockspace", || {
        dlm::with_lockspace("nodlm", |_| ran = true)
    });
    assert!(!ran);
}

#[test]
fn kernel_version_without_dlm_is_not_available() {
    if !no_dlm_here() {
        return;
    }
    assert!(matches!(
        dlm::kernel_version(),
        Err(Error::NotAvailable { .. })
    ));
    // The library's own version needs no kernel.
    assert_eq!(dlm::library_version().major, 6);
}

#[test]
fn bad_names_are_refused_before_looking_for_a_dlm() {
    assert!(matches!(Lockspace::open(""), Err(Error::InvalidName(_))));
    assert!(matches!(
        Lockspace::create("with\0nul", 0o600),
        Err(Error::InvalidName(_))
    ));
    assert!(matches!(
        dlm::leave(&"x".repeat(65), Release::IfUnused),
        Err(Error::InvalidName(_))
    ));
}
