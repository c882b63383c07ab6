//! Dropping a future must cancel only its own request.
//!
//! Two defects of the async front-end, each checked from another handle or
//! another process:
//!
//! - A future dropped after its answer was delivered but before it was
//!   polled again must not write a cancel: the answer of a failed new
//!   request (here `EAGAIN` from a try) ends the lock, the kernel frees its
//!   id and gives it to the next new request of the lockspace (lowest free
//!   id, any process of the node), and the kernel's cancel looks the id up
//!   with no owner check and takes that lock over. The victim here is a
//!   request queued by another handle of this process, and one queued by
//!   another process.
//! - A fork child that drops its copy of a future in flight must not
//!   cancel the parent's request or conversion (the child shares the
//!   parent's lockspace descriptor), on a threaded handle and on a
//!   poll-mode one.
//!
//! Every wait is bounded: a victim that never completes fails its test in
//! seconds. The fork tests come first (the harness runs tests in name
//! order with `--test-threads=1`): a fork is best made from a process with
//! few threads.

mod common;

use common::can_take;

use dlm::{Error, Lockspace, Mode, Release};
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long a victim's request may take to be granted once its resource
/// is free (one node: milliseconds; UML is slow).
const VICTIM_PATIENCE: Duration = Duration::from_secs(3);

/// Rounds of each id-reuse scenario.
const ROUNDS: usize = 5;

/// The victim-process role of the cross-process test.
const VICTIM: &str = "DLM_TEST_CANCEL_VICTIM";

/// Polls `f` once with a waker that does nothing.
fn poll_once<F: Future + ?Sized>(f: Pin<&mut F>) -> Poll<F::Output> {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    f.poll(&mut cx)
}

