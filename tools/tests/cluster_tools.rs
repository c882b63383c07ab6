//! dlm-flock and dlm-lock, the installed programs, run for real: in the
//! test cluster (`ci/vm`) against the kernel's DLM. What is checked is what
//! a user sees: exit statuses, output, and, with a second process or a
//! handle of this test, whether the lock is really held or free.
//!
//! Tests of usage errors and help need no DLM and run anywhere; the others
//! skip outside the cluster (and fail there with DLM_TEST_REQUIRE_CLUSTER=1).

use dlm::{LockOptions, Lockspace, Mode};
use std::io::{BufRead, BufReader};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// The lockspace of these tests.
const LS: &str = "toolstest";
const NOBODY: u32 = 65534;

fn cluster() -> bool {
    let dev = std::path::Path::new("/dev/misc/dlm-control").exists();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if dev && root {
        return true;
    }
    if std::env::var_os("DLM_TEST_REQUIRE_CLUSTER").is_some_and(|v| v == "1") {
        panic!("DLM_TEST_REQUIRE_CLUSTER=1 but there is no DLM here");
    }
    eprintln!("skipping: no kernel DLM here; run the test with ci/vm");
    false
}

fn flock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm-flock"))
}

fn lock() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm-lock"));
    c.args(["--lockspace", LS]);
    c
}

/// dlm-flock in the tests' lockspace.
fn flock_ls() -> Command {
    let mut c = flock();
    c.args(["--lockspace", LS]);
    c
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    eprintln!(
        "{:?} -> {:?}\n{}{}",
        cmd,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn code(cmd: &mut Command) -> i32 {
    run(cmd).status.code().unwrap_or(-1)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn space() -> Lockspace {
    Lockspace::join(LS, 0o600).unwrap()
}

/// Whether `res` can be had in EX at once by another holder (this test):
/// takes and releases it.
fn free(ls: &Lockspace, res: &str) -> bool {
    match ls.try_lock(res, Mode::Ex) {
        Ok(g) => {
            g.unlock().unwrap();
            true
        }
        Err(dlm::Error::WouldBlock) => false,
        Err(e) => panic!("try_lock {res}: {e}"),
    }
}

/// Waits up to 10 s for `res` to be free.
fn becomes_free(ls: &Lockspace, res: &str) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if free(ls, res) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A program running in the background, its output lines read as they
/// come.
struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                eprintln!("  | {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (10 s at most) for a line containing `text`; returns it.
    fn wait_line(&mut self, text: &str) -> String {
        if let Some(l) = self.seen.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(text) {
                        return l;
                    }
                }
                Err(_) => panic!("no line with {text:?}; saw {:?}", self.seen),
            }
        }
    }

    fn kill(&self, sig: libc::c_int) {
        // SAFETY: kill has no memory preconditions; the child is not
        // reaped yet.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, sig) }, 0);
    }

    /// Waits (20 s at most) for the end; returns the status and every
    /// line.
    fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let end = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if Instant::now() > end {
                let _ = self.child.kill();
                panic!("still running after 20 s; saw {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            self.seen.push(l);
        }
        eprintln!("  -> {status:?}");
        (status, self.seen)
    }
}

fn nobody(cmd: &mut Command) -> &mut Command {
    cmd.uid(NOBODY).gid(NOBODY).current_dir("/")
}

// ---------------------------------------------------------------- no DLM

