//! `dlm-lock`: take one cluster-wide DLM lock and report, one line per
//! event, what happens to it: the tool the multi-node scenarios
//! (`ci/scenarios/`) are written with.
//!
//! ```text
//! dlm-lock [OPTIONS] RESOURCE
//! dlm-lock [--lockspace NAME] --purge NODEID [--pid PID]
//! ```
//!
//! Each event is one line on standard output, flushed at once (the
//! scenarios read it while the program runs): `requesting EX`,
//! `granted EX`, `lvb valid HEX`, `blocking`, `converted PR`, `unlocking`,
//! `released`, `would-block`, `timed-out`, `orphaned`, `error: ...`. With
//! `--timestamps` every line starts with the wall-clock time.
//! `dlm-lock --help` lists the options and the exit statuses.

use dlm::{Error, LockGuard, LockOptions, Lockspace, Lvb, Mode};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const USAGE: &str = "\
Usage: dlm-lock [OPTIONS] RESOURCE
       dlm-lock [--lockspace NAME] --purge NODEID [--pid PID]

Takes the cluster-wide DLM lock RESOURCE (or adopts it, --adopt), converts
it and waits for files in steps (--convert, --wait-file), holds it (--hold,
--hold-until-file) answering blocking notifications (--on-blocking), then
releases it (or leaves it behind as an orphan, --orphan). Prints one line
per event, flushed at once:

  requesting MODE        before a new request is sent
  granted MODE           the request was granted
  adopted MODE           an orphan was adopted (--adopt)
  lvb valid|not-valid HEX
                         the lock value block read at a grant or a
                         conversion that reads it (--lvb), 64 hex digits
  set-lvb HEX            the value given by --set-lvb[-hex], to be published
                         by the next conversion down or the release
  converting MODE        before a conversion is sent
  converted MODE         the conversion was granted
  blocking               another request waits for this lock (--notify)
  unlocking              before the unlock is sent
  released               the lock is unlocked
  orphaned               the lock was left behind as an orphan (--orphan)
  purged NODEID PID      orphans were purged (--purge)
  would-block            a --try request or conversion was refused
  timed-out              not granted within --timeout
  deadlock | cancelled   the request failed so
  no-orphan | orphan-mode-mismatch
                         --adopt found no orphan, or one in another mode
  error: MESSAGE         anything else that failed

Options:
  -l, --lockspace NAME   lockspace (default: dlm-lock; created if needed)
  -m, --mode MODE        mode to request or adopt: NL, CR, CW, PR, PW or EX
                         (default: EX)
  -n, --try              fail at once instead of waiting (LKF_NOQUEUE); also
                         applies to the conversions
  -w, --timeout SECS     give up on the request, and on each conversion, if
                         not granted within SECS (it is cancelled). Also
                         arms a watchdog: any DLM call that has not returned
                         SECS + 15 s after it began (the kernel can block a
                         cancel for ever while its lockspace is stopped, as
                         when dlm_controld has died) prints `error: stuck:
                         ...` and ends the program at once (status 8)
  -p, --persistent       persistent lock: it survives this process as an
                         orphan if not released (LKF_PERSISTENT)
      --expedite         grant a new NL request at once (LKF_EXPEDITE)
      --lvb              use the lock value block (LKF_VALBLK) and print it
      --set-lvb TEXT     write TEXT (at most 32 bytes) into the lock value
                         block as soon as the lock is held in PW or EX;
                         published by the next conversion down or the
                         release (implies --lvb)
      --set-lvb-hex HEX  the same with the bytes given in hex
      --notify           ask for blocking notifications: print `blocking`
      --on-blocking ACTION
                         what to do on a blocking notification while
                         holding (implies --notify): downconvert:MODE
                         (convert down to MODE, once), release (unlock and
                         end), ignore (only print it, the default)
      --adopt            adopt an orphan held in MODE instead of requesting
      --convert MODE     after the grant, convert to MODE (a step)
      --wait-file PATH   after the grant, wait until PATH exists, answering
                         blocking notifications (a step). Steps repeat and
                         are carried out in the order given, e.g.
                         --wait-file go --convert NL --hold-until-file done
      --hold SECS        hold the lock SECS seconds before releasing
      --hold-until-file PATH
                         hold the lock until PATH exists (with --hold:
                         whichever comes first)
      --orphan           at the end leave the lock as an orphan instead of
                         releasing it (needs --persistent or --adopt)
      --purge NODEID     purge the orphans of node NODEID (0: this node)
      --pid PID          with --purge: only those of owner PID (default 0:
                         every owner; the kernel records the requesting
                         thread's id as owner)
  -t, --timestamps       start every line with the wall-clock time, as
                         seconds since the epoch with microseconds
  -h, --help             show this help

Exit status:
  0  done: granted and released (or orphaned), adopted, purged
  1  would-block: a --try request or conversion was refused
  2  usage error
  3  timed-out: not granted within --timeout
  4  deadlock, or cancelled by someone else
  5  --adopt: no orphan of that name, or one in another mode
  6  the lockspace could not be joined (no DLM, no permission)
  7  any other error
  8  stuck: with --timeout, a DLM call did not return in time (the
     program's thread may be left blocked in the kernel)";

/// One step after the grant.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Convert(Mode),
    WaitFile(PathBuf),
}

/// What to do with a blocking notification while holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnBlocking {
    Ignore,
    Downconvert(Mode),
    Release,
}

