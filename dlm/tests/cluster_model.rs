//! Model-based test: two handles go through thousands of random steps —
//! new requests (try and timed), conversions up and down with random flag
//! sets, value blocks set, invalidated and read, unlocks, drops, orphans,
//! handle closes, adoptions and purges — and after every step what the
//! guards say is compared with a reference model of the DLM (the
//! compatibility table, the kernel's value-block rules, persistence), and
//! with an observer handle's try-locks and value-block reads.
//!
//! `DLM_MODEL_SEED` replays a run (the seed is printed);
//! `DLM_MODEL_STEPS` sets its length (default 1,500).

mod common;

use dlm::{Error, LockGuard, LockOptions, Lockspace, Mode, Node, Owner, Release, LVB_LEN};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic from the seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn mode(&mut self) -> Mode {
        Mode::ALL[self.below(6)]
    }
}

const RESOURCES: usize = 3;
const HANDLES: usize = 2;

fn res_name(r: usize) -> String {
    format!("m{r}")
}

/// The DLM's value block of one resource, as the model knows it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Value {
    /// Never written: readers get whatever their own buffer held.
    Unknown,
    Known {
        bytes: [u8; LVB_LEN],
        valid: bool,
    },
}

/// What a guard has pending for the value block.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Pending {
    None,
    Set([u8; LVB_LEN]),
    Invalidate,
}

/// One lock the model knows of.
struct Slot {
    guard: Option<LockGuard>,
    handle: usize,
    res: usize,
    mode: Mode,
    persistent: bool,
    uses_lvb: bool,
    pending: Pending,
    /// Orphaned: the guard is gone; the lock stays held until adopted or
    /// purged (an orphan proper once its handle closed).
    orphaned: bool,
}

struct World {
    name: String,
    handles: Vec<Option<Lockspace>>,
    obs: Lockspace,
    keepers: Vec<LockGuard>,
    slots: Vec<Slot>,
    values: [Value; RESOURCES],
    rng: Rng,
    step: usize,
    /// The last steps, printed with a failure.
    log: std::collections::VecDeque<String>,
}