#[test]
fn usage_errors_are_one_line_and_exit_64() {
    let flock_cases: &[&[&str]] = &[
        &[],
        &["res"],
        &["--bogus", "res", "true"],
        &["-w", "1e30", "res", "true"],
        &["-w", "-1", "res", "true"],
        &["-w", "NaN", "res", "true"],
        &["-w", "inf", "res", "true"],
        &["--lockspace", "a b", "res", "true"],
        &["--lockspace", "plock", "res", "true"],
        &["--lockspace", "a\u{1}b", "res", "true"],
        &["-u", "res", "true"],
        &["9"],
        &["-w", "", "res", "true"],
        &["-E", "256", "res", "true"],
        &["-E", "-3", "res", "true"],
        &["-E", "x", "res", "true"],
        &["--mode", "XX", "res", "true"],
        &["--lockspace", "a/b", "res", "true"],
        &["--lockspace", "..", "res", "true"],
        &["res", "-c", "echo", "extra"],
    ];
    for args in flock_cases {
        let out = run(flock().args(*args));
        assert_eq!(out.status.code(), Some(64), "dlm-flock {args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "dlm-flock {args:?}: {err}");
        assert!(err.starts_with("dlm-flock: ") && !err.contains("panicked"));
    }
    let long = "r".repeat(65);
    let out = run(flock().args([long.as_str(), "true"]));
    assert_eq!(out.status.code(), Some(64));
    let lock_cases: &[&[&str]] = &[
        &[],
        &["--bogus", "r"],
        &["r", "XX"],
        &["--mode", "PR", "r", "EX"],
        &["--hold", "1e30", "r"],
        &["--timeout", "-1", "r"],
        &["--hold", "1", "--until-signal", "r"],
        &["--orphan", "r"],
        &["--adopt", "--try", "r"],
        &["--lvb-write", "x", "r", "PR"],
        &["--lvb-write", "0x123", "r"],
        &["--on-blocking", "nope", "r"],
        &["--purge"],
        &["--purge", "x"],
        &["--purge", "1", "99999999999"],
        &["--purge", "1", "2", "r"],
        &["versions", "extra"],
        &["--generate", "man", "r"],
        &["--generate", "pdf"],
    ];
    for args in lock_cases {
        let out = run(lock().args(*args));
        assert_eq!(out.status.code(), Some(64), "dlm-lock {args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "dlm-lock {args:?}: {err}");
        assert!(err.starts_with("dlm-lock: ") && !err.contains("panicked"));
    }
    // The subcommands on dlm_controld's view.
    let long_ls = "l".repeat(65);
    let control_cases: &[&[&str]] = &[
        &["ls", long_ls.as_str()],
        &["ls", ""],
        &["ls", "a", "b"],
        &["ls", "--bogus"],
        &["status", "extra"],
        &["watch", "--interval", "x"],
        &["watch", "--for", "-1"],
        &["watch", "--for", "inf"],
        &["watch", "--for", "NaN"],
        &["watch", "--for", "1e30"],
    ];
    for args in control_cases {
        let out = run(Command::new(env!("CARGO_BIN_EXE_dlm-lock")).args(*args));
        assert_eq!(out.status.code(), Some(64), "dlm-lock {args:?}");
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "dlm-lock {args:?}: {err}");
        assert!(err.starts_with("dlm-lock: ") && !err.contains("panicked"));
    }
    // Lockspace names the library refuses are usage errors, not exit 6.
    for name in ["a b", "plock", "a\u{1}b", "\u{7f}"] {
        let out =
            run(Command::new(env!("CARGO_BIN_EXE_dlm-lock")).args(["--lockspace", name, "r"]));
        assert_eq!(out.status.code(), Some(64), "dlm-lock --lockspace {name:?}");
        assert!(stderr(&out).contains("lockspace name"), "{}", stderr(&out));
    }
}

#[test]
fn generate_prints_man_pages_and_completions() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // The bare programs: --generate takes no other argument.
    let bare_lock = || Command::new(env!("CARGO_BIN_EXE_dlm-lock"));
    for (cmd, name) in [
        (flock as fn() -> Command, "dlm-flock"),
        (bare_lock as fn() -> Command, "dlm-lock"),
    ] {
        for (kind, file) in [
            ("man", format!("man/{name}.1")),
            ("complete-bash", format!("completions/{name}.bash")),
            ("complete-zsh", format!("completions/_{name}")),
            ("complete-fish", format!("completions/{name}.fish")),
        ] {
            let out = cmd().args(["--generate", kind]).output().unwrap();
            assert!(out.status.success(), "{name} --generate {kind}");
            let committed = std::fs::read(dir.join(&file)).unwrap();
            assert!(
                out.stdout == committed,
                "{name} --generate {kind} differs from {file}"
            );
        }
    }
    // The completion of --on-blocking offers its values, not file names.
    let out = bare_lock()
        .args(["--generate", "complete-bash"])
        .output()
        .unwrap();
    let bash = String::from_utf8_lossy(&out.stdout);
    assert!(
        bash.contains("ignore release downconvert:NL"),
        "--on-blocking's values missing from the bash completion"
    );
}

#[test]
fn help_and_version() {
    for (cmd, name) in [(flock as fn() -> Command, "dlm-flock"), (lock, "dlm-lock")] {
        for h in ["-h", "--help"] {
            let out = run(cmd().arg(h));
            assert!(out.status.success());
            let text = stdout(&out);
            assert!(text.contains(&format!("Usage: {name}")), "{text}");
        }
        let long = stdout(&run(cmd().arg("--help")));
        assert!(long.contains("Examples:") && long.contains("Exit status:"));
        let out = run(cmd().arg("-V"));
        assert!(out.status.success());
        assert_eq!(
            stdout(&out).trim(),
            format!("{name} {}", env!("CARGO_PKG_VERSION"))
        );
    }
    let long = stdout(&run(flock().arg("--help")));
    assert!(long.contains("-o, --close") && long.contains("does nothing"));
    assert!(long.contains("[default: dlm-flock]"));
}

