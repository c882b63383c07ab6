//! The futures and the poll mode against the real DLM: exclusion, try,
//! timeout, conversion, value blocks and blocking notifications, each
//! checked from a second handle, under tokio's multi-threaded runtime and
//! under futures' plain `block_on`; cancellation by drop at random moments;
//! a thousand requests in flight from one thread; poll-mode handles driven
//! by their own waits and by `dispatch`; blocking and async callers mixed.

mod common;

use common::can_take;

use dlm::{Error, LockOptions, Lockspace, Mode, Release};
use futures::future::join_all;
use std::time::{Duration, Instant};

fn fixture(test: &str) -> (Lockspace, Lockspace, String) {
    let name = common::ls_name(test);
    let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let b = Lockspace::open(&name).unwrap();
    (a, b, name)
}

/// Checks from a fresh handle that no lock is left, and removes it.
fn finish(name: &str) {
    if let Err(e) = dlm::leave(name, Release::IfUnused) {
        panic!("locks left behind in {name}: {e}");
    }
}

fn assert_send<T: Send>(t: T) -> T {
    t
}

/// The walk through every call, for either executor.
async fn walk(a: &Lockspace, b: &Lockspace) {
    // Exclusion, seen from the other handle.
    let mut g = assert_send(a.lock_async("r", Mode::Ex)).await.unwrap();
    assert!(!can_take(b, "r", Mode::Cr));
    assert!(matches!(
        b.try_lock_async("r", Mode::Pr).await,
        Err(Error::WouldBlock)
    ));
    let t = Instant::now();
    assert!(matches!(
        b.lock_with_async(
            "r",
            Mode::Pr,
            LockOptions::new().timeout(Duration::from_millis(150))
        )
        .await,
        Err(Error::TimedOut)
    ));
    assert!(t.elapsed() >= Duration::from_millis(140));
    assert!(
        !can_take(b, "r", Mode::Cr),
        "the timed-out request left nothing"
    );
    // Conversion, value block.
    g.set_lvb(b"async").unwrap();
    let granted = assert_send(g.convert_async(Mode::Pr)).await.unwrap();
    assert_eq!(granted.mode, Mode::Pr);
    assert!(can_take(b, "r", Mode::Pr) && !can_take(b, "r", Mode::Pw));
    let r = b
        .lock_with_async("r", Mode::Cr, LockOptions::new().lvb())
        .await
        .unwrap();
    assert_eq!(r.lvb().unwrap().as_str_lossy(), "async");
    assert_send(r.unlock_async()).await.unwrap();
    assert_send(g.unlock_async()).await.unwrap();
    assert!(can_take(b, "r", Mode::Ex));
    // with_lock_async.
    let n = dlm::with_lock_async(a, "w", Mode::Ex, async |g| {
        assert_eq!(g.mode(), Mode::Ex);
        7
    })
    .await
    .unwrap();
    assert_eq!(n, 7);
    assert!(can_take(b, "w", Mode::Ex));
}

#[test]
fn async_calls_under_tokio() {
    require_cluster!();
    let (a, b, name) = fixture("atokio");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        walk(&a, &b).await;
        // A waiter task granted when the holder's unlock completes; the
        // holder learns of it by a blocking notification.
        let mut g = a
            .lock_with_async("n", Mode::Ex, LockOptions::new().notify_blocking())
            .await
            .unwrap();
        let b2 = b.clone();
        let waiter =
            tokio::spawn(async move { b2.lock_async("n", Mode::Ex).await.map(|g| g.mode()) });
        tokio::time::timeout(Duration::from_secs(10), g.blocking_async())
            .await
            .expect("notified")
            .unwrap();
        assert!(!waiter.is_finished());
        g.unlock_async().await.unwrap();
        assert_eq!(waiter.await.unwrap().unwrap(), Mode::Ex);
    });
    drop(rt);
    drop((a, b));
    // The waiter's guard was dropped in the task: released in the
    // background; give it a moment.
    let t = Instant::now();
    while dlm::leave(&name, Release::IfUnused).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "background unlock never happened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn async_calls_under_block_on() {
    require_cluster!();
    let (a, b, name) = fixture("ablockon");
    futures::executor::block_on(walk(&a, &b));
    drop((a, b));
    finish(&name);
}

/// Polls `f` once, with a waker that does nothing: writes its request.
fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
    let waker = futures::task::noop_waker();
    f.poll(&mut std::task::Context::from_waker(&waker))
}