impl World {
    fn held_modes(&self, res: usize, except: Option<usize>) -> Vec<Mode> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(i, s)| s.res == res && Some(*i) != except)
            .map(|(_, s)| s.mode)
            .collect()
    }

    fn compatible(&self, res: usize, mode: Mode, except: Option<usize>) -> bool {
        self.held_modes(res, except)
            .iter()
            .all(|m| m.is_compatible(mode))
    }

    fn ctx(&self) -> String {
        let log: Vec<&str> = self.log.iter().map(String::as_str).collect();
        format!(
            "step {} (seed {}); last steps:\n  {}\n",
            self.step,
            seed_of(&self.rng),
            log.join("\n  ")
        )
    }

    fn note(&mut self, what: String) {
        if self.log.len() == 30 {
            self.log.pop_front();
        }
        self.log.push_back(format!("{}: {what}", self.step));
    }

    /// What a reader with VALBLK must see, when the model knows it.
    fn check_read(&self, res: usize, got: Option<dlm::Lvb>, what: &str) {
        let got = got.unwrap_or_else(|| panic!("{}: {what}: no value block read", self.ctx()));
        if let Value::Known { bytes, valid } = self.values[res] {
            assert_eq!(
                (got.bytes, got.valid),
                (bytes, valid),
                "{}: {what}: value block of {}",
                self.ctx(),
                res_name(res)
            );
        }
    }

    /// A conversion or release writes the value block from PW/EX: the
    /// model applies the guard's pending value or invalidation.
    fn write_pending(&mut self, i: usize) {
        let s = &mut self.slots[i];
        match std::mem::replace(&mut s.pending, Pending::None) {
            Pending::Set(bytes) => self.values[s.res] = Value::Known { bytes, valid: true },
            Pending::Invalidate => {
                if let Value::Known { bytes, .. } = self.values[s.res] {
                    self.values[s.res] = Value::Known {
                        bytes,
                        valid: false,
                    };
                }
            }
            Pending::None => {}
        }
    }

    fn timeout_opts(&mut self, mut o: LockOptions) -> LockOptions {
        if self.rng.chance(50) {
            o = o.no_wait();
        } else {
            o = o.timeout(Duration::from_millis(20 + self.rng.below(30) as u64));
        }
        o
    }

    fn expect_refused(&self, r: &Result<impl std::fmt::Debug, Error>, what: &str) {
        match r {
            Err(Error::WouldBlock) | Err(Error::TimedOut) => {}
            other => panic!("{}: {what}: expected a refusal, got {other:?}", self.ctx()),
        }
    }

    fn op_request(&mut self) {
        let h = self.rng.below(HANDLES);
        let Some(ls) = self.handles[h].clone() else {
            return;
        };
        let res = self.rng.below(RESOURCES);
        let mode = self.rng.mode();
        let uses_lvb = self.rng.chance(60);
        let persistent = self.rng.chance(30);
        let mut o = LockOptions::new();
        if uses_lvb {
            o = o.lvb();
        }
        if persistent {
            o = o.persistent();
        }
        o = self.timeout_opts(o);
        let expect = self.compatible(res, mode, None);
        let r = ls.lock_with(res_name(res), mode, o);
        self.note(format!(
            "h{h} new {mode} {} lvb={uses_lvb} persistent={persistent} -> {:?}",
            res_name(res),
            r.as_ref().map(|g| g.lvb())
        ));
        if !expect {
            return self.expect_refused(&r, &format!("new {mode} on {}", res_name(res)));
        }
        let g = r.unwrap_or_else(|e| panic!("{}: new {mode}: {e}", self.ctx()));
        if uses_lvb && lvb_reads(None, mode) {
            self.check_read(res, g.lvb(), "grant");
        }
        self.slots.push(Slot {
            guard: Some(g),
            handle: h,
            res,
            mode,
            persistent,
            uses_lvb,
            pending: Pending::None,
            orphaned: false,
        });
    }

    fn pick_live(&mut self) -> Option<usize> {
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].guard.is_some())
            .collect();
        (!live.is_empty()).then(|| live[self.rng.below(live.len())])
    }

    fn op_convert(&mut self) {
        let Some(i) = self.pick_live() else { return };
        let to = self.rng.mode();
        let with_lvb = self.rng.chance(40);
        let make_persistent = self.rng.chance(10);
        let mut o = LockOptions::new();
        if with_lvb {
            o = o.lvb();
        }
        if make_persistent {
            o = o.persistent();
        }
        o = self.timeout_opts(o);
        let (res, from) = (self.slots[i].res, self.slots[i].mode);
        let expect = self.compatible(res, to, Some(i));
        let r = self.slots[i]
            .guard
            .as_mut()
            .unwrap()
            .convert_with(to, o)
            .map(|g| g.mode);
        let what = format!("convert {from} -> {to} on {}", res_name(res));
        self.note(format!(
            "slot{i} {what} lvb={with_lvb} -> {r:?}, lvb now {:?}",
            self.slots[i].guard.as_ref().unwrap().lvb()
        ));
        if !expect {
            self.expect_refused(&r, &what);
            if with_lvb {
                self.slots[i].uses_lvb = true;
            }
            if make_persistent {
                // The kernel took the request's flags.
                self.slots[i].persistent = true;
            }
            return;
        }
        assert_eq!(
            r.unwrap_or_else(|e| panic!("{}: {what}: {e}", self.ctx())),
            to
        );
        let s = &mut self.slots[i];
        s.uses_lvb |= with_lvb;
        s.persistent |= make_persistent;
        s.mode = to;
        let writes = lvb_writes(from, to);
        let reads = lvb_reads(Some(from), to);
        if writes {
            self.write_pending(i);
        } else if reads && self.slots[i].uses_lvb && self.slots[i].pending == Pending::None {
            let got = self.slots[i].guard.as_ref().unwrap().lvb();
            self.check_read(res, got, &what);
        }
    }

    fn op_set_lvb(&mut self) {
        let Some(i) = self.pick_live() else { return };
        let s = &self.slots[i];
        if !may_write_lvb(s.mode) || !s.uses_lvb {
            return;
        }
        let mut bytes = [0u8; LVB_LEN];
        let len = 1 + self.rng.below(LVB_LEN);
        for b in &mut bytes[..len] {
            *b = 1 + self.rng.below(255) as u8;
        }
        if self.rng.chance(25) {
            self.slots[i]
                .guard
                .as_mut()
                .unwrap()
                .invalidate_lvb()
                .unwrap();
            self.slots[i].pending = Pending::Invalidate;
            self.note(format!("slot{i} invalidate"));
        } else {
            self.slots[i]
                .guard
                .as_mut()
                .unwrap()
                .set_lvb(&bytes[..len])
                .unwrap();
            self.slots[i].pending = Pending::Set(bytes);
            self.note(format!("slot{i} set {:?}", &bytes[..4]));
        }
    }

    fn op_release(&mut self) {
        let Some(i) = self.pick_live() else { return };
        let g = self.slots[i].guard.take().unwrap();
        self.note(format!(
            "slot{i} release {} {} pending {:?}",
            self.slots[i].mode,
            res_name(self.slots[i].res),
            self.slots[i].pending
        ));
        if self.rng.chance(50) {
            g.unlock()
                .unwrap_or_else(|e| panic!("{}: unlock: {e}", self.ctx()));
        } else {
            drop(g);
        }
        // A pending value is published by the conversion down to NL that
        // precedes the unlock (an unlock writes libdlm's garbage).
        if lvb_writes(self.slots[i].mode, Mode::Nl) {
            self.write_pending(i);
        }
        self.slots.remove(i);
    }

    fn op_orphan(&mut self) {
        let Some(i) = self.pick_live() else { return };
        let g = self.slots[i].guard.take().unwrap();
        assert_eq!(
            g.is_persistent(),
            self.slots[i].persistent,
            "{}: persistence of {}",
            self.ctx(),
            res_name(self.slots[i].res)
        );
        self.note(format!("slot{i} orphan {}", self.slots[i].mode));
        match g.orphan() {
            Ok(()) => {
                // A pending value is published by the orphaning (a
                // conversion to the same mode).
                let mode = self.slots[i].mode;
                if lvb_writes(mode, mode) {
                    self.write_pending(i);
                }
                self.slots[i].orphaned = true;
            }
            Err(g) => {
                assert!(!self.slots[i].persistent, "{}: orphan refused", self.ctx());
                self.slots[i].guard = Some(g);
            }
        }
    }

    /// Closes handle `h` (after releasing its guards) and opens it anew:
    /// its orphaned locks become orphans proper.
    fn op_reopen(&mut self) {
        let h = self.rng.below(HANDLES);
        let mine: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].handle == h && self.slots[i].guard.is_some())
            .collect();
        for &i in mine.iter().rev() {
            let g = self.slots[i].guard.take().unwrap();
            g.unlock().unwrap();
            if lvb_writes(self.slots[i].mode, Mode::Nl) {
                self.write_pending(i);
            }
            self.slots.remove(i);
        }
        self.note(format!("reopen h{h}"));
        self.handles[h] = None;
        self.handles[h] = Some(Lockspace::open(&self.name).unwrap());
        for s in &mut self.slots {
            if s.handle == h && s.orphaned {
                s.handle = usize::MAX; // an orphan proper
            }
        }
    }

    fn op_adopt(&mut self) {
        let orphans: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].handle == usize::MAX)
            .collect();
        if orphans.is_empty() {
            return;
        }
        let i = orphans[self.rng.below(orphans.len())];
        let h = self.rng.below(HANDLES);
        let ls = self.handles[h].clone().unwrap();
        let (res, mode) = (self.slots[i].res, self.slots[i].mode);
        if self.rng.chance(20) {
            let other = Mode::ALL[(mode as usize + 1) % 6];
            let others_in_that_mode = orphans
                .iter()
                .any(|&j| self.slots[j].res == res && self.slots[j].mode == other);
            if !others_in_that_mode {
                let r = ls.adopt_orphan(res_name(res), other, LockOptions::new());
                assert!(
                    matches!(r, Err(Error::OrphanModeMismatch)),
                    "{}: adopt in the wrong mode: {r:?}",
                    self.ctx()
                );
            }
            return;
        }
        self.note(format!("slot{i} adopted by h{h} {mode} {}", res_name(res)));
        let g = ls
            .adopt_orphan(res_name(res), mode, LockOptions::new().lvb())
            .unwrap_or_else(|e| panic!("{}: adopt {mode} {}: {e}", self.ctx(), res_name(res)));
        assert!(g.is_persistent());
        let s = &mut self.slots[i];
        s.guard = Some(g);
        s.handle = h;
        s.orphaned = false;
        s.uses_lvb = true;
        s.pending = Pending::None;
    }

    fn op_purge(&mut self) {
        let obs = self.obs.clone();
        std::thread::scope(|s| s.spawn(|| obs.purge_orphans(Node::This, Owner::Any)).join())
            .unwrap()
            .unwrap();
        // The kernel force-unlocks the orphans; a PW/EX one leaves the
        // value block not valid (its holder's value is suspect).
        for i in 0..self.slots.len() {
            if self.slots[i].handle == usize::MAX && unlock_invalidates(self.slots[i].mode) {
                self.slots[i].pending = Pending::Invalidate;
                self.write_pending(i);
            }
        }
        self.slots.retain(|s| s.handle != usize::MAX);
        self.note("purge".into());
    }

    /// The observer agrees with the model on one resource: try-locks in
    /// two modes, and (when compatible) a read of the value block.
    fn observe(&mut self) {
        let res = self.rng.below(RESOURCES);
        for _ in 0..2 {
            let m = self.rng.mode();
            let expect = self.compatible(res, m, None);
            let got = match self.obs.try_lock(res_name(res), m) {
                Ok(g) => {
                    g.unlock().unwrap();
                    true
                }
                Err(Error::WouldBlock) => false,
                Err(e) => panic!("{}: observer: {e}", self.ctx()),
            };
            assert_eq!(
                got,
                expect,
                "{}: observer try {m} on {} (held: {:?})",
                self.ctx(),
                res_name(res),
                self.held_modes(res, None)
            );
        }
        if self.compatible(res, Mode::Cr, None) {
            let k = &mut self.keepers[res];
            k.convert_with(Mode::Cr, LockOptions::new().lvb()).unwrap();
            let got = k.lvb();
            k.convert(Mode::Nl).unwrap();
            self.check_read(res, got, "observer read");
        }
        for s in &self.slots {
            if let Some(g) = &s.guard {
                assert_eq!(g.mode(), s.mode, "{}: a guard's mode", self.ctx());
                assert_eq!(
                    g.is_persistent(),
                    s.persistent,
                    "{}: persistence",
                    self.ctx()
                );
            }
        }
    }
}