#[derive(Debug)]
struct Args {
    lockspace: String,
    mode: Mode,
    try_lock: bool,
    timeout: Option<Duration>,
    persistent: bool,
    expedite: bool,
    lvb: bool,
    set_lvb: Option<Vec<u8>>,
    notify: bool,
    on_blocking: OnBlocking,
    adopt: bool,
    steps: Vec<Step>,
    hold: Option<Duration>,
    hold_file: Option<PathBuf>,
    orphan: bool,
    purge: Option<u32>,
    pid: u32,
    timestamps: bool,
    resource: Option<String>,
}

/// Exit statuses, as documented in [`USAGE`].
mod status {
    pub const WOULD_BLOCK: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const TIMED_OUT: u8 = 3;
    pub const DEADLOCK: u8 = 4;
    pub const ORPHAN: u8 = 5;
    pub const LOCKSPACE: u8 = 6;
    pub const OTHER: u8 = 7;
    pub const STUCK: u8 = 8;
}

/// How much longer than `--timeout` a DLM call may take before the
/// watchdog gives up on it: the crate's cancel grace, and some slack.
const WATCHDOG_SLACK: Duration = Duration::from_secs(15);

fn seconds(opt: &str, s: Option<String>) -> Result<Duration, String> {
    let s = s.ok_or_else(|| format!("{opt} needs a number of seconds"))?;
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("{opt}: bad number of seconds: {s}")),
    }
}

fn mode(opt: &str, s: Option<String>) -> Result<Mode, String> {
    let s = s.ok_or_else(|| format!("{opt} needs a mode"))?;
    s.parse()
        .map_err(|_| format!("{opt}: unknown mode {s} (NL, CR, CW, PR, PW or EX)"))
}