// ---------------------------------------------------------------- dlm-flock

#[test]
fn flock_runs_the_command_with_the_lock_held() {
    if !cluster() {
        return;
    }
    let ls = space();
    // The command's exit status comes back, with its output.
    assert_eq!(code(flock_ls().args(["f1", "sh", "-c", "exit 7"])), 7);
    let out = run(flock_ls().args(["f1", "printf", "%s|", "-n", "--", "hi"]));
    assert_eq!(stdout(&out), "-n|--|hi|");
    let out = run(flock_ls().args(["f1", "-c", "echo $((6 * 7)); exit 3"]));
    assert_eq!(
        (out.status.code(), stdout(&out).as_str()),
        (Some(3), "42\n")
    );
    // While the command runs, other processes are excluded (conflict
    // status 1, or -E's), shared requests too; other resources are free.
    let f = env!("CARGO_BIN_EXE_dlm-flock");
    let inner = format!(
        "{f} --lockspace {LS} -n f1 true; echo n=$?; \
         {f} --lockspace {LS} -n -E 42 f1 true; echo E=$?; \
         {f} --lockspace {LS} -w 0.3 f1 true; echo w=$?; \
         {f} --lockspace {LS} -w 0 f1 true; echo w0=$?; \
         {f} --lockspace {LS} -s -n f1 true; echo s=$?; \
         {f} --lockspace {LS} -n f1-other true; echo other=$?"
    );
    let out = run(flock_ls().args(["f1", "-c", &inner]));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["n=1", "E=42", "w=1", "w0=1", "s=1", "other=0"]
    );
    // Released when the command ends.
    assert!(free(&ls, "f1"));
    // Held while the command runs, seen from this process too.
    let mut r = Running::spawn(flock_ls().args(["f1", "sh", "-c", "echo in; sleep 0.5"]));
    r.wait_line("in");
    assert!(
        !free(&ls, "f1"),
        "dlm-flock's command runs but the lock is free"
    );
    let (st, _) = r.finish();
    assert!(st.success());
    assert!(free(&ls, "f1"));
}

#[test]
fn flock_conflicts_nonblock_timeout_and_exit_code() {
    if !cluster() {
        return;
    }
    let ls = space();
    let held = ls.lock("f2", Mode::Ex).unwrap();
    assert_eq!(code(flock_ls().args(["-n", "f2", "true"])), 1);
    assert_eq!(code(flock_ls().args(["--nb", "-E", "0", "f2", "true"])), 0);
    assert_eq!(
        code(flock_ls().args(["-n", "--conflict-exit-code", "200", "f2", "true"])),
        200
    );
    let t = Instant::now();
    let out = run(flock_ls().args(["-w", "0.4", "f2", "sh", "-c", "echo ran"]));
    let took = t.elapsed();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).is_empty() && stderr(&out).is_empty(),
        "-w is silent"
    );
    assert!(took >= Duration::from_millis(400), "{took:?}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(
        code(flock_ls().args(["--wait", "0.1", "-E", "9", "f2", "true"])),
        9
    );
    // A waiter without -n/-w gets the lock once it is released.
    let mut r = Running::spawn(flock_ls().args(["f2", "echo", "got it"]));
    std::thread::sleep(Duration::from_millis(300));
    held.unlock().unwrap();
    r.wait_line("got it");
    assert!(r.finish().0.success());
    assert!(free(&ls, "f2"));
}

#[test]
fn flock_modes() {
    if !cluster() {
        return;
    }
    let ls = space();
    let pr = ls.lock("f3", Mode::Pr).unwrap();
    for (args, want) in [
        (&["-s", "-n"][..], 0),
        (&["-n"], 1),
        (&["-x", "-n"], 1),
        (&["-e", "-n"], 1),
        (&["--mode", "CR", "-n"], 0),
        (&["--mode", "pr", "-n"], 0),
        (&["--mode", "PW", "-n"], 1),
        (&["--mode", "CW", "-n"], 1),
        (&["--mode", "NL", "-n"], 0),
        (&["-s", "-x", "-n"], 1),
        (&["-x", "-s", "-n"], 0),
    ] {
        assert_eq!(
            code(flock_ls().args(args).args(["f3", "true"])),
            want,
            "{args:?} vs PR"
        );
    }
    pr.unlock().unwrap();
    let cw = ls.lock("f3", Mode::Cw).unwrap();
    for (mode, want) in [
        ("CW", 0),
        ("CR", 0),
        ("NL", 0),
        ("PR", 1),
        ("PW", 1),
        ("EX", 1),
    ] {
        assert_eq!(
            code(flock_ls().args(["-n", "--mode", mode, "f3", "true"])),
            want,
            "{mode} vs CW"
        );
    }
    cw.unlock().unwrap();
    assert!(free(&ls, "f3"));
}