/// The kernel's own table of what a grant does with the value block,
/// written down literally (as data, not derived from this crate's logic)
/// from Linux `fs/dlm/lock.c`, `dlm_lvb_operations` (unchanged since the
/// DLM was merged in 2.6.16):
///
/// ```c
/// /*
///  * This defines the direction of transfer of LVB data.
///  * Granted mode is the row; requested mode is the column.
///  * Usage: matrix[grmode+1][rqmode+1]
///  * 1 = LVB is returned to the caller
///  * 0 = LVB is written to the resource
///  * -1 = nothing happens to the LVB
///  */
/// ```
///
/// Indexed `[granted + 1][requested + 1]`; row and column 0 are UN (-1, a
/// new request: nothing granted yet), 7 is PD. The kernel's `set_lvb_lock`
/// applies it on every grant, new request or conversion, and only when
/// the lock carries `VALBLK` (or `IVVALBLK`, for a write).
#[rustfmt::skip]
const DLM_LVB_OPERATIONS: [[i8; 8]; 8] = [
    /* UN   NL  CR  CW  PR  PW  EX  PD */
    [  -1,  1,  1,  1,  1,  1,  1, -1 ], /* UN */
    [  -1,  1,  1,  1,  1,  1,  1,  0 ], /* NL */
    [  -1, -1,  1,  1,  1,  1,  1,  0 ], /* CR */
    [  -1, -1, -1,  1,  1,  1,  1,  0 ], /* CW */
    [  -1, -1, -1, -1,  1,  1,  1,  0 ], /* PR */
    [  -1,  0,  0,  0,  0,  0,  1,  0 ], /* PW */
    [  -1,  0,  0,  0,  0,  0,  0,  0 ], /* EX */
    [  -1,  0,  0,  0,  0,  0,  0,  0 ], /* PD */
];