fn number(opt: &str, s: Option<String>) -> Result<u32, String> {
    let s = s.ok_or_else(|| format!("{opt} needs a number"))?;
    s.parse().map_err(|_| format!("{opt}: bad number {s}"))
}

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() % 2 != 0 {
        return Err("--set-lvb-hex: odd number of hex digits".into());
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(s.get(i..i + 2).unwrap_or("?"), 16)
                .map_err(|_| format!("--set-lvb-hex: not hex: {s}"))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses the command line; `Err("")` asks for the help text.
fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut a = Args {
        lockspace: "dlm-lock".into(),
        mode: Mode::Ex,
        try_lock: false,
        timeout: None,
        persistent: false,
        expedite: false,
        lvb: false,
        set_lvb: None,
        notify: false,
        on_blocking: OnBlocking::Ignore,
        adopt: false,
        steps: Vec::new(),
        hold: None,
        hold_file: None,
        orphan: false,
        purge: None,
        pid: 0,
        timestamps: false,
        resource: None,
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-h" | "--help" => return Err(String::new()),
            "-l" | "--lockspace" => {
                a.lockspace = args.next().ok_or("--lockspace needs a name")?;
            }
            "-m" | "--mode" => a.mode = mode(&arg, args.next())?,
            "-n" | "--try" => a.try_lock = true,
            "-w" | "--timeout" => a.timeout = Some(seconds(&arg, args.next())?),
            "-p" | "--persistent" => a.persistent = true,
            "--expedite" => a.expedite = true,
            "--lvb" => a.lvb = true,
            "--set-lvb" => {
                let text = args.next().ok_or("--set-lvb needs a value")?;
                a.set_lvb = Some(text.into_bytes());
                a.lvb = true;
            }
            "--set-lvb-hex" => {
                let text = args.next().ok_or("--set-lvb-hex needs a value")?;
                a.set_lvb = Some(unhex(&text)?);
                a.lvb = true;
            }
            "--notify" => a.notify = true,
            "--on-blocking" => {
                let action = args.next().ok_or("--on-blocking needs an action")?;
                a.on_blocking = match action.as_str() {
                    "ignore" => OnBlocking::Ignore,
                    "release" => OnBlocking::Release,
                    s => match s.strip_prefix("downconvert:") {
                        Some(m) => OnBlocking::Downconvert(mode(&arg, Some(m.to_string()))?),
                        None => return Err(format!("--on-blocking: unknown action {s}")),
                    },
                };
                a.notify = true;
            }
            "--adopt" => a.adopt = true,
            "--convert" => a.steps.push(Step::Convert(mode(&arg, args.next())?)),
            "--wait-file" => {
                let path = args.next().ok_or("--wait-file needs a path")?;
                a.steps.push(Step::WaitFile(path.into()));
            }
            "--hold" => a.hold = Some(seconds(&arg, args.next())?),
            "--hold-until-file" => {
                a.hold_file = Some(args.next().ok_or("--hold-until-file needs a path")?.into());
            }
            "--orphan" => a.orphan = true,
            "--purge" => a.purge = Some(number(&arg, args.next())?),
            "--pid" => a.pid = number(&arg, args.next())?,
            "-t" | "--timestamps" => a.timestamps = true,
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown option {s}")),
            _ if a.resource.is_none() => a.resource = Some(arg),
            _ => return Err(format!("unexpected argument {arg}")),
        }
    }
    if a.purge.is_some() {
        if a.resource.is_some() {
            return Err("--purge takes no RESOURCE".into());
        }
        return Ok(a);
    }
    if a.resource.is_none() {
        return Err("RESOURCE is required".into());
    }
    if a.orphan && !(a.persistent || a.adopt) {
        return Err(
            "--orphan needs --persistent (or --adopt): only persistent locks can be orphaned"
                .into(),
        );
    }
    if let Some(v) = &a.set_lvb {
        if v.len() > dlm::LVB_LEN {
            return Err(format!(
                "--set-lvb: {} bytes, a lock value block holds {}",
                v.len(),
                dlm::LVB_LEN
            ));
        }
        if !std::iter::once(a.mode)
            .chain(a.steps.iter().filter_map(|s| match s {
                Step::Convert(m) => Some(*m),
                Step::WaitFile(_) => None,
            }))
            .any(Mode::writes_lvb)
        {
            return Err("--set-lvb needs the lock held in PW or EX at some step".into());
        }
    }
    if a.adopt && (a.try_lock || a.timeout.is_some() || a.expedite) {
        return Err("--adopt takes no --try, --timeout or --expedite".into());
    }
    Ok(a)
}

/// Prints event lines, each flushed at once (standard output is a file in
/// the scenarios, where Rust buffers it), optionally time-stamped.
struct Events {
    timestamps: bool,
    watchdog: Option<Arc<Watchdog>>,
}

