//! Cases 10-11: a cached lock ([`dlm::CachedLock`]) against plain locks
//! on two nodes, with a partner process on node 1 (this binary with
//! `--partner DIR`) doing the same work as the measuring process on node 2.
//!
//! **Case 10, turns**: the two nodes take one resource in strict turns.
//! The resource's value block holds a counter; node 1 takes a turn when it
//! is even, node 2 when it is odd. A turn: take EX, read the counter, add
//! one if it is this node's turn, release. A take that finds the other
//! node's turn releases at once and takes again after a 50 µs sleep: a
//! cached take is a hit that needs no system call, and a loop of hits
//! would keep its node's CPU busy, starving the cache's helper thread and
//! (on a host with two CPUs shared by both nodes) the other node. A
//! `sched_yield` instead was tried: it left the holding node spinning,
//! and the plain locks' master node too (2.6 takes out of turn per
//! hand-over on node 1, against 0.4 with the sleep). So each turn
//! waits for the other node's release: every turn is a hand-over, and both
//! contenders run the same loop, the lock being the only difference. Node
//! 2 times its own turns from its first to its last: `2 (n - 1)`
//! hand-overs, none waiting for the partner to start (node 1 goes first).
//! Chosen over "both loop take/release, the hand-overs counted by an owner
//! id in the value block" because that lets the cache answer many local
//! takes per hand-over, so time per hand-over would measure the minimum
//! hold time and not the cost of handing the lock over.
//!
//! **Case 11, mostly local**: each node takes EX on its own resource
//! (mastered by itself) 99 times in 100 and on the other node's resource
//! once, at the same time as the other node: time per take + release of
//! the slower node (the round's time is the longer of the two nodes'
//! loops: a cache that holds the other node's resource serves its own
//! node's next takes of it as hits while the other node waits, so node
//! 2's time alone flattered it, 2.1 µs per take).
//!
//! Contenders: `rust` (plain `ls.lock` / `lock_with(.., lvb())`), and
//! caches with the default options (`rust_cached`: no minimum hold, the
//! cache adapting to contention) and with GFS2's minimum hold,
//! `min_hold(10 ms)` (`rust_cached_hold`); each contender
//! has its own resources, and its caches are made afresh every round (so
//! every round starts alike: no lock held).
//!
//! Coordination: node 2 writes commands as files in DIR (`cmd-SEQ`,
//! written whole by a rename); the partner answers in `done-SEQ` with its
//! cache's counters. Each round starts on a DLM barrier: node 2 holds EX on
//! [`GO`] with blocking notifications; the partner, ready, asks for PR; the
//! notification tells node 2 the partner waits, node 2 unlocks, both start
//! within one message.

use crate::report::CaseResult;
use crate::{dlm_err, measure, Config, Contender};
use dlm::{CacheOptions, CachedLock, DropBehavior, LockGuard, LockOptions, Lockspace, Mode};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The contenders of cases 10-11.
pub const CONTENDERS: [&str; 3] = ["rust", "rust_cached", "rust_cached_hold"];

/// The barrier resource.
const GO: &str = "bench-go";

/// How long anything may wait for the other node.
const PATIENCE: Duration = Duration::from_secs(300);

/// Case 10's resource of a contender (mastered by node 1).
fn turns_name(contender: &str) -> String {
    format!("turns-{contender}")
}

/// Case 11's resource of node `node` for a contender (mastered by `node`).
fn local_name(node: u32, contender: &str) -> String {
    format!("local{node}-{contender}")
}

fn cache_options(contender: &str, lvb: bool) -> Result<Option<CacheOptions>, String> {
    let o = if lvb {
        CacheOptions::new().lvb()
    } else {
        CacheOptions::new()
    };
    match contender {
        "rust" => Ok(None),
        "rust_cached" => Ok(Some(o)),
        "rust_cached_hold" => Ok(Some(o.min_hold(Duration::from_millis(10)))),
        _ => Err(format!("unknown contender {contender:?} of cases 10-11")),
    }
}