/// The kernel's mode numbers (`DLM_LOCK_NL` 0 ... `DLM_LOCK_EX` 5), spelt
/// out here rather than taken from the crate.
fn kernel_mode(m: Mode) -> usize {
    match m {
        Mode::Nl => 0,
        Mode::Cr => 1,
        Mode::Cw => 2,
        Mode::Pr => 3,
        Mode::Pw => 4,
        Mode::Ex => 5,
    }
}

/// `dlm_lvb_operations[granted + 1][requested + 1]`.
fn lvb_op(granted: Option<Mode>, requested: Mode) -> i8 {
    let row = granted.map_or(0, |m| kernel_mode(m) + 1);
    DLM_LVB_OPERATIONS[row][kernel_mode(requested) + 1]
}

/// Whether a grant of `to` over `from` (`None`: a new request) copies the
/// resource's value block to the caller.
fn lvb_reads(from: Option<Mode>, to: Mode) -> bool {
    lvb_op(from, to) == 1
}

/// Whether a conversion of `from` to `to` writes the caller's value block
/// (or its invalidation) into the resource.
fn lvb_writes(from: Mode, to: Mode) -> bool {
    lvb_op(Some(from), to) == 0
}

/// Whether a forced unlock with `IVVALBLK` (the kernel's purge of
/// orphans, `unlock_proc_lock`) of a lock granted in `m` marks the value
/// block not valid: the kernel's `set_lvb_unlock` returns early when
/// `lkb_grmode < DLM_LOCK_PW` (not the table above: that is for grants).
fn unlock_invalidates(m: Mode) -> bool {
    kernel_mode(m) >= 4
}

