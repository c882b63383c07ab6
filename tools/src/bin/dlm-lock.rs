//! `dlm-lock`: take one cluster-wide DLM lock and report, one line per
//! event, what happens to it; purge orphans; show the DLM's versions. The
//! multi-node scenarios (`ci/scenarios/`) are written with it.
//!
//! ```text
//! dlm-lock [OPTIONS] RESOURCE [MODE]
//! dlm-lock [--lockspace NAME] --purge NODEID [PID]
//! dlm-lock versions [--json]
//! dlm-lock ls [-n] [--json] [LOCKSPACE]
//! dlm-lock status [--json]
//! dlm-lock watch [--json] [--interval MS] [--for SECONDS]
//! ```
//!
//! `dlm-lock --help` (or `man dlm-lock`) lists the events, the options
//! and the exit statuses.

use dlm::{Error, LockGuard, LockOptions, Lockspace, Lvb, Mode, Node, Owner};
use dlm_tools::control_cli;
use dlm_tools::events::{Event, Printer};
use dlm_tools::lock_cli::{self, status, LockArgs, LockCommand, OnBlocking, Step};
use dlm_tools::lockspace::open_or_create;
use dlm_tools::{generate, signals, usage};
use std::path::Path;
use std::process::ExitCode;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "dlm-lock";

/// How much longer than `--timeout` a DLM call may take before the
/// watchdog gives up on it: the crate's cancel grace, and some slack.
const WATCHDOG_SLACK: Duration = Duration::from_secs(15);

/// Prints events, and runs DLM calls under the watchdog.
struct Out {
    printer: Printer,
    watchdog: Option<Arc<Watchdog>>,
}

impl Out {
    fn say(&self, e: Event) {
        self.printer.say(&e);
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
            self.say(Event::Lvb {
                valid: lvb.valid,
                bytes: lvb.bytes.to_vec(),
            });
        }
    }

    /// Reports a failed request or conversion; returns the exit status.
    fn failed(&self, what: &str, e: &Error) -> u8 {
        let (event, code) = match e {
            Error::WouldBlock => (Event::WouldBlock, status::WOULD_BLOCK),
            Error::TimedOut => (Event::TimedOut, status::TIMED_OUT),
            Error::Deadlock => (Event::Deadlock, status::DEADLOCK),
            Error::Cancelled => (Event::Cancelled, status::DEADLOCK),
            Error::OrphanNotFound => (Event::NoOrphan, status::ORPHAN),
            Error::OrphanModeMismatch => (Event::OrphanModeMismatch, status::ORPHAN),
            e => (Event::Error(format!("{what}: {e}")), status::OTHER),
        };
        self.say(event);
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
    printer: Printer,
    /// The call in progress and its deadline.
    armed: Mutex<Option<(String, Instant)>>,
    cv: Condvar,
}

