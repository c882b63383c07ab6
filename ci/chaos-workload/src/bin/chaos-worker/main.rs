//! chaos-worker: one worker process of the chaos suite (`ci/chaos`).
//!
//! ```text
//! chaos-worker DIR NODE BOOT SLOT THREADS SEED [KIND]
//! chaos-worker purge DIR NODE      # end of run: purge this node's orphans
//! chaos-worker release DIR NODE    # then: non-forced release, fresh handle
//! chaos-worker prove-free DIR NODE ENDED  # a release refused for good:
//!                                  # nothing left, or a lock (prove_free)
//! ```
//!
//! Joins the lockspace `chaos`, keeps an NL lock with the value block on
//! every shared resource (so the DLM keeps their value blocks), and runs
//! THREADS threads of a random mix of requests through the crate's public
//! API until the file DIR/stop appears: blocking, try and timed locks,
//! conversions up and down, counters in value blocks incremented under
//! PW/EX and published by down-conversion, blocking notifications answered
//! by converting down, persistent locks orphaned on purpose and adopted or
//! purged later. Every request and critical section is recorded in
//! DIR/rec/ (see the `dlm_chaos` library docs); the worker checks nothing
//! itself.
//!
//! The harness steers it through files: DIR/cmd/nNODE-sSLOT/NAME holding
//! `hold RES` (take RES in EX and keep it until DIR/release/RES exists) or
//! `wait RES` (ask for RES in EX, hold it briefly once granted); the
//! worker answers in DIR/ack/NAME.STATE (`waiting`, `held`, `granted`,
//! `failed`).
//!
//! KIND is the front-end of the crate the workload goes through (see
//! [`Kind`]): `blocking` (the default: the calls above on THREADS
//! threads), `tokio`, `poll` or `drive` (the futures, in `asynch.rs`),
//! `cached` (blocking takes through `CachedLock`s, in `cached.rs`).
//! Every kind records the same way, so that chaos-check proves the same
//! invariants for all of them.
mod asynch;
mod cached;
mod pollexec;

use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode, Node, Owner, Release};
use dlm_chaos::{now_ns, Counter, Recorder, Rng};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Shared resources r0..r{RESOURCES-1}.
const RESOURCES: u64 = 4;
/// Node-local orphan resources per node.
const ORPHANS: u64 = 3;
/// The bound recorded for untimed requests (ms).
const UNTIMED_BOUND_MS: u64 = 60_000;
/// Slack added to a timed request's timeout for its bound (ms): the
/// cancel's grace and a recovery in progress.
const TIMED_SLACK_MS: u64 = 30_000;

/// A worker kind: which front-end of the crate a worker process uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Blocking calls with RAII guards, one thread per workload thread.
    Blocking,
    /// The futures on a multi-threaded tokio runtime (two worker
    /// threads), a threaded handle; pending futures dropped at random
    /// (timeouts by `select`, aborted tasks).
    Tokio,
    /// A poll-mode handle: many futures driven from one thread by the
    /// worker's own executor, which waits with `poll(2)` on the handle's
    /// descriptor and calls `Lockspace::dispatch` (`pollexec.rs`).
    Poll,
    /// A poll-mode handle on a current-thread tokio runtime whose answers
    /// `dlm::tokio::drive` reads.
    Drive,
    /// Blocking takes through one `CachedLock` per resource shared by the
    /// THREADS threads (`cached.rs`): local holders served from a DLM
    /// lock the process keeps until another holder asks for it.
    Cached,
}

impl Kind {
    fn parse(s: &str) -> Option<Kind> {
        Some(match s {
            "blocking" => Kind::Blocking,
            "tokio" => Kind::Tokio,
            "poll" => Kind::Poll,
            "drive" => Kind::Drive,
            "cached" => Kind::Cached,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Blocking => "blocking",
            Kind::Tokio => "tokio",
            Kind::Poll => "poll",
            Kind::Drive => "drive",
            Kind::Cached => "cached",
        }
    }
}

struct Ctx {
    dir: PathBuf,
    node: u32,
    boot: u32,
    slot: u32,
    ls: Lockspace,
    stop: PathBuf,
}

impl Ctx {
    fn stopping(&self) -> bool {
        self.stop.exists()
    }
}

/// One thread's history and ids.
struct Hist {
    rec: Recorder,
    next_rid: u64,
    next_sid: u64,
}

impl Hist {
    fn start(&mut self, res: &str, op: &str, mode: Mode, bound_ms: u64) -> u64 {
        self.next_rid += 1;
        let rid = self.next_rid;
        self.rec.line(&format!(
            "RS {rid} {res} {op} {} {bound_ms} {}",
            mode.name(),
            now_ns()
        ));
        rid
    }