/// One resource, taken plainly or through a cache.
enum Lock<'a> {
    Plain { ls: &'a Lockspace, name: String },
    Cached(CachedLock),
}

/// Counters of one node's side of a round.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    hits: u64,
    takes: u64,
    give_ups: u64,
    /// Case 10: takes that found the other node's turn.
    out_of_turn: u64,
    /// Case 11: the time the node's loop took, in nanoseconds.
    nanos: u64,
}

impl Counts {
    fn add(&mut self, o: Counts) {
        self.hits += o.hits;
        self.takes += o.takes;
        self.give_ups += o.give_ups;
        self.out_of_turn += o.out_of_turn;
        self.nanos += o.nanos;
    }

    fn wire(&self) -> String {
        format!(
            "{} {} {} {} {}",
            self.hits, self.takes, self.give_ups, self.out_of_turn, self.nanos
        )
    }

    fn parse(s: &str) -> Result<Counts, String> {
        let v: Vec<u64> = s
            .split_whitespace()
            .map(|x| x.parse().map_err(|_| format!("bad counts {s:?}")))
            .collect::<Result<_, _>>()?;
        match v[..] {
            [hits, takes, give_ups, out_of_turn, nanos] => Ok(Counts {
                hits,
                takes,
                give_ups,
                out_of_turn,
                nanos,
            }),
            _ => Err(format!("bad counts {s:?}")),
        }
    }
}

impl<'a> Lock<'a> {
    fn new(ls: &'a Lockspace, contender: &str, name: String, lvb: bool) -> Result<Self, String> {
        Ok(match cache_options(contender, lvb)? {
            None => Lock::Plain { ls, name },
            Some(o) => Lock::Cached(ls.cached(&name, o).map_err(dlm_err("cached"))?),
        })
    }

    fn counts(&self) -> Counts {
        match self {
            Lock::Plain { .. } => Counts::default(),
            Lock::Cached(c) => {
                let s = c.stats();
                Counts {
                    hits: s.hits,
                    takes: s.takes,
                    give_ups: s.give_ups,
                    ..Counts::default()
                }
            }
        }
    }

    /// EX take + release.
    fn take_release(&self) -> Result<(), String> {
        match self {
            Lock::Plain { ls, name } => ls
                .lock(name, Mode::Ex)
                .and_then(LockGuard::unlock)
                .map_err(dlm_err("lock")),
            Lock::Cached(c) => {
                let g = c.lock(Mode::Ex).map_err(dlm_err("cached lock"))?;
                drop(std::hint::black_box(g));
                Ok(())
            }
        }
    }

    /// One take of case 10: EX, the counter read, incremented if its
    /// parity is `me`, released. Whether it was this node's turn.
    fn turn(&self, me: u64) -> Result<bool, String> {
        fn next(v: Option<dlm::Lvb>, me: u64) -> Option<[u8; 8]> {
            let mut b = [0; 8];
            if let Some(v) = v {
                b.copy_from_slice(&v.bytes[..8]);
            }
            let c = u64::from_le_bytes(b);
            (c % 2 == me).then(|| (c + 1).to_le_bytes())
        }
        match self {
            Lock::Plain { ls, name } => {
                let mut g = ls
                    .lock_with(name, Mode::Ex, LockOptions::new().lvb())
                    .map_err(dlm_err("lock"))?;
                let mine = next(g.lvb(), me);
                if let Some(v) = mine {
                    g.set_lvb(&v).map_err(dlm_err("set_lvb"))?;
                }
                g.unlock().map_err(dlm_err("unlock"))?;
                Ok(mine.is_some())
            }
            Lock::Cached(c) => {
                let mut g = c.lock(Mode::Ex).map_err(dlm_err("cached lock"))?;
                let mine = next(g.lvb(), me);
                if let Some(v) = mine {
                    g.set_lvb(&v).map_err(dlm_err("set_lvb"))?;
                }
                drop(g);
                Ok(mine.is_some())
            }
        }
    }
}

