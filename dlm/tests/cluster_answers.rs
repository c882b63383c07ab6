//! Regression tests for the unhappy answers: each checks, from a second
//! handle, what the kernel really holds after an answer that is not a
//! plain grant (a failed, cancelled or demoted conversion, a flag the
//! kernel replaced, a huge timeout, a grant racing a give-up).

mod common;

use common::can_take;

use dlm::{Error, LockOptions, Lockspace, Mode, Node, Owner, Release, LVB_LEN};
use std::time::{Duration, Instant};

/// Three handles of one fresh lockspace: two actors and an observer.
struct Fixture {
    a: Lockspace,
    b: Lockspace,
    obs: Lockspace,
}

impl Fixture {
    fn new(test: &str) -> Fixture {
        let name = common::ls_name(test);
        let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
        let b = Lockspace::open(&name).unwrap();
        let obs = Lockspace::open(&name).unwrap();
        Fixture { a, b, obs }
    }

    /// Checks from a fresh handle that no lock is left (a non-forced
    /// release fails while any exists), then removes the lockspace.
    fn finish(self) {
        let name = self.a.name().to_string();
        drop((self.a, self.b, self.obs));
        if let Err(e) = dlm::leave(&name, Release::IfUnused) {
            panic!("locks left behind in {name}: {e}");
        }
    }
}

fn lvb_of(v: &[u8]) -> [u8; LVB_LEN] {
    let mut b = [0; LVB_LEN];
    b[..v.len()].copy_from_slice(v);
    b
}

/// The resource's value block as a new PR reader sees it, from `ls`.
fn read_lvb(ls: &Lockspace, name: &str) -> dlm::Lvb {
    let g = ls
        .lock_with(name, Mode::Pr, LockOptions::new().lvb())
        .unwrap();
    let v = g.lvb().expect("read with VALBLK");
    g.unlock().unwrap();
    v
}

/// Publishes `value` into `name`'s value block from `ls` (EX, set, unlock).
fn publish(ls: &Lockspace, name: &str, value: &[u8]) {
    let mut g = ls
        .lock_with(name, Mode::Ex, LockOptions::new().lvb())
        .unwrap();
    g.set_lvb(value).unwrap();
    g.unlock().unwrap();
}

/// Defect 1: `timeout(Duration::MAX)` overflowed `Instant` after the
/// request was written (a panic, then a freed cell the kernel wrote the
/// grant into). A huge timeout now means "no deadline".
#[test]
fn huge_timeouts_mean_no_deadline() {
    require_cluster!();
    let f = Fixture::new("hugeto");
    for timeout in [Duration::MAX, Duration::from_secs(u64::MAX / 2)] {
        let holder = f.b.lock("r", Mode::Ex).unwrap();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                f.a.lock_with("r", Mode::Ex, LockOptions::new().timeout(timeout))
            });
            std::thread::sleep(Duration::from_millis(300));
            assert!(!waiter.is_finished(), "the waiter did not wait");
            holder.unlock().unwrap();
            let mut g = waiter.join().expect("no panic").expect("granted");
            assert_eq!(g.mode(), Mode::Ex);
            assert!(!can_take(&f.obs, "r", Mode::Cr), "the waiter holds EX");
            // A conversion with a huge timeout too.
            g.convert_with(Mode::Pr, LockOptions::new().timeout(timeout))
                .unwrap();
            assert!(can_take(&f.obs, "r", Mode::Pr));
            g.unlock().unwrap();
        });
        assert!(can_take(&f.obs, "r", Mode::Ex));
    }
    f.finish();
}