/// Waits (bounded) until `cond` holds.
fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        assert!(t.elapsed() < within, "{what}: not after {within:?}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// 2,000 lock futures dropped at random points (before the grant, racing
/// it, after it), while another handle toggles the lock: afterwards no
/// lock is left. First, the two ends made certain: a future dropped while
/// its request waits (given up, cancelled, nothing left), and one dropped
/// after its grant came but before it was polled again (given up, and
/// the lock nobody owns is released by the reaper).
#[test]
fn dropped_futures_leave_nothing() {
    require_cluster!();
    let (a, b, name) = fixture("adrop");
    let n: u64 = std::env::var("DLM_ASYNC_DROPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("dropped futures: seed {seed}");
    // The counters are process-wide and other tests may run at the same
    // time: only lower bounds this test alone causes are checked.
    let before = dlm::stats();

    // Dropped while waiting behind another holder: the request is
    // cancelled; once the holder leaves, the resource is free.
    let holder = b.lock("w", Mode::Ex).unwrap();
    {
        let mut f = std::pin::pin!(a.lock_async("w", Mode::Ex));
        assert!(poll_once(f.as_mut()).is_pending(), "granted past EX");
        std::thread::sleep(Duration::from_millis(100));
        assert!(poll_once(f.as_mut()).is_pending(), "granted past EX");
    }
    assert!(dlm::stats().given_up > before.given_up, "the drop gave up");
    holder.unlock().unwrap();
    // The cancel is written by the handle's worker thread (a drop never
    // writes): the resource is free within moments, whether the cancel came
    // first or the grant (then released in the background).
    let start = Instant::now();
    while !can_take(&b, "w", Mode::Ex) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the dropped request still holds the resource"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Dropped after its grant came: a lock nobody owns, which the reaper
    // must release.
    let holder = b.lock("g", Mode::Ex).unwrap();
    {
        let mut f = std::pin::pin!(a.lock_async("g", Mode::Ex));
        assert!(poll_once(f.as_mut()).is_pending(), "granted past EX");
        holder.unlock().unwrap();
        // The grant comes to the future's cell; the observer sees EX held.
        eventually("the grant", Duration::from_secs(10), || {
            !can_take(&b, "g", Mode::Cr)
        });
    }
    eventually("the reaper's release", Duration::from_secs(15), || {
        can_take(&b, "g", Mode::Ex)
    });
    eventually("the reap counted", Duration::from_secs(5), || {
        dlm::stats().reaped > before.reaped
    });
    assert!(
        dlm::stats().given_up >= before.given_up + 2,
        "both drops gave up: {before:?} -> {:?}",
        dlm::stats()
    );

    // At random points, racing the toggler.
    let before = dlm::stats();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (mut granted, mut dropped) = (0u64, 0u64);
    let mut extra = 0u64;
    rt.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let toggler = {
            let (b, stop) = (b.clone(), stop.clone());
            tokio::task::spawn_blocking(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let g = b.lock("t", Mode::Ex).unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                    g.unlock().unwrap();
                    std::thread::sleep(Duration::from_micros(300));
                }
            })
        };
        let mut x = seed;
        // After the n random rounds, more (bounded) with the delay pushed
        // towards the outcome not seen yet: none (dropped at once) or
        // longer and longer (granted).
        while extra < 200 {
            let i = granted + dropped;
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let after = if i < n {
                Duration::from_micros(x % 1_500)
            } else if granted > 0 && dropped > 0 {
                break;
            } else {
                extra += 1;
                if dropped == 0 {
                    Duration::ZERO
                } else {
                    Duration::from_millis(10 * extra)
                }
            };
            match tokio::time::timeout(after, a.lock_async("t", Mode::Ex)).await {
                Ok(Ok(g)) => {
                    granted += 1;
                    if x % 2 == 0 {
                        g.unlock_async().await.unwrap();
                    } // else dropped: released in the background
                }
                Ok(Err(e)) => panic!("lock_async: {e}"),
                Err(_) => dropped += 1,
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        toggler.await.unwrap();
    });
    let after = dlm::stats();
    eprintln!(
        "{n}+{extra} futures: {granted} granted, {dropped} dropped before their answer; {after:?}"
    );
    assert!(
        granted > 0,
        "no future was granted: the drops raced nothing"
    );
    assert!(dropped > 0, "no future was dropped before its answer");
    // Every future dropped before its answer had written its request
    // (tokio's timeout polls the future first), so each was given up.
    assert!(
        after.given_up - before.given_up >= dropped,
        "{dropped} dropped futures, but given_up went {} -> {}",
        before.given_up,
        after.given_up
    );
    drop(rt);
    drop((a, b));
    let t = Instant::now();
    while let Err(e) = dlm::leave(&name, Release::IfUnused) {
        assert!(
            t.elapsed() < Duration::from_secs(15),
            "locks left behind: {e}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One thread, a thousand requests in flight at once (pthread mode and
/// poll mode), then a thousand unlocks in flight.
#[test]
fn a_thousand_requests_in_flight_from_one_thread() {
    require_cluster!();
    let (a, b, name) = fixture("amany");
    let polled = Lockspace::builder(&name).poll_mode().open().unwrap();
    for ls in [&a, &polled] {
        let names: Vec<String> = (0..1000).map(|i| format!("m{i}")).collect();
        let t = Instant::now();
        let guards = if ls.is_polled() {
            drive(
                ls,
                join_all(names.iter().map(|n| ls.lock_async(n, Mode::Ex))),
            )
        } else {
            futures::executor::block_on(join_all(names.iter().map(|n| ls.lock_async(n, Mode::Ex))))
        };
        let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
        eprintln!(
            "{} mode: 1,000 locks in flight granted in {:?}",
            if ls.is_polled() { "poll" } else { "pthread" },
            t.elapsed()
        );
        assert!(!can_take(&b, "m0", Mode::Cr) && !can_take(&b, "m999", Mode::Cr));
        let unlocks = join_all(guards.into_iter().map(|g| g.unlock_async()));
        let results = if ls.is_polled() {
            drive(ls, unlocks)
        } else {
            futures::executor::block_on(unlocks)
        };
        results.into_iter().for_each(Result::unwrap);
        assert!(can_take(&b, "m0", Mode::Ex) && can_take(&b, "m999", Mode::Ex));
    }
    drop((a, b, polled));
    finish(&name);
}

/// Runs `f` to completion on this thread, dispatching the poll-mode
/// lockspace `ls` whenever its descriptor is readable (a hand-written
/// event loop).
fn drive<F: std::future::Future>(ls: &Lockspace, f: F) -> F::Output {
    use std::os::fd::AsRawFd;
    let mut f = std::pin::pin!(f);
    let waker = futures::task::noop_waker();
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        let mut pfd = libc::pollfd {
            fd: ls.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut pfd, 1, 100) } > 0 {
            ls.dispatch().unwrap();
        }
    }
}

/// A poll-mode handle used by blocking calls only: its waits dispatch.
#[test]
fn poll_mode_blocking_calls_dispatch_while_they_wait() {
    require_cluster!();
    let (a, b, name) = fixture("apoll");
    let p = Lockspace::builder(&name).poll_mode().open().unwrap();
    assert!(p.is_polled() && !a.is_polled());
    assert!(matches!(a.dispatch(), Err(Error::InvalidArgument(_))));
    let mut g = p.lock("r", Mode::Pr).unwrap();
    assert!(!can_take(&b, "r", Mode::Ex));
    g.convert(Mode::Ex).unwrap();
    assert!(!can_take(&b, "r", Mode::Cr));
    // A waiter in poll mode, released by another handle.
    let h = a.lock("q", Mode::Ex).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(200));
            h.unlock().unwrap();
        });
        let t = Instant::now();
        let q = p.lock("q", Mode::Ex).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(150));
        q.unlock().unwrap();
    });
    // A timed request in poll mode: NL is granted beside EX...
    p.lock_with(
        "r",
        Mode::Nl,
        LockOptions::new().timeout(Duration::from_millis(50)),
    )
    .unwrap()
    .unlock()
    .unwrap();
    // ... and CR times out, cancelled through the poll-mode wait: the
    // cancel's answer is read by the wait's own dispatching (without it the
    // wait would give up only after CANCEL_GRACE), on the handle that
    // holds EX and on a fresh poll-mode handle.
    let p2 = Lockspace::builder(&name).poll_mode().open().unwrap();
    assert!(p2.is_polled());
    for (who, ls) in [("p", &p), ("p2", &p2)] {
        let t = Instant::now();
        let r = ls.lock_with(
            "r",
            Mode::Cr,
            LockOptions::new().timeout(Duration::from_millis(50)),
        );
        let took = t.elapsed();
        assert!(matches!(r, Err(Error::TimedOut)), "{who}: {r:?}");
        assert!(
            took >= Duration::from_millis(45) && took < dlm::CANCEL_GRACE / 2,
            "{who}: timed out after {took:?}"
        );
        // Still EX only: the observer is kept out, the holder keeps EX.
        assert!(!can_take(&b, "r", Mode::Cr), "{who}");
        assert_eq!(g.mode(), Mode::Ex);
    }
    // The poll-mode handles still work after their cancels.
    p2.lock("r2", Mode::Ex).unwrap().unlock().unwrap();
    drop(p2);
    g.unlock().unwrap();
    // No cancelled request was left behind: EX is free.
    assert!(can_take(&b, "r", Mode::Ex));
    drop((a, b, p));
    finish(&name);
}

