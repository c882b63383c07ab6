//! dlm-bench: the `dlm` crate against raw C libdlm, side by side in one run.
//!
//! Run it inside the test cluster as root (`ci/bench`, or
//! `ci/vm target/release/dlm-bench ...`). It creates (or joins) a
//! lockspace, opens it once from Rust (`dlm::Lockspace`) and once from C
//! (`dlm_open_lockspace` + `dlm_ls_pthread_init`: each side has its own
//! descriptor and libdlm AST thread), then measures every case with the
//! contenders interleaved round by round: in round `r` the contenders run
//! in turn, starting with contender `r mod k`, so that none always runs
//! first or last. A warm-up call of each contender precedes the rounds.
//! Each round's figure is the call's elapsed time divided by its
//! operations; a case reports the median over the rounds, and the
//! Rust/C ratio of the medians.
//!
//! Options: `--short` (tiny N, for ci/test: asserts no timing),
//! `--rounds R`, `--n N` (operations per round of cases 1-3; the others
//! scale from it), `--levels A,B,C` (held locks of case 5),
//! `--json PATH`, `--markdown PATH`, `--svg PATH`, `--machine TEXT`,
//! `--command TEXT`, `--cases 1,2,..`, `--contenders rust,c_ast,c_ast_locked,c_wait,c_ast_aa`
//! (for profiling one contender), `--lockspace NAME`.

mod alloc;
mod ffi;
mod report;
mod twonode;

use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode};
use ffi::{CHandle, CHeld};
use report::{CaseResult, ContenderResult, Memory, Run};
use std::ffi::CString;
use std::path::PathBuf;
use std::sync::Barrier;
use std::time::{Duration, Instant};

#[global_allocator]
static GLOBAL: alloc::Counting = alloc::Counting;

/// What to run, from the command line.
#[derive(Debug, Clone)]
struct Config {
    short: bool,
    rounds: u32,
    /// Operations per round of cases 1-3.
    n: u32,
    /// Hand-offs per round are about 2 * this.
    n_handoff: u32,
    /// Lock+unlock pairs per round of case 5.
    n_growth: u32,
    levels: Vec<u32>,
    json: Option<PathBuf>,
    markdown: Option<PathBuf>,
    svg: Option<PathBuf>,
    machine: String,
    command: String,
    cases: Vec<u32>,
    contenders: Vec<String>,
    lockspace: String,
    /// Requests in flight per round of case 7.
    n_pipe: u32,
    /// Which section of the Markdown file to write (`results`, or
    /// `results-2node` for a run on two nodes).
    section: String,
    /// Nodes of the cluster (for the report).
    nodes: u32,
    /// Run as the resources' master on another node: hold NL on every
    /// resource of cases 7 and 8 until this file exists.
    master_until: Option<PathBuf>,
    /// Turns per node per round of case 10.
    n_turns: u32,
    /// Rounds of case 10 (its per-round times vary the most: 4x the
    /// others' rounds by default).
    rounds_turns: u32,
    /// Takes per node per round of case 11.
    n_local: u32,
    /// Run as the partner of cases 10-11 on node 1, taking commands from
    /// this directory.
    partner: Option<PathBuf>,
    /// Cases 10-11 on node 2: the partner's command directory.
    peer: Option<PathBuf>,
}