/// Defect 2: the kernel replaces a lock's flags on every conversion, so a
/// plain conversion of a persistent lock used to drop PERSISTENT: at
/// close the lock was unlocked instead of orphaned.
#[test]
fn persistence_survives_conversions_and_failed_ones() {
    require_cluster!();
    let f = Fixture::new("persist");
    let name = f.a.name().to_string();
    // Plain conversions up and down, then orphaned.
    let owner = Lockspace::open(&name).unwrap();
    let mut g = owner
        .lock_with("p1", Mode::Pr, LockOptions::new().persistent())
        .unwrap();
    g.convert(Mode::Ex).unwrap();
    g.convert(Mode::Cr).unwrap();
    assert!(g.is_persistent());
    g.orphan().expect("persistent");
    drop(owner);
    let adopted = f.b.adopt_orphan("p1", Mode::Cr, LockOptions::new());
    let adopted = adopted.expect("the lock was orphaned at close, not unlocked");
    adopted.unlock().unwrap();

    // A failed conversion (refused try) keeps it persistent too.
    let owner = Lockspace::open(&name).unwrap();
    let blocker = f.a.lock("p2", Mode::Pr).unwrap();
    let mut g = owner
        .lock_with("p2", Mode::Pr, LockOptions::new().persistent())
        .unwrap();
    assert!(matches!(
        g.convert_with(Mode::Ex, LockOptions::new().no_wait()),
        Err(Error::WouldBlock)
    ));
    assert_eq!(g.mode(), Mode::Pr);
    g.orphan().expect("still persistent");
    drop(owner);
    blocker.unlock().unwrap();
    f.b.adopt_orphan("p2", Mode::Pr, LockOptions::new())
        .expect("orphaned")
        .unlock()
        .unwrap();

    // A lock made persistent by a conversion is orphaned as well.
    let owner = Lockspace::open(&name).unwrap();
    let mut g = owner.lock("p3", Mode::Nl).unwrap();
    assert!(!g.is_persistent());
    g.convert_with(Mode::Ex, LockOptions::new().persistent())
        .unwrap();
    assert!(g.is_persistent());
    g.orphan().expect("persistent now");
    drop(owner);
    assert!(!can_take(&f.obs, "p3", Mode::Pr), "the orphan holds EX");
    f.b.adopt_orphan("p3", Mode::Ex, LockOptions::new())
        .unwrap()
        .unlock()
        .unwrap();
    f.finish();
}

/// Defect 3: a conversion with `demote_on_deadlock` that times out after
/// the DLM demoted the lock to NL: the guard must say NL (another holder
/// has EX), and the error says it was demoted.
#[test]
fn demotion_on_a_failed_conversion_is_seen() {
    require_cluster!();
    let f = Fixture::new("demote");
    let mut first = f.a.lock("d", Mode::Pr).unwrap();
    let mut second = f.b.lock("d", Mode::Pr).unwrap();
    std::thread::scope(|s| {
        let t = s.spawn(|| {
            first
                .convert_with(Mode::Ex, LockOptions::new().demote_on_deadlock())
                .map(|g| g.mode)
        });
        std::thread::sleep(Duration::from_millis(200));
        // The deadlock demotes `second` to NL; `first` gets EX; `second`'s
        // conversion then waits behind it and times out.
        let r2 = second.convert_with(
            Mode::Ex,
            LockOptions::new()
                .demote_on_deadlock()
                .timeout(Duration::from_millis(500)),
        );
        assert_eq!(t.join().unwrap().unwrap(), Mode::Ex);
        match r2 {
            Err(Error::Demoted(cause)) => assert!(matches!(*cause, Error::TimedOut), "{cause}"),
            other => panic!("expected Demoted(TimedOut), got {other:?}"),
        }
        assert_eq!(second.mode(), Mode::Nl, "the kernel holds NL for it now");
    });
    // What the observer sees: EX held (by first), nothing else but NL.
    assert!(!can_take(&f.obs, "d", Mode::Cr));
    drop(first);
    assert!(can_take(&f.obs, "d", Mode::Ex), "second holds only NL");
    drop(second);
    f.finish();
}

/// Defect 4: a failed conversion sent with VALBLK leaves VALBLK in the
/// kernel's flags; the unlock from PW must then not write libdlm's
/// uninitialised bytes into the value block.
#[test]
fn a_failed_conversion_with_lvb_leaves_no_garbage() {
    require_cluster!();
    let f = Fixture::new("garbage");
    let keeper = f.obs.lock("v", Mode::Nl).unwrap();
    publish(&f.obs, "v", b"good");
    for _ in 0..20 {
        let mut g = f.a.lock("v", Mode::Pw).unwrap();
        let blocker = f.b.lock("v", Mode::Cr).unwrap();
        assert!(matches!(
            g.convert_with(Mode::Ex, LockOptions::new().lvb().no_wait()),
            Err(Error::WouldBlock)
        ));
        assert_eq!(g.mode(), Mode::Pw);
        g.unlock().unwrap();
        blocker.unlock().unwrap();
        let v = read_lvb(&f.obs, "v");
        assert_eq!((v.bytes, v.valid), (lvb_of(b"good"), true));
    }
    drop(keeper);
    f.finish();
}

