//! The chaos suite's shared vocabulary: the history records that
//! `chaos-worker` writes and `chaos-check` reads, the layout of the counter
//! kept in each resource's lock value block, and a small seeded random
//! number generator.
//!
//! # Records
//! Each worker thread appends text lines to a file of its own on the
//! shared file system (`DIR/rec/*.rec`), one `write` per line, so that a
//! line is on the host as soon as the call returns. Times are nanoseconds
//! of [`now_ns`]: the host's time stamp counter, calibrated once for the
//! whole run and read by every guest alike ([`use_tsc_clock`]), or, where
//! the host offers no calibration, the guest's `CLOCK_REALTIME`. The
//! first token says what a line is:
//!
//! | line | meaning |
//! |---|---|
//! | `H node boot pid tid thread kind` | the file's header; `kind` is the worker kind (`blocking`, `tokio`, `poll`, `drive`, `cached`; absent in old records: `blocking`) |
//! | `P t1 host t2` | clock probe: a file created between guest times `t1` and `t2` changed its directory's modification time to host time `host` (fine-grained: see [`probe`]) |
//! | `Q t1 host t2` | clock probe answered by the host (`chaos-clock`): the host read `host` on its clock between guest times `t1` and `t2` |
//! | `RS rid res op mode bound_ms t` | a request starts (`op`: lock, try, timed, convert, adopt, unlock, purge, hold, wait) |
//! | `RE rid outcome t` | it ended (`ok`, `wouldblock`, `timedout`, `deadlock`, `stopped`, ...) |
//! | `IN sid res mode t lvb` | a critical section begins, after the grant; `lvb` is `-`, `inv` or `v:EPOCH:COUNT` as read |
//! | `OUT sid t intent` | it ends, before the lock is released or converted; `intent` is `-` or `EPOCH:COUNT`, the value it publishes |
//! | `PUB sid EPOCH:COUNT ok|fail t` | the publishing conversion returned (the `cached` kind: its cache gave the lock up, which published the value, after the section) |
//! | `ORPH sid res mode owner_tid t` | the lock was orphaned on purpose |
//! | `M rss_kib t` | memory of the process |
//! | `ST t stall_ns poll_ns blocked_ns blocked dispatch_ns blocked_dispatch_ns` | async kinds, once a second: the executor thread's longest stall (a 1 ms ticker's lateness), the longest single poll or drop of a crate future or guard, the longest of those during which the thread blocked (a voluntary context switch inside it), how many did so; the `poll` kind's longest `Lockspace::dispatch` call and the longest that blocked (0 for the others) |
//! | `CACHE rN:hits/takes/give_ups/idle_releases... t` | the `cached` kind, at its end: each cache's counters (`CachedLock::stats`) |
//! | `X abort t` | async kinds: a task running a request was aborted before it ended |
//! | `END t` | the thread ended normally |
#![deny(missing_docs)]

use std::fs::File;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes 16..24 of a value block written by the workload.
pub const LVB_MAGIC: &[u8; 8] = b"CHAOSLVB";

/// A counter kept in a lock value block: an epoch (chosen by the writer
/// that found the block not valid or empty) and the number of increments
/// published in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Counter {
    /// The epoch; 0 for an empty (all-zero) block.
    pub epoch: u64,
    /// Increments published in the epoch.
    pub count: u64,
}

impl Counter {
    /// Decodes a value block's bytes: `None` unless the workload wrote it.
    pub fn decode(bytes: &[u8; 32]) -> Option<Counter> {
        if &bytes[16..24] != LVB_MAGIC {
            return None;
        }
        let mut e = [0u8; 8];
        let mut c = [0u8; 8];
        e.copy_from_slice(&bytes[0..8]);
        c.copy_from_slice(&bytes[8..16]);
        Some(Counter {
            epoch: u64::from_le_bytes(e),
            count: u64::from_le_bytes(c),
        })
    }

    /// The 24 bytes to publish.
    pub fn encode(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[0..8].copy_from_slice(&self.epoch.to_le_bytes());
        b[8..16].copy_from_slice(&self.count.to_le_bytes());
        b[16..24].copy_from_slice(LVB_MAGIC);
        b
    }

    /// `EPOCH:COUNT`.
    pub fn text(self) -> String {
        format!("{:x}:{}", self.epoch, self.count)
    }

    /// Parses [`text`](Self::text).
    pub fn parse(s: &str) -> Option<Counter> {
        let (e, c) = s.split_once(':')?;
        Some(Counter {
            epoch: u64::from_str_radix(e, 16).ok()?,
            count: c.parse().ok()?,
        })
    }
}

/// The clock of the records: the guest's (or host's) `CLOCK_REALTIME` in
/// nanoseconds, or, once [`use_tsc_clock`] has found the run's
/// calibration, the host's time stamp counter in nanoseconds (see there).
pub fn now_ns() -> i64 {
    match TSC.get() {
        Some(c) => c.ns(rdtsc()),
        None => realtime_ns(),
    }
}