impl Watchdog {
    fn start(limit: Duration, printer: Printer) -> Arc<Watchdog> {
        let w = Arc::new(Watchdog {
            limit,
            printer,
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
                        self.printer.say(&Event::Error(format!(
                            "stuck: {what} has not returned after {:.1} s; giving up",
                            self.limit.as_secs_f64()
                        )));
                        // Not exit(): the main thread is inside libdlm and
                        // the kernel, atexit handlers must not run now.
                        // SAFETY: _exit ends the process at once; nothing
                        // after it runs.
                        unsafe { libc::_exit(status::STUCK.into()) };
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
    args: &'a LockArgs,
    steps: &'a [Step],
    out: &'a Out,
    guard: LockGuard,
    /// The `--lvb-write` value, until it has been given to the guard.
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
        // The kernel replaces a lock's flags with each conversion's:
        // a persistent lock stays so only if every conversion says so.
        if self.guard.is_persistent() {
            o = o.persistent();
        }
        o
    }

    /// Gives the `--lvb-write` value to the guard once it is held in PW/EX.
    fn apply_lvb(&mut self) -> Result<(), u8> {
        if !self.guard.mode().writes_lvb() {
            return Ok(());
        }
        if let Some(v) = self.pending_lvb.take() {
            if let Err(e) = self.guard.set_lvb(&v) {
                return Err(self.out.failed("set-lvb", &e));
            }
            let mut bytes = vec![0u8; dlm::LVB_LEN];
            bytes[..v.len()].copy_from_slice(&v);
            self.out.say(Event::SetLvb(bytes));
        }
        Ok(())
    }

    fn convert(&mut self, to: Mode) -> Result<(), u8> {
        let from = self.guard.mode();
        self.out.say(Event::Converting(to));
        let options = self.options();
        let guard = &mut self.guard;
        match self
            .out
            .guarded("convert", || guard.convert_with(to, options))
        {
            Ok(g) => {
                self.out.say(Event::Converted(g.mode));
                // Conversions from PW/EX (but PW -> EX) write the LVB; the
                // others read it.
                let reads = !(from.writes_lvb() && !(from == Mode::Pw && to == Mode::Ex));
                if self.args.uses_lvb() && reads {
                    self.out.lvb(self.guard.lvb());
                }
                self.apply_lvb()
            }
            Err(e) => Err(self.out.failed("convert", &e)),
        }
    }

    /// Holds the lock until `time` has passed, `file` exists or (with
    /// `until_signal`) an end signal came, whichever comes first,
    /// answering blocking notifications. `Ok(false)` when an
    /// `--on-blocking release` ended the hold (the lock is to be released).
    fn hold(
        &mut self,
        time: Option<Duration>,
        file: Option<&Path>,
        until_signal: bool,
    ) -> Result<bool, u8> {
        let deadline = time.map(|d| Instant::now() + d);
        if deadline.is_none() && file.is_none() && !until_signal {
            return Ok(true);
        }
        let tick = Duration::from_millis(50);
        loop {
            if deadline.is_some_and(|d| Instant::now() >= d) || file.is_some_and(|f| f.exists()) {
                return Ok(true);
            }
            if until_signal {
                if let Some(sig) = signals::caught() {
                    self.out.say(Event::Signal(signals::name(sig)));
                    return Ok(true);
                }
            }
            let notified = if self.args.notifies() {
                match self.guard.wait_blocking(Some(tick)) {
                    Ok(notification) => notification.is_some(),
                    Err(e) => return Err(self.out.failed("blocking notifications", &e)),
                }
            } else {
                std::thread::sleep(tick);
                false
            };
            if !notified {
                continue;
            }
            self.out.say(Event::Blocking);
            match self.args.on_blocking {
                None | Some(OnBlocking::Ignore) => {}
                Some(OnBlocking::Downconvert(m)) if self.guard.mode() > m => self.convert(m)?,
                Some(OnBlocking::Downconvert(_)) => {}
                Some(OnBlocking::Release) => return Ok(false),
            }
        }
    }

    /// Runs the steps and the hold, then releases or orphans.
    fn run(mut self) -> u8 {
        let mut result = self.apply_lvb();
        // `false` once a blocking notification asked for the release.
        let mut keep = true;
        let args = self.args;
        for step in self.steps {
            if result.is_err() || !keep {
                break;
            }
            result = match step {
                Step::Convert(m) => self.convert(*m),
                Step::WaitFile(path) => self.hold(None, Some(path), false).map(|k| keep = k),
            };
        }
        if result.is_ok() && keep {
            match self.hold(
                args.hold,
                args.hold_until_file.as_deref(),
                args.until_signal,
            ) {
                Ok(k) => keep = k,
                Err(code) => result = Err(code),
            }
        }
        if args.orphan && keep && result.is_ok() {
            // The owner the kernel recorded: the pid for --purge.
            let owner = self.guard.owner_tid();
            return match self.guard.orphan() {
                Ok(()) => {
                    self.out.say(Event::Orphaned(owner));
                    status::OK
                }
                Err(guard) => {
                    self.out
                        .say(Event::Error("the lock is not persistent".into()));
                    self.guard = guard;
                    self.release(status::OTHER)
                }
            };
        }
        self.release(result.err().unwrap_or(status::OK))
    }

    fn release(self, code: u8) -> u8 {
        self.out.say(Event::Unlocking);
        let guard = self.guard;
        match self.out.guarded("unlock", || guard.unlock()) {
            Ok(()) => {
                self.out.say(Event::Released);
                code
            }
            Err(e) => {
                let c = self.out.failed("unlock", &e);
                if code == status::OK {
                    c
                } else {
                    code
                }
            }
        }
    }
}

fn versions(json: bool) -> u8 {
    let kernel = dlm::kernel_version();
    let code = if kernel.is_ok() {
        status::OK
    } else {
        status::LOCKSPACE
    };
    Printer {
        timestamps: false,
        json,
    }
    .say(&Event::Versions {
        kernel: kernel.map(|v| v.to_string()).map_err(|e| e.to_string()),
        library: dlm::library_version().to_string(),
    });
    code
}

fn join(args: &LockArgs, out: &Out) -> Result<Lockspace, u8> {
    out.guarded("join", || open_or_create(&args.lockspace))
        .map_err(|e| {
            out.say(Event::Error(e.message));
            status::LOCKSPACE
        })
}

fn run(args: &LockArgs, steps: &[Step], out: &Out) -> u8 {
    let ls = match join(args, out) {
        Ok(ls) => ls,
        Err(code) => return code,
    };
    if let Some((node, pid)) = args.purge_target() {
        // The command line's zeros: this node, every owner.
        let target = if node == 0 {
            Node::This
        } else {
            Node::Id(node)
        };
        let owner = if pid == 0 {
            Owner::Any
        } else {
            Owner::Thread(pid)
        };
        return match out.guarded("purge", || ls.purge_orphans(target, owner)) {
            Ok(()) => {
                out.say(Event::Purged { node, pid });
                status::OK
            }
            Err(e) => out.failed("purge", &e),
        };
    }
    let resource = args.resource.as_deref().unwrap_or_default();
    let mode = args.lock_mode();
    let mut options = LockOptions::new();
    if args.uses_lvb() {
        options = options.lvb();
    }
    if args.notifies() {
        options = options.notify_blocking();
    }
    let guard = if args.adopt {
        match out.guarded("adopt", || ls.adopt_orphan(resource, mode, options)) {
            Ok(g) => {
                out.say(Event::Adopted(g.mode()));
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
        out.say(Event::Requesting(mode));
        match out.guarded("lock request", || ls.lock_with(resource, mode, options)) {
            Ok(g) => {
                out.say(Event::Granted(g.mode()));
                if args.uses_lvb() {
                    out.lvb(g.lvb());
                }
                g
            }
            Err(e) => return out.failed("lock", &e),
        }
    };
    if args.until_signal {
        // Caught from now on: the hold ends and the lock is released.
        // Before the grant an end signal simply ends the program, and the
        // kernel drops its request.
        signals::catch();
    }
    Holder {
        args,
        steps,
        out,
        guard,
        pending_lvb: args.lvb_write.clone().map(|v| v.0),
    }
    .run()
}

/// Prints the text of `dlm-lock ls`/`status`, or the error; the exit
/// status.
fn control(text: dlm_control::Result<String>) -> u8 {
    match text {
        Ok(t) => {
            print!("{t}");
            status::OK
        }
        Err(e) => {
            eprintln!("{NAME}: error: {e}");
            status::OTHER
        }
    }
}

/// `dlm-lock watch`: prints dlm_controld's changes until `duration` has
/// passed (or for ever); the exit status.
fn watch(json: bool, interval_ms: u64, duration: Option<Duration>) -> u8 {
    use std::io::Write;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    let fail = |e: dlm_control::Error| {
        eprintln!("{NAME}: error: {e}");
        status::OTHER
    };
    let mut w = match dlm_control::Watcher::new(Duration::from_millis(interval_ms.max(10))) {
        Ok(w) => w,
        Err(e) => return fail(e),
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    say(if json {
        format!("{{\"event\": \"watching\", \"time\": {:.6}}}", now())
    } else {
        "watching".into()
    });
    let end = duration.map(|d| Instant::now() + d);
    loop {
        let left = end.map(|e| e.saturating_duration_since(Instant::now()));
        if left.is_some_and(|l| l.is_zero()) {
            return status::OK;
        }
        let events = match w.next(left) {
            Ok(ev) => ev,
            Err(e) => return fail(e),
        };
        let now = now();
        for e in &events {
            say(if json {
                control_cli::event_json(e, now)
            } else {
                control_cli::event_text(e)
            });
        }
    }
}

fn main() -> ExitCode {
    let matches = usage::parse_env(lock_cli::command());
    if let Some(code) = generate::answer(&matches, lock_cli::command(), &lock_cli::EXTRA) {
        return ExitCode::from(code);
    }
    let parsed = match lock_cli::from_matches(&matches) {
        Ok(p) => p,
        Err(line) => return ExitCode::from(usage::report(NAME, &line)),
    };
    let args = &parsed.args;
    match &args.command {
        Some(LockCommand::Versions { json }) => return ExitCode::from(versions(*json)),
        Some(LockCommand::Ls { json, nodes, name }) => {
            return ExitCode::from(control(control_cli::gather(name.as_deref()).map(|e| {
                if *json {
                    control_cli::ls_json(&e) + "\n"
                } else {
                    control_cli::ls_text(&e, *nodes)
                }
            })))
        }
        Some(LockCommand::Watch {
            json,
            interval,
            duration,
        }) => return ExitCode::from(watch(*json, *interval, *duration)),
        Some(LockCommand::Status { json }) => {
            return ExitCode::from(control(control_cli::status(*json)))
        }
        None => {}
    }
    let printer = Printer {
        timestamps: args.timestamps,
        json: args.json,
    };
    let out = Out {
        printer,
        watchdog: args
            .timeout
            .map(|t| Watchdog::start(t + WATCHDOG_SLACK, printer)),
    };
    ExitCode::from(run(args, &parsed.steps, &out))
}