/// Defect 5: `set_lvb` under PW then PW -> EX (a conversion that reads):
/// the value must not be read over; it is published later.
#[test]
fn a_value_set_under_pw_survives_the_conversion_to_ex() {
    require_cluster!();
    let f = Fixture::new("pwex");
    let keeper = f.obs.lock("v", Mode::Nl).unwrap();
    publish(&f.obs, "v", b"old");
    let mut g =
        f.a.lock_with("v", Mode::Pw, LockOptions::new().lvb())
            .unwrap();
    assert_eq!(g.lvb().unwrap().bytes, lvb_of(b"old"));
    g.set_lvb(b"new").unwrap();
    g.convert(Mode::Ex).unwrap();
    assert_eq!(g.lvb().unwrap().bytes, lvb_of(b"new"), "read over");
    g.convert(Mode::Nl).unwrap();
    assert_eq!(read_lvb(&f.obs, "v").bytes, lvb_of(b"new"));
    g.unlock().unwrap();
    drop(keeper);
    f.finish();
}

/// Defect 6: EX -> NL with `.lvb()` on a guard that never read or set the
/// value block used to publish its 32 zero bytes.
#[test]
fn a_conversion_down_without_a_value_writes_nothing() {
    require_cluster!();
    let f = Fixture::new("zeros");
    let keeper = f.obs.lock("v", Mode::Nl).unwrap();
    publish(&f.obs, "v", b"keep");
    let mut g = f.a.lock("v", Mode::Ex).unwrap();
    g.convert_with(Mode::Nl, LockOptions::new().lvb()).unwrap();
    let v = read_lvb(&f.obs, "v");
    assert_eq!((v.bytes, v.valid), (lvb_of(b"keep"), true));
    // Nor does a read value get written back on the way down.
    g.convert_with(Mode::Ex, LockOptions::new().lvb()).unwrap();
    assert_eq!(g.lvb().unwrap().bytes, lvb_of(b"keep"));
    publish_via(&f.b, "v", b"other", &mut g);
    drop((g, keeper));
    f.finish();

    /// Unlocks `g` (which read "keep"), then has `ls` publish `value`, and
    /// checks the reader sees `value`: `g`'s unlock wrote nothing.
    fn publish_via(ls: &Lockspace, name: &str, value: &[u8], g: &mut dlm::LockGuard) {
        g.convert(Mode::Nl).unwrap();
        publish(ls, name, value);
        assert_eq!(read_lvb(ls, name).bytes, lvb_of(value));
    }
}

/// Orphaning publishes a pending value (a conversion to the same mode):
/// `orphan()` used to drop it.
#[test]
fn orphan_publishes_a_pending_value() {
    require_cluster!();
    let f = Fixture::new("orphlvb");
    let name = f.a.name().to_string();
    let keeper = f.obs.lock("v", Mode::Nl).unwrap();
    publish(&f.obs, "v", b"before");
    let owner = Lockspace::open(&name).unwrap();
    let mut g = owner
        .lock_with("v", Mode::Ex, LockOptions::new().persistent().lvb())
        .unwrap();
    g.set_lvb(b"orphaned").unwrap();
    let tid = g.owner_tid();
    g.orphan().expect("persistent");
    drop(owner);
    // The orphan holds EX; the value was published before it was left.
    let adopted =
        f.b.adopt_orphan("v", Mode::Ex, LockOptions::new().lvb())
            .unwrap();
    adopted.unlock().unwrap();
    assert_eq!(read_lvb(&f.obs, "v").bytes, lvb_of(b"orphaned"));
    // owner_tid is the thread the kernel records: a purge by it works.
    let owner = Lockspace::open(&name).unwrap();
    owner
        .lock_with("w", Mode::Ex, LockOptions::new().persistent())
        .unwrap()
        .orphan()
        .unwrap();
    drop(owner);
    assert!(!can_take(&f.obs, "w", Mode::Ex));
    // From the owner thread itself the kernel would purge the caller's own
    // locks: refused.
    assert!(matches!(
        f.obs.purge_orphans(Node::This, Owner::Thread(tid)),
        Err(Error::InvalidArgument(_))
    ));
    std::thread::scope(|s| {
        s.spawn(|| f.obs.purge_orphans(Node::This, Owner::Thread(tid)))
            .join()
    })
    .unwrap()
    .unwrap();
    assert!(
        can_take(&f.obs, "w", Mode::Ex),
        "purge by owner_tid freed it"
    );
    drop(keeper);
    f.finish();
}

