//! The async kinds of worker (`tokio`, `poll`, `drive`): the workload of
//! the blocking kind through the crate's futures, on three executors, and
//! with what only futures can do: be dropped while pending. A quarter of
//! the lock requests race a short timer (`future::select`: the loser, the
//! request, is dropped: the crate cancels it and gives it up), a tenth of
//! the operations run in a task of their own that is aborted after a few
//! milliseconds, wherever it then is (waiting, holding, converting,
//! unlocking), and some granted guards are dropped instead of unlocked
//! (released in the background).
//!
//! Records are those of the blocking kind; a request or a section that a
//! drop cuts short is closed by its token's `Drop` (`RE rid dropped`, an
//! `OUT` with no value published), which runs before the guard's own
//! drop (locals drop in reverse order), so a section's recorded end is
//! never later than its lock's release. A ticker task writes `ST` lines:
//! the executor thread's stalls and the longest poll or drop of the
//! crate's futures and guards (with the voluntary context switches in it,
//! as `stall-probe` counts them).

use crate::pollexec;
use crate::{
    ack_in, cmd_loop, finish, join_chaos, lvb_text, next_counter, rec_file, take_keepers, Hist,
    Kind, WorkerArgs, RESOURCES, TIMED_SLACK_MS, UNTIMED_BOUND_MS,
};
use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode};
use dlm_chaos::{now_ns, Counter, Recorder, Rng};
use futures::future::{select, Either};
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

type BoxFut = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The executor, as the workload sees it.
trait Rt: Send + Sync + 'static {
    /// A timer of the executor.
    fn sleep(&self, d: Duration) -> BoxFut;
    /// Spawns a task (from any thread); the function returned aborts it.
    fn spawn(&self, f: BoxFut) -> Box<dyn Fn() + Send + Sync>;
}

struct TokioRt(tokio::runtime::Handle);

impl Rt for TokioRt {
    fn sleep(&self, d: Duration) -> BoxFut {
        Box::pin(tokio::time::sleep(d))
    }
    fn spawn(&self, f: BoxFut) -> Box<dyn Fn() + Send + Sync> {
        let h = self.0.spawn(f).abort_handle();
        Box::new(move || h.abort())
    }
}

struct PollRt(pollexec::Spawner);

impl Rt for PollRt {
    fn sleep(&self, d: Duration) -> BoxFut {
        Box::pin(pollexec::Sleep::new(d))
    }
    fn spawn(&self, f: BoxFut) -> Box<dyn Fn() + Send + Sync> {
        Box::new(self.0.spawn(f))
    }
}

/// Set once DIR/stop exists: the tasks end their loops.
static STOPPING: AtomicBool = AtomicBool::new(false);
/// Workload and command tasks still running.
static RUNNING: AtomicUsize = AtomicUsize::new(0);

fn stopping() -> bool {
    STOPPING.load(Ordering::Relaxed)
}

// --- stalls -------------------------------------------------------------------

/// The longest single poll or drop of a crate future or guard since the
/// ticker's last line (ns).
static LONGEST_POLL: AtomicU64 = AtomicU64::new(0);
/// The longest of those during which the thread blocked of its own
/// accord: a voluntary context switch inside it (ns).
static LONGEST_BLOCKED: AtomicU64 = AtomicU64::new(0);
/// How many polls or drops blocked so.
static BLOCKED_POLLS: AtomicU64 = AtomicU64::new(0);
/// The `poll` kind's `Lockspace::dispatch` calls, apart: the longest
/// (ns), and the longest that blocked (a voluntary context switch in it).
static LONGEST_DISPATCH: AtomicU64 = AtomicU64::new(0);
static LONGEST_BLOCKED_DISPATCH: AtomicU64 = AtomicU64::new(0);

struct Start {
    t: Instant,
    voluntary: i64,
}

fn voluntary_switches() -> i64 {
    // SAFETY: getrusage fills a zeroed struct for this thread.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_THREAD, &mut ru);
        ru.ru_nvcsw
    }
}

fn start() -> Start {
    Start {
        voluntary: voluntary_switches(),
        t: Instant::now(),
    }
}

/// What was polled or dropped when the longest blocked poll of the
/// ticker's second happened (an index into [`WHAT`]).
static LONGEST_BLOCKED_WHAT: AtomicU64 = AtomicU64::new(0);

