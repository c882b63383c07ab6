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

/// Polls `fut` once on this thread (with `AsyncWrites::InPoll` that poll
/// writes the request, so this thread is the owner the kernel records),
/// then completes it on another thread. Returns its output and this
/// thread's id.
fn write_here_finish_elsewhere<F>(fut: F) -> (F::Output, u32)
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use std::task::{Context, Poll};
    // SAFETY: gettid has no preconditions.
    let here = unsafe { libc::syscall(libc::SYS_gettid) } as u32;
    let mut fut = Box::pin(fut);
    let waker = futures::task::noop_waker();
    if let Poll::Ready(v) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
        return (v, here);
    }
    let out = std::thread::scope(|s| {
        s.spawn(move || futures::executor::block_on(fut))
            .join()
            .unwrap()
    });
    (out, here)
}

/// Orphans the lock `res` taken through `take`, then checks that a purge
/// by its reported owner removes it and a purge by another id does not.
/// With `elsewhere`, the future's first poll and its completion run on
/// two different threads (the guard once reported the completing one,
/// while the kernel records the writer).
fn orphan_and_purge(name: &str, res: &str, writes: AsyncWrites, convert: bool, elsewhere: bool) {
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
        let writer = if elsewhere {
            let (r, here) = write_here_finish_elsewhere(g.convert_with_async(Mode::Ex, persistent));
            r.unwrap();
            Some(here)
        } else {
            futures::executor::block_on(g.convert_with_async(Mode::Ex, persistent)).unwrap();
            None
        };
        (g, writer)
    } else if elsewhere {
        let (r, here) = write_here_finish_elsewhere(ls.lock_with_async(res, Mode::Ex, persistent));
        (r.unwrap(), Some(here))
    } else {
        let g = futures::executor::block_on(ls.lock_with_async(res, Mode::Ex, persistent)).unwrap();
        (g, None)
    };
    let (g, writer) = g;
    let tid = g.owner_tid();
    assert_ne!(tid, 0);
    if let (AsyncWrites::InPoll, Some(here)) = (writes, writer) {
        assert_eq!(
            tid, here,
            "{res}: written in the first poll on thread {here}, the guard reports {tid}"
        );
    }
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
        orphan_and_purge(&name, &format!("lock{i}"), writes, false, false);
        orphan_and_purge(&name, &format!("conv{i}"), writes, true, false);
        orphan_and_purge(&name, &format!("lock-moved{i}"), writes, false, true);
        orphan_and_purge(&name, &format!("conv-moved{i}"), writes, true, true);
    }
    if let Err(e) = ls.release(dlm::Release::IfUnused) {
        panic!("locks left behind in {name}: {}", e.error());
    }
}