/// Blocking and async callers on one handle at once.
#[test]
fn blocking_and_async_callers_mixed_on_one_handle() {
    require_cluster!();
    let (a, b, name) = fixture("amixed");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    std::thread::scope(|s| {
        let (a2, b2) = (&a, &b);
        let blocking = s.spawn(move || {
            for i in 0..200 {
                let g = a2.lock("mix", Mode::Ex).unwrap();
                assert!(!can_take(b2, "mix", Mode::Cr), "round {i}");
                g.unlock().unwrap();
            }
        });
        rt.block_on(async {
            for _ in 0..200 {
                let g = a.lock_async("mix", Mode::Ex).await.unwrap();
                g.unlock_async().await.unwrap();
            }
        });
        blocking.join().unwrap();
    });
    drop(rt);
    drop((a, b));
    finish(&name);
}

/// Feature `tokio`: a poll-mode handle driven by `dlm::tokio::drive` on a
/// current-thread runtime (no libdlm thread).
#[cfg(feature = "tokio")]
#[test]
fn tokio_driver_runs_a_poll_mode_handle() {
    require_cluster!();
    let (a, b, name) = fixture("atokdrv");
    let p = Lockspace::builder(&name).poll_mode().open().unwrap();
    assert!(matches!(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(dlm::tokio::drive(a.clone())),
        Err(Error::InvalidArgument(_))
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let driver = tokio::spawn(dlm::tokio::drive(p.clone()));
        let mut g = p.lock_async("r", Mode::Ex).await.unwrap();
        assert!(!can_take(&b, "r", Mode::Cr));
        g.convert_async(Mode::Pr).await.unwrap();
        assert!(can_take(&b, "r", Mode::Cr) && !can_take(&b, "r", Mode::Ex));
        g.unlock_async().await.unwrap();
        let guards = join_all((0..100).map(|i| p.lock_async(format!("t{i}"), Mode::Ex))).await;
        let guards: Vec<_> = guards.into_iter().map(Result::unwrap).collect();
        assert!(!can_take(&b, "t42", Mode::Cr));
        for r in join_all(guards.into_iter().map(|g| g.unlock_async())).await {
            r.unwrap();
        }
        assert!(can_take(&b, "t42", Mode::Ex));
        driver.abort();
    });
    drop(rt);
    drop((a, b, p));
    finish(&name);
}