impl Config {
    fn parse() -> Result<Config, String> {
        let mut args = std::env::args().skip(1);
        let mut c = Config {
            short: false,
            rounds: 0,
            n: 0,
            n_handoff: 0,
            n_growth: 0,
            levels: Vec::new(),
            json: None,
            markdown: None,
            svg: None,
            machine: String::new(),
            command: String::new(),
            cases: vec![1, 2, 3, 4, 5, 7, 8, 9],
            contenders: vec![
                "rust".into(),
                "rust_cached".into(),
                "c_ast".into(),
                "c_ast_locked".into(),
                "c_wait".into(),
                "c_ast_aa".into(),
                "rust_poll".into(),
                "rust_blocking".into(),
                "c_dispatch".into(),
                "c_direct".into(),
                "rust_poll_inpoll".into(),
                "rust_tokio".into(),
                "rust_inpoll".into(),
                "rust_cached_hold".into(),
            ],
            lockspace: "dlmbench".into(),
            n_pipe: 0,
            section: "results".into(),
            master_until: None,
            nodes: 1,
            n_turns: 0,
            rounds_turns: 0,
            n_local: 0,
            partner: None,
            peer: None,
        };
        let (mut n_pipe, mut n_turns, mut n_local) = (None, None, None);
        let mut rounds_turns = None;
        let (mut rounds, mut n, mut levels) = (None, None, None);
        while let Some(a) = args.next() {
            let mut value = || args.next().ok_or(format!("{a} needs a value"));
            match a.as_str() {
                "--short" => c.short = true,
                "--rounds" => rounds = Some(number(&value()?)?),
                "--n" => n = Some(number(&value()?)?),
                "--levels" => levels = Some(list(&value()?)?),
                "--json" => c.json = Some(value()?.into()),
                "--markdown" => c.markdown = Some(value()?.into()),
                "--svg" => c.svg = Some(value()?.into()),
                "--machine" => c.machine = value()?,
                "--command" => c.command = value()?,
                "--cases" => c.cases = list(&value()?)?,
                "--contenders" => c.contenders = value()?.split(',').map(str::to_string).collect(),
                "--lockspace" => c.lockspace = value()?,
                "--n-pipe" => n_pipe = Some(number(&value()?)?),
                "--section" => c.section = value()?,
                "--master-until" => c.master_until = Some(value()?.into()),
                "--nodes" => c.nodes = number(&value()?)?,
                "--n-turns" => n_turns = Some(number(&value()?)?),
                "--rounds-turns" => rounds_turns = Some(number(&value()?)?),
                "--n-local" => n_local = Some(number(&value()?)?),
                "--partner" => c.partner = Some(value()?.into()),
                "--peer" => c.peer = Some(value()?.into()),
                "-h" | "--help" => {
                    return Err("usage: dlm-bench [--short] [--rounds R] [--n N] \
                                [--levels A,B,C] [--json PATH] [--markdown PATH] [--svg PATH] \
                                [--machine TEXT] [--command TEXT] [--cases 1,2,3,4,5] \
                                [--contenders rust,rust_cached,c_ast,c_ast_locked,c_wait,c_ast_aa,rust_poll,rust_poll_inpoll,rust_blocking,c_dispatch,c_direct] \
                                [--lockspace NAME] [--n-pipe N] [--section NAME] [--master-until FILE] [--nodes N] \
                                [--n-turns N] [--rounds-turns R] [--n-local N] [--partner DIR] [--peer DIR]"
                        .into())
                }
                _ => return Err(format!("unknown argument {a:?} (try --help)")),
            }
        }
        c.rounds = rounds.unwrap_or(if c.short { 5 } else { 61 });
        c.n = n.unwrap_or(if c.short { 6 } else { 1000 });
        if c.rounds == 0 || c.n == 0 {
            return Err("--rounds and --n must be positive".into());
        }
        c.n_pipe = n_pipe.unwrap_or(if c.short { 20 } else { 1000 });
        c.n_turns = n_turns.unwrap_or(if c.short { 3 } else { 50 });
        c.rounds_turns = rounds_turns.unwrap_or(if c.short { c.rounds } else { 4 * c.rounds });
        c.n_local = n_local.unwrap_or(if c.short { 200 } else { 1000 });
        if c.n_turns < 2 || c.n_local == 0 || c.rounds_turns == 0 {
            return Err(
                "--n-turns must be at least 2, --n-local and --rounds-turns positive".into(),
            );
        }
        if (c.cases.contains(&10) || c.cases.contains(&11)) && c.peer.is_none() {
            return Err("cases 10-11 need two nodes and the partner's --peer DIR".into());
        }
        c.n_handoff = (c.n / 2).max(1);
        c.n_growth = (c.n / 2).max(1);
        c.levels = levels.unwrap_or(if c.short {
            vec![10, 100, 1000]
        } else {
            vec![10, 1000, 100_000]
        });
        if c.levels.is_empty() || c.levels.windows(2).any(|w| w[0] >= w[1]) {
            return Err("--levels must be increasing".into());
        }
        Ok(c)
    }

    fn wants(&self, contender: &str) -> bool {
        self.contenders.iter().any(|c| c == contender)
    }
}

fn number(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| format!("not a number: {s:?}"))
}