/// Whether a lock held in `m` may write the value block at all: the
/// modes whose row of the kernel's table has writes (PW and EX).
fn may_write_lvb(m: Mode) -> bool {
    Mode::ALL.iter().any(|&to| lvb_writes(m, to))
}

fn seed_of(_rng: &Rng) -> u64 {
    SEED.with(|s| s.get())
}

thread_local! {
    static SEED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

#[test]
fn random_steps_agree_with_the_model() {
    require_cluster!();
    let seed = std::env::var("DLM_MODEL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let steps: usize = std::env::var("DLM_MODEL_STEPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_500);
    SEED.with(|s| s.set(seed));
    eprintln!("model test: seed {seed} (DLM_MODEL_SEED={seed} replays it), {steps} steps");
    let name = common::ls_name("model");
    let creator = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let obs = Lockspace::open(&name).unwrap();
    let keepers = (0..RESOURCES)
        .map(|r| obs.lock(res_name(r), Mode::Nl).unwrap())
        .collect();
    let mut w = World {
        handles: (0..HANDLES)
            .map(|_| Some(Lockspace::open(&name).unwrap()))
            .collect(),
        name: name.clone(),
        obs,
        keepers,
        slots: Vec::new(),
        values: [Value::Unknown; RESOURCES],
        rng: Rng(seed),
        step: 0,
        log: Default::default(),
    };
    let t = Instant::now();
    let mut counts = [0usize; 9];
    for step in 0..steps {
        w.step = step;
        let op = match w.rng.below(100) {
            0..=29 => 0,
            30..=54 => 1,
            55..=64 => 2,
            65..=79 => 3,
            80..=86 => 4,
            87..=89 => 5,
            90..=95 => 6,
            _ => 7,
        };
        counts[op] += 1;
        match op {
            0 => w.op_request(),
            1 => w.op_convert(),
            2 => w.op_set_lvb(),
            3 => w.op_release(),
            4 => w.op_orphan(),
            5 => w.op_reopen(),
            6 => w.op_adopt(),
            _ => w.op_purge(),
        }
        w.observe();
    }
    eprintln!(
        "model test: {steps} steps in {:.1} s (requests {}, conversions {}, lvb {}, releases {}, orphans {}, reopens {}, adoptions {}, purges {})",
        t.elapsed().as_secs_f64(),
        counts[0],
        counts[1],
        counts[2],
        counts[3],
        counts[4],
        counts[5],
        counts[6],
        counts[7]
    );
    // Everything released: the observer's fresh handle can remove it.
    for s in &mut w.slots {
        if let Some(g) = s.guard.take() {
            g.unlock().unwrap();
        }
    }
    let World {
        handles,
        obs,
        keepers,
        ..
    } = w;
    drop((handles, keepers));
    std::thread::scope(|s| s.spawn(|| obs.purge_orphans(Node::This, Owner::Any)).join())
        .unwrap()
        .unwrap();
    drop((obs, creator));
    if let Err(e) = dlm::leave(&name, Release::IfUnused) {
        panic!("locks left behind: {e}");
    }
}
