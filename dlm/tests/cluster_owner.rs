//! The owner the kernel records for a lock taken or converted by a future
//! is the one `LockGuard::owner_tid` reports: a purge of orphans by that
//! owner removes exactly that orphan (checked from another handle), and a
//! purge by another thread's id leaves it. For the blocking calls the
//! owner is the calling thread; for futures, the thread that wrote the
//! request (the handle's worker, or the task's thread with
//! `AsyncWrites::InPoll`).

mod common;

use common::can_take;
use dlm::{AsyncWrites, LockOptions, Lockspace, Mode, Node, Owner};

/// Orphans the lock `res` taken through `take`, then checks that a purge
/// by its reported owner removes it and a purge by another id does not.
fn orphan_and_purge(name: &str, res: &str, writes: AsyncWrites, convert: bool) {
    let obs = Lockspace::open(name).unwrap();
    let ls = Lockspace::builder(name)
        .async_writes(writes)
        .open()
        .unwrap();
    let persistent = LockOptions::new().persistent();
    let g = if convert {
        // Taken by a blocking call on another thread, converted by a
        // future: the owner is the conversion's writer.
        let ls2 = ls.clone();
        let r = res.to_owned();
        let mut g = std::thread::spawn(move || ls2.lock_with(r, Mode::Nl, persistent).unwrap())
            .join()
            .unwrap();
        futures::executor::block_on(g.convert_with_async(Mode::Ex, persistent)).unwrap();
        g
    } else {
        futures::executor::block_on(ls.lock_with_async(res, Mode::Ex, persistent)).unwrap()
    };
    let tid = g.owner_tid();
    assert_ne!(tid, 0);
    g.orphan().expect("a persistent lock can be orphaned");
    drop(ls);
    assert!(!can_take(&obs, res, Mode::Ex), "the orphan holds {res}");
    // A purge by another owner's id leaves it.
    obs.purge_orphans(Node::This, Owner::Thread(tid.wrapping_add(100_000)))
        .unwrap();
    assert!(
        !can_take(&obs, res, Mode::Ex),
        "a purge by another id removed {res}"
    );
    // A purge by its reported owner removes it (tried again for a moment:
    // the handle's worker may close the descriptor, which makes the lock
    // an orphan, just after the handle is dropped).
    let start = std::time::Instant::now();
    loop {
        let o = obs.clone();
        std::thread::spawn(move || o.purge_orphans(Node::This, Owner::Thread(tid)).unwrap())
            .join()
            .unwrap();
        if can_take(&obs, res, Mode::Ex) {
            break;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(2),
            "{res}: the purge by the reported owner {tid} missed ({writes:?}, convert {convert})"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn futures_report_the_owner_the_kernel_records() {
    require_cluster!();
    let name = common::ls_name("owner");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    for (i, writes) in [AsyncWrites::Worker, AsyncWrites::InPoll]
        .into_iter()
        .enumerate()
    {
        orphan_and_purge(&name, &format!("lock{i}"), writes, false);
        orphan_and_purge(&name, &format!("conv{i}"), writes, true);
    }
    if let Err(e) = ls.release(dlm::Release::IfUnused) {
        panic!("locks left behind in {name}: {}", e.error());
    }
}
