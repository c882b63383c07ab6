//! The `cached` kind: the workload's critical sections taken through
//! [`CachedLock`]s (issue 17), one cache per shared resource shared by the
//! process's THREADS threads, so that local holders are served from a DLM
//! lock the process keeps, and the caches give it up when other nodes (or
//! the other worker process of this node) ask.
//!
//! Records as the other kinds do: `RS`/`RE` around each take (`lock`,
//! `try` or `timed`: [`CachedLock::lock`], [`CachedLock::try_lock`],
//! [`CachedLock::lock_with`] with a timeout), `IN` once the local guard is
//! handed out, `OUT` before it is dropped. A cached section is the local
//! guard's lifetime, which lies inside the hold of the cache's DLM lock in
//! a mode covering the local mode: the checker's exclusion proof holds for
//! it unchanged.
//!
//! Value blocks: the caches are made with [`CacheOptions::lvb`]. A writer
//! (EX) reads the counter from its guard ([`CachedGuard::lvb`]: as the
//! cache read it at its last take of the DLM lock, or as an earlier local
//! writer left it), sets the next value with
//! [`CachedGuard::set_lvb`], and leaves; a reader (PR, CR) reads it from
//! its guard. The cache publishes the value when it gives the DLM lock up,
//! not when the guard is dropped: so the writer records its `PUB ... ok`
//! only once the cache has given the lock up after the guard was dropped
//! (its `give_ups + idle_releases` grew past what they were just after the
//! drop; a give-up cannot have begun before the drop, since it waits for
//! the local holders, and the counters grow under the cache's mutex before
//! the next local take is served). The value then published is this
//! writer's or a later local writer's, which counts this increment too.
//! Increments not yet given up when the worker stops (the drop of the
//! cache publishes them, but reports nothing) or when it is killed are
//! recorded without `PUB`: unconfirmed, as a blocking writer killed
//! before its unlock. The checker thus needs no knowledge of caches: each
//! counter read was written by a writer that read the one before, and no
//! two confirmed writers published the same increment.
//!
//! Writers take EX only, not PW: a cache holding PW with a value set by a
//! local holder and not yet published loses that value when a local EX
//! take converts the DLM lock PW -> EX (the conversion reads the
//! resource's value block into the cache): see the report of issue 17.
use super::{
    cmd_loop, finish, join_chaos, next_counter, now_ns, outcome, rec_path, take_keepers, Ctx, Hist,
    WorkerArgs, RESOURCES, TIMED_SLACK_MS, UNTIMED_BOUND_MS,
};
use dlm::{CacheOptions, CachedGuard, CachedLock, Error, GiveUp, LockOptions, Lockspace, Mode};
use dlm_chaos::{Counter, Recorder, Rng};
use std::sync::Arc;
use std::time::Duration;

/// What a cached guard read from the value block (as `lvb_text`).
fn lvb_text(g: &CachedGuard) -> (String, Option<Counter>) {
    match g.lvb() {
        None => ("-".into(), None),
        Some(l) if !l.valid => ("inv".into(), None),
        Some(l) => {
            let c = Counter::decode(&l.bytes).unwrap_or(Counter { epoch: 0, count: 0 });
            (format!("v:{}", c.text()), Some(c))
        }
    }
}

/// The caches' settings, one per resource, so that each way of giving
/// the lock up is exercised: r0 the defaults (no minimum hold, adapting
/// to contention), r1 GFS2's minimum hold of 10 ms, r2 unlocking on
/// give-up, r3 a short idle release.
fn options(r: u64) -> CacheOptions {
    let o = CacheOptions::new().lvb();
    match r % 4 {
        0 => o,
        1 => o.min_hold(Duration::from_millis(10)),
        2 => o.give_up(GiveUp::Unlock),
        _ => o.idle_release(Some(Duration::from_millis(200))),
    }
}