impl Events {
    fn say(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        if self.timestamps {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let _ = write!(out, "{}.{:06} ", now.as_secs(), now.subsec_micros());
        }
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Runs the DLM call `f`, described by `what`, under the watchdog (if
    /// `--timeout` armed one).
    fn guarded<T>(&self, what: &str, f: impl FnOnce() -> T) -> T {
        let Some(w) = &self.watchdog else {
            return f();
        };
        w.arm(what);
        let value = f();
        w.disarm();
        value
    }

    fn lvb(&self, lvb: Option<Lvb>) {
        if let Some(lvb) = lvb {
            let validity = if lvb.valid { "valid" } else { "not-valid" };
            self.say(&format!("lvb {validity} {}", hex(&lvb.bytes)));
        }
    }

    /// Reports a failed request or conversion; returns the exit status.
    fn failed(&self, what: &str, e: &Error) -> u8 {
        let (line, code) = match e {
            Error::WouldBlock => ("would-block".to_string(), status::WOULD_BLOCK),
            Error::TimedOut => ("timed-out".to_string(), status::TIMED_OUT),
            Error::Deadlock => ("deadlock".to_string(), status::DEADLOCK),
            Error::Cancelled => ("cancelled".to_string(), status::DEADLOCK),
            Error::OrphanNotFound => ("no-orphan".to_string(), status::ORPHAN),
            Error::OrphanModeMismatch => ("orphan-mode-mismatch".to_string(), status::ORPHAN),
            e => (format!("error: {what}: {e}"), status::OTHER),
        };
        self.say(&line);
        code
    }
}

/// Ends the program if a DLM call takes far longer than `--timeout`
/// allows: the kernel blocks some calls, uninterruptibly, while their
/// lockspace is stopped (a cancel waits for the end of a recovery that
/// never comes once dlm_controld has died), and no timeout of the library
/// can end that wait.
struct Watchdog {
    limit: Duration,
    timestamps: bool,
    /// The call in progress and its deadline.
    armed: Mutex<Option<(String, Instant)>>,
    cv: Condvar,
}

impl Watchdog {
    fn start(limit: Duration, timestamps: bool) -> Arc<Watchdog> {
        let w = Arc::new(Watchdog {
            limit,
            timestamps,
            armed: Mutex::new(None),
            cv: Condvar::new(),
        });
        let watcher = Arc::clone(&w);
        std::thread::spawn(move || watcher.watch());
        w
    }

    fn arm(&self, what: &str) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        *armed = Some((what.to_string(), Instant::now() + self.limit));
        self.cv.notify_all();
    }

    fn disarm(&self) {
        *self.armed.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.cv.notify_all();
    }

    fn watch(&self) {
        let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let wait = match &*armed {
                None => None,
                Some((what, deadline)) => {
                    let now = Instant::now();
                    if now >= *deadline {
                        let out = Events {
                            timestamps: self.timestamps,
                            watchdog: None,
                        };
                        out.say(&format!(
                            "error: stuck: {what} has not returned after {:.1} s; giving up",
                            self.limit.as_secs_f64()
                        ));
                        // Not exit(): the main thread is inside libdlm and
                        // the kernel, atexit handlers must not run now.
                        // SAFETY: _exit ends the process at once; nothing
                        // after it runs.
                        unsafe { libc::_exit(status::STUCK as i32) };
                    }
                    Some(*deadline - now)
                }
            };
            armed = match wait {
                None => self.cv.wait(armed).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    self.cv
                        .wait_timeout(armed, d)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }
}

/// The lock and what is still to be done with it.
struct Holder<'a> {
    args: &'a Args,
    out: &'a Events,
    guard: LockGuard,
    /// The `--set-lvb` value, until it has been given to the guard.
    pending_lvb: Option<Vec<u8>>,
}

impl Holder<'_> {
    fn options(&self) -> LockOptions {
        let mut o = LockOptions::new();
        if self.args.try_lock {
            o = o.no_wait();
        }
        if let Some(t) = self.args.timeout {
            o = o.timeout(t);
        }
        o
    }

    /// Gives the `--set-lvb` value to the guard once it is held in PW/EX.
    fn apply_lvb(&mut self) -> Result<(), u8> {
        if !self.guard.mode().writes_lvb() {
            return Ok(());
        }
        if let Some(v) = self.pending_lvb.take() {
            if let Err(e) = self.guard.set_lvb(&v) {
                return Err(self.out.failed("set-lvb", &e));
            }
            let mut bytes = [0u8; dlm::LVB_LEN];
            bytes[..v.len()].copy_from_slice(&v);
            self.out.say(&format!("set-lvb {}", hex(&bytes)));
        }
        Ok(())
    }

    fn convert(&mut self, to: Mode) -> Result<(), u8> {
        let from = self.guard.mode();
        self.out.say(&format!("converting {to}"));
        let options = self.options();
        let guard = &mut self.guard;
        match self
            .out
            .guarded("convert", || guard.convert_with(to, options))
        {
            Ok(g) => {
                self.out.say(&format!("converted {}", g.mode));
                // Conversions from PW/EX (but PW -> EX) write the LVB; the
                // others read it.
                let reads = !(from.writes_lvb() && !(from == Mode::Pw && to == Mode::Ex));
                if self.args.lvb && reads {
                    self.out.lvb(self.guard.lvb());
                }
                self.apply_lvb()
            }
            Err(e) => Err(self.out.failed("convert", &e)),
        }
    }