/// `CLOCK_REALTIME` in nanoseconds.
pub fn realtime_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}

/// A linear map from the time stamp counter to nanoseconds.
#[derive(Debug, Clone, Copy)]
struct TscClock {
    tsc0: u64,
    ns0: i64,
    ns_per_tick: f64,
}

impl TscClock {
    fn ns(&self, tsc: u64) -> i64 {
        self.ns0 + (tsc.wrapping_sub(self.tsc0) as i64 as f64 * self.ns_per_tick) as i64
    }
}

static TSC: std::sync::OnceLock<TscClock> = std::sync::OnceLock::new();

#[cfg(target_arch = "x86_64")]
fn rdtsc() -> u64 {
    // RDTSC reads a register; x86_64 always has it, and nothing
    // here sets CR4.TSD (the host's kernel and user-mode Linux leave it
    // clear: a guest process runs as a host process and reads the host's
    // counter).
    // SAFETY: RDTSC only reads a register, and CR4.TSD is clear here (see above).
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
fn rdtsc() -> u64 {
    0
}

/// The file of a run's directory that holds the calibration of the time
/// stamp counter, written by the host (`chaos-clock --calibrate`) before
/// the workers start; absent when the host cannot offer one.
pub const TSC_FILE: &str = "tsc";

/// Switches [`now_ns`] to the host's time stamp counter when the run's
/// directory `dir` holds a calibration ([`TSC_FILE`]): `Ok(true)`. A
/// user-mode Linux guest's processes run as host processes and read the
/// host's own counter, so every guest and every boot then stamps its
/// records on one clock: two records of different nodes compare exactly
/// (the counter is synchronised across the host's CPUs: the host's kernel
/// uses it as its clocksource only then, which the calibration checks),
/// with no clock probe's uncertainty. The map to nanoseconds is the same
/// line for every process of the run, so it orders nothing differently;
/// its small error against the host's `CLOCK_REALTIME` (a rate measured
/// over a second) is what the clock probes still measure, for comparisons
/// with the host's events. `Ok(false)`: no calibration, the guest's
/// `CLOCK_REALTIME` stays. Call it before the first [`now_ns`].
pub fn use_tsc_clock(dir: &std::path::Path) -> Result<bool, String> {
    let text = match std::fs::read_to_string(dir.join(TSC_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(format!("{}: {e}", dir.join(TSC_FILE).display())),
    };
    let c = parse_tsc(&text).ok_or_else(|| format!("unreadable calibration {text:?}"))?;
    if !cfg!(target_arch = "x86_64") {
        return Err("a calibration of the time stamp counter, but no counter here".into());
    }
    let _ = TSC.set(c);
    Ok(true)
}

fn parse_tsc(text: &str) -> Option<TscClock> {
    let mut w = text.split_whitespace();
    let c = TscClock {
        tsc0: w.next()?.parse().ok()?,
        ns0: w.next()?.parse().ok()?,
        ns_per_tick: w.next()?.parse().ok()?,
    };
    (c.ns_per_tick > 0.0 && c.ns_per_tick.is_finite()).then_some(c)
}

/// The host's side of [`use_tsc_clock`]: the line to write into
/// [`TSC_FILE`] (`TSC0 NS0 NS_PER_TICK`), from two readings of the counter
/// and `CLOCK_REALTIME` a second apart (each the tightest of 100 tries), or
/// `None` when the host's clocksource is not the counter (then it is not
/// known to be synchronised across CPUs) or this is not x86_64.
pub fn calibrate_tsc() -> Option<String> {
    if !cfg!(target_arch = "x86_64") {
        return None;
    }
    let src =
        std::fs::read_to_string("/sys/devices/system/clocksource/clocksource0/current_clocksource")
            .ok()?;
    if src.trim() != "tsc" {
        return None;
    }
    let pair = || {
        (0..100)
            .map(|_| {
                let a = rdtsc();
                let t = realtime_ns();
                let b = rdtsc();
                (b.wrapping_sub(a), a / 2 + b / 2 + (a % 2 + b % 2) / 2, t)
            })
            .min_by_key(|p| p.0)
            .map(|p| (p.1, p.2))
    };
    let (tsc0, ns0) = pair()?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let (tsc1, ns1) = pair()?;
    if tsc1 <= tsc0 || ns1 <= ns0 {
        return None;
    }
    let ns_per_tick = (ns1 - ns0) as f64 / (tsc1 - tsc0) as f64;
    Some(format!("{tsc0} {ns0} {ns_per_tick:.12e}\n"))
}

/// splitmix64: a small, seeded, good-enough generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// `true` with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A record file: each line goes to the file in one `write`.
#[derive(Debug)]
pub struct Recorder {
    file: File,
    id: String,
}

impl Recorder {
    /// Creates `path` (append mode) and writes the header.
    ///
    /// # Errors
    /// The file could not be created or written.
    pub fn create(
        path: &std::path::Path,
        node: u32,
        boot: u32,
        thread: usize,
        kind: &str,
    ) -> std::io::Result<Recorder> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let mut r = Recorder {
            file,
            id: format!("n{node}-b{boot}-p{}", std::process::id()),
        };
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        r.line(&format!(
            "H {node} {boot} {} {tid} {thread} {kind}",
            std::process::id()
        ));
        Ok(r)
    }

    /// `nNODE-bBOOT-pPID`: unique in a run.
    pub fn id(&self) -> String {
        self.id.clone()
    }

    /// Appends one line (a newline is added). A failed write is fatal: a
    /// history with holes would prove nothing.
    pub fn line(&mut self, text: &str) {
        let mut buf = String::with_capacity(text.len() + 1);
        buf.push_str(text);
        buf.push('\n');
        if let Err(e) = self.file.write_all(buf.as_bytes()) {
            eprintln!("chaos-worker: cannot write a record: {e}");
            std::process::exit(3);
        }
    }
}

/// A clock probe: the host's time of a moment between two readings of
/// this guest's clock, `(t1, host, t2)`, or `None` if a step failed.
///
/// `dir` is a directory on the shared (host) file system that only this
/// process changes. The probe reads its attributes (a query of its
/// timestamps: the host kernel, 6.13 or later, then stamps its next change
/// with the fine-grained clock instead of the coarse one, "multigrain
/// timestamps"), reads the guest clock (`t1`), creates a file in it,
/// reads the guest clock again (`t2`), and reads the directory's new
/// modification time: the host's clock during the creation. The file is
/// removed before the next probe.
pub fn probe(dir: &std::path::Path, n: u64) -> Option<(i64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(dir).ok()?;
    let p = dir.join(format!("f{n}"));
    let t1 = now_ns();
    let created = std::fs::File::create(&p);
    let t2 = now_ns();
    created.ok()?;
    let m = std::fs::metadata(dir).ok();
    let _ = std::fs::remove_file(&p);
    let m = m?;
    Some((t1, m.mtime() * 1_000_000_000 + m.mtime_nsec(), t2))
}

/// A clock probe answered by the host: `(t1, host, t2)`, the host's
/// `CLOCK_REALTIME` read between the guest's readings `t1` and `t2`, or
/// `None` if no answer came within 100 ms.
///
/// The guest reads its clock (`t1`), creates `DIR/q-ID-N`; the host's
/// `chaos-clock DIR` sees the creation (inotify), reads its own clock and
/// writes it into `DIR/a-ID-N` (renamed into place whole); the guest
/// reads that file as soon as it appears and reads its clock again (`t2`).
/// The host's reading happened after `t1` and before `t2`: the guest clock
/// minus the host clock is within `[t1 - host, t2 - host]`, whatever the
/// file system's timestamps are (user-mode Linux's hostfs gives whole
/// seconds, stamped by the host's coarse clock).
///
/// `id` must be unique in the whole run (node, boot, process): process ids
/// repeat across guests and across a guest's boots.
pub fn host_probe(dir: &std::path::Path, id: &str, n: u64) -> Option<(i64, i64, i64)> {
    let q = dir.join(format!("q-{id}-{n}"));
    let a = dir.join(format!("a-{id}-{n}"));
    // No answer may be there before the question.
    let _ = std::fs::remove_file(&a);
    let t1 = now_ns();
    File::create(&q).ok()?;
    let mut answer = None;
    for i in 0..2000 {
        if let Ok(s) = std::fs::read_to_string(&a) {
            answer = Some((s, now_ns()));
            break;
        }
        if i > 20 {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        if now_ns() - t1 > 100_000_000 {
            break;
        }
    }
    let _ = std::fs::remove_file(&q);
    let _ = std::fs::remove_file(&a);
    let (s, t2) = answer?;
    Some((t1, s.trim().parse().ok()?, t2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_calibration_reads_back() {
        let c = parse_tsc("1000 5000 0.5\n").expect("parse");
        assert_eq!(c.ns(1000), 5000);
        assert_eq!(c.ns(3000), 6000);
        assert!(parse_tsc("1000 5000 -1").is_none());
        assert!(parse_tsc("1000 5000").is_none());
    }

    #[test]
    fn the_counter_clock_keeps_the_hosts_time() {
        // Where the host offers a calibration (clocksource tsc), the
        // counter's time agrees with CLOCK_REALTIME to well within a
        // millisecond just after it.
        let Some(line) = calibrate_tsc() else {
            eprintln!("no tsc clocksource here: nothing to check");
            return;
        };
        let c = parse_tsc(&line).expect("parse");
        let d = c.ns(rdtsc()) - realtime_ns();
        assert!(d.abs() < 1_000_000, "counter clock - realtime = {d} ns");
    }
}