/// Polls `f` every few milliseconds until it is ready, for at most
/// `limit`; on a poll-mode handle `ls`, dispatches its answers before each
/// poll.
fn drive_for<F: Future + ?Sized>(
    ls: &Lockspace,
    mut f: Pin<&mut F>,
    limit: Duration,
) -> Option<F::Output> {
    let start = Instant::now();
    loop {
        if ls.is_polled() {
            ls.dispatch().unwrap();
        }
        if let Poll::Ready(v) = poll_once(f.as_mut()) {
            return Some(v);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Checks from a fresh handle that no lock is left, and removes the
/// lockspace.
fn finish(name: &str) {
    if let Err(e) = dlm::leave(name, Release::IfUnused) {
        panic!("locks left behind in {name}: {e}");
    }
}

/// Waits for our child `pid` for at most `limit`; kills it (by its id)
/// if it is still running then. `Some(status)` if it ended by itself.
fn wait_child(pid: libc::pid_t, limit: Duration) -> Option<libc::c_int> {
    let start = Instant::now();
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child without blocking.
        let rc = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if rc == pid {
            return Some(status);
        }
        assert_eq!(rc, 0, "waitpid: {}", std::io::Error::last_os_error());
        if start.elapsed() >= limit {
            // SAFETY: our own child, by its id.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // SAFETY: reaps our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A try future on the held resource `r`, polled once by hand (its
/// request written), then left alone while its `EAGAIN` answer is
/// delivered into its cell: the future is not polled again. `None` if the
/// scenario could not be set up (every try was answered within its first
/// poll, which leaves nothing to drop).
///
/// On a poll-mode handle this is deterministic: the answer waits in the
/// kernel until `dispatch` reads it (and the kernel frees the lock id only
/// then). On a handle with libdlm's thread, the answer comes on that thread
/// about 200 ms later, unless it comes within the first poll already (then
/// the try is made again).
fn answered_but_unpolled_try(
    ls: &Lockspace,
) -> Option<Pin<Box<impl Future<Output = dlm::Result<dlm::LockGuard>> + '_>>> {
    for _ in 0..50 {
        let mut f = Box::pin(ls.try_lock_async("r", Mode::Ex));
        match poll_once(f.as_mut()) {
            Poll::Pending => {
                if ls.is_polled() {
                    // Reads the answer into the cell (nobody polls `f`).
                    let mut pfd = libc::pollfd {
                        fd: ls.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd.
                    let ready = unsafe { libc::poll(&mut pfd, 1, 5_000) };
                    assert_eq!(ready, 1, "the try's answer never came");
                    ls.dispatch().unwrap();
                }
                std::thread::sleep(Duration::from_millis(200));
                return Some(f);
            }
            // Answered within the first poll (libdlm's thread ran before
            // the poll returned): the future consumed its answer and will
            // not cancel. Try again.
            Poll::Ready(r) => {
                assert!(matches!(r, Err(Error::WouldBlock)), "{r:?}");
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    None
}

/// The handle the dropped future is made on: a handle of its own, with
/// libdlm's thread in the first rounds, in poll mode in the last two.
fn future_handle(name: &str, round: usize) -> Lockspace {
    if round + 2 >= ROUNDS {
        Lockspace::builder(name).poll_mode().open().unwrap()
    } else {
        Lockspace::open(name).unwrap()
    }
}

/// One round of the same-process scenario in its own lockspace.
fn same_process_round(round: usize) -> Result<(), String> {
    let name = common::ls_name(&format!("cxsame{round}"));
    let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let b = Lockspace::open(&name).unwrap();
    let c = Lockspace::open(&name).unwrap();
    let obs = Lockspace::open(&name).unwrap();
    // A holds "r" (the try fails), C holds "v" (the victim's request
    // queues); both taken before the try, so that the try's lock id is the
    // lowest free one once its answer is read.
    let held_r = a.lock("r", Mode::Ex).unwrap();
    let held_v = c.lock("v", Mode::Ex).unwrap();
    let d = future_handle(&name, round);
    let Some(f) = answered_but_unpolled_try(&d) else {
        eprintln!("round {round}: not exercised: every try was answered in its first poll");
        held_v.unlock().unwrap();
        held_r.unlock().unwrap();
        drop((a, b, c, d, obs));
        finish(&name);
        return Ok(());
    };
    // The victim: a new request of another handle, which takes the id the
    // failed try left free, queued behind C.
    let (tx, rx) = mpsc::channel();
    let victim_thread = {
        let b = b.clone();
        std::thread::spawn(move || {
            let _ = tx.send(b.lock("v", Mode::Ex));
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    if let Ok(early) = rx.try_recv() {
        return Err(format!("the victim did not queue: {early:?}"));
    }
    // The answered try future is dropped: it must write nothing.
    drop(f);
    std::thread::sleep(Duration::from_millis(100));
    held_v.unlock().unwrap();
    let victim = match rx.recv_timeout(VICTIM_PATIENCE) {
        Ok(Ok(g)) => g,
        Ok(Err(e)) => return Err(format!("the victim's request failed: {e:?}")),
        Err(_) => {
            return Err(format!(
                "the victim's request was not granted within {VICTIM_PATIENCE:?} \
                 of the resource's release"
            ))
        }
    };
    // Seen from another handle: the victim holds "v" in EX.
    if can_take(&obs, "v", Mode::Cr) {
        return Err(format!(
            "the victim's guard (lock {:#x}) holds nothing",
            victim.lkid()
        ));
    }
    eprintln!("round {round}: victim granted as lock {:#x}", victim.lkid());
    victim.unlock().unwrap();
    // Its handle's clone is dropped as the thread ends.
    victim_thread.join().unwrap();
    held_r.unlock().unwrap();
    if !can_take(&obs, "v", Mode::Ex) || !can_take(&obs, "r", Mode::Ex) {
        return Err("a lock is left held".into());
    }
    drop((a, b, c, d, obs));
    finish(&name);
    Ok(())
}

/// A try future dropped after its `EAGAIN` answer was delivered (and not
/// yet polled) must not cancel the request of another handle of this
/// process that took over its freed lock id.
#[test]
fn try_future_dropped_after_its_answer_spares_a_request_of_this_process() {
    require_cluster!();
    let failures: Vec<String> = (0..ROUNDS)
        .filter_map(|round| {
            same_process_round(round)
                .err()
                .map(|e| format!("round {round}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The victim process: queues an EX request on "v" (held by the test),
/// reports each step on standard output, releases the lock when granted.
fn victim_process(name: &str) -> ! {
    use std::io::Write;
    // Bounded even if nobody kills it.
    std::thread::spawn(|| {
        std::thread::sleep(Duration::from_secs(60));
        std::process::exit(9);
    });
    let ls = Lockspace::open(name).unwrap();
    let mut out = std::io::stdout();
    writeln!(out, "victim: requesting").unwrap();
    out.flush().unwrap();
    match ls.lock("v", Mode::Ex) {
        Ok(g) => {
            writeln!(out, "victim: granted {:#x}", g.lkid()).unwrap();
            out.flush().unwrap();
            g.unlock().unwrap();
            writeln!(out, "victim: released").unwrap();
            out.flush().unwrap();
            std::process::exit(0);
        }
        Err(e) => {
            writeln!(out, "victim: error: {e:?}").unwrap();
            out.flush().unwrap();
            std::process::exit(3);
        }
    }
}

/// One round of the cross-process scenario in its own lockspace.
fn other_process_round(round: usize) -> Result<(), String> {
    let name = common::ls_name(&format!("cxproc{round}"));
    let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let c = Lockspace::open(&name).unwrap();
    let obs = Lockspace::open(&name).unwrap();
    let held_r = a.lock("r", Mode::Ex).unwrap();
    let held_v = c.lock("v", Mode::Ex).unwrap();
    let d = future_handle(&name, round);
    let Some(f) = answered_but_unpolled_try(&d) else {
        eprintln!("round {round}: not exercised: every try was answered in its first poll");
        held_v.unlock().unwrap();
        held_r.unlock().unwrap();
        drop((a, c, d, obs));
        finish(&name);
        return Ok(());
    };
    // The victim process: its new request takes the freed id.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "try_future_dropped_after_its_answer_spares_a_request_of_another_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(VICTIM, &name)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lines
        .iter()
        .any(|l: &String| l.contains("victim: requesting"))
    {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => lines.push(l),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("the victim process never started: {lines:?}"));
            }
        }
    }
    // Its request written and queued behind C.
    std::thread::sleep(Duration::from_millis(400));
    drop(f);
    std::thread::sleep(Duration::from_millis(100));
    held_v.unlock().unwrap();
    // It must be granted, release and exit 0.
    let deadline = Instant::now() + VICTIM_PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // The reader thread ends at the child's end of file.
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut stderr);
    }
    let stderr_tail: String = {
        let l: Vec<&str> = stderr.lines().collect();
        l[l.len().saturating_sub(5)..].join(" | ")
    };
    use std::os::unix::process::ExitStatusExt;
    match status {
        None => {
            return Err(format!(
                "the victim process did not finish within {VICTIM_PATIENCE:?} of the \
                 resource's release (killed); its output: {lines:?}"
            ))
        }
        Some(s) if s.signal().is_some() => {
            return Err(format!(
                "the victim process was killed by signal {}; its output: {lines:?}; \
                 stderr: {stderr_tail}",
                s.signal().unwrap()
            ))
        }
        Some(s) if !s.success() => {
            return Err(format!(
                "the victim process exited with {s}; its output: {lines:?}; stderr: {stderr_tail}"
            ))
        }
        Some(_) => {}
    }
    if !lines.iter().any(|l| l.contains("victim: granted"))
        || !lines.iter().any(|l| l.contains("victim: released"))
    {
        return Err(format!("the victim process was not granted: {lines:?}"));
    }
    eprintln!("round {round}: victim process: {lines:?}");
    held_r.unlock().unwrap();
    if !can_take(&obs, "v", Mode::Ex) || !can_take(&obs, "r", Mode::Ex) {
        return Err("a lock is left held".into());
    }
    drop((a, c, d, obs));
    finish(&name);
    Ok(())
}

/// As above, with the victim in another process: it must be granted and
/// exit 0, not hang, fail or die.
#[test]
fn try_future_dropped_after_its_answer_spares_a_request_of_another_process() {
    if let Ok(name) = std::env::var(VICTIM) {
        victim_process(&name);
    }
    require_cluster!();
    let failures: Vec<String> = (0..ROUNDS)
        .filter_map(|round| {
            other_process_round(round)
                .err()
                .map(|e| format!("round {round}: {e}"))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {ROUNDS} rounds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Forks; the child runs `child` (which must not touch the DLM but for
/// what it is given) and `_exit`s with its status. Returns the child's
/// wait status, or `None` if it had to be killed.
fn fork_and(child: impl FnOnce() -> i32) -> Option<libc::c_int> {
    // SAFETY: the child only runs `child` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running the parent's atexit work.
        unsafe { libc::_exit(code) };
    }
    wait_child(pid, Duration::from_secs(10))
}

/// A fork test's child, after its drop: lives on for 200 ms, as a real
/// child would, before it `_exit`s. A drop that has a cancel written
/// elsewhere (the handle's worker: a thread the child's drop would start,
/// since a child has none of its parent's threads) gets the time to write
/// it. With the crate's two fork checks removed (the future's drop and
/// the worker's cancel), the four fork tests failed 1 time in 16 without
/// the wait (the child's `_exit` mostly won the race) and 4 in 4 with it
/// (`Cancelled`).
fn child_lingers() {
    std::thread::sleep(Duration::from_millis(200));
}

/// What the parent sees of the child's wait status: `Ok` if it exited 0.
fn child_ok(status: Option<libc::c_int>) -> Result<(), String> {
    match status {
        None => Err("the child did not exit within 10 s (killed)".into()),
        Some(s) if libc::WIFEXITED(s) && libc::WEXITSTATUS(s) == 0 => Ok(()),
        Some(s) => Err(format!("the child failed: wait status {s:#x}")),
    }
}

/// The handle a fork test's parent makes its request on: threaded, or in
/// poll mode (the test then dispatches its answers itself).
fn requester(name: &str, poll: bool) -> Lockspace {
    if poll {
        Lockspace::builder(name).poll_mode().open().unwrap()
    } else {
        Lockspace::open(name).unwrap()
    }
}

/// A fork child that drops its copy of a lock future in flight must not
/// cancel the parent's request: the parent's future is granted once the
/// holder releases.
#[test]
fn fork_child_dropping_a_lock_future_spares_the_parents_request() {
    fork_child_drops_a_lock_future("cxforkl", false);
}

/// The same on a poll-mode handle: the child shares the handle's
/// descriptor, which the parent reads itself (`dispatch`).
#[test]
fn fork_child_dropping_a_lock_future_spares_the_parents_request_poll_mode() {
    fork_child_drops_a_lock_future("cxforklp", true);
}

/// A fork child that drops its copy of a conversion future in flight must
/// not cancel the parent's conversion: the parent's conversion is granted
/// once the other holder releases, and its lock is never lost.
#[test]
fn fork_child_dropping_a_convert_future_spares_the_parents_conversion() {
    fork_child_drops_a_convert_future("cxforkc", false);
}

/// The same on a poll-mode handle.
#[test]
fn fork_child_dropping_a_convert_future_spares_the_parents_conversion_poll_mode() {
    fork_child_drops_a_convert_future("cxforkcp", true);
}

fn fork_child_drops_a_lock_future(test: &str, poll: bool) {
    require_cluster!();
    let name = common::ls_name(test);
    let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let b = requester(&name, poll);
    let obs = Lockspace::open(&name).unwrap();
    let holder = a.lock("r", Mode::Ex).unwrap();
    let mut f = Some(Box::pin(b.lock_async("r", Mode::Ex)));
    let polled = poll_once(f.as_mut().unwrap().as_mut());
    assert!(polled.is_pending(), "granted beside an EX: {polled:?}");
    // Queued: the observer cannot take even CR.
    std::thread::sleep(Duration::from_millis(200));
    // The child drops its copy of the future in flight (the parent's copy
    // stays: `take` acts on the child's memory only), and lives on a
    // moment before it exits.
    child_ok(fork_and(|| {
        drop(f.take());
        child_lingers();
        0
    }))
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut f = f.expect("the parent's future is its own");
    holder.unlock().unwrap();
    let granted = drive_for(&b, f.as_mut(), Duration::from_secs(10));
    drop(f);
    let guard = match granted {
        Some(Ok(g)) => g,
        Some(Err(e)) => panic!(
            "the parent's request failed after the child dropped its copy of the future: {e:?}"
        ),
        None => panic!(
            "the parent's request was not granted within 10 s of the holder's release \
             after the child dropped its copy of the future"
        ),
    };
    assert_eq!(guard.mode(), Mode::Ex);
    // Seen from another handle: the parent holds "r" in EX.
    assert!(
        !can_take(&obs, "r", Mode::Cr),
        "the parent's guard holds nothing"
    );
    let mut unlock = Box::pin(guard.unlock_async());
    drive_for(&b, unlock.as_mut(), Duration::from_secs(10))
        .expect("the unlock was not answered within 10 s")
        .unwrap();
    assert!(can_take(&obs, "r", Mode::Ex));
    drop((a, b, obs));
    finish(&name);
}

fn fork_child_drops_a_convert_future(test: &str, poll: bool) {
    require_cluster!();
    let name = common::ls_name(test);
    let a = Lockspace::create_exclusive(&name, 0o600).unwrap();
    let b = requester(&name, poll);
    let obs = Lockspace::open(&name).unwrap();
    let holder = a.lock("r", Mode::Pr).unwrap();
    let mut g = b.lock("r", Mode::Pr).unwrap();
    {
        let mut f = Some(Box::pin(g.convert_async(Mode::Ex)));
        let polled = poll_once(f.as_mut().unwrap().as_mut());
        assert!(polled.is_pending(), "EX granted beside a PR: {polled:?}");
        std::thread::sleep(Duration::from_millis(200));
        child_ok(fork_and(|| {
            drop(f.take());
            child_lingers();
            0
        }))
        .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        let mut f = f.expect("the parent's future is its own");
        holder.unlock().unwrap();
        let converted = drive_for(&b, f.as_mut(), Duration::from_secs(10));
        drop(f);
        match converted {
            Some(Ok(granted)) => assert_eq!(granted.mode, Mode::Ex),
            Some(Err(e)) => panic!(
                "the parent's conversion failed after the child dropped its copy of the \
                 future: {e:?}"
            ),
            None => panic!(
                "the parent's conversion was not granted within 10 s of the holder's \
                 release after the child dropped its copy of the future"
            ),
        }
    }
    assert_eq!(g.mode(), Mode::Ex);
    assert!(g.is_held());
    // Seen from another handle: the parent holds "r" in EX.
    assert!(!can_take(&obs, "r", Mode::Cr), "the parent holds no EX");
    g.unlock().unwrap();
    assert!(can_take(&obs, "r", Mode::Ex));
    drop((a, b, obs));
    finish(&name);
}