/// Feature `tokio`: the driver and blocking calls on one poll-mode handle
/// at once (issue 15, defect 7). A dispatch that finds another thread
/// dispatching waits for it and then reads, so the driver never clears a
/// readiness whose answer nobody read: every future completes even when
/// the blocking thread stops right after an answer arrived. Before, the
/// driver's dispatch returned without reading and an answer sat unread
/// until the next one came: here, for ever.
#[cfg(feature = "tokio")]
#[test]
fn tokio_driver_and_blocking_calls_share_a_poll_mode_handle() {
    require_cluster!();
    let (a, b, name) = fixture("atokmix");
    let p = Lockspace::builder(&name).poll_mode().open().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let driver = rt.spawn(dlm::tokio::drive(p.clone()));
    let mut async_ops = 0u64;
    for round in 0..200 {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let blocking = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                for _ in 0..(1 + round % 4) {
                    let g = p.lock("b", Mode::Ex).unwrap();
                    g.unlock().unwrap();
                }
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        };
        let p2 = p.clone();
        let n = rt.block_on(async move {
            let mut n = 0u64;
            loop {
                let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                let op = async {
                    let g = p2.lock_async("a", Mode::Ex).await?;
                    g.unlock_async().await
                };
                match tokio::time::timeout(Duration::from_secs(5), op).await {
                    Ok(r) => r.unwrap(),
                    Err(_) => panic!("round {round}: a future's answer was never read"),
                }
                n += 1;
                if done {
                    return n;
                }
            }
        });
        async_ops += n;
        blocking.join().unwrap();
    }
    println!("200 rounds, {async_ops} async lock+unlock pairs beside blocking calls");
    assert!(can_take(&b, "a", Mode::Ex) && can_take(&b, "b", Mode::Ex));
    driver.abort();
    drop(rt);
    drop((a, b, p));
    finish(&name);
}