#[test]
fn flock_verbose_close_and_commands_that_cannot_run() {
    if !cluster() {
        return;
    }
    let ls = space();
    let out = run(flock_ls().args(["--verbose", "-o", "f4", "true"]));
    assert!(out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("dlm-flock: getting lock took ") && err.contains(" seconds"),
        "{err}"
    );
    assert!(err.contains("dlm-flock: executing true"), "{err}");
    assert!(run(flock_ls().args(["--close", "f4", "true"]))
        .status
        .success());
    let held = ls.lock("f4", Mode::Ex).unwrap();
    let out = run(flock_ls().args(["--verbose", "-n", "f4", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("failed to get lock"));
    let out = run(flock_ls().args(["--verbose", "-w", "0.1", "f4", "true"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("timeout while waiting to get lock"));
    held.unlock().unwrap();
    let out = run(flock_ls().args(["f4", "/nonexistent/cmd"]));
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr(&out).starts_with("dlm-flock: /nonexistent/cmd: "));
    // A directory cannot be executed.
    assert_eq!(code(flock_ls().args(["f4", "/tmp"])), 126);
    assert!(
        free(&ls, "f4"),
        "released after a command that could not run"
    );
    // The command does not inherit the lock's descriptor: a background
    // process it leaves behind does not keep the lock.
    let out = run(flock_ls().args(["f4", "-c", "sleep 3 >/dev/null 2>&1 & echo bg"]));
    assert!(out.status.success());
    assert!(
        free(&ls, "f4"),
        "a left-behind background process keeps the lock"
    );
}

#[test]
fn flock_forwards_end_signals_and_releases() {
    if !cluster() {
        return;
    }
    let ls = space();
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
    ] {
        let script = format!(
            "trap 'echo got {name}; exit 3' {name}; echo ready; while :; do sleep 0.05; done"
        );
        let mut r = Running::spawn(flock_ls().args(["f5", "sh", "-c", &script]));
        r.wait_line("ready");
        assert!(!free(&ls, "f5"));
        r.kill(sig);
        let (st, lines) = r.finish();
        assert_eq!(st.code(), Some(3), "{name}: the command's status");
        assert!(lines.contains(&format!("got {name}")), "{name}: {lines:?}");
        assert!(free(&ls, "f5"), "{name}: lock left held");
    }
    // A command killed by the forwarded signal: 128 + the signal.
    let mut r = Running::spawn(flock_ls().args(["f5", "sh", "-c", "echo ready; exec sleep 100"]));
    r.wait_line("ready");
    r.kill(libc::SIGTERM);
    assert_eq!(r.finish().0.code(), Some(128 + libc::SIGTERM));
    assert!(free(&ls, "f5"));
}

#[test]
fn flock_passes_a_signal_to_its_process_group_once() {
    if !cluster() {
        return;
    }
    let ls = space();
    let script = "trap 'echo got TERM; exit 3' TERM; echo ready; while :; do sleep 0.05; done";
    // dlm-flock started by a shell, as a supervisor runs a script in a
    // process group of its own and signals the group: the shell leads the
    // group, dlm-flock is a member.
    let outer = format!(
        "trap 'echo outer got TERM' TERM; '{}' --lockspace {LS} f9 sh -c \"{script}\"; echo flock-exit $?",
        env!("CARGO_BIN_EXE_dlm-flock")
    );
    let mut r = Running::spawn(Command::new("sh").args(["-c", &outer]).process_group(0));
    r.wait_line("ready");
    assert!(!free(&ls, "f9"));
    let pgid = r.child.id() as i32;
    // SAFETY: kill has no memory preconditions; the group's leader is not
    // reaped yet.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGTERM) }, 0);
    let (st, lines) = r.finish();
    assert!(st.success(), "{lines:?}");
    let got = lines.iter().filter(|l| *l == "got TERM").count();
    assert_eq!(got, 1, "the command's trap ran {got} times: {lines:?}");
    assert!(lines.contains(&"flock-exit 3".to_string()), "{lines:?}");
    assert!(free(&ls, "f9"), "lock left held");

    // dlm-flock leading its own group (a background job, a service): the
    // signal reaches dlm-flock alone, which passes it on once.
    let mut r = Running::spawn(flock_ls().args(["f9", "sh", "-c", script]).process_group(0));
    r.wait_line("ready");
    let pgid = r.child.id() as i32;
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(-pgid, libc::SIGTERM) }, 0);
    let (st, lines) = r.finish();
    assert_eq!(st.code(), Some(3), "{lines:?}");
    let got = lines.iter().filter(|l| *l == "got TERM").count();
    assert_eq!(got, 1, "the command's trap ran {got} times: {lines:?}");
    assert!(free(&ls, "f9"), "lock left held");
}