/// The operations timed: what a blocked poll was doing.
const WHAT: [&str; 10] = [
    "-",
    "lock-poll",
    "lock-drop",
    "convert-poll",
    "convert-drop",
    "unlock-poll",
    "unlock-drop",
    "blocking-poll",
    "blocking-drop",
    "guard-drop",
];
const W_LOCK: usize = 1;
const W_CONVERT: usize = 3;
const W_UNLOCK: usize = 5;
const W_BLOCKING: usize = 7;
const W_GUARD_DROP: usize = 9;

fn note(s: Start, what: usize) {
    let ns = s.t.elapsed().as_nanos() as u64;
    LONGEST_POLL.fetch_max(ns, Ordering::Relaxed);
    if voluntary_switches() > s.voluntary {
        if LONGEST_BLOCKED.fetch_max(ns, Ordering::Relaxed) < ns {
            LONGEST_BLOCKED_WHAT.store(what as u64, Ordering::Relaxed);
        }
        BLOCKED_POLLS.fetch_add(1, Ordering::Relaxed);
    }
}

/// A crate future, each of its polls and its drop timed.
/// (`what` + 1 for its drop before it is ready).
struct Timed<F>(Option<Pin<Box<F>>>, usize);

impl<F: Future> Future for Timed<F> {
    type Output = F::Output;
    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let t = start();
        let r = self
            .0
            .as_mut()
            .expect("polled after ready")
            .as_mut()
            .poll(cx);
        note(t, self.1);
        if r.is_ready() {
            let t = start();
            self.0 = None;
            note(t, self.1);
        }
        r
    }
}

impl<F> Drop for Timed<F> {
    fn drop(&mut self) {
        if self.0.is_some() {
            let t = start();
            self.0 = None;
            note(t, self.1 + 1);
        }
    }
}

fn timed<F: Future>(what: usize, f: F) -> Timed<F> {
    Timed(Some(Box::pin(f)), what)
}

/// Drops a guard, timed (a guard of the futures releases in the
/// background: the drop must not block).
fn drop_guard(g: LockGuard) {
    let t = start();
    drop(g);
    note(t, W_GUARD_DROP);
}

/// The poll-mode dispatch of the `poll` kind, timed apart from the polls.
fn dispatch_timed(ls: &Lockspace) -> dlm::Result<()> {
    let s = start();
    let r = ls.dispatch();
    let ns = s.t.elapsed().as_nanos() as u64;
    LONGEST_DISPATCH.fetch_max(ns, Ordering::Relaxed);
    if voluntary_switches() > s.voluntary {
        LONGEST_BLOCKED_DISPATCH.fetch_max(ns, Ordering::Relaxed);
    }
    r
}

/// The ticker: a 1 ms timer in a loop; its lateness is time the executor
/// thread could not run it. Once a second an `ST` line.
async fn ticker(rt: Arc<dyn Rt>, mut rec: Recorder) {
    let mut worst = Duration::ZERO;
    let mut second = Instant::now();
    while !stopping() {
        let t = Instant::now();
        rt.sleep(Duration::from_millis(1)).await;
        worst = worst.max(t.elapsed().saturating_sub(Duration::from_millis(1)));
        if second.elapsed() >= Duration::from_secs(1) {
            rec.line(&format!(
                "ST {} {} {} {} {} {} {} {}",
                now_ns(),
                worst.as_nanos(),
                LONGEST_POLL.swap(0, Ordering::Relaxed),
                LONGEST_BLOCKED.swap(0, Ordering::Relaxed),
                BLOCKED_POLLS.swap(0, Ordering::Relaxed),
                LONGEST_DISPATCH.swap(0, Ordering::Relaxed),
                LONGEST_BLOCKED_DISPATCH.swap(0, Ordering::Relaxed),
                WHAT[LONGEST_BLOCKED_WHAT.swap(0, Ordering::Relaxed) as usize % WHAT.len()]
            ));
            worst = Duration::ZERO;
            second = Instant::now();
        }
    }
    rec.line(&format!("END {}", now_ns()));
}

// --- records -------------------------------------------------------------------

type Shared = Arc<Mutex<Hist>>;

fn lock(h: &Shared) -> std::sync::MutexGuard<'_, Hist> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// A recorded request: `RE` with its outcome, or `RE rid dropped` if the
/// token is dropped first.
struct Req {
    h: Shared,
    rid: u64,
    done: bool,
}

fn req(h: &Shared, res: &str, op: &str, mode: Mode, bound_ms: u64) -> Req {
    let rid = lock(h).start(res, op, mode, bound_ms);
    Req {
        h: Arc::clone(h),
        rid,
        done: false,
    }
}

