//! After `fork`, the child shares the parent's lockspace descriptors but
//! not its AST thread: whatever it did through them would act on the
//! parent's locks. The crate tells a child by a `pthread_atfork`
//! generation: in the child, the parent's handles and guards refuse every
//! call and do nothing when dropped; new handles work. Its own test binary:
//! a fork is best made from a process with few threads.

mod common;

use dlm::{Error, Lockspace, Mode, Node, Owner, Release};

#[test]
fn a_fork_child_cannot_touch_the_parents_locks() {
    require_cluster!();
    let name = common::ls_name("fork");
    let ls = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let obs = Lockspace::open(&name).unwrap();
    let guard = ls.lock("f", Mode::Ex).unwrap();
    // SAFETY: the child only runs the closure below and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = (|| {
            if !matches!(ls.try_lock("g", Mode::Ex), Err(Error::Forked)) {
                return 10;
            }
            if !matches!(
                obs.purge_orphans(Node::This, Owner::Any),
                Err(Error::Forked)
            ) {
                return 11;
            }
            // Dropping the inherited guard must not unlock the parent's
            // lock (nor hang); dropping the handles closes only our copies.
            drop(guard);
            drop((ls, obs));
            // A handle of the child's own works.
            let Ok(mine) = Lockspace::open(&name) else {
                return 12;
            };
            if !matches!(mine.try_lock("f", Mode::Ex), Err(Error::WouldBlock)) {
                return 13; // the parent's EX must still be there
            }
            if !matches!(mine.lock("c", Mode::Ex).map(|g| g.unlock()), Ok(Ok(()))) {
                return 14;
            }
            // With its own handle closed too, the child has none open: a
            // leave is not refused as `HandlesOpen` (the inherited
            // handles' drops once skipped the open-handle count). The
            // kernel refuses it, as the parent's lock is still held.
            drop(mine);
            match dlm::leave(&name, Release::IfUnused) {
                Err(Error::LockspaceBusy) => 0,
                Err(Error::HandlesOpen) => 15,
                _ => 16,
            }
        })();
        // SAFETY: ends the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waits for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFEXITED(status), "child died: {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child's check failed");
    // The parent's lock is intact and still its own.
    assert!(matches!(
        obs.try_lock("f", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    assert_eq!(guard.mode(), Mode::Ex);
    guard.unlock().unwrap();
    obs.try_lock("f", Mode::Ex).unwrap().unlock().unwrap();
    drop((ls, obs));
    dlm::leave(&name, Release::IfUnused).unwrap();
}
