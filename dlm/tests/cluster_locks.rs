//! Locks against the real kernel DLM. Every effect is observed from a
//! second, independent lockspace handle (its own file descriptor, so the
//! kernel sees another lock owner), not just from `Ok` returns.

mod common;

use common::can_take;

use dlm::{Error, LockFlags, LockOptions, Lockspace, Mode, Node, Owner, Release};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A fresh lockspace and a second handle of it; released at the end.
struct Fixture {
    a: Lockspace,
    b: Lockspace,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let name = common::ls_name(test);
        let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
        let b = Lockspace::open(&name).unwrap();
        Fixture { a, b }
    }

    /// Checks from a third handle that no lock at all is left in the
    /// lockspace (a non-forced release fails while any exists), then
    /// removes it.
    fn finish(self) {
        let name = self.a.name().to_string();
        drop(self.a);
        drop(self.b);
        match dlm::leave(&name, Release::IfUnused) {
            Ok(()) => {}
            Err(e) => panic!("locks left behind in {name}: {e}"),
        }
    }
}

#[test]
fn exclusion_between_two_handles() {
    require_cluster!();
    let f = Fixture::new("excl2");
    let held = f.a.lock("res", Mode::Ex).unwrap();
    assert!(matches!(
        f.b.try_lock("res", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        f.b.try_lock("res", Mode::Cr),
        Err(Error::WouldBlock)
    ));
    assert!(can_take(&f.b, "res", Mode::Nl), "NL is compatible with EX");
    let released = AtomicBool::new(false);
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            let g = f.b.lock("res", Mode::Pr).unwrap();
            assert!(released.load(Ordering::SeqCst), "granted while EX was held");
            g
        });
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished());
        released.store(true, Ordering::SeqCst);
        held.unlock().unwrap();
        let g = waiter.join().unwrap();
        assert_eq!(g.mode(), Mode::Pr);
    });
    f.finish();
}