    /// Holds the lock until `time` has passed or `file` exists (whichever
    /// comes first), answering blocking notifications. `Ok(false)` when an
    /// `--on-blocking release` ended the hold (the lock is to be released).
    fn hold(&mut self, time: Option<Duration>, file: Option<&Path>) -> Result<bool, u8> {
        let deadline = time.map(|d| Instant::now() + d);
        if deadline.is_none() && file.is_none() {
            return Ok(true);
        }
        let tick = Duration::from_millis(50);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || file.is_some_and(|f| f.exists()) {
                return Ok(true);
            }
            let notified = match self.guard.blocking() {
                Some(rx) => rx.recv_timeout(tick).is_ok(),
                None => {
                    std::thread::sleep(tick);
                    false
                }
            };
            if !notified {
                continue;
            }
            self.out.say("blocking");
            match self.args.on_blocking {
                OnBlocking::Ignore => {}
                OnBlocking::Downconvert(m) if self.guard.mode() > m => self.convert(m)?,
                OnBlocking::Downconvert(_) => {}
                OnBlocking::Release => return Ok(false),
            }
        }
    }

    /// Runs the conversions and the hold, then releases or orphans.
    fn run(mut self) -> u8 {
        let mut result = self.apply_lvb();
        // `false` once a blocking notification asked for the release.
        let mut keep = true;
        let args = self.args;
        for step in &args.steps {
            if result.is_err() || !keep {
                break;
            }
            result = match step {
                Step::Convert(m) => self.convert(*m),
                Step::WaitFile(path) => self.hold(None, Some(path)).map(|k| keep = k),
            };
        }
        if result.is_ok() && keep {
            match self.hold(args.hold, args.hold_file.as_deref()) {
                Ok(k) => keep = k,
                Err(code) => result = Err(code),
            }
        }
        if self.args.orphan && keep && result.is_ok() {
            return match self.guard.orphan() {
                Ok(()) => {
                    self.out.say("orphaned");
                    0
                }
                Err(guard) => {
                    self.out.say("error: the lock is not persistent");
                    self.guard = guard;
                    self.release(status::OTHER)
                }
            };
        }
        self.release(result.err().unwrap_or(0))
    }

    fn release(self, code: u8) -> u8 {
        self.out.say("unlocking");
        let guard = self.guard;
        match self.out.guarded("unlock", || guard.unlock()) {
            Ok(()) => {
                self.out.say("released");
                code
            }
            Err(e) => {
                let c = self.out.failed("unlock", &e);
                if code == 0 {
                    c
                } else {
                    code
                }
            }
        }
    }
}

fn run(args: &Args, out: &Events) -> u8 {
    let ls = match out.guarded("join", || Lockspace::join(&args.lockspace, 0o600)) {
        Ok(ls) => ls,
        Err(e) => {
            out.say(&format!("error: lockspace {}: {e}", args.lockspace));
            return status::LOCKSPACE;
        }
    };
    if let Some(node) = args.purge {
        return match out.guarded("purge", || ls.purge_orphans(node, args.pid)) {
            Ok(()) => {
                out.say(&format!("purged {node} {}", args.pid));
                0
            }
            Err(e) => out.failed("purge", &e),
        };
    }
    let resource = args.resource.as_deref().unwrap_or_default();
    let mut options = LockOptions::new();
    if args.lvb {
        options = options.lvb();
    }
    if args.notify {
        options = options.notify_blocking();
    }
    let guard = if args.adopt {
        match out.guarded("adopt", || ls.adopt_orphan(resource, args.mode, options)) {
            Ok(g) => {
                out.say(&format!("adopted {}", g.mode()));
                g
            }
            Err(e) => return out.failed("adopt", &e),
        }
    } else {
        if args.persistent {
            options = options.persistent();
        }
        if args.expedite {
            options = options.expedite();
        }
        if args.try_lock {
            options = options.no_wait();
        }
        if let Some(t) = args.timeout {
            options = options.timeout(t);
        }
        out.say(&format!("requesting {}", args.mode));
        match out.guarded("lock request", || {
            ls.lock_with(resource, args.mode, options)
        }) {
            Ok(g) => {
                out.say(&format!("granted {}", g.mode()));
                if args.lvb {
                    out.lvb(g.lvb());
                }
                g
            }
            Err(e) => return out.failed("lock", &e),
        }
    };
    Holder {
        args,
        out,
        guard,
        pending_lvb: args.set_lvb.clone(),
    }
    .run()
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(msg) if msg.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(msg) => {
            eprintln!("dlm-lock: {msg}\n\n{USAGE}");
            return ExitCode::from(status::USAGE);
        }
    };
    let out = Events {
        timestamps: args.timestamps,
        watchdog: args
            .timeout
            .map(|t| Watchdog::start(t + WATCHDOG_SLACK, args.timestamps)),
    };
    ExitCode::from(run(&args, &out))
}