#[test]
fn flock_killed_while_waiting_leaves_no_request() {
    if !cluster() {
        return;
    }
    let ls = space();
    let marker = std::env::temp_dir().join(format!("dlm-flock-ran-{}", std::process::id()));
    let _ = std::fs::remove_file(&marker);
    for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGKILL] {
        let mut held = ls
            .lock_with("f6", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
        let touch = format!("touch {}", marker.display());
        let r = Running::spawn(flock_ls().args(["f6", "-c", &touch]));
        // The DLM tells the holder that dlm-flock's request waits.
        assert!(
            held.wait_blocking(Some(Duration::from_secs(10)))
                .unwrap()
                .is_some(),
            "no waiter"
        );
        r.kill(sig);
        let (st, _) = r.finish();
        assert_eq!(st.signal(), Some(sig), "dlm-flock ends by the signal");
        held.unlock().unwrap();
        // Nothing was left queued: the lock is free at once and stays so.
        assert!(free(&ls, "f6"), "signal {sig}: a request was left behind");
        std::thread::sleep(Duration::from_millis(200));
        assert!(free(&ls, "f6"));
        assert!(!marker.exists(), "the command ran without the lock");
    }
}

#[test]
fn flock_killed_holder_releases_and_stops_the_command() {
    if !cluster() {
        return;
    }
    let ls = space();
    let mut r = Running::spawn(flock_ls().args(["f7", "sh", "-c", "echo $$; exec sleep 100"]));
    let pid: i32 = r.wait_line("").trim().parse().unwrap();
    assert!(!free(&ls, "f7"));
    r.kill(libc::SIGKILL);
    assert_eq!(r.finish().0.signal(), Some(libc::SIGKILL));
    assert!(
        becomes_free(&ls, "f7"),
        "the kernel did not release the lock"
    );
    let end = Instant::now() + Duration::from_secs(10);
    while PathBuf::from(format!("/proc/{pid}")).exists() {
        // A zombie of init's is gone in all but name.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if stat.contains(") Z ") {
            break;
        }
        assert!(Instant::now() < end, "the command runs on without the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn flock_creates_lockspaces_and_names_the_privilege() {
    if !cluster() {
        return;
    }
    let name = "toolstest-flock-new";
    let out = run(flock().args(["--lockspace", name, "r", "true"]));
    assert!(out.status.success());
    assert!(
        Lockspace::open(name).is_ok(),
        "dlm-flock did not leave the lockspace"
    );
    // Without CAP_SYS_ADMIN a missing lockspace cannot be created...
    let out = run(nobody(&mut flock()).args(["--lockspace", "toolstest-nobody", "r", "true"]));
    assert_eq!(out.status.code(), Some(77));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("CAP_SYS_ADMIN") && err.contains("toolstest-nobody"),
        "{err}"
    );
    // ... and an existing one (device mode 0600) cannot be opened.
    let out = run(nobody(&mut flock()).args(["--lockspace", name, "r", "true"]));
    assert_eq!(out.status.code(), Some(77));
    assert!(stderr(&out).contains("permission"), "{}", stderr(&out));
    // The default lockspace.
    assert!(run(flock().args(["r", "true"])).status.success());
    assert!(Lockspace::open(dlm_tools::flock_cli::DEFAULT_LOCKSPACE).is_ok());
}

// ---------------------------------------------------------------- dlm-lock