#[test]
fn nested_locks_in_one_process() {
    require_cluster!();
    let f = Fixture::new("nested");
    let p1 = f.a.lock("n", Mode::Pr).unwrap();
    let p2 = f.a.lock("n", Mode::Pr).unwrap();
    assert!(matches!(
        f.a.try_lock("n", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    drop(p1);
    assert!(matches!(
        f.a.try_lock("n", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    drop(p2);
    let ex = f.a.try_lock("n", Mode::Ex).unwrap();
    assert!(matches!(
        f.a.try_lock("n", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    drop(ex);
    f.finish();
}

#[test]
fn drop_unlocks_before_returning() {
    require_cluster!();
    let f = Fixture::new("dropun");
    for _ in 0..20 {
        let g = f.a.lock("d", Mode::Ex).unwrap();
        drop(g);
        // Not a wait: the unlock is complete when drop returns.
        let g = f.b.try_lock("d", Mode::Ex).unwrap();
        drop(g);
    }
    f.finish();
}

#[test]
fn timeout_on_a_held_lock_returns_timed_out_and_leaves_nothing() {
    require_cluster!();
    let f = Fixture::new("tmo");
    let held = f.a.lock("t", Mode::Ex).unwrap();
    let t = Instant::now();
    let r = f.b.lock_with(
        "t",
        Mode::Pr,
        LockOptions::new().timeout(Duration::from_millis(300)),
    );
    let took = t.elapsed();
    assert!(matches!(r, Err(Error::TimedOut)), "{r:?}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(10),
        "{took:?}"
    );
    held.unlock().unwrap();
    // The cancelled request left nothing: EX is free for the other handle.
    assert!(can_take(&f.a, "t", Mode::Ex));
    // A timeout that is not reached: granted normally.
    let g =
        f.b.lock_with(
            "t",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(g.mode(), Mode::Ex);
    drop(g);
    f.finish();
}

#[test]
fn conversions_up_and_down() {
    require_cluster!();
    let f = Fixture::new("conv");
    let mut g = f.a.lock("c", Mode::Nl).unwrap();
    assert!(can_take(&f.b, "c", Mode::Ex));
    assert_eq!(g.convert(Mode::Pr).unwrap().mode, Mode::Pr);
    assert!(can_take(&f.b, "c", Mode::Pr));
    assert!(!can_take(&f.b, "c", Mode::Ex));
    assert_eq!(g.convert(Mode::Ex).unwrap().mode, Mode::Ex);
    assert!(!can_take(&f.b, "c", Mode::Cr));
    assert_eq!(g.convert(Mode::Cr).unwrap().mode, Mode::Cr);
    assert!(can_take(&f.b, "c", Mode::Pw));
    assert!(!can_take(&f.b, "c", Mode::Ex));
    assert_eq!(g.convert(Mode::Nl).unwrap().mode, Mode::Nl);
    assert!(can_take(&f.b, "c", Mode::Ex));
    drop(g);
    f.finish();
}

#[test]
fn failed_conversion_keeps_the_old_mode() {
    require_cluster!();
    let f = Fixture::new("convfail");
    let other = f.b.lock("c", Mode::Pr).unwrap();
    let mut g = f.a.lock("c", Mode::Pr).unwrap();
    assert!(matches!(
        g.convert_with(Mode::Ex, LockOptions::new().no_wait()),
        Err(Error::WouldBlock)
    ));
    assert_eq!(g.mode(), Mode::Pr);
    let r = g.convert_with(
        Mode::Ex,
        LockOptions::new().timeout(Duration::from_millis(200)),
    );
    assert!(matches!(r, Err(Error::TimedOut)), "{r:?}");
    assert_eq!(g.mode(), Mode::Pr);
    // Still held in PR, seen from outside: PR can join, PW cannot.
    drop(other);
    assert!(can_take(&f.b, "c", Mode::Pr));
    assert!(!can_take(&f.b, "c", Mode::Pw));
    // And the guard still works.
    assert_eq!(g.convert(Mode::Ex).unwrap().mode, Mode::Ex);
    drop(g);
    f.finish();
}

#[test]
fn conversion_deadlock_fails_one_or_demotes_with_convdeadlk() {
    require_cluster!();
    let f = Fixture::new("cvtdl");
    // Two PR holders both converting to EX deadlock.
    let mut first = f.a.lock("dl", Mode::Pr).unwrap();
    let mut second = f.b.lock("dl", Mode::Pr).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| first.convert(Mode::Ex));
        std::thread::sleep(Duration::from_millis(200));
        let r2 = second.convert(Mode::Ex);
        // The DLM breaks the deadlock by failing one of the conversions.
        let r2_failed = matches!(r2, Err(Error::Deadlock));
        if r2_failed {
            assert_eq!(second.mode(), Mode::Pr, "failed conversion keeps PR");
            drop(std::mem::replace(
                &mut second,
                f.b.lock("other", Mode::Nl).unwrap(),
            ));
        }
        let r1 = t.join().unwrap();
        assert!(
            r2_failed || matches!(r1, Err(Error::Deadlock)),
            "no deadlock reported: {r1:?} {r2:?}"
        );
    });
    drop(first);
    drop(second);

    // With CONVDEADLK the second conversion is demoted to NL instead of
    // failing; the first is then granted, and once it steps down the
    // second is granted too, reporting the demotion.
    let mut first = f.a.lock("dl2", Mode::Pr).unwrap();
    let mut second = f.b.lock("dl2", Mode::Pr).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            let r = first.convert_with(Mode::Ex, LockOptions::new().demote_on_deadlock());
            if r.is_ok() {
                first.convert(Mode::Nl).unwrap();
            }
            r
        });
        std::thread::sleep(Duration::from_millis(200));
        let r2 = second.convert_with(Mode::Ex, LockOptions::new().demote_on_deadlock());
        let r1 = t.join().unwrap();
        let g1 = r1.expect("first conversion");
        let g2 = r2.expect("second conversion");
        assert_eq!((g1.mode, g2.mode), (Mode::Ex, Mode::Ex));
        assert!(
            !g1.demoted && g2.demoted,
            "demotion not reported: {g1:?} {g2:?}"
        );
    });
    drop(first);
    drop(second);
    f.finish();
}

#[test]
fn blocking_notification_and_downconvert() {
    require_cluster!();
    let f = Fixture::new("bast");
    let mut holder =
        f.a.lock_with("b", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
    let notes = holder.blocking().unwrap().clone();
    assert!(notes.try_recv().is_err(), "notified with nobody waiting");
    std::thread::scope(|s| {
        let waiter = s.spawn(|| f.b.lock("b", Mode::Pr).unwrap());
        // Sleeps until the BAST comes (no spinning).
        assert!(
            holder.wait_blocking(None).unwrap().is_some(),
            "no blocking notification"
        );
        holder.convert(Mode::Pr).unwrap();
        let g = waiter.join().unwrap();
        assert_eq!((holder.mode(), g.mode()), (Mode::Pr, Mode::Pr));
    });
    drop(holder);
    f.finish();
}

#[test]
fn no_notification_without_asking_and_noqueuebast() {
    require_cluster!();
    let f = Fixture::new("nqbast");
    let mut holder =
        f.a.lock_with("q", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
    let notes = holder.blocking().unwrap();
    // A plain try does not disturb the holder...
    assert!(matches!(
        f.b.try_lock("q", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    assert!(notes.recv_timeout(Duration::from_millis(500)).is_err());
    // ... a try with NOQUEUEBAST does.
    let r =
        f.b.lock_with("q", Mode::Ex, LockOptions::new().no_wait().no_queue_bast());
    assert!(matches!(r, Err(Error::WouldBlock)));
    notes
        .recv_timeout(Duration::from_secs(10))
        .expect("NOQUEUEBAST sent no notification");
    let mut plain = f.b.lock("p", Mode::Ex).unwrap();
    assert!(plain.blocking().is_none());
    assert!(matches!(
        plain.wait_blocking(None),
        Err(Error::InvalidArgument(_))
    ));
    assert!(
        holder
            .wait_blocking(Some(Duration::from_millis(200)))
            .unwrap()
            .is_none(),
        "notified with nobody waiting"
    );
    drop((holder, plain));
    f.finish();
}

#[test]
fn lvb_written_by_one_handle_read_by_another() {
    require_cluster!();
    let f = Fixture::new("lvb");
    // The DLM keeps a resource's LVB only while some lock exists on it:
    // an NL lock keeps it between holders (as lvmlockd does).
    let keeper = f.b.lock("v", Mode::Nl).unwrap();
    let mut w =
        f.a.lock_with("v", Mode::Ex, LockOptions::new().lvb())
            .unwrap();
    w.set_lvb(b"hello from a").unwrap();
    // Published by the down-conversion, not at unlock.
    w.convert(Mode::Nl).unwrap();
    let r =
        f.b.lock_with("v", Mode::Pr, LockOptions::new().lvb())
            .unwrap();
    let lvb = r.lvb().unwrap();
    assert!(lvb.valid);
    assert_eq!(lvb.as_str_lossy(), "hello from a");
    drop(r);
    // A value set and then released is published too.
    w.convert(Mode::Ex).unwrap();
    assert_eq!(w.lvb().unwrap().as_str_lossy(), "hello from a");
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = i as u8 * 7 + 1;
    }
    w.set_lvb(&bytes).unwrap();
    w.unlock().unwrap();
    let r =
        f.b.lock_with("v", Mode::Pr, LockOptions::new().lvb())
            .unwrap();
    assert_eq!(r.lvb().unwrap().bytes, bytes);
    drop(r);
    // An EX holder that reads and releases without writing leaves the
    // value as it was (no garbage from libdlm's unlock).
    for _ in 0..5 {
        let g =
            f.a.lock_with("v", Mode::Ex, LockOptions::new().lvb())
                .unwrap();
        assert_eq!(g.lvb().unwrap().bytes, bytes);
        drop(g);
    }
    let r =
        f.b.lock_with("v", Mode::Cr, LockOptions::new().lvb())
            .unwrap();
    assert_eq!(r.lvb().unwrap().bytes, bytes);
    drop((r, keeper));
    f.finish();
}

#[test]
fn lvb_invalidate_and_misuse() {
    require_cluster!();
    let f = Fixture::new("lvbinv");
    let keeper = f.b.lock("v", Mode::Nl).unwrap();
    let mut w =
        f.a.lock_with("v", Mode::Ex, LockOptions::new().lvb())
            .unwrap();
    w.set_lvb(b"x").unwrap();
    w.convert(Mode::Pr).unwrap();
    assert!(
        matches!(w.set_lvb(b"y"), Err(Error::InvalidArgument(_))),
        "PR holder wrote the LVB"
    );
    assert!(matches!(
        w.set_lvb(&[0; 33]),
        Err(Error::InvalidArgument(_))
    ));
    w.convert(Mode::Ex).unwrap();
    w.invalidate_lvb().unwrap();
    w.unlock().unwrap();
    let r =
        f.b.lock_with("v", Mode::Pr, LockOptions::new().lvb())
            .unwrap();
    assert!(!r.lvb().unwrap().valid, "LVB not marked invalid");
    drop(r);
    // Writing again makes it valid.
    let mut w =
        f.a.lock_with("v", Mode::Pw, LockOptions::new().lvb())
            .unwrap();
    assert!(!w.lvb().unwrap().valid);
    w.set_lvb(b"fresh").unwrap();
    w.unlock().unwrap();
    let r =
        f.b.lock_with("v", Mode::Pr, LockOptions::new().lvb())
            .unwrap();
    assert!(r.lvb().unwrap().valid);
    assert_eq!(r.lvb().unwrap().as_str_lossy(), "fresh");
    let plain = f.b.lock("other", Mode::Ex).unwrap();
    assert!(plain.lvb().is_none());
    drop((r, plain));
    // A lock taken without .lvb() can still publish a value it sets.
    let keeper2 = f.b.lock("other2", Mode::Nl).unwrap();
    let mut nolvb = f.a.lock("other2", Mode::Ex).unwrap();
    nolvb.set_lvb(b"z").unwrap();
    assert_eq!(nolvb.lvb().unwrap().as_str_lossy(), "z");
    nolvb.unlock().unwrap();
    let mut r =
        f.b.lock_with("other2", Mode::Pr, LockOptions::new().lvb())
            .unwrap();
    assert_eq!(
        r.lvb().unwrap(),
        dlm::Lvb {
            bytes: lvb_of(b"z"),
            valid: true
        }
    );
    // Only PW/EX holders write.
    assert!(matches!(r.set_lvb(b"q"), Err(Error::InvalidArgument(_))));
    assert!(matches!(r.invalidate_lvb(), Err(Error::InvalidArgument(_))));
    drop((r, keeper2, keeper));
    f.finish();
}

#[test]
fn orphans_adopted_and_purged_within_a_process() {
    require_cluster!();
    let f = Fixture::new("orph");
    let name = f.a.name().to_string();
    let g =
        f.a.lock_with("o", Mode::Ex, LockOptions::new().persistent())
            .unwrap();
    assert!(g.is_persistent());
    g.orphan().unwrap();
    // A non-persistent guard cannot be orphaned: it comes back.
    let np = f.a.lock("np", Mode::Ex).unwrap();
    let np = np.orphan().unwrap_err();
    drop(np);
    let Fixture { a, b } = f;
    drop(a); // the handle closes: the lock becomes an orphan
    assert!(
        matches!(b.try_lock("o", Mode::Ex), Err(Error::WouldBlock)),
        "orphan not kept"
    );
    assert!(matches!(
        b.adopt_orphan("o", Mode::Pr, LockOptions::new()),
        Err(Error::OrphanModeMismatch)
    ));
    assert!(matches!(
        b.adopt_orphan("none", Mode::Ex, LockOptions::new()),
        Err(Error::OrphanNotFound)
    ));
    let adopted = b.adopt_orphan("o", Mode::Ex, LockOptions::new()).unwrap();
    assert_eq!(adopted.mode(), Mode::Ex);
    assert!(matches!(b.try_lock("o", Mode::Ex), Err(Error::WouldBlock)));
    adopted.unlock().unwrap();
    assert!(can_take(&b, "o", Mode::Ex));

    // Purge: orphans of this process go.
    let a = Lockspace::open(&name).unwrap();
    a.lock_with("p1", Mode::Ex, LockOptions::new().persistent())
        .unwrap()
        .orphan()
        .unwrap();
    a.lock_with("p2", Mode::Pr, LockOptions::new().persistent())
        .unwrap()
        .orphan()
        .unwrap();
    drop(a);
    assert!(!can_take(&b, "p1", Mode::Ex) && !can_take(&b, "p2", Mode::Ex));
    // The kernel records the requesting *thread*'s id as the owner pid;
    // pid 0 purges every orphan of this node.
    b.purge_orphans(Node::This, Owner::Any).unwrap();
    assert!(
        can_take(&b, "p1", Mode::Ex) && can_take(&b, "p2", Mode::Ex),
        "purge left orphans"
    );
    let a = Lockspace::open(&name).unwrap();
    Fixture { a, b }.finish();
}

#[test]
fn alternate_modes_report_what_was_granted() {
    require_cluster!();
    let f = Fixture::new("alt");
    let pr = f.b.lock("a", Mode::Pr).unwrap();
    let g =
        f.a.lock_with("a", Mode::Ex, LockOptions::new().alt_pr().no_wait())
            .unwrap();
    assert_eq!(g.mode(), Mode::Pr);
    assert!(g.granted().alternate);
    drop((g, pr));
    let cw = f.b.lock("a", Mode::Cw).unwrap();
    let g =
        f.a.lock_with("a", Mode::Ex, LockOptions::new().alt_cw().no_wait())
            .unwrap();
    assert_eq!(g.mode(), Mode::Cw);
    drop((g, cw));
    // Grantable as asked: no alternate.
    let g =
        f.a.lock_with("a", Mode::Ex, LockOptions::new().alt_pr())
            .unwrap();
    assert_eq!((g.mode(), g.granted().alternate), (Mode::Ex, false));
    drop(g);
    f.finish();
}

#[test]
fn headque_jumps_the_queue_and_noorder_ignores_it() {
    require_cluster!();
    let f = Fixture::new("queue");
    let c = Lockspace::open(f.a.name()).unwrap();
    // HEADQUE: a later request queued at the head is granted first.
    let held = f.a.lock("h", Mode::Ex).unwrap();
    let (tx, rx) = mpsc::channel();
    let (fr, cr) = (&f, &c);
    std::thread::scope(|s| {
        let tx1 = tx.clone();
        s.spawn(move || {
            let g = fr.b.lock("h", Mode::Ex).unwrap();
            tx1.send("tail").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(g);
        });
        std::thread::sleep(Duration::from_millis(300));
        let tx2 = tx.clone();
        s.spawn(move || {
            let g = cr
                .lock_with("h", Mode::Ex, LockOptions::new().head_queue())
                .unwrap();
            tx2.send("head").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(g);
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(held);
    });
    assert_eq!(rx.iter().take(2).collect::<Vec<_>>(), ["head", "tail"]);

    // NOORDER: a PR compatible with the holder is granted past a waiting EX.
    let pr = f.a.lock("o", Mode::Pr).unwrap();
    std::thread::scope(|s| {
        let w = s.spawn(|| f.b.lock("o", Mode::Ex).unwrap());
        std::thread::sleep(Duration::from_millis(300));
        let queued = c.lock_with("o", Mode::Pr, LockOptions::new().no_wait());
        assert!(
            matches!(queued, Err(Error::WouldBlock)),
            "PR granted past a waiting EX without NOORDER"
        );
        let g = c
            .lock_with("o", Mode::Pr, LockOptions::new().no_order().no_wait())
            .unwrap();
        drop((g, pr));
        drop(w.join().unwrap());
    });
    drop(c);
    f.finish();
}

#[test]
fn expedite_and_other_accepted_flags() {
    require_cluster!();
    let f = Fixture::new("expd");
    let held = f.b.lock("e", Mode::Ex).unwrap();
    let g =
        f.a.lock_with("e", Mode::Nl, LockOptions::new().expedite().lvb())
            .unwrap();
    assert_eq!(g.mode(), Mode::Nl);
    drop((g, held));
    let opts = LockOptions::new().no_deadlock_wait().persistent();
    let mut g = f.a.lock_with("f", Mode::Pr, opts).unwrap();
    g.convert_with(
        Mode::Ex,
        LockOptions::new().queue_conversion().no_deadlock_wait(),
    )
    .unwrap();
    drop(g);
    f.finish();
}

#[test]
fn rejected_combinations_never_reach_the_kernel() {
    require_cluster!();
    let f = Fixture::new("badflags");
    let bad = [
        (Mode::Ex, LockOptions::new().expedite()),
        (Mode::Nl, LockOptions::new().expedite().no_wait()),
        (Mode::Ex, LockOptions::new().queue_conversion()),
        (Mode::Ex, LockOptions::new().demote_on_deadlock()),
        (Mode::Ex, LockOptions::new().no_queue_bast()),
    ];
    for (mode, opts) in bad {
        assert!(
            matches!(
                f.a.lock_with("x", mode, opts),
                Err(Error::InvalidArgument(_))
            ),
            "{mode} {opts:?}"
        );
    }
    let mut g = f.a.lock("x", Mode::Pr).unwrap();
    assert!(matches!(
        g.convert_with(Mode::Nl, LockOptions::new().expedite()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        g.convert_with(Mode::Nl, LockOptions::new().queue_conversion()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        g.convert_with(Mode::Ex, LockOptions::new().demote_on_deadlock().no_wait()),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        g.convert_with(Mode::Ex, LockOptions::new().notify_blocking()),
        Err(Error::InvalidArgument(_))
    ));
    assert_eq!(g.mode(), Mode::Pr);
    drop(g);
    assert!(matches!(f.a.lock("", Mode::Ex), Err(Error::InvalidName(_))));
    assert!(matches!(
        f.a.lock([b'x'; 65], Mode::Ex),
        Err(Error::InvalidName(_))
    ));
    // 64 arbitrary bytes, NUL included, are a fine name.
    let mut name = [0u8; 64];
    name[10] = 0xff;
    let g = f.a.lock(name, Mode::Ex).unwrap();
    assert!(matches!(
        f.b.try_lock(name, Mode::Ex),
        Err(Error::WouldBlock)
    ));
    assert!(
        can_take(&f.b, &name[..63], Mode::Ex),
        "a 63-byte prefix is another resource"
    );
    drop(g);
    assert!(
        LockFlags::from_bits(0x2).is_err(),
        "CANCEL is not a request flag"
    );
    f.finish();
}

#[test]
fn with_lock_runs_the_closure_under_the_lock() {
    require_cluster!();
    let f = Fixture::new("withlock");
    let seen = dlm::with_lock(&f.a, "w", Mode::Ex, |g| {
        assert_eq!(g.mode(), Mode::Ex);
        can_take(&f.b, "w", Mode::Nl) && !can_take(&f.b, "w", Mode::Cr)
    })
    .unwrap();
    assert!(seen);
    assert!(can_take(&f.b, "w", Mode::Ex), "with_lock did not unlock");
    let r = dlm::with_lock_with(&f.a, "w", Mode::Ex, LockOptions::new().no_wait(), |_| 5).unwrap();
    assert_eq!(r, 5);
    // The lock is released even when the closure panics.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        dlm::with_lock(&f.a, "w", Mode::Ex, |_| panic!("inside")).ok();
    }));
    assert!(caught.is_err());
    assert!(
        can_take(&f.b, "w", Mode::Ex),
        "lock left held after a panic"
    );
    f.finish();
}

#[test]
fn acquire_and_release_1_10_100_1000_locks_in_parallel() {
    require_cluster!();
    let f = Fixture::new("many");
    for n in [1usize, 10, 100, 1000] {
        let threads = 4.min(n);
        let guards: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let ls = &f.a;
                    s.spawn(move || {
                        (t..n)
                            .step_by(threads)
                            .map(|i| ls.lock(format!("m{n}_{i}"), Mode::Ex).unwrap())
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(guards.len(), n);
        for i in [0, n / 2, n - 1] {
            assert!(matches!(
                f.b.try_lock(format!("m{n}_{i}"), Mode::Ex),
                Err(Error::WouldBlock)
            ));
        }
        std::thread::scope(|s| {
            let mut chunks: Vec<Vec<_>> = (0..threads).map(|_| Vec::new()).collect();
            for (i, g) in guards.into_iter().enumerate() {
                chunks[i % threads].push(g);
            }
            for chunk in chunks {
                s.spawn(move || {
                    for g in chunk {
                        g.unlock().unwrap();
                    }
                });
            }
        });
        for i in [0, n / 2, n - 1] {
            assert!(can_take(&f.b, format!("m{n}_{i}"), Mode::Ex));
        }
    }
    f.finish();
}

/// A value block holding `v`, zero-padded.
fn lvb_of(v: &[u8]) -> [u8; dlm::LVB_LEN] {
    let mut b = [0; dlm::LVB_LEN];
    b[..v.len()].copy_from_slice(v);
    b
}