    fn end<T>(&mut self, rid: u64, r: &Result<T, Error>) {
        let outcome = match r {
            Ok(_) => "ok".to_string(),
            Err(e) => outcome(e),
        };
        self.rec.line(&format!("RE {rid} {outcome} {}", now_ns()));
    }

    fn enter(&mut self, res: &str, mode: Mode, lvb: &str) -> u64 {
        self.next_sid += 1;
        let sid = self.next_sid;
        self.rec.line(&format!(
            "IN {sid} {res} {} {} {lvb}",
            mode.name(),
            now_ns()
        ));
        sid
    }

    fn leave(&mut self, sid: u64, intent: Option<Counter>) {
        let intent = intent.map_or("-".to_string(), Counter::text);
        self.rec.line(&format!("OUT {sid} {} {intent}", now_ns()));
    }
}

fn outcome(e: &Error) -> String {
    match e {
        Error::WouldBlock => "wouldblock".into(),
        Error::Deadlock => "deadlock".into(),
        Error::TimedOut => "timedout".into(),
        Error::Cancelled => "cancelled".into(),
        Error::LockspaceStopped => "stopped".into(),
        Error::LockspaceGone => "gone".into(),
        Error::GivenUp => "givenup".into(),
        Error::InProgress => "inprogress".into(),
        Error::Unreachable => "unreachable".into(),
        Error::OrphanNotFound => "orphan-notfound".into(),
        Error::OrphanModeMismatch => "orphan-mode".into(),
        Error::Demoted(_) => "demoted".into(),
        other => format!(
            "error:{}",
            format!("{other:?}").replace(char::is_whitespace, "_")
        ),
    }
}

/// What a granted guard read from the value block.
fn lvb_text(g: &LockGuard) -> (String, Option<Counter>) {
    match g.lvb() {
        None => ("-".into(), None),
        Some(l) if !l.valid => ("inv".into(), None),
        Some(l) => {
            let c = Counter::decode(&l.bytes).unwrap_or(Counter { epoch: 0, count: 0 });
            (format!("v:{}", c.text()), Some(c))
        }
    }
}

/// The value a writer publishes after reading `read`.
fn next_counter(read: Option<Counter>, rng: &mut Rng) -> Counter {
    match read {
        Some(c) if c.epoch != 0 => Counter {
            epoch: c.epoch,
            count: c.count + 1,
        },
        // Not valid, or empty: a new epoch.
        _ => Counter {
            epoch: rng.next_u64() | 1,
            count: 1,
        },
    }
}

fn hold_briefly(rng: &mut Rng) {
    let us = rng.below(3000);
    if us > 200 {
        std::thread::sleep(Duration::from_micros(us));
    }
}

/// Takes `res` in `mode` with a random kind of request; records it.
fn acquire(
    ctx: &Ctx,
    h: &mut Hist,
    rng: &mut Rng,
    res: &str,
    mode: Mode,
    base: LockOptions,
) -> Result<LockGuard, Error> {
    let (op, opts, bound) = match rng.below(4) {
        0 => ("try", base.no_wait(), UNTIMED_BOUND_MS),
        1 => {
            let t = 10 + rng.below(1500);
            (
                "timed",
                base.timeout(Duration::from_millis(t)),
                t + TIMED_SLACK_MS,
            )
        }
        _ => ("lock", base, UNTIMED_BOUND_MS),
    };
    let rid = h.start(res, op, mode, bound);
    let r = ctx.ls.lock_with(res, mode, opts);
    h.end(rid, &r);
    r
}

fn convert(
    h: &mut Hist,
    g: &mut LockGuard,
    res: &str,
    mode: Mode,
    opts: LockOptions,
    bound: u64,
) -> Result<(), Error> {
    let rid = h.start(res, "convert", mode, bound);
    let r = g.convert_with(mode, opts).map(|_| ());
    h.end(rid, &r);
    r
}

fn unlock(h: &mut Hist, g: LockGuard, res: &str) -> Result<(), Error> {
    let rid = h.start(res, "unlock", Mode::Nl, UNTIMED_BOUND_MS);
    let r = g.unlock();
    h.end(rid, &r);
    r
}

/// A writer section on a held PW/EX guard: read the counter, set the next
/// value, leave; the caller publishes.
fn write_section(h: &mut Hist, rng: &mut Rng, g: &mut LockGuard, res: &str) -> (u64, Counter) {
    let (text, read) = lvb_text(g);
    let sid = h.enter(res, g.mode(), &text);
    let next = next_counter(read, rng);
    hold_briefly(rng);
    g.set_lvb(&next.encode()).expect("set_lvb on a PW/EX guard");
    h.leave(sid, Some(next));
    (sid, next)
}

fn record_pub(h: &mut Hist, sid: u64, c: Counter, ok: bool) {
    h.rec.line(&format!(
        "PUB {sid} {} {} {}",
        c.text(),
        if ok { "ok" } else { "fail" },
        now_ns()
    ));
}

/// A writer: PW or EX, increment, publish by converting down to NL or
/// PR, or by unlocking (which converts to NL first).
fn op_writer(ctx: &Ctx, h: &mut Hist, rng: &mut Rng, res: &str) {
    let mode = if rng.chance(25) { Mode::Pw } else { Mode::Ex };
    let Ok(mut g) = acquire(ctx, h, rng, res, mode, LockOptions::new().lvb()) else {
        return;
    };
    let (sid, next) = write_section(h, rng, &mut g, res);
    match rng.below(3) {
        0 => {
            // Publish by down-conversion to NL, then maybe up again to PR.
            let r = convert(
                h,
                &mut g,
                res,
                Mode::Nl,
                LockOptions::new().lvb(),
                UNTIMED_BOUND_MS,
            );
            record_pub(h, sid, next, r.is_ok());
            if r.is_ok() && rng.chance(50) {
                let t = 10 + rng.below(1000);
                let opts = LockOptions::new().lvb().timeout(Duration::from_millis(t));
                if convert(h, &mut g, res, Mode::Pr, opts, t + TIMED_SLACK_MS).is_ok() {
                    let (text, _) = lvb_text(&g);
                    let s2 = h.enter(res, Mode::Pr, &text);
                    hold_briefly(rng);
                    h.leave(s2, None);
                }
            }
            let _ = unlock(h, g, res);
        }
        1 => {
            // Down to PR: publishes, and keeps reading.
            let r = convert(
                h,
                &mut g,
                res,
                Mode::Pr,
                LockOptions::new().lvb(),
                UNTIMED_BOUND_MS,
            );
            record_pub(h, sid, next, r.is_ok());
            if r.is_ok() {
                let s2 = h.enter(res, Mode::Pr, &format!("v:{}", next.text()));
                hold_briefly(rng);
                h.leave(s2, None);
            }
            let _ = unlock(h, g, res);
        }
        _ => {
            // The unlock converts to NL first, publishing.
            let r = unlock(h, g, res);
            record_pub(h, sid, next, r.is_ok());
        }
    }
}

/// A reader: PR or CR, maybe answering a blocking notification by
/// converting down to NL.
fn op_reader(ctx: &Ctx, h: &mut Hist, rng: &mut Rng, res: &str) {
    let mode = if rng.chance(30) { Mode::Cr } else { Mode::Pr };
    let notify = rng.chance(50);
    let mut base = LockOptions::new().lvb();
    if notify {
        base = base.notify_blocking();
    }
    let Ok(mut g) = acquire(ctx, h, rng, res, mode, base) else {
        return;
    };
    let (text, _) = lvb_text(&g);
    let sid = h.enter(res, mode, &text);
    if notify {
        let wait = Duration::from_millis(rng.below(30));
        if let Ok(Some(_)) = g.wait_blocking(Some(wait)) {
            // Someone waits: leave, and convert down to NL for them.
            h.leave(sid, None);
            let _ = convert(
                h,
                &mut g,
                res,
                Mode::Nl,
                LockOptions::new(),
                UNTIMED_BOUND_MS,
            );
            let _ = unlock(h, g, res);
            return;
        }
    } else {
        hold_briefly(rng);
    }
    h.leave(sid, None);
    let _ = unlock(h, g, res);
}

/// CW: compatible only with NL, CR and CW.
fn op_cw(ctx: &Ctx, h: &mut Hist, rng: &mut Rng, res: &str) {
    let Ok(g) = acquire(ctx, h, rng, res, Mode::Cw, LockOptions::new()) else {
        return;
    };
    let sid = h.enter(res, Mode::Cw, "-");
    hold_briefly(rng);
    h.leave(sid, None);
    let _ = unlock(h, g, res);
}

/// PR, then a timed up-conversion to EX (two upgraders deadlock: one is
/// refused), a writer section if granted.
fn op_upgrade(ctx: &Ctx, h: &mut Hist, rng: &mut Rng, res: &str) {
    let Ok(mut g) = acquire(ctx, h, rng, res, Mode::Pr, LockOptions::new().lvb()) else {
        return;
    };
    let (text, _) = lvb_text(&g);
    let sid = h.enter(res, Mode::Pr, &text);
    hold_briefly(rng);
    h.leave(sid, None);
    let t = 10 + rng.below(1500);
    let opts = LockOptions::new().lvb().timeout(Duration::from_millis(t));
    match convert(h, &mut g, res, Mode::Ex, opts, t + TIMED_SLACK_MS) {
        Ok(()) => {
            let (sid, next) = write_section(h, rng, &mut g, res);
            let r = unlock(h, g, res);
            record_pub(h, sid, next, r.is_ok());
        }
        Err(_) if g.is_held() && g.mode() == Mode::Pr => {
            let (text, _) = lvb_text(&g);
            let sid = h.enter(res, Mode::Pr, &text);
            h.leave(sid, None);
            let _ = unlock(h, g, res);
        }
        Err(_) => {
            let _ = unlock(h, g, res);
        }
    }
}

/// Persistent locks on node-local resources: take and orphan, adopt, or
/// purge.
fn op_orphan(ctx: &Ctx, h: &mut Hist, rng: &mut Rng) {
    let res = format!("o{}-{}", ctx.node, rng.below(ORPHANS));
    let rid = h.start(&res, "try", Mode::Ex, UNTIMED_BOUND_MS);
    let r = ctx
        .ls
        .lock_with(&res, Mode::Ex, LockOptions::new().persistent().no_wait());
    h.end(rid, &r);
    let g = match r {
        Ok(g) => g,
        Err(Error::WouldBlock) if rng.chance(70) => {
            let rid = h.start(&res, "adopt", Mode::Ex, UNTIMED_BOUND_MS);
            let r = ctx.ls.adopt_orphan(&res, Mode::Ex, LockOptions::new());
            h.end(rid, &r);
            match r {
                Ok(g) => g,
                Err(_) => return,
            }
        }
        Err(Error::WouldBlock) => {
            let rid = h.start(&res, "purge", Mode::Nl, UNTIMED_BOUND_MS);
            let r = ctx.ls.purge_orphans(Node::This, Owner::Any);
            h.end(rid, &r);
            return;
        }
        Err(_) => return,
    };
    let sid = h.enter(&res, Mode::Ex, "-");
    hold_briefly(rng);
    h.leave(sid, None);
    if rng.chance(50) {
        let owner = g.owner_tid();
        match g.orphan() {
            Ok(()) => h
                .rec
                .line(&format!("ORPH {sid} {res} EX {owner} {}", now_ns())),
            Err(g) => {
                let _ = unlock(h, g, &res);
            }
        }
    } else {
        let _ = unlock(h, g, &res);
    }
}

fn work_thread(ctx: Arc<Ctx>, idx: usize, seed: u64) {
    let path = rec_path(&ctx, idx);
    let rec = Recorder::create(&path, ctx.node, ctx.boot, idx, "blocking").expect("record file");
    let mut h = Hist {
        rec,
        next_rid: 0,
        next_sid: 0,
    };
    let mut rng = Rng::new(seed);
    while !ctx.stopping() {
        let res = format!("r{}", rng.below(RESOURCES));
        match rng.below(100) {
            0..=39 => op_writer(&ctx, &mut h, &mut rng, &res),
            40..=64 => op_reader(&ctx, &mut h, &mut rng, &res),
            65..=74 => op_cw(&ctx, &mut h, &mut rng, &res),
            75..=89 => op_upgrade(&ctx, &mut h, &mut rng, &res),
            _ => op_orphan(&ctx, &mut h, &mut rng),
        }
        // Think time; longer while the lockspace is stopped.
        std::thread::sleep(Duration::from_millis(2 + rng.below(15)));
    }
    h.rec.line(&format!("END {}", now_ns()));
}

fn rec_path(ctx: &Ctx, idx: usize) -> PathBuf {
    rec_file(&ctx.dir, ctx.node, ctx.boot, ctx.slot, &format!("t{idx}"))
}

fn rec_file(dir: &Path, node: u32, boot: u32, slot: u32, what: &str) -> PathBuf {
    dir.join("rec").join(format!(
        "n{node}-b{boot}-s{slot}-p{}-{what}.rec",
        std::process::id()
    ))
}

fn ack(ctx: &Ctx, name: &str, state: &str) {
    ack_in(&ctx.dir, name, state);
}

fn ack_in(dir: &Path, name: &str, state: &str) {
    let _ = std::fs::write(
        dir.join("ack").join(format!("{name}.{state}")),
        format!("{}\n", now_ns()),
    );
}

static CMD_THREADS: AtomicU64 = AtomicU64::new(100);

/// A harness command: `hold RES` or `wait RES`, in a thread of its own.
fn command(ctx: Arc<Ctx>, name: String, text: String) {
    let idx = CMD_THREADS.fetch_add(1, Ordering::Relaxed) as usize;
    std::thread::spawn(move || {
        let mut words = text.split_whitespace();
        let (Some(verb), Some(res)) = (words.next(), words.next()) else {
            return;
        };
        let res = res.to_string();
        let rec = Recorder::create(&rec_path(&ctx, idx), ctx.node, ctx.boot, idx, "blocking")
            .expect("record file");
        let mut h = Hist {
            rec,
            next_rid: 0,
            next_sid: 0,
        };
        let rid = h.start(&res, verb, Mode::Ex, 180_000);
        if verb == "wait" {
            ack(&ctx, &name, "waiting");
        }
        let r = ctx.ls.lock_with(&res, Mode::Ex, LockOptions::new().lvb());
        h.end(rid, &r);
        let Ok(g) = r else {
            ack(&ctx, &name, "failed");
            return;
        };
        let (text, _) = lvb_text(&g);
        let sid = h.enter(&res, Mode::Ex, &text);
        if verb == "hold" {
            ack(&ctx, &name, "held");
            let release = ctx.dir.join("release").join(&res);
            while !release.exists() {
                std::thread::sleep(Duration::from_millis(50));
            }
        } else {
            ack(&ctx, &name, "granted");
            std::thread::sleep(Duration::from_millis(20));
        }
        h.leave(sid, None);
        let _ = unlock(&mut h, g, &res);
        h.rec.line(&format!("END {}", now_ns()));
    });
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A clock probe: answered by the host's `chaos-clock` through DIR/clock
/// when it runs there ([`dlm_chaos::host_probe`], a `Q` line), else by a
/// file's time stamp in this process's own probe directory
/// ([`dlm_chaos::probe`], a `P` line).
fn probe(dir: &Path, main: &mut Recorder, n: u64) {
    let cdir = dir.join("clock");
    if cdir.join("running").exists() {
        if let Some((t1, host, t2)) = dlm_chaos::host_probe(&cdir, &main.id(), n) {
            main.line(&format!("Q {t1} {host} {t2}"));
        }
        return;
    }
    let pdir = dir.join("probe").join(format!("p{}", std::process::id()));
    if n == 0 {
        let _ = std::fs::create_dir_all(&pdir);
    }
    if let Some((t1, host, t2)) = dlm_chaos::probe(&pdir, n) {
        main.line(&format!("P {t1} {host} {t2}"));
    }
}

/// The harness's steering and the process's own records, on the main
/// thread until DIR/stop appears: claims each new command file of
/// DIR/cmd/nNODE-sSLOT and hands it to `run` (name, text), probes the
/// clock every 0.5 s and records the memory every 2 s.
fn cmd_loop(
    dir: &Path,
    node: u32,
    slot: u32,
    main_rec: &mut Recorder,
    stop: &Path,
    mut run: impl FnMut(String, String),
) {
    let cmd_dir = dir.join("cmd").join(format!("n{node}-s{slot}"));
    let _ = std::fs::create_dir_all(&cmd_dir);
    let mut seen = std::collections::HashSet::new();
    let mut tick = 0u64;
    while !stop.exists() {
        if let Ok(rd) = std::fs::read_dir(&cmd_dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') || !seen.insert(name.clone()) {
                    continue;
                }
                // A command is claimed by removing its file: a worker
                // started later on this slot does not run it again.
                if let Ok(text) = std::fs::read_to_string(e.path()) {
                    if std::fs::remove_file(e.path()).is_ok() {
                        run(name, text);
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(50));
        tick += 1;
        if tick % 10 == 0 {
            probe(dir, main_rec, PROBES_AT_START + tick);
        }
        if tick % 40 == 0 {
            main_rec.line(&format!("M {} {}", rss_kib(), now_ns()));
        }
    }
}

/// Clock probes taken at a worker's start, before it joins.
const PROBES_AT_START: u64 = 20;

/// End of run, on each node: purge the orphans left on purpose (from a
/// fresh handle), then (once every node has purged) release the lockspace
/// without force from a fresh handle until it is gone. The kernel counts
/// one create per process that created it: each release but the last only
/// takes one away; the last fails with `LockspaceBusy` if any lock is left.
/// Writes DIR/final/{purge,release}-nNODE: `ok ...` or what failed.
fn end_of_run(what: &str, dir: &Path, node: &str) -> i32 {
    let out = dir.join("final").join(format!("{what}-n{node}"));
    let _ = std::fs::create_dir_all(dir.join("final"));
    let result = if what == "purge" {
        (|| -> Result<String, String> {
            let ls = Lockspace::open("chaos").map_err(|e| format!("open: {e}"))?;
            ls.purge_orphans(Node::This, Owner::Any)
                .map_err(|e| format!("purge: {e}"))?;
            Ok("ok purged".into())
        })()
    } else {
        release_until_gone().map_err(|(e, _)| format!("{e}; {}", blocked_resources(dir)))
    };
    let (text, rc) = match result {
        Ok(t) => (t, 0),
        Err(t) => (format!("FAILED {t}"), 1),
    };
    println!("{what} on node {node}: {text}");
    let _ = std::fs::write(out, format!("{text}\n"));
    rc
}

/// Non-forced releases from fresh handles until the lockspace is gone:
/// `Ok` with how many it took, or the refusal, and whether the kernel
/// refused it as busy (`EBUSY`: locks exist in it on this node).
fn release_until_gone() -> Result<String, (String, bool)> {
    for n in 1..=1000 {
        let ls = match Lockspace::open("chaos") {
            Ok(ls) => ls,
            Err(Error::LockspaceNotFound) => {
                return Ok(format!("ok gone after {} releases", n - 1))
            }
            Err(e) => return Err((format!("open: {e}"), false)),
        };
        if let Err(e) = ls.release(Release::IfUnused) {
            let busy = matches!(e.error(), Error::LockspaceBusy);
            return Err((format!("release {n} refused: {}", e.error()), busy));
        }
    }
    Err(("still there after 1000 releases".into(), false))
}

/// Every resource name the run's workers and the harness use: the shared
/// r0..r3, every node's orphan names, the harness's hogs (DIR/release).
fn run_names(dir: &Path) -> Vec<String> {
    let nodes: u64 = std::fs::read_to_string(dir.join("nodes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(5);
    let mut names: Vec<String> = (0..RESOURCES).map(|r| format!("r{r}")).collect();
    for n in 1..=nodes {
        names.extend((0..ORPHANS).map(|k| format!("o{n}-{k}")));
    }
    if let Ok(rd) = std::fs::read_dir(dir.join("release")) {
        let mut hogs: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        hogs.sort();
        names.extend(hogs);
    }
    names
}

/// After a refused release: which of the run's resources a try-lock in EX
/// from a fresh handle finds held (a lock left in NL is not seen).
fn blocked_resources(dir: &Path) -> String {
    let Ok(ls) = Lockspace::open("chaos") else {
        return "no handle to probe with".into();
    };
    let names = run_names(dir);
    let held: Vec<String> = names
        .iter()
        .filter_map(|name| match try_ex(&ls, name) {
            Ok(()) => None,
            Err(e) => Some(format!("{name}: {}", outcome(&e))),
        })
        .collect();
    if held.is_empty() {
        format!("none of {} resources held in EX's way", names.len())
    } else {
        format!("held: {}", held.join(", "))
    }
}

/// A new EX request with `LKF_NOQUEUE` (and no other flag: no NOORDER, no
/// EXPEDITE), unlocked at once if granted. Granted means the resource has
/// no lock of anyone in any state but granted NL: in the kernel's
/// `fs/dlm/lock.c`, `_can_be_granted` refuses it when a granted lock
/// conflicts with EX (`queue_conflict(&r->res_grantqueue, lkb)`: CR, CW,
/// PR, PW, EX), when a converting lock's granted mode does
/// (`queue_conflict(&r->res_convertqueue, lkb)`), and grants a new
/// request (`now && !conv`) only if `list_empty(&r->res_convertqueue) &&
/// list_empty(&r->res_waitqueue)`: any waiting or converting lock, of any
/// node, refuses it; with NOQUEUE, `do_request` then answers EAGAIN
/// instead of queueing. The request goes to the resource's master, which
/// holds every node's locks on it.
fn try_ex(ls: &Lockspace, name: &str) -> Result<(), Error> {
    let g = ls.lock_with(name, Mode::Ex, LockOptions::new().no_wait())?;
    g.unlock()
}

/// `chaos-worker prove-free DIR NODE ENDED`: run by ci/chaos on a node
/// whose non-forced release was still refused after its retries, ENDED
/// `workers-ended` when every worker process of the run (of every node's
/// last boot) was waited for, `workers-not-ended` otherwise. Tells the
/// kernel defect of a leaked lock record (a try resent by the recovery to
/// the new, local master and refused there: crate docs, "When the cluster
/// fails"; `ci/kernel-defects/try-resend-leak.sh`), which holds nothing
/// and is on no resource's queue, from a lock the run left behind.
///
/// With every worker ended (the kernel unlocks every non-persistent lock
/// of a process when its device closes) and every node's orphans purged,
/// a lock left by the crate's users can only be an orphan the purge did
/// not remove. The proof, from a fresh handle, on every name the run used:
/// a new NOQUEUE EX request is granted (so no lock of anyone is granted in
/// CR..EX, waiting or converting: see [`try_ex`]; a granted NL could only
/// be a live process's, and none is left, or an orphan's), and an
/// adoption of an orphan in each mode NL..EX finds none (the kernel's
/// `dlm_user_adopt_orphan` answers ENOENT only when this node has no
/// orphan of that name in any mode; one adopted is a lock left, and is
/// orphaned again as found). Then one more release: refused, the final
/// file says `known kernel defect: ...` with the evidence
/// (`refused=EBUSY names=N free=N orphans=0 purge=ok(K/K) workers=ended`), which chaos-check
/// accepts as the defect and not as a violation; anything held or adopted
/// stays `FAILED ...` (a violation) with what was found.
fn prove_free(dir: &Path, node: &str, ended: &str) -> i32 {
    let out = dir.join("final").join(format!("release-n{node}"));
    let first = read_trim(&out);
    let last = read_trim(
        &dir.join("late")
            .join("final")
            .join(format!("release-n{node}")),
    );
    let nodes: u64 = read_trim(&dir.join("nodes")).parse().unwrap_or(0);
    let purges: Vec<String> = (1..=nodes)
        .filter(|n| !read_trim(&dir.join("final").join(format!("purge-n{n}"))).starts_with("ok"))
        .map(|n| format!("purge-n{n}"))
        .collect();
    let names = run_names(dir);
    let mut free = 0usize;
    let mut held = Vec::new();
    let mut orphans = Vec::new();
    let probe = Lockspace::open("chaos");
    match &probe {
        Ok(ls) => {
            for name in &names {
                match try_ex(ls, name) {
                    Ok(()) => free += 1,
                    Err(e) => held.push(format!("{name}: {}", outcome(&e))),
                }
                for mode in [Mode::Nl, Mode::Cr, Mode::Cw, Mode::Pr, Mode::Pw, Mode::Ex] {
                    match ls.adopt_orphan(name.as_str(), mode, LockOptions::new()) {
                        Err(Error::OrphanNotFound) => {}
                        Ok(g) => {
                            // A lock left: put it back as it was found.
                            let again = match g.orphan() {
                                Ok(()) => "orphaned again",
                                Err(g) => {
                                    let _ = g.unlock();
                                    "unlocked"
                                }
                            };
                            orphans.push(format!("{name} {} adopted ({again})", mode.name()));
                        }
                        Err(e) => orphans.push(format!("{name} {}: {}", mode.name(), outcome(&e))),
                    }
                }
            }
        }
        Err(e) => held.push(format!("no handle to probe with: {e}")),
    }
    drop(probe);
    let purge = if purges.is_empty() && nodes > 0 {
        format!("ok({nodes}/{nodes})")
    } else {
        format!("failed({})", purges.join(","))
    };
    // One more release, now that the probe's handle is closed: still
    // refused as busy, or gone after all.
    let again = release_until_gone();
    let busy = matches!(again, Err((_, true)));
    let evidence = format!(
        "refused={} names={} free={free} orphans={} purge={purge} workers={}",
        if busy { "EBUSY" } else { "other" },
        names.len(),
        orphans.len(),
        if ended == "workers-ended" {
            "ended"
        } else {
            "not-ended"
        }
    );
    let proven = busy
        && free == names.len()
        && !names.is_empty()
        && held.is_empty()
        && orphans.is_empty()
        && purges.is_empty()
        && nodes > 0
        && ended == "workers-ended";
    let (text, rc) = match again {
        Ok(t) => (
            format!("{t}, after the proof [{evidence}] (first refusal: {first}; last: {last})"),
            0,
        ),
        Err((e, _)) if proven => (
            format!(
                "known kernel defect: release refused for good ({e}) with no lock left \
                 [{evidence}]: every name's NOQUEUE EX try granted, no orphan in NL..EX, \
                 every node purged, every worker ended: a leaked lock record \
                 (ci/kernel-defects/try-resend-leak.sh) (first refusal: {first}; last: {last})"
            ),
            0,
        ),
        Err((e, _)) => {
            let mut found = Vec::new();
            if !busy {
                found.push("not refused as busy".to_string());
            }
            if !held.is_empty() {
                found.push(format!("held: {}", held.join(", ")));
            }
            if !orphans.is_empty() {
                found.push(format!("orphans: {}", orphans.join(", ")));
            }
            if !purges.is_empty() || nodes == 0 {
                found.push(format!("purge not ok on: {}", purges.join(",")));
            }
            if ended != "workers-ended" {
                found.push("not every worker was waited for".into());
            }
            (
                format!(
                    "FAILED release refused for good ({e}) [{evidence}]; {} (first refusal: {first}; last: {last})",
                    found.join("; ")
                ),
                1,
            )
        }
    };
    println!("prove-free on node {node}: {text}");
    let _ = std::fs::write(out, format!("{text}\n"));
    rc
}

fn read_trim(p: &Path) -> String {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 3 && (args[0] == "purge" || args[0] == "release") {
        std::process::exit(end_of_run(&args[0], Path::new(&args[1]), &args[2]));
    }
    if args.len() == 4 && args[0] == "prove-free" {
        std::process::exit(prove_free(Path::new(&args[1]), &args[2], &args[3]));
    }
    if args.len() != 6 && args.len() != 7 {
        eprintln!("usage: chaos-worker DIR NODE BOOT SLOT THREADS SEED [KIND]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let node: u32 = args[1].parse().expect("NODE");
    let boot: u32 = args[2].parse().expect("BOOT");
    let slot: u32 = args[3].parse().expect("SLOT");
    let threads: usize = args[4].parse().expect("THREADS");
    let seed: u64 = args[5].parse().expect("SEED");
    let kind = match args.get(6) {
        None => Kind::Blocking,
        Some(k) => Kind::parse(k).unwrap_or_else(|| {
            eprintln!("chaos-worker: unknown kind {k}");
            std::process::exit(2)
        }),
    };
    // Every record's time on the host's time stamp counter when the run
    // has a calibration (before the first time is read).
    if let Err(e) = dlm_chaos::use_tsc_clock(&dir) {
        eprintln!("chaos-worker: {e}");
        std::process::exit(2);
    }
    for d in ["rec", "ack", "release", "probe", "cmd"] {
        let _ = std::fs::create_dir_all(dir.join(d));
    }
    let stop = dir.join("stop");
    let mut main_rec = Recorder::create(
        &rec_file(&dir, node, boot, slot, "main"),
        node,
        boot,
        0,
        kind.name(),
    )
    .expect("record file");
    for n in 0..PROBES_AT_START {
        probe(&dir, &mut main_rec, n);
    }
    main_rec.line(&format!("M {} {}", rss_kib(), now_ns()));
    let w = WorkerArgs {
        dir,
        node,
        boot,
        slot,
        threads,
        seed,
        stop,
    };
    match kind {
        Kind::Blocking => run_blocking(w, main_rec),
        Kind::Cached => cached::run(w, main_rec),
        _ => asynch::run(kind, w, main_rec),
    }
}

/// What every kind of worker is started with.
struct WorkerArgs {
    dir: PathBuf,
    node: u32,
    boot: u32,
    slot: u32,
    threads: usize,
    seed: u64,
    stop: PathBuf,
}

impl WorkerArgs {
    /// The seed of workload thread or task `i`.
    fn seed_of(&self, i: usize) -> u64 {
        self.seed
            .wrapping_mul(1_000_003)
            .wrapping_add(u64::from(self.node) << 40 | u64::from(self.slot) << 32 | i as u64)
            ^ u64::from(std::process::id())
    }
}

/// Joins `chaos` with `builder`, trying again every 0.5 s until the stop.
fn join_chaos(builder: impl Fn() -> Result<Lockspace, Error>, stop: &Path) -> Option<Lockspace> {
    loop {
        match builder() {
            Ok(ls) => return Some(ls),
            Err(e) => {
                eprintln!("chaos-worker: join: {e}");
                if stop.exists() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

/// Keepers: the DLM frees a resource's value block with its last lock.
/// Taken with blocking calls (on a poll-mode handle too: they dispatch
/// while they wait), before anything else reads the handle.
fn take_keepers(ls: &Lockspace) -> Vec<LockGuard> {
    (0..RESOURCES)
        .filter_map(|r| {
            ls.lock_with(
                format!("r{r}"),
                Mode::Nl,
                LockOptions::new().lvb().expedite(),
            )
            .ok()
        })
        .collect()
}

/// The end of a worker: its keepers released, the crate's counters, the
/// memory and the END line.
fn finish(keepers: Vec<LockGuard>, main_rec: &mut Recorder) {
    for k in keepers {
        let _ = k.unlock();
    }
    let s = dlm::stats();
    main_rec.line(&format!(
        "STATS {} {} {} {} {}",
        s.busy_retries,
        s.given_up,
        s.reaped,
        s.unreachable_retries,
        now_ns()
    ));
    main_rec.line(&format!("M {} {}", rss_kib(), now_ns()));
    main_rec.line(&format!("END {}", now_ns()));
    println!("stopped");
}

fn run_blocking(w: WorkerArgs, mut main_rec: Recorder) {
    let Some(ls) = join_chaos(|| Lockspace::join("chaos", 0o600), &w.stop) else {
        return;
    };
    let keepers = take_keepers(&ls);
    let ctx = Arc::new(Ctx {
        dir: w.dir.clone(),
        node: w.node,
        boot: w.boot,
        slot: w.slot,
        ls,
        stop: w.stop.clone(),
    });
    println!(
        "started node {} boot {} slot {} pid {} kind blocking",
        w.node,
        w.boot,
        w.slot,
        std::process::id()
    );
    let mut handles = Vec::new();
    for i in 0..w.threads {
        let ctx = Arc::clone(&ctx);
        let s = w.seed_of(i);
        handles.push(std::thread::spawn(move || work_thread(ctx, i + 1, s)));
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
    finish(keepers, &mut main_rec);
}