fn list(s: &str) -> Result<Vec<u32>, String> {
    s.split(',').map(|p| number(p.trim())).collect()
}

/// One contender of a case: runs `n` operations, returns the elapsed time.
struct Contender<'a> {
    id: &'static str,
    run: Box<dyn FnMut(u32) -> Result<Duration, String> + 'a>,
}

/// Runs the rounds of one case: a warm-up call per contender, then
/// `rounds` interleaved rounds of `n` operations per call (`ops(n)`
/// timed operations).
fn measure(
    id: &str,
    title: &str,
    unit: &str,
    cfg: &Config,
    n: u32,
    ops: impl Fn(u32) -> u64,
    mut contenders: Vec<Contender<'_>>,
) -> Result<CaseResult, String> {
    let started = Instant::now();
    contenders.retain(|c| cfg.wants(c.id));
    let warm = (n / 4).max(1);
    for c in contenders.iter_mut() {
        (c.run)(warm).map_err(|e| format!("{id}, warm-up of {}: {e}", c.id))?;
    }
    let k = contenders.len();
    let mut samples = vec![Vec::with_capacity(cfg.rounds as usize); k];
    let mut switches = vec![Vec::with_capacity(cfg.rounds as usize); k];
    for r in 0..cfg.rounds as usize {
        for j in 0..k {
            let i = (r + j) % k;
            let before = ffi::context_switches();
            let took = (contenders[i].run)(n)
                .map_err(|e| format!("{id}, round {r} of {}: {e}", contenders[i].id))?;
            let after = ffi::context_switches();
            samples[i].push(took.as_nanos() as f64 / ops(n) as f64);
            switches[i].push((
                (after.0 - before.0) as f64 / ops(n) as f64,
                (after.1 - before.1) as f64 / ops(n) as f64,
            ));
        }
    }
    let result = CaseResult {
        id: id.to_string(),
        title: title.to_string(),
        unit: unit.to_string(),
        n,
        ops_per_round: ops(n),
        rounds: cfg.rounds,
        contenders: contenders
            .iter()
            .zip(samples.into_iter().zip(switches))
            .map(|(c, (s, w))| ContenderResult::new(c.id, s, w))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
        notes: Vec::new(),
    };
    eprintln!("dlm-bench: {}", result.summary());
    Ok(result)
}