#[test]
fn lock_reports_events_as_text_and_json() {
    if !cluster() {
        return;
    }
    let out = run(lock().arg("k1"));
    assert!(out.status.success());
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["requesting EX", "granted EX", "unlocking", "released"]
    );
    let out = run(lock().args(["-t", "k1", "pr"]));
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 4);
    for l in &lines {
        let (stamp, _) = l.split_once(' ').unwrap();
        let (s, us) = stamp.split_once('.').unwrap();
        assert!(s.parse::<u64>().is_ok() && us.len() == 6, "{l}");
    }
    assert!(lines[1].ends_with(" granted PR"));
    let out = run(lock().args(["--json", "k1", "--mode", "CW"]));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4);
    assert!(
        lines[1].starts_with(r#"{"event": "granted", "time": "#),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(r#""mode": "CW"}"#), "{}", lines[1]);
    assert!(lines[3].starts_with(r#"{"event": "released""#));
    let out = run(Command::new(env!("CARGO_BIN_EXE_dlm-lock")).arg("versions"));
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(
        text.starts_with("kernel 6.") && text.contains("\nlibrary "),
        "{text}"
    );
    let out = run(Command::new(env!("CARGO_BIN_EXE_dlm-lock")).args(["versions", "--json"]));
    assert!(out.status.success());
    assert!(stdout(&out).starts_with(r#"{"event": "versions""#));
    assert!(stdout(&out).contains(r#""kernel": "6."#));
}

#[test]
fn lock_try_timeout_and_their_exit_codes() {
    if !cluster() {
        return;
    }
    let ls = space();
    let held = ls.lock("k2", Mode::Ex).unwrap();
    let out = run(lock().args(["--try", "k2"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).lines().any(|l| l == "would-block"));
    let out = run(lock().args(["-n", "k2", "PR", "--json"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains(r#"{"event": "would-block""#));
    let t = Instant::now();
    let out = run(lock().args(["--timeout", "0.3", "k2"]));
    assert_eq!(out.status.code(), Some(3));
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(stdout(&out).lines().any(|l| l == "timed-out"));
    assert_eq!(code(lock().args(["--try", "k2", "NL"])), 0);
    held.unlock().unwrap();
    assert!(free(&ls, "k2"));
}

#[test]
fn lock_holds_for_a_time_or_until_a_signal() {
    if !cluster() {
        return;
    }
    let ls = space();
    let mut r = Running::spawn(lock().args(["--hold", "0.8", "k3"]));
    r.wait_line("granted EX");
    assert!(!free(&ls, "k3"), "--hold: not held");
    let (st, lines) = r.finish();
    assert!(st.success() && lines.ends_with(&["unlocking".into(), "released".into()]));
    assert!(free(&ls, "k3"));
    for (sig, name) in [
        (libc::SIGINT, "INT"),
        (libc::SIGTERM, "TERM"),
        (libc::SIGHUP, "HUP"),
    ] {
        let mut r = Running::spawn(lock().args(["--until-signal", "k3", "PW"]));
        r.wait_line("granted PW");
        std::thread::sleep(Duration::from_millis(200));
        assert!(!free(&ls, "k3"), "--until-signal: not held");
        r.kill(sig);
        let (st, lines) = r.finish();
        assert_eq!(st.code(), Some(0), "{name}");
        assert!(lines.contains(&format!("signal {name}")), "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some("released"));
        assert!(free(&ls, "k3"), "{name}: still held");
    }
    // --hold-until-file with --until-signal: whichever comes first.
    let file = std::env::temp_dir().join(format!("dlm-lock-hold-{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut r = Running::spawn(
        lock()
            .args(["--until-signal", "--hold-until-file"])
            .arg(&file)
            .arg("k3"),
    );
    r.wait_line("granted");
    std::fs::write(&file, "").unwrap();
    assert!(r.finish().0.success());
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn lock_killed_while_waiting_leaves_no_request() {
    if !cluster() {
        return;
    }
    let ls = space();
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        let mut held = ls
            .lock_with("k4", Mode::Ex, LockOptions::new().notify_blocking())
            .unwrap();
        let mut r = Running::spawn(lock().args(["--until-signal", "k4"]));
        r.wait_line("requesting EX");
        assert!(held
            .wait_blocking(Some(Duration::from_secs(10)))
            .unwrap()
            .is_some());
        r.kill(sig);
        assert_eq!(r.finish().0.signal(), Some(sig));
        held.unlock().unwrap();
        assert!(free(&ls, "k4"), "signal {sig}: a request was left behind");
    }
}

#[test]
fn lock_writes_and_reads_the_lvb() {
    if !cluster() {
        return;
    }
    let ls = space();
    // A keeper keeps the resource, and its value block, alive.
    let keeper = ls.lock("k5", Mode::Nl).unwrap();
    let out = run(lock().args(["k5", "EX", "--lvb-write", "hello"]));
    assert!(out.status.success());
    let mut want = b"hello".to_vec();
    want.resize(32, 0);
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        stdout(&out).lines().any(|l| l == format!("set-lvb {hex}")),
        "{}",
        stdout(&out)
    );
    let out = run(lock().args(["k5", "PR", "--lvb-read"]));
    assert!(
        stdout(&out)
            .lines()
            .any(|l| l == format!("lvb valid {hex}")),
        "{}",
        stdout(&out)
    );
    let out = run(lock().args(["k5", "PW", "--lvb-write", "0x00ff7f"]));
    assert!(out.status.success());
    let out = run(lock().args(["--json", "k5", "CR", "--lvb"]));
    let want = format!(r#""valid": true, "lvb": "00ff7f{}""#, "0".repeat(58));
    assert!(stdout(&out).contains(&want), "{}", stdout(&out));
    // --lvb-write implies --lvb-read: a writer reads its own value back
    // after publishing it (EX -> NL) and converting up again.
    let out = run(lock().args([
        "k5",
        "EX",
        "--lvb-write",
        "mine",
        "--convert",
        "NL",
        "--convert",
        "EX",
    ]));
    let mut want = b"mine".to_vec();
    want.resize(32, 0);
    let hex: String = want.iter().map(|b| format!("{b:02x}")).collect();
    let text = stdout(&out);
    let after = text.split("converted EX\n").nth(1).unwrap_or_default();
    assert!(after.starts_with(&format!("lvb valid {hex}\n")), "{text}");
    // Conversions: up with a read, down, and the steps' order.
    let out = run(lock().args([
        "k5",
        "NL",
        "--lvb-read",
        "--convert",
        "PR",
        "--convert",
        "NL",
    ]));
    assert!(out.status.success());
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines[0..2], ["requesting NL", "granted NL"]);
    assert!(
        lines.contains(&"converted PR".to_string()) && lines.contains(&"converted NL".to_string())
    );
    keeper.unlock().unwrap();
}

#[test]
fn lock_orphans_adoption_and_purge() {
    if !cluster() {
        return;
    }
    let ls = space();
    let out = run(lock().args(["--persistent", "--orphan", "k6"]));
    assert!(out.status.success());
    let line = stdout(&out).lines().last().unwrap().to_string();
    let pid: u32 = line.strip_prefix("orphaned ").unwrap().parse().unwrap();
    assert!(!free(&ls, "k6"), "the orphan is not held");
    let out = run(lock().args(["--adopt", "k6", "PR"]));
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).contains("orphan-mode-mismatch"));
    let out = run(lock().args(["--adopt", "k6", "EX"]));
    assert!(out.status.success());
    assert!(stdout(&out).starts_with("adopted EX\n") && stdout(&out).ends_with("released\n"));
    assert!(free(&ls, "k6"));
    let out = run(lock().args(["--adopt", "k6"]));
    assert_eq!(out.status.code(), Some(5));
    assert!(stdout(&out).contains("no-orphan"));
    // --purge NODEID PID removes the orphans of that owner only.
    let out = run(lock().args(["-p", "--orphan", "k6"]));
    let pid2: u32 = stdout(&out)
        .trim()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(pid, pid2);
    let out = run(lock().args(["--purge", "1", &pid.to_string()]));
    assert_eq!(
        (out.status.code(), stdout(&out)),
        (Some(0), format!("purged 1 {pid}\n"))
    );
    assert!(!free(&ls, "k6"), "another owner's orphan was purged");
    assert_eq!(code(lock().args(["--purge", "1", &pid2.to_string()])), 0);
    assert!(becomes_free(&ls, "k6"), "the orphan was not purged");
    // --purge NODEID: every owner of this node (0: this node).
    assert!(run(lock().args(["-p", "--orphan", "k6"])).status.success());
    assert!(run(lock().args(["-p", "--orphan", "k6b"])).status.success());
    let out = run(lock().args(["--json", "--purge", "0"]));
    assert!(stdout(&out).contains(r#""node": 0, "pid": 0"#));
    assert!(becomes_free(&ls, "k6") && becomes_free(&ls, "k6b"));
}

#[test]
fn lock_answers_blocking_notifications() {
    if !cluster() {
        return;
    }
    let ls = space();
    let mut r = Running::spawn(lock().args(["--on-blocking", "release", "--until-signal", "k7"]));
    r.wait_line("granted EX");
    // This request waits until dlm-lock, notified, releases.
    let g = ls
        .lock_with(
            "k7",
            Mode::Ex,
            LockOptions::new().timeout(Duration::from_secs(10)),
        )
        .unwrap();
    let (st, lines) = r.finish();
    assert!(st.success());
    assert!(
        lines.contains(&"blocking".into())
            && lines.ends_with(&["unlocking".into(), "released".into()])
    );
    g.unlock().unwrap();
    let mut r =
        Running::spawn(lock().args(["--on-blocking", "downconvert:PR", "--until-signal", "k7"]));
    r.wait_line("granted EX");
    let g = ls
        .lock_with(
            "k7",
            Mode::Pr,
            LockOptions::new().timeout(Duration::from_secs(10)),
        )
        .unwrap();
    r.wait_line("converted PR");
    assert!(!free(&ls, "k7"), "dlm-lock should still hold PR");
    g.unlock().unwrap();
    r.kill(libc::SIGTERM);
    assert!(r.finish().0.success());
    assert!(free(&ls, "k7"));
}

#[test]
fn lock_names_the_privilege() {
    if !cluster() {
        return;
    }
    let out = run(
        nobody(&mut Command::new(env!("CARGO_BIN_EXE_dlm-lock"))).args([
            "--lockspace",
            "toolstest-nobody2",
            "r",
        ]),
    );
    assert_eq!(out.status.code(), Some(6));
    assert!(stdout(&out).contains("CAP_SYS_ADMIN"), "{}", stdout(&out));
}

// ------------------------------------------- dlm-lock ls, status, watch

/// The lines of `text` that start with `key ` (spaces squeezed).
fn key_line(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with(&format!("{key} ")))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
}

fn dlm_tool(args: &[&str]) -> String {
    let out = run(Command::new("dlm_tool").args(args));
    assert!(out.status.success(), "dlm_tool {args:?}");
    stdout(&out)
}

fn bare_lock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm-lock"))
}

#[test]
fn ls_status_and_watch_agree_with_dlm_tool() {
    if !cluster() {
        return;
    }
    // The tests' lockspace exists while this handle is open.
    let _ls = space();

    // dlm-lock ls LS: dlm_tool ls LS's lines.
    let ours = run(bare_lock().args(["ls", LS]));
    assert!(ours.status.success());
    let ours = stdout(&ours);
    let tools = dlm_tool(&["ls", LS]);
    for key in ["name", "id", "flags", "change", "members"] {
        assert_eq!(
            key_line(&ours, key),
            key_line(&tools, key),
            "the {key} line"
        );
    }
    assert_eq!(key_line(&ours, "members").as_deref(), Some("members 1"));
    // Every lockspace without a name, LS among them.
    let all = stdout(&run(bare_lock().arg("ls")));
    assert!(all.contains(&format!("\nname          {LS}\n")), "{all}");
    // -n: the node line of dlm_tool ls -n, and a state word.
    let ours = stdout(&run(bare_lock().args(["ls", "-n", LS])));
    let tools = dlm_tool(&["ls", "-n", LS]);
    let node1 = key_line(&tools, "nodeid").expect("dlm_tool ls -n: a node line");
    assert!(node1.starts_with("nodeid 1 member 1 "), "{node1}");
    assert_eq!(
        key_line(&ours, "nodeid"),
        Some(format!("{node1} state joined"))
    );
    // --json: one line, the same members.
    let out = run(bare_lock().args(["ls", "--json", LS]));
    assert!(out.status.success());
    let json = stdout(&out);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(
        json.starts_with(&format!(r#"[{{"name": "{LS}", "id": "#)),
        "{json}"
    );
    assert!(json.contains(r#""changing": false"#), "{json}");
    assert!(
        json.contains(
            r#""members": [1], "nodes": [{"nodeid": 1, "state": "joined", "member": true,"#
        ),
        "{json}"
    );
    // A lockspace this node does not run: exit 7, one line.
    let out = run(bare_lock().args(["ls", "no-such-lockspace"]));
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(stderr(&out).lines().count(), 1);
    assert!(stdout(&out).is_empty());

    // dlm-lock status: dlm_tool status's lines (but the clock's).
    let not_now = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("daemon now"))
            .map(String::from)
            .collect()
    };
    let out = run(bare_lock().arg("status"));
    assert!(out.status.success());
    assert_eq!(not_now(&stdout(&out)), not_now(&dlm_tool(&["status"])));
    let out = run(bare_lock().args(["status", "--json"]));
    assert!(out.status.success());
    let json = stdout(&out);
    assert_eq!(json.lines().count(), 1, "{json}");
    assert!(
        json.starts_with(r#"{"our_nodeid": 1, "quorate": true,"#),
        "{json}"
    );
    assert!(json.contains(r#""members": [1]"#), "{json}");
    assert!(
        json.contains(r#"{"nodeid": 1, "state": "member", "member": true"#),
        "{json}"
    );

    // dlm-lock watch: "watching", then a lockspace that comes and goes.
    let name = format!("toolswatch{}", std::process::id());
    let mut w = Running::spawn(bare_lock().args(["watch", "--interval", "100", "--for", "30"]));
    w.wait_line("watching");
    let extra = Lockspace::join(&name, 0o600).unwrap();
    w.wait_line(&format!("lockspace-added {name}"));
    drop(extra);
    dlm::leave(&name, dlm::Release::IfUnused).unwrap();
    w.wait_line(&format!("lockspace-removed {name}"));
    w.kill(libc::SIGTERM);
    let _ = w.finish();
    let out = run(bare_lock().args(["watch", "--json", "--for", "0.3"]));
    assert!(out.status.success());
    let first = stdout(&out).lines().next().unwrap_or("").to_string();
    assert!(
        first.starts_with(r#"{"event": "watching", "time": "#),
        "{first}"
    );
}