/// A blocking notification received before a conversion is stale after
/// it: `wait_blocking` must not return at once for it.
#[test]
fn a_granted_conversion_drops_stale_blocking_notifications() {
    require_cluster!();
    let f = Fixture::new("stale");
    let mut g =
        f.a.lock_with("b", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
    // A waiter that gives up: it caused a notification.
    assert!(matches!(
        f.b.lock_with(
            "b",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_millis(200))
        ),
        Err(Error::TimedOut)
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert!(g.blocking().unwrap().len() == 1, "notified");
    g.convert(Mode::Pr).unwrap();
    let t = Instant::now();
    assert!(g
        .wait_blocking(Some(Duration::from_millis(300)))
        .unwrap()
        .is_none());
    assert!(t.elapsed() >= Duration::from_millis(250));
    // A fresh conflict notifies again: a new waiter for EX, which PR
    // blocks, makes a new notification come (within a bound).
    std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            f.b.lock_with(
                "b",
                Mode::Ex,
                LockOptions::new().timeout(Duration::from_secs(20)),
            )
        });
        let t = Instant::now();
        assert!(
            g.wait_blocking(Some(Duration::from_secs(10)))
                .unwrap()
                .is_some(),
            "no blocking notification for a fresh conflict after {:?}",
            t.elapsed()
        );
        assert!(!waiter.is_finished(), "the waiter did not wait behind PR");
        // The holder gives way, as the notification asks: the waiter gets EX.
        g.unlock().unwrap();
        let w = waiter
            .join()
            .unwrap()
            .expect("granted once PR was released");
        assert_eq!(w.mode(), Mode::Ex);
        assert!(!can_take(&f.obs, "b", Mode::Cr), "the waiter holds EX");
        w.unlock().unwrap();
    });
    assert!(can_take(&f.obs, "b", Mode::Ex));
    f.finish();
}

/// Re-entrance: the DLM does not detect a thread asking again for a lock
/// it holds. A try says WouldBlock, a timed request times out (an untimed
/// one would wait for ever: documented on `Lockspace::lock`).
#[test]
fn re_requests_by_the_same_thread_conflict_like_any_other() {
    require_cluster!();
    let f = Fixture::new("reent");
    let g = f.a.lock("r", Mode::Ex).unwrap();
    assert!(matches!(
        f.a.try_lock("r", Mode::Ex),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        f.a.lock_with(
            "r",
            Mode::Pr,
            LockOptions::new().timeout(Duration::from_millis(100))
        ),
        Err(Error::TimedOut)
    ));
    // Shared modes stack.
    drop(g);
    let p1 = f.a.lock("r", Mode::Pr).unwrap();
    let p2 = f.a.lock("r", Mode::Pr).unwrap();
    drop((p1, p2));
    f.finish();
}