/// Gives-up so far: the value a local writer left is published by the
/// next one.
fn given_up(c: &CachedLock) -> u64 {
    let s = c.stats();
    s.give_ups + s.idle_releases
}

/// A writer's increment not yet known to be published.
struct Pending {
    sid: u64,
    res: usize,
    counter: Counter,
    /// `given_up` just after the guard was dropped.
    after: u64,
}

fn take(
    h: &mut Hist,
    rng: &mut Rng,
    cache: &CachedLock,
    res: &str,
    mode: Mode,
) -> Result<CachedGuard, Error> {
    let (rid, r) = match rng.below(4) {
        0 => {
            let rid = h.start(res, "try", mode, UNTIMED_BOUND_MS);
            (rid, cache.try_lock(mode))
        }
        1 => {
            let t = 10 + rng.below(1500);
            let rid = h.start(res, "timed", mode, t + TIMED_SLACK_MS);
            let opts = LockOptions::new().timeout(Duration::from_millis(t));
            (rid, cache.lock_with(mode, opts))
        }
        _ => {
            let rid = h.start(res, "lock", mode, UNTIMED_BOUND_MS);
            (rid, cache.lock(mode))
        }
    };
    h.end(rid, &r);
    r
}

fn hold_briefly(rng: &mut Rng) {
    let us = rng.below(3000);
    if us > 200 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

fn work_thread(ctx: &Ctx, caches: &[CachedLock], idx: usize, seed: u64) {
    let rec = Recorder::create(&rec_path(ctx, idx), ctx.node, ctx.boot, idx, "cached")
        .expect("record file");
    let mut h = Hist {
        rec,
        next_rid: 0,
        next_sid: 0,
    };
    let mut rng = Rng::new(seed);
    let mut pending: Vec<Pending> = Vec::new();
    while !ctx.stopping() {
        let r = rng.below(RESOURCES) as usize;
        let res = format!("r{r}");
        let cache = &caches[r];
        let mode = match rng.below(100) {
            0..=49 => Mode::Ex,
            50..=79 => Mode::Pr,
            80..=89 => Mode::Cr,
            _ => Mode::Cw,
        };
        // A few takes in a row: the later ones are often hits.
        for _ in 0..1 + rng.below(4) {
            let Ok(mut g) = take(&mut h, &mut rng, cache, &res, mode) else {
                break;
            };
            if mode == Mode::Cw {
                let sid = h.enter(&res, mode, "-");
                hold_briefly(&mut rng);
                h.leave(sid, None);
                drop(g);
            } else if mode == Mode::Ex {
                let (text, read) = lvb_text(&g);
                let sid = h.enter(&res, mode, &text);
                let next = next_counter(read, &mut rng);
                hold_briefly(&mut rng);
                g.set_lvb(&next.encode())
                    .expect("set_lvb on a cached EX guard");
                h.leave(sid, Some(next));
                drop(g);
                pending.push(Pending {
                    sid,
                    res: r,
                    counter: next,
                    after: given_up(cache),
                });
            } else {
                let (text, _) = lvb_text(&g);
                let sid = h.enter(&res, mode, &text);
                hold_briefly(&mut rng);
                h.leave(sid, None);
                drop(g);
            }
            std::thread::sleep(Duration::from_millis(rng.below(3)));
        }
        // Writers whose value a give-up has published since.
        pending.retain(|p| {
            if given_up(&caches[p.res]) > p.after {
                h.rec.line(&format!(
                    "PUB {} {} ok {}",
                    p.sid,
                    p.counter.text(),
                    now_ns()
                ));
                false
            } else {
                true
            }
        });
        std::thread::sleep(Duration::from_millis(2 + rng.below(15)));
    }
    h.rec.line(&format!("END {}", now_ns()));
}

/// A harness command (`hold RES` or `wait RES`) through a cache of its
/// own, dropped (which unlocks) at the end.
fn command(ctx: Arc<Ctx>, name: String, text: String) {
    let idx = super::CMD_THREADS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as usize;
    std::thread::spawn(move || {
        let mut words = text.split_whitespace();
        let (Some(verb), Some(res)) = (words.next(), words.next()) else {
            return;
        };
        let res = res.to_string();
        let rec = Recorder::create(&rec_path(&ctx, idx), ctx.node, ctx.boot, idx, "cached")
            .expect("record file");
        let mut h = Hist {
            rec,
            next_rid: 0,
            next_sid: 0,
        };
        let cache = match ctx.ls.cached(&res, CacheOptions::new().lvb()) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("chaos-worker: cached {res}: {}", outcome(&e));
                super::ack(&ctx, &name, "failed");
                return;
            }
        };
        let rid = h.start(&res, verb, Mode::Ex, 180_000);
        if verb == "wait" {
            super::ack(&ctx, &name, "waiting");
        }
        let r = cache.lock(Mode::Ex);
        h.end(rid, &r);
        let Ok(g) = r else {
            super::ack(&ctx, &name, "failed");
            return;
        };
        let (text, _) = lvb_text(&g);
        let sid = h.enter(&res, Mode::Ex, &text);
        if verb == "hold" {
            super::ack(&ctx, &name, "held");
            let release = ctx.dir.join("release").join(&res);
            while !release.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            super::ack(&ctx, &name, "granted");
            std::thread::sleep(Duration::from_millis(20));
        }
        h.leave(sid, None);
        drop(g);
        // The cache's drop unlocks the DLM lock and waits for the unlock.
        let rid = h.start(&res, "unlock", Mode::Nl, UNTIMED_BOUND_MS);
        drop(cache);
        h.end::<()>(rid, &Ok(()));
        h.rec.line(&format!("END {}", now_ns()));
    });
}