fn dlm_err(what: &str) -> impl Fn(Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Makes the calling thread's completion channel (the crate creates it on
/// a thread's first request) outside the timed part.
fn warm_thread(ls: &Lockspace, name: &str) -> Result<(), String> {
    ls.lock(name, Mode::Ex)
        .and_then(LockGuard::unlock)
        .map_err(dlm_err("warm-up"))
}

// ---- the Rust contenders: the crate's public API, as a user calls it ----

fn rust_lock_unlock(ls: &Lockspace, name: &str, n: u32) -> Result<Duration, String> {
    let t = Instant::now();
    for _ in 0..n {
        let guard = ls.lock(name, Mode::Ex).map_err(dlm_err("lock"))?;
        drop(guard);
    }
    Ok(t.elapsed())
}

fn rust_convert(ls: &Lockspace, name: &str, n: u32) -> Result<Duration, String> {
    let mut guard = ls.lock(name, Mode::Nl).map_err(dlm_err("lock NL"))?;
    let t = Instant::now();
    for _ in 0..n {
        guard.convert(Mode::Ex).map_err(dlm_err("convert to EX"))?;
        guard.convert(Mode::Nl).map_err(dlm_err("convert to NL"))?;
    }
    let took = t.elapsed();
    guard.unlock().map_err(dlm_err("unlock"))?;
    Ok(took)
}

fn rust_trylock(ls: &Lockspace, name: &str, n: u32) -> Result<Duration, String> {
    let t = Instant::now();
    for _ in 0..n {
        match ls.try_lock(name, Mode::Ex) {
            Err(Error::WouldBlock) => {}
            Err(e) => return Err(format!("try_lock: {e}")),
            Ok(_) => return Err("try_lock: granted, but another handle holds EX".into()),
        }
    }
    Ok(t.elapsed())
}

/// Two threads take turns on one EX lock: a holder unlocks when its
/// blocking notification says the other waits, then asks again. Each is
/// granted `n` times: `2n - 1` hand-offs, timed by the second thread
/// from the start barrier to its last grant (as the C version).
fn rust_handoff(ls: &Lockspace, name: &str, n: u32) -> Result<Duration, String> {
    let barrier = Barrier::new(2);
    let take = || {
        ls.lock_with(name, Mode::Ex, LockOptions::new().notify_blocking())
            .map_err(dlm_err("lock"))
    };
    let wait_blocking = |g: &mut LockGuard| -> Result<(), String> {
        g.wait_blocking(None).map_err(dlm_err("wait_blocking"))?;
        Ok(())
    };
    std::thread::scope(|s| {
        let a = s.spawn(|| -> Result<(), String> {
            let first = warm_thread(ls, "bench-warm-a").and_then(|()| take());
            barrier.wait();
            let mut guard = first?;
            for i in 1..=n {
                wait_blocking(&mut guard)?;
                guard.unlock().map_err(dlm_err("unlock"))?;
                if i == n {
                    break;
                }
                guard = take()?;
            }
            Ok(())
        });
        let b = s.spawn(|| -> Result<Duration, String> {
            let warm = warm_thread(ls, "bench-warm-b");
            barrier.wait();
            warm?;
            let t = Instant::now();
            for i in 1..=n {
                let mut guard = take()?;
                if i == n {
                    let took = t.elapsed();
                    guard.unlock().map_err(dlm_err("unlock"))?;
                    return Ok(took);
                }
                wait_blocking(&mut guard)?;
                guard.unlock().map_err(dlm_err("unlock"))?;
            }
            Err("n must be positive".into())
        });
        let ra = a.join().map_err(|_| "thread A panicked".to_string())?;
        let rb = b.join().map_err(|_| "thread B panicked".to_string())?;
        ra.and(rb)
    })
}

/// The C contender running `f` on `name`; `c_ast_locked` is `c_ast` with
/// the condition variable signalled under its mutex.
fn c_contender<'a>(
    id: &'static str,
    ls: &'a CHandle,
    f: ffi::TimedFn,
    name: &'a str,
) -> Contender<'a> {
    let locked = id == "c_ast_locked";
    Contender {
        id,
        run: Box::new(move |n| {
            ffi::set_signal_locked(locked);
            ls.timed(id, f, name, n)
        }),
    }
}

fn rust_contender<'a>(
    ls: &'a Lockspace,
    name: &'a str,
    f: fn(&Lockspace, &str, u32) -> Result<Duration, String>,
) -> Contender<'a> {
    Contender {
        id: "rust",
        run: Box::new(move |n| f(ls, name, n)),
    }
}

/// Locks held for cases 5 and 6, with the heap they took.
struct Held {
    rust: Vec<LockGuard>,
    c: Option<CHeld>,
    /// Counting-allocator bytes (Rust only) and mallinfo2 bytes taken by
    /// the Rust side's holding, and mallinfo2 bytes of the C side's.
    rust_counted: i64,
    rust_heap: i64,
    c_heap: i64,
    rust_setup: Duration,
    c_setup: Duration,
}

impl Held {
    /// Takes locks until each side holds `level`.
    fn grow(
        &mut self,
        cfg: &Config,
        ls: &Lockspace,
        c_ls: &CHandle,
        cap: u32,
        level: u32,
    ) -> Result<(), String> {
        if cfg.wants("rust") {
            let (counted, heap, t) = (alloc::live_bytes(), ffi::heap_in_use(), Instant::now());
            if self.rust.capacity() == 0 {
                self.rust = Vec::with_capacity(cap as usize);
            }
            for i in self.rust.len() as u32..level {
                let guard = ls
                    .lock(format!("held-r-{i}"), Mode::Ex)
                    .map_err(dlm_err("holding"))?;
                self.rust.push(guard);
            }
            self.rust_setup += t.elapsed();
            self.rust_counted += alloc::live_bytes() as i64 - counted as i64;
            self.rust_heap += ffi::heap_in_use() as i64 - heap as i64;
        }
        if cfg.wants("c_ast") {
            let (heap, t) = (ffi::heap_in_use(), Instant::now());
            let held = match &mut self.c {
                Some(h) => h,
                None => self.c.insert(CHeld::new(c_ls, cap)?),
            };
            held.grow(c"held-c-", level)?;
            self.c_setup += t.elapsed();
            self.c_heap += ffi::heap_in_use() as i64 - heap as i64;
        }
        Ok(())
    }
}