/// Give-up versus late grant: timeouts set close to the holder's hold
/// time, many times. Whatever each request answers, the observer must
/// agree, and no lock may be left. Both answers must occur over the run
/// (else the race was not exercised): if the timed rounds gave only one,
/// more rounds follow with the timing pushed towards the missing one.
#[test]
fn timeouts_racing_grants_leave_the_truth_behind() {
    require_cluster!();
    let f = Fixture::new("torace");
    let rounds: u32 = std::env::var("DLM_TORACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    // One round: true if granted (and whether after its deadline), false
    // if timed out.
    let round = |i: u32, hold: Duration, timeout: Duration| -> (bool, bool) {
        let holder = f.b.lock("t", Mode::Ex).unwrap();
        let (got, took) = std::thread::scope(|s| {
            let w = s.spawn(|| {
                let t = Instant::now();
                let r =
                    f.a.lock_with("t", Mode::Ex, LockOptions::new().timeout(timeout));
                (r, t.elapsed())
            });
            std::thread::sleep(hold);
            holder.unlock().unwrap();
            w.join().unwrap()
        });
        let outcome = match got {
            Ok(g) => {
                assert_eq!(g.mode(), Mode::Ex, "round {i}");
                assert!(
                    !can_take(&f.obs, "t", Mode::Cr),
                    "round {i}: granted, but the observer is not kept out"
                );
                g.unlock().unwrap();
                // Past its deadline: the grant crossed the cancel.
                (true, took >= timeout)
            }
            Err(Error::TimedOut) => (false, false),
            Err(e) => panic!("round {i}: {e}"),
        };
        assert!(
            can_take(&f.obs, "t", Mode::Ex),
            "round {i}: a lock was left"
        );
        outcome
    };
    #[derive(Default)]
    struct Tally {
        granted: u32,
        late: u32,
        timed_out: u32,
    }
    impl Tally {
        fn add(&mut self, (granted, late): (bool, bool)) {
            if granted {
                self.granted += 1;
                self.late += u32::from(late);
            } else {
                self.timed_out += 1;
            }
        }
    }
    let mut n = Tally::default();
    for i in 0..rounds {
        let hold = Duration::from_micros(2_000 + (i as u64 * 37) % 3_000);
        let timeout = Duration::from_micros(2_000 + (i as u64 * 53) % 3_000);
        n.add(round(i, hold, timeout));
    }
    // Bounded: push the timing further towards the outcome not seen yet.
    let mut extra = 0u32;
    while (n.granted == 0 || n.timed_out == 0) && extra < 40 {
        extra += 1;
        let skew = Duration::from_millis(5 * extra as u64);
        let (hold, timeout) = if n.timed_out == 0 {
            (Duration::from_millis(5) + skew, Duration::from_millis(2))
        } else {
            (
                Duration::from_millis(2),
                Duration::from_millis(5) + skew * 10,
            )
        };
        n.add(round(rounds + extra, hold, timeout));
    }
    eprintln!(
        "{rounds}+{extra} rounds: {} granted ({} after their deadline), {} timed out; {:?}",
        n.granted,
        n.late,
        n.timed_out,
        dlm::stats()
    );
    assert!(
        n.granted > 0,
        "no request was granted: the race was not run"
    );
    assert!(
        n.timed_out > 0,
        "no request timed out: the race was not run"
    );
    // The counters: every timed-out request's cancel was answered (one
    // node, at once), so none was given up, none reaped; but the counters
    // are process-wide and other tests of this binary may run at the same
    // time, so nothing is asserted of them here (see cluster_async's
    // dropped futures, whose give-ups and reaps are this test's own).
    f.finish();
}

/// Names the kernel or dlm_controld cannot take are refused before any
/// call, and at once (`.` and `..` used to hang in the kernel for ever).
#[test]
fn unusable_lockspace_names_are_refused_at_once() {
    require_cluster!();
    let t = Instant::now();
    for bad in [
        ".",
        "..",
        "plock",
        "a b",
        "new\nline",
        "tab\t",
        "esc\u{1b}[0m",
        "é",
    ] {
        assert!(
            matches!(Lockspace::create(bad, 0o600), Err(Error::InvalidName(_))),
            "{bad:?}"
        );
        assert!(matches!(Lockspace::open(bad), Err(Error::InvalidName(_))));
        assert!(matches!(dlm::join(bad, 0o600), Err(Error::InvalidName(_))));
        assert!(matches!(
            dlm::leave(bad, Release::Force),
            Err(Error::InvalidName(_))
        ));
    }
    assert!(t.elapsed() < Duration::from_secs(2));
    // The process is not stuck: a real lockspace still works.
    let f = Fixture::new("names");
    assert!(can_take(&f.a, "r", Mode::Ex));
    f.finish();
}

/// `kernel_version` does not report a stale `errno`.
#[test]
fn kernel_version_ignores_a_stale_errno() {
    require_cluster!();
    // SAFETY: the calling thread's errno slot.
    unsafe { *libc::__errno_location() = libc::EIO };
    let v = dlm::kernel_version().unwrap();
    assert_eq!(v.major, 6);
}