impl Req {
    fn end<T>(mut self, r: &Result<T, Error>) {
        lock(&self.h).end(self.rid, r);
        self.done = true;
    }
}

impl Drop for Req {
    fn drop(&mut self) {
        if !self.done {
            let line = format!("RE {} dropped {}", self.rid, now_ns());
            lock(&self.h).rec.line(&line);
        }
    }
}

/// A recorded critical section: `OUT` when left, or when the token is
/// dropped (no value published then).
struct Sect {
    h: Shared,
    sid: u64,
    done: bool,
}

fn enter(h: &Shared, res: &str, mode: Mode, lvb: &str) -> Sect {
    let sid = lock(h).enter(res, mode, lvb);
    Sect {
        h: Arc::clone(h),
        sid,
        done: false,
    }
}

impl Sect {
    fn leave(mut self, intent: Option<Counter>) {
        lock(&self.h).leave(self.sid, intent);
        self.done = true;
    }
}

impl Drop for Sect {
    fn drop(&mut self) {
        if !self.done {
            lock(&self.h).leave(self.sid, None);
        }
    }
}

fn record_pub(h: &Shared, sid: u64, c: Counter, ok: bool) {
    let line = format!(
        "PUB {sid} {} {} {}",
        c.text(),
        if ok { "ok" } else { "fail" },
        now_ns()
    );
    lock(h).rec.line(&line);
}

// --- the workload ----------------------------------------------------------------

struct Actx {
    ls: Lockspace,
    rt: Arc<dyn Rt>,
    dir: PathBuf,
}

struct Task {
    c: Arc<Actx>,
    h: Shared,
    rng: Rng,
}

impl Task {
    async fn sleep_ms(&self, ms: u64) {
        self.c.rt.sleep(Duration::from_millis(ms)).await;
    }

    async fn hold_briefly(&mut self) {
        let us = self.rng.below(3000);
        if us > 200 {
            self.c.rt.sleep(Duration::from_micros(us)).await;
        }
    }
}

/// Takes `res` in `mode` with a random kind of request: try, timed,
/// untimed, or untimed raced against a 1-60 ms timer (dropped if the
/// timer wins).
async fn acquire(t: &mut Task, res: &str, mode: Mode, base: LockOptions) -> Option<LockGuard> {
    let (op, opts, bound, race) = match t.rng.below(8) {
        0 | 1 => ("try", base.no_wait(), UNTIMED_BOUND_MS, None),
        2 => {
            let ms = 10 + t.rng.below(1500);
            (
                "timed",
                base.timeout(Duration::from_millis(ms)),
                ms + TIMED_SLACK_MS,
                None,
            )
        }
        3 | 4 => ("lock", base, UNTIMED_BOUND_MS, Some(1 + t.rng.below(60))),
        _ => ("lock", base, UNTIMED_BOUND_MS, None),
    };
    let r = req(&t.h, res, op, mode, bound);
    let got = match race {
        None => timed(W_LOCK, t.c.ls.lock_with_async(res, mode, opts)).await,
        Some(ms) => {
            let f = timed(W_LOCK, t.c.ls.lock_with_async(res, mode, opts));
            match select(f, t.c.rt.sleep(Duration::from_millis(ms))).await {
                Either::Left((got, _)) => got,
                // The request is dropped (with the select): `r` records it.
                Either::Right(_) => return None,
            }
        }
    };
    r.end(&got);
    got.ok()
}

async fn convert(
    t: &Task,
    g: &mut LockGuard,
    res: &str,
    mode: Mode,
    opts: LockOptions,
    bound: u64,
) -> Result<(), Error> {
    let r = req(&t.h, res, "convert", mode, bound);
    let got = timed(W_CONVERT, g.convert_with_async(mode, opts))
        .await
        .map(|_| ());
    r.end(&got);
    got
}

/// Unlocks `g` (awaited), or now and then drops it (released in the
/// background; recorded as an unlock that ended at the drop).
async fn unlock(t: &mut Task, g: LockGuard, res: &str) -> Result<(), Error> {
    let r = req(&t.h, res, "unlock", Mode::Nl, UNTIMED_BOUND_MS);
    if t.rng.chance(15) {
        drop_guard(g);
        r.end(&Ok::<(), Error>(()));
        return Err(Error::InProgress);
    }
    let got = timed(W_UNLOCK, g.unlock_async()).await;
    r.end(&got);
    got
}