pub(crate) fn run(w: WorkerArgs, mut main_rec: Recorder) {
    let Some(ls) = join_chaos(|| Lockspace::join("chaos", 0o600), &w.stop) else {
        return;
    };
    let keepers = take_keepers(&ls);
    let caches: Vec<CachedLock> = (0..RESOURCES)
        .map(|r| ls.cached(format!("r{r}"), options(r)).expect("cached"))
        .collect();
    let caches = Arc::new(caches);
    let ctx = Arc::new(Ctx {
        dir: w.dir.clone(),
        node: w.node,
        boot: w.boot,
        slot: w.slot,
        ls,
        stop: w.stop.clone(),
    });
    println!(
        "started node {} boot {} slot {} pid {} kind cached",
        w.node,
        w.boot,
        w.slot,
        std::process::id()
    );
    let mut handles = Vec::new();
    for i in 0..w.threads {
        let (ctx, caches) = (Arc::clone(&ctx), Arc::clone(&caches));
        let s = w.seed_of(i);
        handles.push(std::thread::spawn(move || {
            work_thread(&ctx, &caches, i + 1, s)
        }));
    }
    cmd_loop(
        &w.dir,
        w.node,
        w.slot,
        &mut main_rec,
        &w.stop,
        |name, text| command(Arc::clone(&ctx), name, text),
    );
    for h in handles {
        let _ = h.join();
    }
    // Every local guard is gone: dropping the caches unlocks their DLM
    // locks (publishing the last values) and waits for the unlocks, before
    // the end-of-run release.
    let caches = Arc::try_unwrap(caches).unwrap_or_else(|_| panic!("the caches are still shared"));
    let mut stats = Vec::new();
    for (r, c) in caches.into_iter().enumerate() {
        let s = c.stats();
        stats.push(format!(
            "r{r}:{}/{}/{}/{}",
            s.hits, s.takes, s.give_ups, s.idle_releases
        ));
        drop(c);
    }
    main_rec.line(&format!("CACHE {} {}", stats.join(" "), now_ns()));
    finish(keepers, &mut main_rec);
}
