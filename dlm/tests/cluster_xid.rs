//! `LockOptions::transaction_id` (`dlm_ls_lockx`): a request tagged with a
//! transaction id is an ordinary lock to everyone else, blocking and
//! async. (The id itself shows only in the kernel's debugfs lock dumps,
//! which the test cluster's kernel does not have.)

mod common;

use common::{can_take, ls_name};
use dlm::{Error, LockOptions, Lockspace, Mode, Release};

#[test]
fn a_lock_with_a_transaction_id_is_a_lock() {
    require_cluster!();
    let name = ls_name("xid_block");
    let ls = Lockspace::join(&name, 0o600).unwrap();
    let other = Lockspace::open(&name).unwrap();
    let opts = LockOptions::new()
        .transaction_id(0x1234_5678_9abc_def0)
        .lvb();
    assert_eq!(opts.get_transaction_id(), 0x1234_5678_9abc_def0);
    let mut g = ls.lock_with("x", Mode::Ex, opts).unwrap();
    assert!(!can_take(&other, "x", Mode::Cr), "EX excludes CR");
    // Conversions go on as usual (sent without a transaction id).
    g.convert(Mode::Pr).unwrap();
    assert!(can_take(&other, "x", Mode::Pr));
    assert!(!can_take(&other, "x", Mode::Ex));
    // A second tagged request of the same id waits like any other: try.
    let t = ls.lock_with(
        "x",
        Mode::Ex,
        LockOptions::new().transaction_id(7).no_wait(),
    );
    assert!(matches!(t, Err(Error::WouldBlock)), "{t:?}");
    g.unlock().unwrap();
    assert!(can_take(&other, "x", Mode::Ex));
    // Adoption takes no transaction id.
    let r = ls.adopt_orphan("x", Mode::Ex, LockOptions::new().transaction_id(1));
    assert!(matches!(r, Err(Error::InvalidArgument(_))), "{r:?}");
    drop((ls, other));
    dlm::leave(&name, Release::IfUnused).unwrap();
}

#[test]
fn an_async_lock_with_a_transaction_id_is_a_lock() {
    require_cluster!();
    let name = ls_name("xid_async");
    let ls = Lockspace::join(&name, 0o600).unwrap();
    let other = Lockspace::open(&name).unwrap();
    let g = futures::executor::block_on(ls.lock_with_async(
        "y",
        Mode::Ex,
        LockOptions::new().transaction_id(42),
    ))
    .unwrap();
    assert!(!can_take(&other, "y", Mode::Cr));
    g.unlock().unwrap();
    assert!(can_take(&other, "y", Mode::Ex));
    drop((ls, other));
    dlm::leave(&name, Release::IfUnused).unwrap();
}