async fn write_section(t: &mut Task, g: &mut LockGuard, res: &str) -> (u64, Counter) {
    let (text, read) = lvb_text(g);
    let s = enter(&t.h, res, g.mode(), &text);
    let next = next_counter(read, &mut t.rng);
    t.hold_briefly().await;
    // No await from here to the record of the value: a drop of the task
    // cannot come between them.
    g.set_lvb(&next.encode()).expect("set_lvb on a PW/EX guard");
    let sid = s.sid;
    s.leave(Some(next));
    (sid, next)
}

async fn op_writer(t: &mut Task, res: &str) {
    let mode = if t.rng.chance(25) { Mode::Pw } else { Mode::Ex };
    let Some(mut g) = acquire(t, res, mode, LockOptions::new().lvb()).await else {
        return;
    };
    let (sid, next) = write_section(t, &mut g, res).await;
    match t.rng.below(3) {
        0 => {
            let r = convert(
                t,
                &mut g,
                res,
                Mode::Nl,
                LockOptions::new().lvb(),
                UNTIMED_BOUND_MS,
            )
            .await;
            record_pub(&t.h, sid, next, r.is_ok());
            if r.is_ok() && t.rng.chance(50) {
                let ms = 10 + t.rng.below(1000);
                let opts = LockOptions::new().lvb().timeout(Duration::from_millis(ms));
                if convert(t, &mut g, res, Mode::Pr, opts, ms + TIMED_SLACK_MS)
                    .await
                    .is_ok()
                {
                    let (text, _) = lvb_text(&g);
                    let s2 = enter(&t.h, res, Mode::Pr, &text);
                    t.hold_briefly().await;
                    s2.leave(None);
                }
            }
            let _ = unlock(t, g, res).await;
        }
        1 => {
            let r = convert(
                t,
                &mut g,
                res,
                Mode::Pr,
                LockOptions::new().lvb(),
                UNTIMED_BOUND_MS,
            )
            .await;
            record_pub(&t.h, sid, next, r.is_ok());
            if r.is_ok() {
                let s2 = enter(&t.h, res, Mode::Pr, &format!("v:{}", next.text()));
                t.hold_briefly().await;
                s2.leave(None);
            }
            let _ = unlock(t, g, res).await;
        }
        _ => {
            // The unlock converts to NL first, publishing (a dropped guard
            // publishes too, unconfirmed).
            let r = unlock(t, g, res).await;
            record_pub(&t.h, sid, next, r.is_ok());
        }
    }
}

async fn op_reader(t: &mut Task, res: &str) {
    let mode = if t.rng.chance(30) { Mode::Cr } else { Mode::Pr };
    let notify = t.rng.chance(50);
    let mut base = LockOptions::new().lvb();
    if notify {
        base = base.notify_blocking();
    }
    let Some(mut g) = acquire(t, res, mode, base).await else {
        return;
    };
    let (text, _) = lvb_text(&g);
    let s = enter(&t.h, res, mode, &text);
    if notify {
        let wait = Duration::from_millis(t.rng.below(30));
        let notified = {
            let r = select(timed(W_BLOCKING, g.blocking_async()), t.c.rt.sleep(wait)).await;
            matches!(r, Either::Left((Ok(_), _)))
        };
        if notified {
            s.leave(None);
            let _ = convert(
                t,
                &mut g,
                res,
                Mode::Nl,
                LockOptions::new(),
                UNTIMED_BOUND_MS,
            )
            .await;
            let _ = unlock(t, g, res).await;
            return;
        }
    } else {
        t.hold_briefly().await;
    }
    s.leave(None);
    let _ = unlock(t, g, res).await;
}

async fn op_cw(t: &mut Task, res: &str) {
    let Some(g) = acquire(t, res, Mode::Cw, LockOptions::new()).await else {
        return;
    };
    let s = enter(&t.h, res, Mode::Cw, "-");
    t.hold_briefly().await;
    s.leave(None);
    let _ = unlock(t, g, res).await;
}