fn main() {
    let cfg = match Config::parse() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("dlm-bench: {e}");
            std::process::exit(2);
        }
    };
    match run(&cfg) {
        // The held locks of case 5 are not unlocked one by one: the
        // process exits, and the kernel drops every lock of its handles.
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("dlm-bench: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

/// Case 7's resources: PIPE_PREFIX0, PIPE_PREFIX1, ...
const PIPE_PREFIX: &str = "pipe";
/// Case 8's resource.
const POLL_RESOURCE: &str = "bench-poll";

fn pipe_names(n: u32) -> Vec<String> {
    (0..n).map(|i| format!("{PIPE_PREFIX}{i}")).collect()
}

/// Case 7, Rust with futures: every request written, then every answer
/// awaited; then every unlock. `polled`: a poll-mode handle, driven by a
/// poll(2) + dispatch loop on this thread (else libdlm's thread wakes a
/// plain block_on).
fn rust_pipelined(ls: &Lockspace, names: &[String], polled: bool) -> Result<Duration, String> {
    let t = Instant::now();
    let locks = futures::future::try_join_all(names.iter().map(|n| ls.lock_async(n, Mode::Ex)));
    let guards = if polled {
        drive(ls, locks)
    } else {
        futures::executor::block_on(locks)
    }
    .map_err(dlm_err("lock_async"))?;
    let unlocks = futures::future::try_join_all(guards.into_iter().map(|g| g.unlock_async()));
    if polled {
        drive(ls, unlocks)
    } else {
        futures::executor::block_on(unlocks)
    }
    .map_err(dlm_err("unlock_async"))?;
    Ok(t.elapsed())
}

/// Case 7 on a current-thread tokio runtime: the poll-mode handle's
/// answers read by `dlm::tokio::drive` (the reactor's `AsyncFd`) on the
/// same thread as the futures: no libdlm thread, no cross-thread wake-up.
fn rust_tokio_pipelined(
    rt: &tokio::runtime::Runtime,
    ls: &Lockspace,
    names: &[String],
) -> Result<Duration, String> {
    let t = Instant::now();
    rt.block_on(async {
        let driver = tokio::spawn(dlm::tokio::drive(ls.clone()));
        let guards =
            futures::future::try_join_all(names.iter().map(|n| ls.lock_async(n, Mode::Ex)))
                .await
                .map_err(dlm_err("lock_async"))?;
        futures::future::try_join_all(guards.into_iter().map(|g| g.unlock_async()))
            .await
            .map_err(dlm_err("unlock_async"))?;
        driver.abort();
        Ok::<(), String>(())
    })?;
    Ok(t.elapsed())
}

/// Runs `f` on this thread, dispatching the poll-mode lockspace when its
/// descriptor is readable: the event loop of a poll-mode program.
fn drive<F: std::future::Future>(ls: &Lockspace, f: F) -> F::Output {
    use std::os::fd::AsRawFd;
    let mut f = std::pin::pin!(f);
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
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
        if unsafe { libc::poll(&mut pfd, 1, 1000) } > 0 {
            let _ = ls.dispatch();
        }
    }
}

/// Case 7, Rust blocking calls one at a time: every lock, then every unlock.
fn rust_one_at_a_time(ls: &Lockspace, names: &[String]) -> Result<Duration, String> {
    let t = Instant::now();
    let guards = names
        .iter()
        .map(|n| ls.lock(n, Mode::Ex))
        .collect::<Result<Vec<_>, _>>()
        .map_err(dlm_err("lock"))?;
    for g in guards {
        g.unlock().map_err(dlm_err("unlock"))?;
    }
    Ok(t.elapsed())
}

/// On another node: take NL on the resources of cases 7 and 8, which makes
/// this node their master, and keep them until `until` exists.
fn master(cfg: &Config, until: &std::path::Path) -> Result<(), String> {
    let ls = Lockspace::join(&cfg.lockspace, 0o600).map_err(dlm_err("join"))?;
    let mut held = Vec::new();
    for n in pipe_names(cfg.n_pipe)
        .iter()
        .map(String::as_str)
        .chain([POLL_RESOURCE, "bench-warm"])
    {
        held.push(ls.lock(n, Mode::Nl).map_err(dlm_err("NL"))?);
    }
    println!("mastered {}", held.len());
    while !until.exists() {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held);
    println!("released");
    Ok(())
}

fn run(cfg: &Config) -> Result<(), String> {
    if let Some(until) = &cfg.master_until {
        return master(cfg, until);
    }
    if let Some(dir) = &cfg.partner {
        return twonode::partner(cfg, dir);
    }
    let started = Instant::now();
    let name = &cfg.lockspace;
    // The lockspace: created (needs root) or joined; its Rust handle.
    let ls = Lockspace::create(name, 0o600)
        .map_err(|e| format!("creating lockspace {name:?} (run as root in ci/vm): {e}"))?;
    let cname = CString::new(name.as_str()).map_err(|_| "bad lockspace name")?;
    let c_ls = CHandle::open(&cname)?;
    let kernel = dlm::kernel_version().map_err(dlm_err("dlm_kernel_version"))?;
    eprintln!(
        "dlm-bench: lockspace {name:?}, kernel DLM protocol {kernel}, {} rounds, N = {}",
        cfg.rounds, cfg.n
    );
    // The floor (`c_direct`): a handle with no AST thread whose answers
    // the C caller reads from the descriptor itself (cases 1, 7, 8).
    let c_dls = if cfg.wants("c_direct") && [1, 7, 8].iter().any(|k| cfg.cases.contains(k)) {
        Some(CHandle::open_polled(&cname)?)
    } else {
        None
    };
    let c_direct = |f, res| c_dls.as_ref().map(|d| c_contender("c_direct", d, f, res));
    let mut cases = Vec::new();
    let mut memory = None;
    // The Rust thread's completion channel exists before any timing.
    warm_thread(&ls, "bench-warm")?;

    if cfg.cases.contains(&1) {
        let res = "bench-lock";
        cases.push(measure(
            "lock_unlock",
            "1. new EX lock + unlock, one thread, one resource",
            "lock+unlock pair",
            cfg,
            cfg.n,
            u64::from,
            vec![
                rust_contender(&ls, res, rust_lock_unlock),
                c_contender("c_ast", &c_ls, ffi::cb_lock_unlock_ast, res),
                c_contender("c_ast_locked", &c_ls, ffi::cb_lock_unlock_ast, res),
                c_contender("c_wait", &c_ls, ffi::cb_lock_unlock_wait, res),
                // The C AST contender once more, as if it were another
                // contender: how far apart two identical programs come out
                // (the noise floor of a ratio).
                c_contender("c_ast_aa", &c_ls, ffi::cb_lock_unlock_ast, res),
            ]
            .into_iter()
            .chain(c_direct(ffi::cb_lock_unlock_direct, res))
            .collect(),
        )?);
    }
    if cfg.cases.contains(&2) {
        let res = "bench-convert";
        cases.push(measure(
            "convert",
            "2. conversion NL -> EX -> NL of a held lock",
            "NL->EX->NL pair",
            cfg,
            cfg.n,
            u64::from,
            vec![
                rust_contender(&ls, res, rust_convert),
                c_contender("c_ast", &c_ls, ffi::cb_convert_ast, res),
                c_contender("c_ast_locked", &c_ls, ffi::cb_convert_ast, res),
                c_contender("c_wait", &c_ls, ffi::cb_convert_wait, res),
            ],
        )?);
    }
    if cfg.cases.contains(&3) {
        let res = "bench-trylock";
        // Another handle (with its own AST thread) holds EX throughout.
        let other = Lockspace::open(name).map_err(dlm_err("second handle"))?;
        let holder = other.lock(res, Mode::Ex).map_err(dlm_err("holder"))?;
        cases.push(measure(
            "trylock_fail",
            "3. try-lock refused (another handle holds EX)",
            "refused request",
            cfg,
            cfg.n,
            u64::from,
            vec![
                rust_contender(&ls, res, rust_trylock),
                c_contender("c_ast", &c_ls, ffi::cb_trylock_ast, res),
                c_contender("c_ast_locked", &c_ls, ffi::cb_trylock_ast, res),
                c_contender("c_wait", &c_ls, ffi::cb_trylock_wait, res),
            ],
        )?);
        holder.unlock().map_err(dlm_err("holder unlock"))?;
        drop(other);
    }
    if cfg.cases.contains(&4) {
        let res = "bench-handoff";
        cases.push(measure(
            "handoff",
            "4. hand-off: two threads take turns on one EX lock",
            "hand-off",
            cfg,
            cfg.n_handoff,
            |n| 2 * u64::from(n) - 1,
            vec![
                rust_contender(&ls, res, rust_handoff),
                c_contender("c_ast", &c_ls, ffi::cb_handoff_ast, res),
                c_contender("c_ast_locked", &c_ls, ffi::cb_handoff_ast, res),
                c_contender("c_wait", &c_ls, ffi::cb_handoff_wait, res),
            ],
        )?);
    }
    if cfg.cases.contains(&9) {
        // The cache holds its own resource: on the uncached contenders'
        // resource it would be given up at each of their takes.
        let cache = ls
            .cached("bench-cached", dlm::CacheOptions::new().idle_release(None))
            .map_err(dlm_err("cached"))?;
        let res = "bench-uncached";
        cases.push(measure(
            "cached",
            "9. cached lock: EX take + release, one thread, no contention",
            "take+release pair",
            cfg,
            cfg.n,
            u64::from,
            vec![
                Contender {
                    id: "rust_cached",
                    run: Box::new(|n| {
                        let t = Instant::now();
                        for _ in 0..n {
                            let g = cache.lock(Mode::Ex).map_err(dlm_err("cached lock"))?;
                            drop(std::hint::black_box(g));
                        }
                        Ok(t.elapsed())
                    }),
                },
                rust_contender(&ls, res, rust_lock_unlock),
                c_contender("c_ast", &c_ls, ffi::cb_lock_unlock_ast, res),
            ],
        )?);
        let s = cache.stats();
        eprintln!(
            "dlm-bench: case 9's cache: {} hits, {} takes, {} give-ups",
            s.hits, s.takes, s.give_ups
        );
    }
    if cfg.cases.contains(&7) || cfg.cases.contains(&8) {
        let pls = Lockspace::builder(name)
            .poll_mode()
            .open()
            .map_err(dlm_err("opening the lockspace in poll mode"))?;
        let c_pls = CHandle::open_polled(&cname)?;
        if cfg.cases.contains(&7) {
            let names = pipe_names(cfg.n_pipe);
            // The futures writing their requests in `poll` (the faster way
            // that can block an executor while the DLM recovers).
            let ils = Lockspace::builder(name)
                .async_writes(dlm::AsyncWrites::InPoll)
                .open()
                .map_err(dlm_err("opening the lockspace with writes in poll"))?;
            let ils = &ils;
            // A poll-mode handle whose futures write in `poll` too: one
            // thread does everything, as the C poll-mode programs do.
            let pils = Lockspace::builder(name)
                .poll_mode()
                .async_writes(dlm::AsyncWrites::InPoll)
                .open()
                .map_err(dlm_err(
                    "opening the lockspace in poll mode with writes in poll",
                ))?;
            let pils = &pils;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
                .map_err(|e| format!("tokio runtime: {e}"))?;
            let (ls, pls, names, rt) = (&ls, &pls, &names, &rt);
            cases.push(measure(
                "pipelined",
                "7. EX lock + unlock of N distinct resources, all requests in flight, one thread",
                "lock+unlock pair",
                cfg,
                cfg.n_pipe,
                u64::from,
                vec![
                    Contender {
                        id: "rust",
                        run: Box::new(move |n| rust_pipelined(ls, &names[..n as usize], false)),
                    },
                    Contender {
                        id: "rust_poll",
                        run: Box::new(move |n| rust_pipelined(pls, &names[..n as usize], true)),
                    },
                    Contender {
                        id: "rust_poll_inpoll",
                        run: Box::new(move |n| rust_pipelined(pils, &names[..n as usize], true)),
                    },
                    Contender {
                        id: "rust_inpoll",
                        run: Box::new(move |n| rust_pipelined(ils, &names[..n as usize], false)),
                    },
                    Contender {
                        id: "rust_blocking",
                        run: Box::new(move |n| rust_one_at_a_time(ls, &names[..n as usize])),
                    },
                    Contender {
                        id: "rust_tokio",
                        run: Box::new(move |n| rust_tokio_pipelined(rt, pls, &names[..n as usize])),
                    },
                    c_contender("c_ast", &c_ls, ffi::cb_pipelined_ast, PIPE_PREFIX),
                    c_contender(
                        "c_dispatch",
                        &c_pls,
                        ffi::cb_pipelined_dispatch,
                        PIPE_PREFIX,
                    ),
                ]
                .into_iter()
                .chain(c_direct(ffi::cb_pipelined_direct, PIPE_PREFIX))
                .collect(),
            )?);
        }
        if cfg.cases.contains(&8) {
            let res = POLL_RESOURCE;
            cases.push(measure(
                "poll_one",
                "8. EX lock + unlock, one request at a time, poll mode (dispatch on the caller's thread)",
                "lock+unlock pair",
                cfg,
                cfg.n,
                u64::from,
                vec![
                    Contender {
                        id: "rust_poll",
                        run: Box::new(|n| rust_lock_unlock(&pls, res, n)),
                    },
                    c_contender("c_dispatch", &c_pls, ffi::cb_lock_unlock_dispatch, res),
                    // libdlm's AST thread, for the target "poll mode at most
                    // 0.65x of C's AST thread".
                    c_contender("c_ast", &c_ls, ffi::cb_lock_unlock_ast, res),
                ]
                .into_iter()
                .chain(c_direct(ffi::cb_lock_unlock_direct, res))
                .collect(),
            )?);
        }
    }
    if let Some(dir) = &cfg.peer {
        let peer = twonode::Peer::new(dir.clone());
        let mut held = Vec::new();
        let result = twonode::run_cases(cfg, &ls, &peer, &mut held);
        peer.quit();
        cases.extend(result?);
    }
    if cfg.cases.contains(&5) {
        let cap = *cfg.levels.last().expect("levels are not empty");
        let mut held = Held {
            rust: Vec::new(),
            c: None,
            rust_counted: 0,
            rust_heap: 0,
            c_heap: 0,
            rust_setup: Duration::ZERO,
            c_setup: Duration::ZERO,
        };
        let res = "bench-growth";
        for &level in &cfg.levels {
            held.grow(cfg, &ls, &c_ls, cap, level)?;
            eprintln!(
                "dlm-bench: holding {level} locks on each side (setup so far: Rust {:.1} s, C {:.1} s)",
                held.rust_setup.as_secs_f64(),
                held.c_setup.as_secs_f64()
            );
            cases.push(measure(
                &format!("growth_{level}"),
                &format!("5. new EX lock + unlock while {level} other locks are held"),
                "lock+unlock pair",
                cfg,
                cfg.n_growth,
                u64::from,
                vec![
                    rust_contender(&ls, res, rust_lock_unlock),
                    c_contender("c_ast", &c_ls, ffi::cb_lock_unlock_ast, res),
                ],
            )?);
        }
        memory = Some(Memory {
            locks: cap,
            rust_counted_bytes: held.rust_counted,
            rust_heap_bytes: held.rust_heap,
            c_heap_bytes: held.c_heap,
            guard_size: std::mem::size_of::<LockGuard>(),
            rust_setup_seconds: held.rust_setup.as_secs_f64(),
            c_setup_seconds: held.c_setup.as_secs_f64(),
        });
        // Kept until the process exits (see main): unlocking them one by
        // one would take as long as taking them. (The C locks go when the
        // C handle closes at the end of this function.)
        std::mem::forget(held.rust);
    }

    let run = Run {
        short: cfg.short,
        date: report::utc_now(),
        machine: cfg.machine.clone(),
        command: cfg.command.clone(),
        kernel_dlm: kernel.to_string(),
        library: dlm::library_version().to_string(),
        rounds: cfg.rounds,
        cases,
        memory,
        seconds: started.elapsed().as_secs_f64(),
        nodes: cfg.nodes,
    };
    eprint!("{}", run.text_summary());
    if let Some(p) = &cfg.json {
        report::write(p, &run.json())?;
        eprintln!("dlm-bench: JSON written to {}", p.display());
    }
    if let Some(p) = &cfg.markdown {
        report::splice_markdown(p, &cfg.section, &run.markdown())?;
        eprintln!("dlm-bench: results table written to {}", p.display());
    }
    if let Some(p) = &cfg.svg {
        report::write(p, &run.svg())?;
        eprintln!("dlm-bench: chart written to {}", p.display());
    }
    Ok(())
}
