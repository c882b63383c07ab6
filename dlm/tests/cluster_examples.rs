//! The example programs, run for real in the test cluster: their output
//! and exit statuses are what a user would see.

use dlm::Release;
use std::path::PathBuf;
use std::process::{Command, Output};

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

/// An example binary, built by `cargo test` (or `cargo build --examples`)
/// next to the test executables.
fn example(name: &str) -> Command {
    let mut dir: PathBuf = std::env::current_exe().unwrap();
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} missing: run `cargo build --examples`",
        path.display()
    );
    Command::new(path)
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    eprintln!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn quickstart_takes_ex_then_pr_and_leaves() {
    if !cluster() {
        return;
    }
    let out = run(&mut example("quickstart"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let steps = [
        "joined lockspace myapp",
        "opened lockspace myapp",
        "locked mylock1 in EX",
        "locked mylock1 in PR",
        "left lockspace myapp",
    ];
    let mut at = 0;
    for step in steps {
        let found = text[at..]
            .find(step)
            .unwrap_or_else(|| panic!("step {step:?} missing or out of order in:\n{text}"));
        at += found + step.len();
    }
    assert!(
        matches!(
            dlm::Lockspace::open("myapp"),
            Err(dlm::Error::LockspaceNotFound)
        ),
        "quickstart left myapp behind"
    );
}

#[test]
fn lvb_counter_counts_across_processes() {
    if !cluster() {
        return;
    }
    let ls = "countertest";
    // A keeper lock keeps the resource (and its LVB) alive between the
    // counter processes.
    let space = dlm::Lockspace::join(ls, 0o600).unwrap();
    let keeper = space.lock("counter", dlm::Mode::Nl).unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            example("lvb-counter")
                .args(["--lockspace", ls, "--increments", "20"])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let out = run(example("lvb-counter").args(["--lockspace", ls, "--read"]));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "counter 60 valid"
    );
    drop(keeper);
    drop(space);
    dlm::leave(ls, Release::IfUnused).unwrap();
}

#[test]
fn poll_loop_works_from_one_thread_with_another_process_contending() {
    if !cluster() {
        return;
    }
    let ls = "pollloop";
    let space = dlm::Lockspace::join(ls, 0o600).unwrap();
    // This process contends: it holds the resource when the program starts
    // and lets go after a moment, then keeps taking it between rounds.
    let g = space.lock("res", dlm::Mode::Ex).unwrap();
    let child = example("poll-loop")
        .args([ls, "res", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    g.unlock().unwrap();
    let mut contended = 0;
    let t = std::time::Instant::now();
    while t.elapsed() < std::time::Duration::from_millis(500) {
        if let Ok(g) = space.lock_with(
            "res",
            dlm::Mode::Ex,
            dlm::LockOptions::new().timeout(std::time::Duration::from_millis(50)),
        ) {
            contended += 1;
            std::thread::sleep(std::time::Duration::from_millis(2));
            g.unlock().unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("{text}\n(this process took the lock {contended} times meanwhile)");
    assert!(out.status.success(), "{text}");
    assert!(text.contains("round 20 done"), "{text}");
    assert!(
        text.contains("threads 1 after blocking calls"),
        "poll mode's blocking calls used another thread: {text}"
    );
    assert!(contended > 0);
    drop(space);
    dlm::leave(ls, Release::IfUnused).unwrap();
}

#[test]
fn async_quickstart_counts_to_200() {
    if !cluster() {
        return;
    }
    let out = run(&mut example("async-quickstart"));
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("counter 200 valid"), "{text}");
    assert!(
        matches!(
            dlm::Lockspace::open("async-quickstart"),
            Err(dlm::Error::LockspaceNotFound)
        ),
        "async-quickstart left its lockspace behind"
    );
}

/// Every example, as `cargo run --example NAME` runs it: no arguments.
const EXAMPLES: [&str; 6] = [
    "quickstart",
    "lvb-counter",
    "poll-loop",
    "async-quickstart",
    "timeout-race",
    "many-in-flight",
];

#[test]
fn every_example_prints_its_usage_only_for_help() {
    // No DLM needed: --help answers before anything is opened.
    for name in EXAMPLES {
        let out = run(example(name).arg("--help"));
        assert!(out.status.success(), "{name} --help: {:?}", out.status);
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        assert!(text.starts_with("usage: "), "{name} --help: {text}");
    }
}

#[test]
fn every_example_runs_without_arguments() {
    if !cluster() {
        return;
    }
    // What each one prints when it did its work.
    let expect: [(&str, &[&str]); 6] = [
        ("quickstart", &["left lockspace myapp"]),
        ("lvb-counter", &["counter "]),
        (
            "poll-loop",
            &["round 3 done", "threads 1 after blocking calls"],
        ),
        ("async-quickstart", &["counter 200 valid"]),
        (
            "timeout-race",
            &["holder: done granted=200", "racer: done granted="],
        ),
        (
            "many-in-flight",
            &["mastered 100", "in flight 100", "granted 100 in "],
        ),
    ];
    for (name, lines) in expect {
        let out = run(&mut example(name));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{name}: {:?}\n{text}", out.status);
        assert!(!text.to_lowercase().contains("usage"), "{name}: {text}");
        for l in lines {
            assert!(text.contains(l), "{name}: {l:?} missing from:\n{text}");
        }
    }
    for ls in ["lvb-counter", "poll-loop", "timeout-race", "many-in-flight"] {
        let _ = dlm::leave(ls, Release::IfUnused);
    }
}