async fn op_upgrade(t: &mut Task, res: &str) {
    let Some(mut g) = acquire(t, res, Mode::Pr, LockOptions::new().lvb()).await else {
        return;
    };
    let (text, _) = lvb_text(&g);
    let s = enter(&t.h, res, Mode::Pr, &text);
    t.hold_briefly().await;
    s.leave(None);
    let ms = 10 + t.rng.below(1500);
    let opts = LockOptions::new().lvb().timeout(Duration::from_millis(ms));
    match convert(t, &mut g, res, Mode::Ex, opts, ms + TIMED_SLACK_MS).await {
        Ok(()) => {
            let (sid, next) = write_section(t, &mut g, res).await;
            let r = unlock(t, g, res).await;
            record_pub(&t.h, sid, next, r.is_ok());
        }
        Err(_) if g.is_held() && g.mode() == Mode::Pr => {
            let (text, _) = lvb_text(&g);
            let s = enter(&t.h, res, Mode::Pr, &text);
            s.leave(None);
            let _ = unlock(t, g, res).await;
        }
        Err(_) => {
            let _ = unlock(t, g, res).await;
        }
    }
}

/// One operation of the mix (the blocking kind's, without its orphans:
/// adopting and purging are blocking calls).
async fn one_op(t: &mut Task) {
    let res = format!("r{}", t.rng.below(RESOURCES));
    match t.rng.below(100) {
        0..=44 => op_writer(t, &res).await,
        45..=72 => op_reader(t, &res).await,
        73..=83 => op_cw(t, &res).await,
        _ => op_upgrade(t, &res).await,
    }
}

/// A workload task: operations until the stop; one in ten in a task of
/// its own, aborted after 1-40 ms if it has not ended by then.
async fn work_task(c: Arc<Actx>, h: Shared, seed: u64) {
    let mut t = Task {
        c: Arc::clone(&c),
        h,
        rng: Rng::new(seed),
    };
    while !stopping() {
        if t.rng.chance(10) {
            let done = Arc::new(AtomicBool::new(false));
            let mut child = Task {
                c: Arc::clone(&c),
                h: Arc::clone(&t.h),
                rng: Rng::new(t.rng.next_u64()),
            };
            let d = Arc::clone(&done);
            let abort = c.rt.spawn(Box::pin(async move {
                one_op(&mut child).await;
                d.store(true, Ordering::Relaxed);
            }));
            let ms = 1 + t.rng.below(40);
            t.sleep_ms(ms).await;
            if !done.load(Ordering::Relaxed) {
                abort();
                let line = format!("X abort {}", now_ns());
                lock(&t.h).rec.line(&line);
            }
        } else {
            one_op(&mut t).await;
        }
        let ms = 2 + t.rng.below(15);
        t.sleep_ms(ms).await;
    }
    let line = format!("END {}", now_ns());
    lock(&t.h).rec.line(&line);
}

/// A harness command (`hold RES` / `wait RES`) as a task.
async fn command(c: Arc<Actx>, h: Shared, name: String, text: String) {
    let mut words = text.split_whitespace();
    let (Some(verb), Some(res)) = (words.next(), words.next()) else {
        return;
    };
    let res = res.to_string();
    let r = req(&h, &res, verb, Mode::Ex, 180_000);
    if verb == "wait" {
        ack_in(&c.dir, &name, "waiting");
    }
    let got = timed(
        W_LOCK,
        c.ls.lock_with_async(&res, Mode::Ex, LockOptions::new().lvb()),
    )
    .await;
    r.end(&got);
    let Ok(g) = got else {
        ack_in(&c.dir, &name, "failed");
        return;
    };
    let (text, _) = lvb_text(&g);
    let s = enter(&h, &res, Mode::Ex, &text);
    if verb == "hold" {
        ack_in(&c.dir, &name, "held");
        let release = c.dir.join("release").join(&res);
        while !release.exists() {
            c.rt.sleep(Duration::from_millis(50)).await;
        }
    } else {
        ack_in(&c.dir, &name, "granted");
        c.rt.sleep(Duration::from_millis(20)).await;
    }
    s.leave(None);
    let r = req(&h, &res, "unlock", Mode::Nl, UNTIMED_BOUND_MS);
    let got = timed(W_UNLOCK, g.unlock_async()).await;
    r.end(&got);
    let line = format!("END {}", now_ns());
    lock(&h).rec.line(&line);
}

/// Counts a task as running until it ends (or is dropped).
struct Running;

