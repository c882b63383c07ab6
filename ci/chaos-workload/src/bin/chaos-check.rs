//! chaos-check: the chaos suite's invariant checker. It reads only the
//! history the workers wrote (DIR/rec/*.rec), the fault events the host
//! harness wrote (DIR/events, host clock) and the end-of-run release
//! results (DIR/final/*), and proves from them:
//!
//! 1. **Exclusion**: no two critical sections in incompatible modes
//!    overlapped on a resource. Guest times are put on the host's clock
//!    on one clock when the run had a calibration of the host's time
//!    stamp counter (`DIR/tsc`: every guest reads the host's own counter,
//!    so records of any two nodes compare to within [`TSC_SKEW_NS`]; the
//!    probes below then only place that clock against the host's events),
//!    else with each guest's offset, measured by clock probes: the host's
//!    `chaos-clock` reads its clock between two readings of the guest's
//!    (`Q` lines; the older file-stamp probes, `P`, are used when there
//!    are none). A user-mode Linux guest's clock is the host's monotonic
//!    clock plus a constant set at its boot, so the probes of a whole boot
//!    bound one offset; when they do not agree on one but a line through
//!    all of them exists (a guest clock that drifted: once, 280 ms in 70
//!    s), the offset is that line, with the uncertainty of every line the
//!    probes allow (an inconsistent set is reported). Every pair must
//!    be resolved: an overlap, or a pair whose gap is smaller than the two
//!    offsets' uncertainty, is a violation. Independently of clocks, the value
//!    block's counter gives the DLM's own order of writers: two writers
//!    that both published the same increment both read the same value,
//!    which only overlapping PW/EX holders can do.
//! 2. **Value blocks**: every counter a holder read as valid was written
//!    by some writer that read the value before it, in the same epoch (an
//!    epoch starts where a writer found the block not valid or empty): so
//!    it equals the number of increments published since the last "not
//!    valid".
//! 3. **Bounded requests**: every request ended (granted, refused, timed
//!    out, failed with a typed error, or ended by its process's death)
//!    within the bound it recorded; an error the crate has no type for
//!    (recorded as `error:...`) is a violation too.
//! 4. **No lock left**: after the run, a non-forced release from a fresh
//!    handle succeeded on every node. One refusal is not a violation but
//!    a known kernel defect, counted apart: a release refused for good
//!    whose node proved that nothing is left (`known kernel defect: ...`
//!    from `chaos-worker prove-free`, with its evidence: every name the
//!    run used free to a NOQUEUE EX try, no orphan in any mode, every
//!    node purged, every worker ended), which only the leaked lock record
//!    of a try resent by the recovery leaves (crate docs, "When the
//!    cluster fails"). A claim without that whole evidence is a violation.
//! 5. **No blocking poll**: no poll or drop of a crate future or guard in
//!    an async worker, and no `Lockspace::dispatch` call of the `poll`
//!    kind, blocked its thread (a voluntary context switch in it) for more
//!    than 10 ms (DLM_CHAOS_BLOCKED_POLL_MS sets another bound); the
//!    executors' stalls (a 1 ms ticker's lateness, which preemption in the
//!    one-CPU guest adds to) are reported per fault kind and worker kind.
//!
//! Counts are reported per worker kind (the record header's last word).
//!
//! ```text
//! chaos-check DIR
//! ```
//! Prints a report (counts, violations, recovery times, longest waits,
//! memory) and exits 0 only with no violation.
use dlm_chaos::Counter;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

const MODES: [&str; 6] = ["NL", "CR", "CW", "PR", "PW", "EX"];

/// The DLM's compatibility matrix, written out here: the checker trusts
/// no code of the crate under test.
fn compatible(a: usize, b: usize) -> bool {
    const C: [[bool; 6]; 6] = [
        [true, true, true, true, true, true],
        [true, true, true, true, true, false],
        [true, true, true, false, false, false],
        [true, true, false, true, false, false],
        [true, true, false, false, false, false],
        [true, false, false, false, false, false],
    ];
    C[a][b]
}