/// One node's side of a round of case 10: `n` turns of parity `me`.
/// Returns the time from the first turn to the last, and the takes that
/// found the other node's turn.
fn turns(lock: &Lock<'_>, me: u64, n: u32) -> Result<(Duration, u64), String> {
    let started = Instant::now();
    let mut first = None;
    let (mut done, mut other) = (0, 0);
    while done < n {
        if lock.turn(me)? {
            done += 1;
            if first.is_none() {
                first = Some(Instant::now());
            }
        } else {
            other += 1;
            if started.elapsed() > PATIENCE {
                return Err(format!("{done} of {n} turns in {PATIENCE:?}"));
            }
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    Ok((first.map_or(Duration::ZERO, |t| t.elapsed()), other))
}

/// One node's side of a round of case 11: `n` takes, the one at `i % 100
/// == phase` on the other node's resource.
fn mostly_local(own: &Lock<'_>, other: &Lock<'_>, n: u32, phase: u32) -> Result<Duration, String> {
    let t = Instant::now();
    for i in 0..n {
        if i % 100 == phase {
            other.take_release()?;
        } else {
            own.take_release()?;
        }
    }
    Ok(t.elapsed())
}

/// Writes `text` to `path` whole (a rename): the other node never reads
/// half of it.
fn put(path: &Path, text: &str) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

// ---- node 2: the measuring side ----

/// The partner on node 1, as node 2 talks to it.
pub struct Peer {
    dir: PathBuf,
    seq: std::cell::Cell<u64>,
}

impl Peer {
    pub fn new(dir: PathBuf) -> Peer {
        Peer {
            dir,
            seq: std::cell::Cell::new(0),
        }
    }

    fn send(&self, cmd: &str) -> Result<u64, String> {
        let seq = self.seq.get();
        self.seq.set(seq + 1);
        put(&self.dir.join(format!("cmd-{seq}")), cmd)?;
        Ok(seq)
    }

    /// The partner's answer to command `seq`: its counts.
    fn answer(&self, seq: u64) -> Result<Counts, String> {
        let path = self.dir.join(format!("done-{seq}"));
        let t = Instant::now();
        loop {
            if let Ok(s) = std::fs::read_to_string(&path) {
                let s = s.trim();
                return match s.strip_prefix("ok") {
                    Some(rest) if rest.trim().is_empty() => Ok(Counts::default()),
                    Some(rest) => Counts::parse(rest),
                    None => Err(format!("partner: {s}")),
                };
            }
            if t.elapsed() > PATIENCE {
                return Err(format!("no answer from the partner in {}", path.display()));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn call(&self, cmd: &str) -> Result<Counts, String> {
        let seq = self.send(cmd)?;
        self.answer(seq)
    }

    /// Sends `cmd` and returns once the partner is about to run it (the
    /// DLM barrier on [`GO`]).
    fn start(&self, ls: &Lockspace, cmd: &str) -> Result<u64, String> {
        let mut go = ls
            .lock_with(GO, Mode::Ex, LockOptions::new().notify_blocking())
            .map_err(dlm_err("barrier"))?;
        let seq = self.send(cmd)?;
        match go
            .wait_blocking(Some(PATIENCE))
            .map_err(dlm_err("barrier"))?
        {
            Some(_) => {}
            None => return Err(format!("the partner did not start {cmd:?}")),
        }
        go.unlock().map_err(dlm_err("barrier unlock"))?;
        Ok(seq)
    }

    /// Tells the partner to exit.
    pub fn quit(&self) {
        let _ = self.send("quit");
    }
}

/// Counters per contender over every round (warm-up included) of a case,
/// both nodes: (operations timed on node 2, node 2's counts, node 1's).
type Tally = RefCell<BTreeMap<&'static str, (u64, Counts, Counts)>>;

fn notes(tally: &Tally, what: &str) -> Vec<String> {
    tally
        .borrow()
        .iter()
        .filter(|(id, (_, mine, theirs))| {
            **id != "rust" || mine.out_of_turn + theirs.out_of_turn > 0
        })
        .map(|(id, (ops, mine, theirs))| {
            let per = |x: u64| x as f64 / (*ops).max(1) as f64;
            let mut s = format!("{id}, per {what} (both nodes, every round): ");
            if *id != "rust" {
                let _ = write!(
                    s,
                    "cache hits {:.2} + {:.2}, takes of the DLM lock {:.2} + {:.2}, give-ups {:.2} + {:.2}",
                    per(mine.hits),
                    per(theirs.hits),
                    per(mine.takes),
                    per(theirs.takes),
                    per(mine.give_ups),
                    per(theirs.give_ups)
                );
            }
            if mine.out_of_turn + theirs.out_of_turn > 0 || what == "hand-over" {
                if *id != "rust" {
                    s.push_str("; ");
                }
                let _ = write!(
                    s,
                    "takes finding the other node's turn {:.2} (node 2) + {:.2} (node 1)",
                    per(mine.out_of_turn),
                    per(theirs.out_of_turn)
                );
            }
            s
        })
        .collect()
}

/// Cases 10 and 11 on node 2, with the partner behind `peer`. `held`
/// keeps the NL locks that make node 2 master its own resources of case 11.
pub fn run_cases(
    cfg: &Config,
    ls: &Lockspace,
    peer: &Peer,
    held: &mut Vec<LockGuard>,
) -> Result<Vec<CaseResult>, String> {
    // Node 2 masters its own resources of case 11 (the first to take a
    // resource masters it); then the partner takes NL on case 10's and
    // its own of case 11.
    for c in CONTENDERS {
        held.push(ls.lock(local_name(2, c), Mode::Nl).map_err(dlm_err("NL"))?);
    }
    peer.call("setup")?;
    let mut cases = Vec::new();
    if cfg.cases.contains(&10) {
        let tally = Tally::default();
        let run = &|c: &'static str, n: u32| -> Result<Duration, String> {
            let lock = Lock::new(ls, c, turns_name(c), true)?;
            let seq = peer.start(ls, &format!("turns {c} {n}"))?;
            let (took, other) = turns(&lock, 1, n)?;
            let theirs = peer.answer(seq)?;
            let mut mine = lock.counts();
            mine.out_of_turn = other;
            drop(lock);
            let mut t = tally.borrow_mut();
            let e = t.entry(c).or_default();
            e.0 += 2 * u64::from(n) - 2;
            e.1.add(mine);
            e.2.add(theirs);
            Ok(took)
        };
        let cfg10 = Config {
            rounds: cfg.rounds_turns,
            ..cfg.clone()
        };
        let mut r = measure(
            "turns",
            "10. two nodes take one EX lock in strict turns (a counter in the value block)",
            "hand-over",
            &cfg10,
            cfg.n_turns,
            |n| 2 * u64::from(n) - 2,
            CONTENDERS
                .iter()
                .map(|&c| Contender {
                    id: c,
                    run: Box::new(move |n| run(c, n.max(2))),
                })
                .collect(),
        )?;
        r.notes = notes(&tally, "hand-over");
        cases.push(r);
    }
    if cfg.cases.contains(&11) {
        let tally = Tally::default();
        let run = &|c: &'static str, n: u32| -> Result<Duration, String> {
            let own = Lock::new(ls, c, local_name(2, c), false)?;
            let other = Lock::new(ls, c, local_name(1, c), false)?;
            let seq = peer.start(ls, &format!("local {c} {n}"))?;
            let ours = mostly_local(&own, &other, n, 99)?;
            let theirs = peer.answer(seq)?;
            // Both nodes' takes: until the slower is done (a cache can
            // make one node fast at the other's expense).
            let took = ours.max(Duration::from_nanos(theirs.nanos));
            let mut mine = own.counts();
            mine.add(other.counts());
            drop((own, other));
            let mut t = tally.borrow_mut();
            let e = t.entry(c).or_default();
            e.0 += u64::from(n);
            e.1.add(mine);
            e.2.add(theirs);
            Ok(took)
        };
        let mut r = measure(
            "mostly_local",
            "11. two nodes, each takes EX on its own resource 99% of the time and on the other's 1%",
            "take+release",
            cfg,
            cfg.n_local,
            u64::from,
            CONTENDERS
                .iter()
                .map(|&c| Contender {
                    id: c,
                    run: Box::new(move |n| run(c, n)),
                })
                .collect(),
        )?;
        r.notes = notes(&tally, "take");
        cases.push(r);
    }
    Ok(cases)
}

// ---- node 1: the partner ----

/// The partner on node 1: runs node 2's commands from `dir` until `quit`
/// (a command, or the file `dir/quit`).
pub fn partner(cfg: &Config, dir: &Path) -> Result<(), String> {
    let ls = Lockspace::join(&cfg.lockspace, 0o600).map_err(dlm_err("join"))?;
    let mut held = Vec::new();
    let mut last = Instant::now();
    println!("partner ready");
    for seq in 0.. {
        let path = dir.join(format!("cmd-{seq}"));
        let cmd = loop {
            if let Ok(s) = std::fs::read_to_string(&path) {
                break s;
            }
            if dir.join("quit").exists() {
                return Ok(());
            }
            // Quick between rounds, quiet while node 2 runs other cases
            // (node 1 masters their resources).
            let idle = last.elapsed() > Duration::from_secs(2);
            std::thread::sleep(Duration::from_millis(if idle { 20 } else { 1 }));
        };
        let answer = match serve(&ls, cmd.trim(), &mut held) {
            Ok(None) => return Ok(()),
            Ok(Some(counts)) => format!("ok {}", counts.wire()),
            Err(e) => format!("err {e}"),
        };
        put(&dir.join(format!("done-{seq}")), &answer)?;
        last = Instant::now();
    }
    Ok(())
}

/// Waits at the barrier: node 2 holds [`GO`] until this PR request waits.
fn barrier(ls: &Lockspace) -> Result<(), String> {
    let mut g = ls.lock(GO, Mode::Pr).map_err(dlm_err("barrier"))?;
    g.set_drop_behavior(DropBehavior::Background);
    Ok(())
}

fn serve(ls: &Lockspace, cmd: &str, held: &mut Vec<LockGuard>) -> Result<Option<Counts>, String> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let number = |s: &str| s.parse::<u32>().map_err(|_| format!("bad number {s:?}"));
    match words[..] {
        ["quit"] => Ok(None),
        ["setup"] => {
            for c in CONTENDERS {
                for name in [turns_name(c), local_name(1, c)] {
                    held.push(ls.lock(name, Mode::Nl).map_err(dlm_err("NL"))?);
                }
            }
            Ok(Some(Counts::default()))
        }
        ["turns", c, n] => {
            let n = number(n)?;
            let lock = Lock::new(ls, c, turns_name(c), true)?;
            barrier(ls)?;
            let (_, other) = turns(&lock, 0, n)?;
            let mut counts = lock.counts();
            counts.out_of_turn = other;
            Ok(Some(counts))
        }
        ["local", c, n] => {
            let n = number(n)?;
            let own = Lock::new(ls, c, local_name(1, c), false)?;
            let other = Lock::new(ls, c, local_name(2, c), false)?;
            barrier(ls)?;
            let took = mostly_local(&own, &other, n, 49)?;
            let mut counts = own.counts();
            counts.add(other.counts());
            counts.nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            Ok(Some(counts))
        }
        _ => Err(format!("unknown command {cmd:?}")),
    }
}