impl Running {
    fn new() -> Running {
        RUNNING.fetch_add(1, Ordering::SeqCst);
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs an async kind to the stop.
pub(crate) fn run(kind: Kind, w: WorkerArgs, mut main_rec: Recorder) {
    let polled = matches!(kind, Kind::Poll | Kind::Drive);
    let Some(ls) = join_chaos(
        || {
            let b = Lockspace::builder("chaos").permissions(0o600);
            if polled {
                b.poll_mode().join()
            } else {
                b.join()
            }
        },
        &w.stop,
    ) else {
        return;
    };
    let keepers = take_keepers(&ls);
    println!(
        "started node {} boot {} slot {} pid {} kind {}",
        w.node,
        w.boot,
        w.slot,
        std::process::id(),
        kind.name()
    );
    let rec = |what: &str, idx: usize| {
        Recorder::create(
            &rec_file(&w.dir, w.node, w.boot, w.slot, what),
            w.node,
            w.boot,
            idx,
            kind.name(),
        )
        .expect("record file")
    };
    // The executor, on a thread of its own (the main thread keeps the
    // harness's command loop, whose file system calls must not count as
    // the executor's stalls).
    let (rt, exec_thread, tokio_rt): (Arc<dyn Rt>, _, _) = match kind {
        Kind::Tokio => {
            let r = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_time()
                .build()
                .expect("runtime");
            (Arc::new(TokioRt(r.handle().clone())), None, Some(r))
        }
        Kind::Drive => {
            let r = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let handle = r.handle().clone();
            let driven = ls.clone();
            let t = std::thread::spawn(move || {
                r.block_on(async move {
                    let driver = tokio::spawn(dlm::tokio::drive(driven));
                    while !(stopping() && RUNNING.load(Ordering::SeqCst) == 0) {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    driver.abort();
                });
                // The runtime's drop drops what is left (aborted tasks).
                drop(r);
                None
            });
            (Arc::new(TokioRt(handle)), Some(t), None)
        }
        _ => {
            let exec = pollexec::Exec::new();
            let spawner = exec.spawner();
            let polled_ls = ls.clone();
            let t = std::thread::spawn(move || {
                let st = exec.run(
                    &polled_ls,
                    || stopping() && RUNNING.load(Ordering::SeqCst) == 0,
                    dispatch_timed,
                );
                Some(st)
            });
            (Arc::new(PollRt(spawner)), Some(t), None)
        }
    };
    let c = Arc::new(Actx {
        ls: ls.clone(),
        rt: Arc::clone(&rt),
        dir: w.dir.clone(),
    });
    // Futures in flight: twice the blocking kind's threads.
    for i in 0..w.threads * 2 {
        let h = Arc::new(Mutex::new(Hist {
            rec: rec(&format!("t{}", i + 1), i + 1),
            next_rid: 0,
            next_sid: 0,
        }));
        let c = Arc::clone(&c);
        let seed = w.seed_of(i);
        let running = Running::new();
        let _ = rt.spawn(Box::pin(async move {
            let _running = running;
            work_task(c, h, seed).await;
        }));
    }
    {
        let running = Running::new();
        let trt = Arc::clone(&rt);
        let tick_rec = rec("tick", 0);
        let _ = rt.spawn(Box::pin(async move {
            let _running = running;
            ticker(trt, tick_rec).await;
        }));
    }
    let mut next_cmd = 100;
    cmd_loop(
        &w.dir,
        w.node,
        w.slot,
        &mut main_rec,
        &w.stop,
        |name, text| {
            next_cmd += 1;
            let h = Arc::new(Mutex::new(Hist {
                rec: rec(&format!("t{next_cmd}"), next_cmd),
                next_rid: 0,
                next_sid: 0,
            }));
            let running = Running::new();
            let c = Arc::clone(&c);
            let _ = rt.spawn(Box::pin(async move {
                let _running = running;
                command(c, h, name, text).await;
            }));
        },
    );
    STOPPING.store(true, Ordering::SeqCst);
    // The tasks end their loops; a task still running after 90 s is
    // dropped with its executor (its tokens record the drop).
    let deadline = Instant::now() + Duration::from_secs(90);
    while RUNNING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if let Some(r) = tokio_rt {
        r.shutdown_timeout(Duration::from_secs(10));
    }
    if let Some(t) = exec_thread {
        if let Ok(Some(st)) = t.join() {
            main_rec.line(&format!(
                "EXEC {} {} {} {} {} {} {}",
                st.dispatches,
                st.dispatch_errors,
                st.longest_task_poll.as_nanos(),
                st.longest_ppoll_late.as_nanos(),
                st.longest_turn.as_nanos(),
                st.most_polls,
                now_ns()
            ));
        }
    }
    drop(c);
    drop(rt);
    finish(keepers, &mut main_rec);
    drop(ls);
}