fn mode_idx(s: &str) -> Option<usize> {
    MODES.iter().position(|m| *m == s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Proc {
    node: u32,
    boot: u32,
    pid: u32,
}

#[derive(Debug, Clone)]
struct Section {
    proc_: Proc,
    file: usize,
    sid: u64,
    res: String,
    mode: usize,
    /// Guest times (ns).
    start: i64,
    end: Option<i64>,
    read: Option<ReadLvb>,
    intent: Option<Counter>,
    published: Option<bool>,
}

#[derive(Debug, Clone, Copy)]
enum ReadLvb {
    Invalid,
    Valid(Counter),
}

#[derive(Debug, Clone)]
struct Request {
    proc_: Proc,
    res: String,
    op: String,
    bound_ms: i64,
    start: i64,
    end: Option<(i64, String)>,
}

/// A clock probe: guest time before, host time, guest time after.
type Probe = (i64, i64, i64);

/// An async worker's `ST` sample: (process, guest time, stall, longest
/// poll, longest blocked poll (ns), blocked polls, longest dispatch,
/// longest blocked dispatch (ns)).
type Stall = (Proc, i64, i64, i64, i64, u64, i64, i64, String);

/// Bound on a poll or drop that blocked its thread (ns): the concurrency
/// core's 10 ms, or DLM_CHAOS_BLOCKED_POLL_MS.
fn blocked_poll_bound_ns() -> i64 {
    std::env::var("DLM_CHAOS_BLOCKED_POLL_MS")
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .map_or(10_000_000, |ms| ms * 1_000_000)
}

#[derive(Default)]
struct History {
    /// Worker kind of each process (from the record headers).
    kinds: HashMap<Proc, String>,
    /// Probes answered by the host (`Q`), per (node, boot).
    host_probes: HashMap<(u32, u32), Vec<Probe>>,
    stalls: Vec<Stall>,
    /// Aborted tasks per process.
    aborts: HashMap<Proc, u64>,
    files: Vec<String>,
    sections: Vec<Section>,
    requests: Vec<Request>,
    /// Per (node, boot): probes (t1, host, t2).
    probes: HashMap<(u32, u32), Vec<Probe>>,
    /// Per process: memory samples (t, kib).
    memory: BTreeMap<Proc, Vec<(i64, u64)>>,
    /// Per process: first record time (guest).
    first_seen: HashMap<Proc, i64>,
    orphaned: u64,
    stats: Vec<(Proc, [u64; 4])>,
    /// The `cached` kind's caches, summed: hits, DLM takes, give-ups,
    /// idle releases.
    cache: [u64; 4],
    parse_errors: Vec<String>,
}

fn num<T: std::str::FromStr>(s: Option<&str>) -> Option<T> {
    s?.parse().ok()
}

fn read_history(dir: &Path) -> History {
    let mut h = History::default();
    let mut paths: Vec<_> = std::fs::read_dir(dir.join("rec"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    for p in paths {
        let Ok(text) = std::fs::read_to_string(&p) else {
            continue;
        };
        let fidx = h.files.len();
        h.files
            .push(p.file_name().unwrap().to_string_lossy().into_owned());
        let mut proc_ = None;
        let mut open_s: HashMap<u64, usize> = HashMap::new();
        let mut open_r: HashMap<u64, usize> = HashMap::new();
        let mut by_sid: HashMap<u64, usize> = HashMap::new();
        let nlines = text.lines().count();
        for (ln, line) in text.lines().enumerate() {
            let mut w = line.split(' ');
            let kind = w.next().unwrap_or("");
            let bad = |h: &mut History| {
                h.parse_errors
                    .push(format!("{}:{}: {line}", h.files[fidx], ln + 1))
            };
            if kind == "H" {
                let (Some(node), Some(boot), Some(pid)) =
                    (num(w.next()), num(w.next()), num(w.next()))
                else {
                    bad(&mut h);
                    continue;
                };
                let _tid = w.next();
                let _thread = w.next();
                let kind = w.next().unwrap_or("blocking").to_string();
                proc_ = Some(Proc { node, boot, pid });
                h.kinds.insert(Proc { node, boot, pid }, kind);
                continue;
            }
            let Some(pr) = proc_ else {
                bad(&mut h);
                continue;
            };
            // The last line may be cut short by a crash: ignore a line
            // that does not parse if it is the last one.
            let last = ln + 1 == nlines && !text.ends_with('\n');
            let ok = match kind {
                "P" => (|| {
                    let t1 = num(w.next())?;
                    let host = num(w.next())?;
                    let t2 = num(w.next())?;
                    h.probes
                        .entry((pr.node, pr.boot))
                        .or_default()
                        .push((t1, host, t2));
                    note_time(&mut h, pr, t1);
                    Some(())
                })(),
                "Q" => (|| {
                    let t1 = num(w.next())?;
                    let host = num(w.next())?;
                    let t2 = num(w.next())?;
                    h.host_probes
                        .entry((pr.node, pr.boot))
                        .or_default()
                        .push((t1, host, t2));
                    note_time(&mut h, pr, t1);
                    Some(())
                })(),
                "ST" => (|| {
                    let t = num(w.next())?;
                    let stall = num(w.next())?;
                    let poll = num(w.next())?;
                    let blocked = num(w.next())?;
                    let n = num(w.next())?;
                    // Older records have no dispatch fields.
                    let d = num(w.next()).unwrap_or(0);
                    let bd = num(w.next()).unwrap_or(0);
                    // What the longest blocked poll was (newer records).
                    let what = w.next().unwrap_or("?").to_string();
                    h.stalls.push((pr, t, stall, poll, blocked, n, d, bd, what));
                    Some(())
                })(),
                "X" => {
                    *h.aborts.entry(pr).or_default() += 1;
                    Some(())
                }
                "EXEC" => Some(()),
                "RS" => (|| {
                    let rid: u64 = num(w.next())?;
                    let res = w.next()?.to_string();
                    let op = w.next()?.to_string();
                    let _mode = w.next()?;
                    let bound_ms = num(w.next())?;
                    let start = num(w.next())?;
                    note_time(&mut h, pr, start);
                    open_r.insert(rid, h.requests.len());
                    h.requests.push(Request {
                        proc_: pr,
                        res,
                        op,
                        bound_ms,
                        start,
                        end: None,
                    });
                    Some(())
                })(),
                "RE" => (|| {
                    let rid: u64 = num(w.next())?;
                    let outcome = w.next()?.to_string();
                    let t = num(w.next())?;
                    let i = open_r.remove(&rid)?;
                    h.requests[i].end = Some((t, outcome));
                    Some(())
                })(),
                "IN" => (|| {
                    let sid: u64 = num(w.next())?;
                    let res = w.next()?.to_string();
                    let mode = mode_idx(w.next()?)?;
                    let start = num(w.next())?;
                    let lvb = w.next()?;
                    let read = match lvb {
                        "-" => None,
                        "inv" => Some(ReadLvb::Invalid),
                        v => Some(ReadLvb::Valid(Counter::parse(v.strip_prefix("v:")?)?)),
                    };
                    note_time(&mut h, pr, start);
                    open_s.insert(sid, h.sections.len());
                    by_sid.insert(sid, h.sections.len());
                    h.sections.push(Section {
                        proc_: pr,
                        file: fidx,
                        sid,
                        res,
                        mode,
                        start,
                        end: None,
                        read,
                        intent: None,
                        published: None,
                    });
                    Some(())
                })(),
                "OUT" => (|| {
                    let sid: u64 = num(w.next())?;
                    let t = num(w.next())?;
                    let intent = w.next()?;
                    let i = open_s.remove(&sid)?;
                    h.sections[i].end = Some(t);
                    if intent != "-" {
                        h.sections[i].intent = Some(Counter::parse(intent)?);
                    }
                    Some(())
                })(),
                "PUB" => (|| {
                    let sid: u64 = num(w.next())?;
                    let _c = w.next()?;
                    let ok = w.next()? == "ok";
                    let i = *by_sid.get(&sid)?;
                    h.sections[i].published = Some(ok);
                    Some(())
                })(),
                "ORPH" => {
                    h.orphaned += 1;
                    Some(())
                }
                "M" => (|| {
                    let kib = num(w.next())?;
                    let t = num(w.next())?;
                    h.memory.entry(pr).or_default().push((t, kib));
                    Some(())
                })(),
                "STATS" => (|| {
                    let a = num(w.next())?;
                    let b = num(w.next())?;
                    let c = num(w.next())?;
                    let d = num(w.next())?;
                    h.stats.push((pr, [a, b, c, d]));
                    Some(())
                })(),
                "CACHE" => (|| {
                    let words: Vec<&str> = w.collect();
                    let (_t, per_res) = words.split_last()?;
                    for r in per_res {
                        let (_, counts) = r.split_once(':')?;
                        for (k, n) in counts.split('/').enumerate().take(4) {
                            h.cache[k] += n.parse::<u64>().ok()?;
                        }
                    }
                    Some(())
                })(),
                "END" => Some(()),
                _ => None,
            };
            if ok.is_none() && !last {
                bad(&mut h);
            }
        }
    }
    h
}

fn note_time(h: &mut History, p: Proc, t: i64) {
    let e = h.first_seen.entry(p).or_insert(t);
    if t < *e {
        *e = t;
    }
}

/// Host-clock events written by the harness (seconds since the epoch).
#[derive(Default)]
struct Events {
    /// (kind, node, pid or boot, host ns, rest).
    list: Vec<(String, u32, u32, i64, String)>,
}

fn read_events(dir: &Path) -> Events {
    let mut ev = Events::default();
    let text = std::fs::read_to_string(dir.join("events")).unwrap_or_default();
    for line in text.lines() {
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.len() < 4 {
            continue;
        }
        let (Ok(node), Ok(x), Ok(t)) = (w[1].parse(), w[2].parse(), w[3].parse::<f64>()) else {
            continue;
        };
        ev.list.push((
            w[0].to_string(),
            node,
            x,
            (t * 1e9) as i64,
            w[4..].join(" "),
        ));
    }
    ev
}

/// The coarse clock's tick on this host: file times are stamped with it.
fn coarse_tick_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_getres writes into the timespec we own.
    let rc = unsafe { libc::clock_getres(libc::CLOCK_REALTIME_COARSE, &mut ts) };
    if rc != 0 {
        return 10_000_000;
    }
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// A guest clock's offset from the host's: guest = host + offset, with
/// an uncertainty of ± err. The offset is a line in guest time,
/// `offset + slope * (t - t0)`: a constant (slope 0) when the boot's
/// probes agree on one, as a user-mode Linux guest's clock should; a
/// drift when they do not but agree on a line (a guest clock that lost
/// time against the host's: seen once, 280 ms in 70 s).
#[derive(Debug, Clone, Copy)]
struct Offset {
    offset: i64,
    slope: f64,
    t0: i64,
    err: i64,
}

impl Offset {
    /// The offset at guest time `t`.
    fn at(&self, t: i64) -> i64 {
        self.offset + (self.slope * (t - self.t0) as f64).round() as i64
    }
}

/// A guest clock's drift is looked for up to this rate (1%: 10 ms a
/// second; the one drift seen was 0.4%).
const MAX_DRIFT: f64 = 0.01;

/// For probe intervals `(x, lo, hi)` (guest time since the first probe;
/// the offset then lies in `[lo, hi]`) and a slope `b`: the offsets at
/// `x = 0` that every interval allows, `[max(lo - b x), min(hi - b x)]`.
fn intercepts(iv: &[(f64, f64, f64)], b: f64) -> (f64, f64) {
    iv.iter()
        .fold((f64::MIN, f64::MAX), |(l, h), &(x, lo, hi)| {
            (l.max(lo - b * x), h.min(hi - b * x))
        })
}

/// Minimises a function that is convex on `[l, h]` (ternary search).
fn argmin(mut l: f64, mut h: f64, f: impl Fn(f64) -> f64) -> f64 {
    for _ in 0..200 {
        let m1 = l + (h - l) / 3.0;
        let m2 = h - (h - l) / 3.0;
        if f(m1) <= f(m2) {
            h = m2;
        } else {
            l = m1;
        }
    }
    (l + h) / 2.0
}

/// The line through every probe interval, if one exists within
/// [`MAX_DRIFT`]: `(offset at x = 0, slope, err)`, where `err` is the
/// largest half-width, over the probes' span, of the offsets that the
/// lines consistent with every probe allow (an honest uncertainty: not
/// the width of one chosen line's fit). The width of the feasible
/// intercepts, `max(lo - b x) - min(hi - b x)`, is convex in `b`, so the
/// feasible slopes are one interval, found by bisection around the best
/// one.
fn drift_line(iv: &[(f64, f64, f64)]) -> Option<(f64, f64, f64)> {
    let gap = |b: f64| {
        let (l, h) = intercepts(iv, b);
        l - h
    };
    let best = argmin(-MAX_DRIFT, MAX_DRIFT, gap);
    if gap(best) > 0.0 {
        return None;
    }
    // The edges of the feasible slopes: gap(b) <= 0 on [b_lo, b_hi].
    let edge = |mut inside: f64, mut outside: f64| {
        if gap(outside) <= 0.0 {
            return outside;
        }
        for _ in 0..100 {
            let m = (inside + outside) / 2.0;
            if gap(m) <= 0.0 {
                inside = m;
            } else {
                outside = m;
            }
        }
        inside
    };
    let (b_lo, b_hi) = (edge(best, -MAX_DRIFT), edge(best, MAX_DRIFT));
    let b = (b_lo + b_hi) / 2.0;
    let (l, h) = intercepts(iv, b);
    let a = (l + h) / 2.0;
    // At guest time x the feasible offsets are [min over b of
    // (max_i(lo_i - b x_i) + b x), max over b of (min_i(hi_i - b x_i) +
    // b x)]: the first convex in b, the second concave.
    let span = iv.iter().fold((f64::MAX, f64::MIN), |(l, h), &(x, _, _)| {
        (l.min(x), h.max(x))
    });
    let mut err: f64 = 0.0;
    for k in 0..=8 {
        let x = span.0 + (span.1 - span.0) * k as f64 / 8.0;
        let low = |b: f64| intercepts(iv, b).0 + b * x;
        let high = |b: f64| -(intercepts(iv, b).1 + b * x);
        let lo = low(argmin(b_lo, b_hi, low));
        let hi = -high(argmin(b_lo, b_hi, high));
        let chosen = a + b * x;
        err = err.max(chosen - lo).max(hi - chosen);
    }
    Some((a, b, err))
}

/// How far apart two readings of the host's time stamp counter on two of
/// its CPUs may be taken to be at most: the host's kernel uses the counter
/// as its clocksource only when its check finds them synchronised (no
/// reading behind another's); this allows a thousand times the cost of a
/// reading, and is a hundred times below the closest hand-over seen
/// (about 0.19 ms).
const TSC_SKEW_NS: i64 = 2_000;

fn offsets(
    h: &History,
    tick: i64,
    shared: bool,
    report: &mut Vec<String>,
) -> HashMap<(u32, u32), Offset> {
    let mut out = HashMap::new();
    if shared {
        // One clock for every boot: every probe measures the same offset
        // (a line: the counter's rate was measured over one second), and
        // every boot gets the same one, so that it orders no two records
        // differently than their stamps do.
        let (mut ps, how, tick): (Vec<Probe>, _, _) =
            if h.host_probes.values().any(|v| !v.is_empty()) {
                (
                    h.host_probes.values().flatten().copied().collect(),
                    "host-answered",
                    0,
                )
            } else {
                (
                    h.probes.values().flatten().copied().collect(),
                    "file-stamp",
                    1_000_000_000 + tick,
                )
            };
        ps.sort();
        let o = offset_of(&ps, tick, |line| {
            report.push(format!("the shared clock: {line}"))
        });
        report.push(format!(
            "every record on the host's time stamp counter: counter clock - host clock = {:.3} ms +- {:.3} ms, drifting {:+.6} ms a second ({} {how} probes of every boot)",
            o.offset as f64 / 1e6,
            o.err as f64 / 1e6,
            o.slope * 1e3,
            ps.len()
        ));
        let boots = h.first_seen.keys().map(|p| (p.node, p.boot));
        for k in h
            .probes
            .keys()
            .chain(h.host_probes.keys())
            .copied()
            .chain(boots)
        {
            out.insert(k, o);
        }
        return out;
    }
    let mut keys: Vec<_> = h
        .probes
        .keys()
        .chain(h.host_probes.keys())
        .copied()
        .collect();
    keys.sort();
    keys.dedup();
    for k in keys {
        // The host's answers when there are any: its clock read between
        // the guest's two readings, no tick.
        let (ps, tick, how) = match h.host_probes.get(&k) {
            Some(ps) if !ps.is_empty() => (ps, 0, "host-answered"),
            _ => {
                let ps = &h.probes[&k];
                // File stamps: the host's coarse clock (up to a tick
                // behind), and user-mode Linux's hostfs gives whole
                // seconds of it.
                let tick = if ps.iter().all(|p| p.1 % 1_000_000_000 == 0) {
                    1_000_000_000 + tick
                } else {
                    tick
                };
                (ps, tick, "file-stamp")
            }
        };
        let o = offset_of(ps, tick, |line| {
            report.push(format!("node {} boot {}: {line}", k.0, k.1))
        });
        let drift = if o.slope == 0.0 {
            String::new()
        } else {
            format!(
                ", drifting {:+.3} ms a second (a line through every probe)",
                o.slope * 1e3
            )
        };
        report.push(format!(
            "node {} boot {}: guest clock - host clock = {:.3} ms +- {:.3} ms{drift} ({} {how} probes)",
            k.0,
            k.1,
            o.offset as f64 / 1e6,
            o.err as f64 / 1e6,
            ps.len()
        ));
        out.insert(k, o);
    }
    out
}

/// The offset of one boot's clock from its probes `(t1, host, t2)`
/// (guest, host, guest; `tick`: how far behind the host's reading may
/// be). `say` gets what was left out or could not be placed.
fn offset_of(ps: &[Probe], tick: i64, mut say: impl FnMut(String)) -> Offset {
    // Each probe bounds the offset to [t1 - host - tick, t2 - host].
    // The offset is where the most of those intervals agree: a probe that
    // answered another one's question (chaos-worker before it named its
    // probes by node and boot: pids repeat across guests and boots) or a
    // stale answer is left out, and said. When they do not all agree on
    // one offset but a line through all of them exists (a drifting guest
    // clock), the line is used instead.
    let intervals: Vec<(i64, i64)> = ps
        .iter()
        .map(|&(t1, host, t2)| (t1 - host - tick, t2 - host))
        .collect();
    let t0 = ps.iter().map(|p| p.0).min().unwrap_or(0);
    let mut edges: Vec<(i64, i32)> = intervals
        .iter()
        .flat_map(|&(a, b)| [(a, 1), (b, -1)])
        .collect();
    // Starts before ends at the same point: touching intervals agree.
    edges.sort_by_key(|&(x, d)| (x, -d));
    let (mut depth, mut best, mut at) = (0, 0, 0);
    for &(x, d) in &edges {
        depth += d;
        if depth > best {
            best = depth;
            at = x;
        }
    }
    let kept: Vec<&(i64, i64)> = intervals
        .iter()
        .filter(|&&(a, b)| a <= at && at <= b)
        .collect();
    let rejected = intervals.len() - kept.len();
    if rejected > 0 {
        let iv: Vec<(f64, f64, f64)> = ps
            .iter()
            .zip(&intervals)
            .map(|(p, &(lo, hi))| (((p.0 + p.2) / 2 - t0) as f64, lo as f64, hi as f64))
            .collect();
        if let Some((a, b, err)) = drift_line(&iv) {
            return Offset {
                offset: a.round() as i64,
                slope: b,
                t0,
                err: err.ceil() as i64 + 1,
            };
        }
        say(format!(
            "{rejected} of {} clock probes disagree with the others and were left out",
            intervals.len()
        ));
    }
    let lo = kept.iter().map(|i| i.0).max().unwrap_or(at);
    let hi = kept.iter().map(|i| i.1).min().unwrap_or(at);
    let (lo, hi) = if lo <= hi {
        (lo, hi)
    } else {
        say(format!(
            "inconsistent clock probes ({lo} > {hi}): offset unknown"
        ));
        (lo.min(hi) - 1_000_000_000, lo.max(hi) + 1_000_000_000)
    };
    Offset {
        offset: (lo + hi) / 2,
        slope: 0.0,
        t0,
        err: (hi - lo + 1) / 2,
    }
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: chaos-check DIR");
        std::process::exit(2);
    };
    let dir = Path::new(&dir);
    let h = read_history(dir);
    let ev = read_events(dir);
    let tick = coarse_tick_ns();
    let mut violations: Vec<String> = Vec::new();
    let mut info: Vec<String> = Vec::new();
    for e in &h.parse_errors {
        violations.push(format!("unreadable record {e}"));
    }
    // Every record on one clock (the host's time stamp counter) when the
    // run had its calibration: see dlm_chaos::use_tsc_clock.
    let shared_clock = dir.join(dlm_chaos::TSC_FILE).exists();
    let offs = offsets(&h, tick, shared_clock, &mut info);
    let unknown = Offset {
        offset: 0,
        slope: 0.0,
        t0: 0,
        err: 50_000_000,
    };
    let off = |p: Proc| offs.get(&(p.node, p.boot)).copied().unwrap_or(unknown);
    let to_host = |p: Proc, t: i64| t - off(p).at(t);

    // When did each process die (host time)? Its kill, or its node's
    // crash or fence, whichever came first after it started.
    let death = |p: Proc| -> Option<i64> {
        let start = to_host(p, *h.first_seen.get(&p)?);
        ev.list
            .iter()
            .filter(|(k, n, x, t, _)| {
                *n == p.node
                    && *t >= start
                    && match k.as_str() {
                        "kill" => *x == p.pid,
                        "crash" | "fence" => true,
                        _ => false,
                    }
            })
            .map(|e| e.3)
            .min()
    };

    // --- 1. exclusion, by clocks -----------------------------------------
    let mut by_res: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in h.sections.iter().enumerate() {
        by_res.entry(&s.res).or_default().push(i);
    }
    let mut ends: Vec<Option<i64>> = Vec::with_capacity(h.sections.len());
    let mut open_sections = 0u64;
    for s in &h.sections {
        let e = match s.end {
            Some(t) => Some(to_host(s.proc_, t)),
            None => {
                open_sections += 1;
                let d = death(s.proc_);
                if d.is_none() {
                    violations.push(format!(
                        "section {} #{} on {} ({}) never ended and its process did not die",
                        h.files[s.file], s.sid, s.res, MODES[s.mode]
                    ));
                }
                d
            }
        };
        ends.push(e);
    }
    let mut pairs_checked = 0u64;
    let mut unresolved = 0u64;
    let mut closest_gap = i64::MAX;
    for idx in by_res.values() {
        let mut idx = idx.clone();
        idx.sort_by_key(|&i| to_host(h.sections[i].proc_, h.sections[i].start));
        let mut active: Vec<usize> = Vec::new();
        for &i in &idx {
            let a = &h.sections[i];
            let a_start = to_host(a.proc_, a.start);
            active.retain(|&j| ends[j].is_none_or(|e| e + 200_000_000 > a_start));
            for &j in &active {
                let b = &h.sections[j];
                if compatible(a.mode, b.mode) {
                    continue;
                }
                pairs_checked += 1;
                let b_end = ends[j].unwrap_or(i64::MAX);
                let a_end = ends[i].unwrap_or(i64::MAX);
                let overlap = a_end.min(b_end) - a_start;
                // The end the overlap is measured from: a recorded one is
                // on the records' clock, like `a_start`; one taken from a
                // death is a host time (the guest clock's uncertainty
                // applies then).
                let recorded = if b_end <= a_end {
                    b.end.is_some()
                } else {
                    a.end.is_some()
                };
                let same_boot = a.proc_.node == b.proc_.node && a.proc_.boot == b.proc_.boot;
                let margin = if recorded && same_boot {
                    0
                } else if recorded && shared_clock {
                    TSC_SKEW_NS
                } else {
                    off(a.proc_).err + off(b.proc_).err
                };
                if overlap <= 0 && -overlap > margin {
                    closest_gap = closest_gap.min(-overlap);
                    continue;
                }
                if overlap <= 0 {
                    // Apart on the estimated clocks, by less than their
                    // uncertainty: unresolved.
                    unresolved += 1;
                    violations.push(format!(
                        "exclusion unresolved: {} {} ({} #{}) and {} ({} #{}) {:.3} ms apart, clock uncertainty {:.3} ms",
                        a.res,
                        MODES[a.mode],
                        h.files[a.file],
                        a.sid,
                        MODES[b.mode],
                        h.files[b.file],
                        b.sid,
                        -overlap as f64 / 1e6,
                        margin as f64 / 1e6
                    ));
                    continue;
                }
                let what = format!(
                    "{} {} ({} #{}) and {} ({} #{}) overlapped by {:.3} ms (clock uncertainty {:.3} ms)",
                    a.res,
                    MODES[a.mode],
                    h.files[a.file],
                    a.sid,
                    MODES[b.mode],
                    h.files[b.file],
                    b.sid,
                    overlap as f64 / 1e6,
                    margin as f64 / 1e6
                );
                if overlap > margin {
                    violations.push(format!("exclusion: {what}"));
                } else {
                    // Within the clocks' uncertainty: not proven apart,
                    // and every pair must be.
                    unresolved += 1;
                    violations.push(format!("exclusion unresolved: {what}"));
                }
            }
            active.push(i);
        }
    }

    // --- 1b and 2. value blocks: the DLM's own order ---------------------
    let mut intents: HashMap<(&str, Counter), Vec<usize>> = HashMap::new();
    let mut confirmed: HashMap<(&str, Counter), Vec<usize>> = HashMap::new();
    let mut valid_reads = 0u64;
    let mut invalid_reads = 0u64;
    let mut epochs: HashMap<&str, std::collections::HashSet<u64>> = HashMap::new();
    let mut max_count: HashMap<&str, u64> = HashMap::new();
    for (i, s) in h.sections.iter().enumerate() {
        if let Some(c) = s.intent {
            intents.entry((&s.res, c)).or_default().push(i);
            epochs.entry(&s.res).or_default().insert(c.epoch);
            // The writer's own rule: the next value after what it read.
            let ok = match s.read {
                Some(ReadLvb::Valid(r)) if r.epoch != 0 => {
                    c.epoch == r.epoch && c.count == r.count + 1
                }
                _ => c.count == 1,
            };
            if !ok {
                violations.push(format!(
                    "value block: {} #{} on {} read {:?} but intends {}",
                    h.files[s.file],
                    s.sid,
                    s.res,
                    s.read,
                    c.text()
                ));
            }
            if s.published == Some(true) {
                confirmed.entry((&s.res, c)).or_default().push(i);
                let m = max_count.entry(&s.res).or_insert(0);
                *m = (*m).max(c.count);
            }
        }
    }
    let mut increments = 0u64;
    for ((res, c), v) in &confirmed {
        increments += 1;
        if v.len() > 1 {
            let who: Vec<String> = v
                .iter()
                .map(|&i| format!("{} #{}", h.files[h.sections[i].file], h.sections[i].sid))
                .collect();
            violations.push(format!(
                "exclusion (DLM order): {} writers published the same increment {} on {res}: {}",
                v.len(),
                c.text(),
                who.join(", ")
            ));
        }
    }
    for s in &h.sections {
        match s.read {
            Some(ReadLvb::Invalid) => invalid_reads += 1,
            Some(ReadLvb::Valid(c)) => {
                valid_reads += 1;
                if c.epoch != 0 && !intents.contains_key(&(s.res.as_str(), c)) {
                    violations.push(format!(
                        "value block: {} #{} on {} read {} that no writer wrote",
                        h.files[s.file],
                        s.sid,
                        s.res,
                        c.text()
                    ));
                }
            }
            None => {}
        }
    }

    // --- 3. bounded requests ---------------------------------------------
    let mut outcomes: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut longest: BTreeMap<String, (i64, String)> = BTreeMap::new();
    let mut ended_by_death = 0u64;
    for r in &h.requests {
        let (took, outcome) = match &r.end {
            Some((t, o)) => (t - r.start, o.clone()),
            None => match death(r.proc_) {
                Some(d) => {
                    ended_by_death += 1;
                    (d - to_host(r.proc_, r.start), "process-died".to_string())
                }
                None => {
                    violations.push(format!(
                        "request {} {} by node {} pid {} never ended",
                        r.op, r.res, r.proc_.node, r.proc_.pid
                    ));
                    continue;
                }
            },
        };
        if outcome.starts_with("error:") {
            // Every way a request can end has a typed error of its own.
            violations.push(format!(
                "request {} {} by node {} pid {} ended with an untyped error: {outcome}",
                r.op, r.res, r.proc_.node, r.proc_.pid
            ));
        }
        *outcomes.entry((r.op.clone(), outcome.clone())).or_default() += 1;
        let l = longest.entry(r.op.clone()).or_insert((0, String::new()));
        if took > l.0 {
            *l = (
                took,
                format!("{} on {} node {}, {}", r.op, r.res, r.proc_.node, outcome),
            );
        }
        if took > r.bound_ms * 1_000_000 {
            violations.push(format!(
                "request {} {} by node {} pid {} took {:.1} s, over its bound of {} ms ({outcome})",
                r.op,
                r.res,
                r.proc_.node,
                r.proc_.pid,
                took as f64 / 1e9,
                r.bound_ms
            ));
        }
    }

    // --- per worker kind ---------------------------------------------------
    #[derive(Default)]
    struct PerKind {
        processes: u64,
        requests: u64,
        granted: u64,
        dropped: u64,
        died: u64,
        sections: u64,
        aborts: u64,
        longest: i64,
    }
    let kind_of = |p: Proc| h.kinds.get(&p).map_or("blocking", |k| k.as_str());
    let mut per_kind: BTreeMap<&str, PerKind> = BTreeMap::new();
    for p in h.first_seen.keys() {
        per_kind.entry(kind_of(*p)).or_default().processes += 1;
    }
    for r in &h.requests {
        let k = per_kind.entry(kind_of(r.proc_)).or_default();
        k.requests += 1;
        match &r.end {
            Some((t, o)) => {
                k.longest = k.longest.max(t - r.start);
                match o.as_str() {
                    "ok" => k.granted += 1,
                    "dropped" => k.dropped += 1,
                    _ => {}
                }
            }
            None => k.died += 1,
        }
    }
    for s in &h.sections {
        per_kind.entry(kind_of(s.proc_)).or_default().sections += 1;
    }
    for (p, n) in &h.aborts {
        per_kind.entry(kind_of(*p)).or_default().aborts += n;
    }

    // --- 5. stalls of the async workers, per fault kind ---------------------
    // A sample (one second, ending at its time) belongs to a fault kind if
    // it ends within 45 s after such a fault (its recovery), else to
    // "steady".
    #[derive(Default, Clone, Copy)]
    struct StallAgg {
        samples: u64,
        stall: i64,
        poll: i64,
        blocked: i64,
        blocked_n: u64,
        dispatch: i64,
        blocked_dispatch: i64,
    }
    let fault_times: Vec<(String, i64)> = ev
        .list
        .iter()
        .filter_map(|(k, _, _, t, rest)| match k.as_str() {
            "fault" => Some((
                rest.split_whitespace().next().unwrap_or("?").to_string(),
                *t,
            )),
            "blip" => Some(("blip".to_string(), *t)),
            _ => None,
        })
        .collect();
    let mut stalls: BTreeMap<(String, &str), StallAgg> = BTreeMap::new();
    let bound_ns = blocked_poll_bound_ns();
    for (p, t, stall, poll, blocked, n, d, bd, what) in &h.stalls {
        let (p, t, stall, poll, blocked, n, d, bd) = (*p, *t, *stall, *poll, *blocked, *n, *d, *bd);
        let ht = to_host(p, t);
        let mut fk: Vec<&str> = fault_times
            .iter()
            .filter(|(_, ft)| ht >= *ft && ht <= ft + 45_000_000_000)
            .map(|(k, _)| k.as_str())
            .collect();
        fk.sort();
        fk.dedup();
        if fk.is_empty() {
            fk.push("steady");
        }
        for f in fk {
            let a = stalls.entry((f.to_string(), kind_of(p))).or_default();
            a.samples += 1;
            a.stall = a.stall.max(stall);
            a.poll = a.poll.max(poll);
            a.blocked = a.blocked.max(blocked);
            a.blocked_n += n;
            a.dispatch = a.dispatch.max(d);
            a.blocked_dispatch = a.blocked_dispatch.max(bd);
        }
        if bd > bound_ns {
            violations.push(format!(
                "blocking dispatch: a Lockspace::dispatch call blocked its executor thread {:.1} ms (node {} pid {}, {} worker, second ending at host time {:.3})",
                bd as f64 / 1e6,
                p.node,
                p.pid,
                kind_of(p),
                ht as f64 / 1e9
            ));
        }
        if blocked > bound_ns {
            violations.push(format!(
                "blocking poll: a poll or drop of a crate future or guard ({what}) blocked its thread {:.1} ms (node {} pid {}, {} worker, second ending at host time {:.3})",
                blocked as f64 / 1e6,
                p.node,
                p.pid,
                kind_of(p),
                ht as f64 / 1e9
            ));
        }
    }

    // --- 4. no lock left ----------------------------------------------------
    let mut finals = Vec::new();
    let mut known_defects = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir.join("final")) {
        for e in rd.flatten() {
            let t = std::fs::read_to_string(e.path()).unwrap_or_default();
            let name = e.file_name().to_string_lossy().into_owned();
            match classify_final(&name, t.trim()) {
                Final::Ok => {}
                Final::KnownDefect => known_defects.push(format!("{name}: {}", t.trim())),
                Final::Violation(v) => violations.push(format!("no lock left: {name}: {v}")),
            }
            finals.push(format!("{name}: {}", t.trim()));
        }
    }
    finals.sort();
    known_defects.sort();
    let expected: usize = std::fs::read_to_string(dir.join("nodes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    if finals.iter().filter(|f| f.starts_with("release")).count() < expected {
        violations.push(format!(
            "no lock left: release results from {} of {expected} nodes",
            finals.iter().filter(|f| f.starts_with("release")).count()
        ));
    }

    // --- recovery times -------------------------------------------------------
    let mut recovery = Vec::new();
    let first_in = |res: &str, not_node: Option<u32>, after: i64| -> Option<(i64, u32)> {
        h.sections
            .iter()
            .filter(|s| s.res == res && Some(s.proc_.node) != not_node)
            .map(|s| (to_host(s.proc_, s.start), s.proc_.node))
            .filter(|&(t, _)| t >= after)
            .min()
    };
    for (kind, node, _, t, rest) in &ev.list {
        if kind != "fault" {
            continue;
        }
        // "fault NODE 0 T KIND hog-ID"
        let mut w = rest.split_whitespace();
        let (Some(fkind), Some(hog)) = (w.next(), w.next()) else {
            continue;
        };
        let other = if fkind == "kill-holding" {
            None
        } else {
            Some(*node)
        };
        let fence = ev
            .list
            .iter()
            .filter(|e| e.0 == "fence" && e.1 == *node && e.3 >= *t)
            .map(|e| e.3)
            .min();
        let grant = first_in(hog, other, *t);
        let mut line = format!("{fkind} of node {node} ({hog}): ");
        match grant {
            Some((g, by)) => {
                line += &format!(
                    "fault to first grant on node {by}: {:.2} s",
                    (g - t) as f64 / 1e9
                );
                if let Some(f) = fence.filter(|&f| f <= g + 1_000_000_000) {
                    line += &format!(
                        "; fault to fence {:.2} s; fence to grant {:.2} s",
                        (f - t) as f64 / 1e9,
                        (g - f) as f64 / 1e9
                    );
                }
            }
            None => line += "no grant of the held resource recorded after it",
        }
        recovery.push(line);
    }
    for (kind, node, boot, t, _) in &ev.list {
        if kind != "ready" {
            continue;
        }
        let g = h
            .sections
            .iter()
            .filter(|s| s.proc_.node == *node && s.proc_.boot == *boot)
            .map(|s| to_host(s.proc_, s.start))
            .filter(|&g| g >= *t)
            .min();
        if let Some(g) = g {
            recovery.push(format!(
                "rejoin of node {node} (boot {boot}): ready to first grant on it: {:.2} s",
                (g - t) as f64 / 1e9
            ));
        }
    }

    // --- report -------------------------------------------------------------
    let mut faults: BTreeMap<String, u64> = BTreeMap::new();
    for (kind, _, _, _, rest) in &ev.list {
        let k = if kind == "fault" {
            rest.split_whitespace().next().unwrap_or("?").to_string()
        } else {
            kind.clone()
        };
        *faults.entry(k).or_default() += 1;
    }
    let mut by_mode = [0u64; 6];
    for s in &h.sections {
        by_mode[s.mode] += 1;
    }
    println!("chaos-check: {}", dir.display());
    println!(
        "record files: {}, processes: {}",
        h.files.len(),
        h.first_seen.len()
    );
    println!(
        "critical sections: {} ({}), {} ended by their process's death",
        h.sections.len(),
        MODES
            .iter()
            .zip(by_mode)
            .filter(|(_, n)| *n > 0)
            .map(|(m, n)| format!("{m} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        open_sections
    );
    println!(
        "requests: {}, {} ended by their process's death",
        h.requests.len(),
        ended_by_death
    );
    for ((op, o), n) in &outcomes {
        println!("  {op:8} {o:16} {n}");
    }
    println!("longest request by kind:");
    for (op, (t, what)) in &longest {
        println!("  {op:8} {:.3} s ({what})", *t as f64 / 1e9);
    }
    println!(
        "exclusion: {pairs_checked} pairs of incompatible sections compared, {unresolved} unresolved, closest gap {:.3} ms",
        if closest_gap == i64::MAX { 0.0 } else { closest_gap as f64 / 1e6 }
    );
    println!(
        "value blocks: {increments} published increments (confirmed), {valid_reads} valid reads, {invalid_reads} not-valid reads, {} epochs, highest count {}, {} orphans left on purpose",
        epochs.values().map(|e| e.len()).sum::<usize>(),
        max_count.values().max().copied().unwrap_or(0),
        h.orphaned
    );
    println!("per worker kind:");
    println!(
        "  {:9} {:>5} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7} {:>9}",
        "kind", "procs", "requests", "granted", "dropped", "died", "sections", "aborts", "longest"
    );
    for (k, v) in &per_kind {
        println!(
            "  {k:9} {:>5} {:>9} {:>9} {:>8} {:>6} {:>9} {:>7} {:>8.3}s",
            v.processes,
            v.requests,
            v.granted,
            v.dropped,
            v.died,
            v.sections,
            v.aborts,
            v.longest as f64 / 1e9
        );
    }
    println!(
        "executor stalls of async workers (per second: ticker lateness; longest poll/drop; longest that blocked, bound {} ms), by fault window (45 s after the fault) and kind:",
        bound_ns / 1_000_000
    );
    for ((f, k), a) in &stalls {
        println!(
            "  {f:13} {k:6} {:>6} s  stall {:>8.1} ms  poll {:>7.1} ms  blocked {:>6.1} ms ({} polls blocked)  dispatch {:>6.1} ms, blocked {:>5.1} ms",
            a.samples,
            a.stall as f64 / 1e6,
            a.poll as f64 / 1e6,
            a.blocked as f64 / 1e6,
            a.blocked_n,
            a.dispatch as f64 / 1e6,
            a.blocked_dispatch as f64 / 1e6
        );
    }
    println!("faults and events:");
    for (k, n) in &faults {
        println!("  {k:14} {n}");
    }
    println!("recovery:");
    for r in &recovery {
        println!("  {r}");
    }
    // Memory: the first sample is taken before the worker joins the
    // lockspace and starts its threads; growth is counted from the first
    // sample 30 s in (steady state) to the last.
    println!("memory (RSS) of processes that ran over 60 s (at start, 30 s in, at the end):");
    let mut longest_lived: Option<(i64, String)> = None;
    let mut most_growth: Option<(i64, String)> = None;
    let mut peak = 0u64;
    for (p, m) in &h.memory {
        let (Some(a), Some(b)) = (m.first(), m.last()) else {
            continue;
        };
        peak = peak.max(m.iter().map(|s| s.1).max().unwrap_or(0));
        if b.0 - a.0 < 60_000_000_000 {
            continue;
        }
        let Some(s30) = m.iter().find(|s| s.0 - a.0 >= 30_000_000_000) else {
            continue;
        };
        let line = format!(
            "node {} boot {} pid {}: {} -> {} -> {} KiB over {:.0} s",
            p.node,
            p.boot,
            p.pid,
            a.1,
            s30.1,
            b.1,
            (b.0 - a.0) as f64 / 1e9
        );
        println!("  {line}");
        if longest_lived.as_ref().is_none_or(|l| b.0 - a.0 > l.0) {
            longest_lived = Some((b.0 - a.0, line.clone()));
        }
        let growth = b.1 as i64 - s30.1 as i64;
        if most_growth.as_ref().is_none_or(|g| growth > g.0) {
            most_growth = Some((growth, line));
        }
    }
    if let Some((_, l)) = &longest_lived {
        println!("  longest-lived worker: {l}");
    }
    if let Some((g, l)) = &most_growth {
        println!("  most growth after 30 s: {g} KiB ({l})");
    }
    println!("  highest RSS of any worker: {peak} KiB");
    let mut st = [0u64; 4];
    for (_, s) in &h.stats {
        for k in 0..4 {
            st[k] += s[k];
        }
    }
    println!(
        "crate stats (processes that ended normally): {} EBUSY retries, {} ENOBUFS retries, {} give-ups, {} reaped",
        st[0], st[3], st[1], st[2]
    );
    if h.cache.iter().any(|&n| n > 0) {
        println!(
            "cached locks (cached kind, processes that ended normally): {} local hits, {} DLM takes, {} give-ups, {} idle releases",
            h.cache[0], h.cache[1], h.cache[2], h.cache[3]
        );
    }
    println!("end of run:");
    for f in &finals {
        println!("  {f}");
    }
    for i in &info {
        println!("  {i}");
    }
    println!(
        "known kernel defect, not a violation (a release refused for good with no lock left: the leaked lock record of a try resent by the recovery, ci/kernel-defects/try-resend-leak.sh): {}",
        known_defects.len()
    );
    for k in &known_defects {
        println!("  KNOWN DEFECT: {k}");
        // The defect's signature in the history, for the reader (not part
        // of the classification): tries of the node's last boot refused
        // after more than 1 s in flight, i.e. answered after a recovery.
        let Some(node) = k
            .strip_prefix("release-n")
            .and_then(|r| r.split(':').next())
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let last_boot = h
            .requests
            .iter()
            .filter(|r| r.proc_.node == node)
            .map(|r| r.proc_.boot)
            .max();
        let slow: Vec<String> = h
            .requests
            .iter()
            .filter(|r| r.proc_.node == node && Some(r.proc_.boot) == last_boot && r.op == "try")
            .filter_map(|r| {
                let (t, outcome) = r.end.as_ref()?;
                (outcome == "wouldblock" && t - r.start > 1_000_000_000).then(|| {
                    format!(
                        "{} {:.1} s (pid {})",
                        r.res,
                        (t - r.start) as f64 / 1e9,
                        r.proc_.pid
                    )
                })
            })
            .collect();
        println!(
            "    node {node}'s tries refused after over 1 s in flight (through a recovery): {}",
            if slow.is_empty() {
                "none: the resent try's signature is missing (a record left by another path?)"
                    .to_string()
            } else {
                slow.join(", ")
            }
        );
    }
    println!("violations: {}", violations.len());
    // By kind (the words before the first colon), then the first 50.
    let mut kinds: BTreeMap<String, u64> = BTreeMap::new();
    for v in &violations {
        let k = v.split(':').next().unwrap_or("?");
        let k = if k.starts_with("request ") {
            if v.contains("over its bound") {
                "request over its bound"
            } else if v.contains("never ended") {
                "request never ended"
            } else {
                "request untyped error"
            }
        } else {
            k
        };
        *kinds.entry(k.to_string()).or_default() += 1;
    }
    for (k, n) in &kinds {
        println!("  {k}: {n}");
    }
    // Up to 20 of each kind.
    let mut shown: HashMap<&str, u64> = HashMap::new();
    for v in &violations {
        let k = v.split(':').next().unwrap_or("?");
        let n = shown.entry(k).or_default();
        *n += 1;
        if *n <= 20 {
            println!("VIOLATION: {v}");
        }
    }
    std::process::exit(if violations.is_empty() { 0 } else { 1 });
}

/// What an end-of-run result file (DIR/final/NAME) says.
#[derive(Debug, PartialEq)]
enum Final {
    /// `ok ...`: purged, or released.
    Ok,
    /// A release refused for good, with the whole proof that no lock is
    /// left (see [`classify_final`]): the kernel's leaked lock record.
    KnownDefect,
    /// Anything else, with what to report.
    Violation(String),
}

/// Classifies one end-of-run result. `ok ...` passes. `known kernel
/// defect: ...` passes as the known defect only for a release result
/// carrying its evidence, `[refused=EBUSY names=N free=N orphans=0
/// purge=ok(K/K) workers=ended]` with N > 0 and K > 0 (written by
/// `chaos-worker prove-free`): the release refused as busy, every name the run used was free to a NOQUEUE EX try
/// from a fresh handle (no lock of anyone granted in CR..EX, waiting or
/// converting), no orphan of any mode could be adopted, every node's
/// purge succeeded and every worker process had ended, so no granted NL
/// of a live process or an orphan either. Any other text, or a claim with
/// a field missing or off, is a violation.
fn classify_final(name: &str, text: &str) -> Final {
    if text.starts_with("ok") {
        return Final::Ok;
    }
    let Some(rest) = text.strip_prefix("known kernel defect:") else {
        return Final::Violation(text.to_string());
    };
    let unproven = |why: &str| {
        Final::Violation(format!(
            "a known-kernel-defect claim without its proof ({why}): {text}"
        ))
    };
    if !name.starts_with("release-n") {
        return unproven("not a release result");
    }
    let Some(evidence) = rest
        .split_once('[')
        .and_then(|(_, e)| e.split_once(']'))
        .map(|(e, _)| e)
    else {
        return unproven("no evidence");
    };
    let fields: HashMap<&str, &str> = evidence
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    let count = |k: &str| fields.get(k).and_then(|v| v.parse::<u64>().ok());
    let Some(names) = count("names").filter(|&n| n > 0) else {
        return unproven("no names probed");
    };
    if count("free") != Some(names) {
        return unproven("not every name free");
    }
    if count("orphans") != Some(0) {
        return unproven("an orphan found");
    }
    let purged = fields
        .get("purge")
        .and_then(|p| p.strip_prefix("ok(")?.strip_suffix(')')?.split_once('/'))
        .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)));
    if !matches!(purged, Some((a, b)) if a == b && b > 0) {
        return unproven("not every node purged");
    }
    if fields.get("workers") != Some(&"ended") {
        return unproven("not every worker ended");
    }
    if fields.get("refused") != Some(&"EBUSY") {
        return unproven("not refused as busy");
    }
    Final::KnownDefect
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROVEN: &str = "known kernel defect: release refused for good (release 1 refused: \
        the lockspace is busy) with no lock left [refused=EBUSY names=16 free=16 orphans=0 \
        purge=ok(3/3) workers=ended]: every name's NOQUEUE EX try granted (first refusal: FAILED ...)";

    #[test]
    fn ok_results_pass() {
        assert_eq!(classify_final("purge-n1", "ok purged"), Final::Ok);
        assert_eq!(
            classify_final("release-n2", "ok gone after 3 releases"),
            Final::Ok
        );
    }

    #[test]
    fn a_refusal_without_proof_is_a_violation() {
        let t = "FAILED release 1 refused: busy; none of 16 resources held in EX's way";
        assert_eq!(
            classify_final("release-n2", t),
            Final::Violation(t.to_string())
        );
        let t = "FAILED purge: gone";
        assert_eq!(
            classify_final("purge-n2", t),
            Final::Violation(t.to_string())
        );
    }

    #[test]
    fn a_proven_leak_is_the_known_defect() {
        assert_eq!(classify_final("release-n2", PROVEN), Final::KnownDefect);
    }

    #[test]
    fn a_held_name_or_an_orphan_stays_a_violation() {
        // What prove-free writes when it found something.
        let t = "FAILED release refused for good (busy) [refused=EBUSY names=16 free=15 orphans=0 \
                 purge=ok(3/3) workers=ended]; held: r2: wouldblock";
        assert_eq!(
            classify_final("release-n1", t),
            Final::Violation(t.to_string())
        );
        // A claim whose evidence does not hold up, field by field.
        for (from, to, why) in [
            ("free=16", "free=15", "not every name free"),
            ("orphans=0", "orphans=1", "an orphan found"),
            ("names=16 free=16", "names=0 free=0", "no names probed"),
            ("purge=ok(3/3)", "purge=ok(2/3)", "not every node purged"),
            (
                "purge=ok(3/3)",
                "purge=failed(purge-n1)",
                "not every node purged",
            ),
            (
                "workers=ended",
                "workers=not-ended",
                "not every worker ended",
            ),
            ("refused=EBUSY", "refused=other", "not refused as busy"),
            ("[refused=EBUSY", "refused=EBUSY", "no evidence"),
        ] {
            let t = PROVEN.replace(from, to);
            match classify_final("release-n2", &t) {
                Final::Violation(v) => assert!(v.contains(why), "{to}: {v}"),
                other => panic!("{to}: {other:?}"),
            }
        }
        match classify_final("purge-n2", PROVEN) {
            Final::Violation(v) => assert!(v.contains("not a release result"), "{v}"),
            other => panic!("{other:?}"),
        }
    }

    /// Probes every `every` ns of guest time over `n` probes, each a
    /// guest reading, the host's 0.1 ms later, the guest's again 0.2 ms
    /// later, for a guest clock = host + offset(t).
    fn probes(n: i64, every: i64, offset: impl Fn(i64) -> i64) -> Vec<Probe> {
        (0..n)
            .map(|i| {
                let t1 = 1_000_000_000_000 + i * every;
                let host = t1 + 100_000 - offset(t1);
                (t1, host, t1 + 200_000)
            })
            .collect()
    }

    #[test]
    fn probes_that_agree_give_one_offset() {
        let mut said = Vec::new();
        let o = offset_of(&probes(100, 500_000_000, |_| 37_000_000), 0, |l| {
            said.push(l)
        });
        assert_eq!(o.slope, 0.0);
        assert!(
            (o.at(1_000_000_000_000) - 37_000_000).abs() <= o.err,
            "{o:?}"
        );
        assert!(o.err <= 200_000, "{o:?}");
        assert!(said.is_empty(), "{said:?}");
    }

    #[test]
    fn a_drifting_clock_gets_a_line_through_every_probe() {
        // 280 ms lost in 70 s, as in the short run of session 4.
        let base = 1_000_000_000_000;
        let drift = |t: i64| 37_000_000 + (t - base) * 4 / 1000;
        let ps = probes(140, 500_000_000, drift);
        let mut said = Vec::new();
        let o = offset_of(&ps, 0, |l| said.push(l));
        assert!(said.is_empty(), "{said:?}");
        assert!((o.slope - 0.004).abs() < 1e-5, "{o:?}");
        assert!(o.err <= 200_000, "{o:?}");
        for t in [base, base + 35_000_000_000, base + 69_000_000_000] {
            assert!((o.at(t) - drift(t)).abs() <= o.err, "{o:?} at {t}");
        }
    }

    #[test]
    fn a_probe_no_line_explains_is_left_out() {
        let mut ps = probes(100, 500_000_000, |_| 37_000_000);
        // A stale answer in the middle: 50 ms off.
        ps[50].1 -= 50_000_000;
        let mut said = Vec::new();
        let o = offset_of(&ps, 0, |l| said.push(l));
        assert_eq!(o.slope, 0.0);
        assert!((o.at(ps[0].0) - 37_000_000).abs() <= o.err, "{o:?}");
        assert!(said.iter().any(|l| l.contains("1 of 100")), "{said:?}");
    }
}
