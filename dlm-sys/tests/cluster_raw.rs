//! The raw bindings against the real kernel DLM, with no help from the safe
//! crate: create a lockspace, start its AST thread, take an EX lock with
//! `dlm_ls_lock` and an AST function, unlock, release.
//!
//! Runs inside the test cluster (`ci/vm`); elsewhere it skips with a message,
//! unless `DLM_TEST_REQUIRE_CLUSTER=1` turns the skip into a failure.
// Threaded libdlm only (dlm_ls_pthread_init).
#![cfg(not(feature = "lt"))]

use dlm_sys::*;
use std::ffi::{c_void, CString};
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

fn cluster_available() -> bool {
    let dev = Path::new("/dev/misc/dlm-control").exists();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if dev && root {
        return true;
    }
    let why = if dev {
        "not root"
    } else {
        "no /dev/misc/dlm-control"
    };
    if std::env::var_os("DLM_TEST_REQUIRE_CLUSTER").is_some_and(|v| v == "1") {
        panic!("DLM_TEST_REQUIRE_CLUSTER=1 but no DLM here: {why}");
    }
    eprintln!("skipping: no kernel DLM here ({why}); run it with ci/vm");
    false
}

/// What the AST function hands back: the lksb's status at each AST.
struct Completion {
    statuses: Mutex<Vec<i32>>,
    cond: Condvar,
}

/// The lksb and the completion record live together at a fixed address for
/// as long as the lock can receive ASTs.
struct Lock {
    lksb: dlm_lksb,
    done: Completion,
}

unsafe extern "C" fn ast(arg: *mut c_void) {
    // SAFETY: arg is the `Lock` passed to dlm_ls_lock/dlm_ls_unlock below,
    // alive until the test has seen this AST; libdlm wrote the lksb before
    // calling us, on this same thread.
    let lock = unsafe { &*(arg as *const Lock) };
    let status = lock.lksb.sb_status;
    lock.done.statuses.lock().unwrap().push(status);
    lock.done.cond.notify_all();
}

fn wait_for(lock: &Lock, n: usize) -> i32 {
    let guard = lock.done.statuses.lock().unwrap();
    let (guard, timeout) = lock
        .done
        .cond
        .wait_timeout_while(guard, Duration::from_secs(30), |s| s.len() < n)
        .unwrap();
    assert!(!timeout.timed_out(), "no AST within 30 s");
    guard[n - 1]
}

#[test]
fn create_lock_unlock_release() {
    if !cluster_available() {
        return;
    }
    let name = CString::new("dlmsys_raw").unwrap();
    // SAFETY: name is a valid NUL-terminated string.
    let ls = unsafe { dlm_new_lockspace(name.as_ptr(), 0o600, 0) };
    assert!(
        !ls.is_null(),
        "dlm_new_lockspace: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: ls is the open handle just returned.
    let rc = unsafe { dlm_ls_pthread_init(ls) };
    assert_eq!(rc, 0, "dlm_ls_pthread_init returned {rc}");

    let lock = Box::new(Lock {
        lksb: dlm_lksb::default(),
        done: Completion {
            statuses: Mutex::new(Vec::new()),
            cond: Condvar::new(),
        },
    });
    let ptr = &*lock as *const Lock as *mut Lock;
    let res = b"raw-resource";
    // SAFETY: the lksb and `lock` stay boxed (fixed address) until after
    // the last AST has been seen below; the name is read during the call.
    let rc = unsafe {
        dlm_ls_lock(
            ls,
            LKM_EXMODE,
            &raw mut (*ptr).lksb,
            0,
            res.as_ptr().cast(),
            res.len() as u32,
            0,
            Some(ast),
            ptr.cast(),
            None,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0, "dlm_ls_lock: {}", std::io::Error::last_os_error());
    assert_eq!(wait_for(&lock, 1), 0, "EX lock not granted");
    let lkid = lock.lksb.sb_lkid;
    assert_ne!(lkid, 0);

    // A second, NOQUEUE request on the same resource must be refused while
    // the EX lock is held.
    let other = Box::new(Lock {
        lksb: dlm_lksb::default(),
        done: Completion {
            statuses: Mutex::new(Vec::new()),
            cond: Condvar::new(),
        },
    });
    let optr = &*other as *const Lock as *mut Lock;
    // SAFETY: as above, `other` outlives its only AST.
    let rc = unsafe {
        dlm_ls_lock(
            ls,
            LKM_EXMODE,
            &raw mut (*optr).lksb,
            LKF_NOQUEUE,
            res.as_ptr().cast(),
            res.len() as u32,
            0,
            Some(ast),
            optr.cast(),
            None,
            std::ptr::null_mut(),
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(
        wait_for(&other, 1),
        libc::EAGAIN,
        "NOQUEUE request was not refused"
    );

    // SAFETY: lkid names the lock granted above; `lock` is still alive for
    // the unlock's AST.
    let rc = unsafe { dlm_ls_unlock(ls, lkid, 0, &raw mut (*ptr).lksb, ptr.cast()) };
    assert_eq!(rc, 0, "dlm_ls_unlock: {}", std::io::Error::last_os_error());
    assert_eq!(wait_for(&lock, 2), EUNLOCK);

    // SAFETY: no lock is left in the lockspace; ls is not used afterwards.
    let rc = unsafe { dlm_release_lockspace(name.as_ptr(), ls, 0) };
    assert_eq!(
        rc,
        0,
        "dlm_release_lockspace: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn kernel_and_library_versions_are_plausible() {
    if !cluster_available() {
        return;
    }
    let (mut maj, mut min, mut patch) = (0u32, 0u32, 0u32);
    // SAFETY: the pointers are valid for writes of one u32 each.
    let rc = unsafe { dlm_kernel_version(&mut maj, &mut min, &mut patch) };
    assert_eq!(
        rc,
        0,
        "dlm_kernel_version: {}",
        std::io::Error::last_os_error()
    );
    // The kernel's device protocol is 6.0.x on every kernel since 2.6.
    assert_eq!(maj, 6, "kernel version {maj}.{min}.{patch}");
    let (mut lmaj, mut lmin, mut lpatch) = (0u32, 0u32, 0u32);
    // SAFETY: as above.
    unsafe { dlm_library_version(&mut lmaj, &mut lmin, &mut lpatch) };
    assert_eq!(lmaj, 6, "library version {lmaj}.{lmin}.{lpatch}");
}
