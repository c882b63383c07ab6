//! libdlm's default lockspace: a C program using `dlm_lock` on it
//! (`tests/c/default_ls.c`, compiled here with the system's C compiler)
//! and this crate's `Lockspace::default_lockspace` (threaded) and
//! `LockspaceBuilder::default_lockspace().poll_mode()` see each other's
//! locks.

mod common;

use dlm::{Error, Lockspace, LockspaceBuilder, Mode, Release, DEFAULT_LOCKSPACE};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Compiles the C program once per run; its path.
fn c_program() -> PathBuf {
    let src = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/c/default_ls.c");
    let out = std::env::temp_dir().join(format!("dlm_default_ls_{}", std::process::id()));
    let st = Command::new("cc")
        .args(["-O1", "-Wall", "-o"])
        .arg(&out)
        .arg(src)
        .arg("-ldlm")
        .status()
        .expect("run cc");
    assert!(st.success(), "cc {src} failed");
    out
}

/// `default_ls try RES`: "granted" or "busy".
fn c_try(prog: &PathBuf, res: &str) -> String {
    let out = Command::new(prog).args(["try", res]).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn c_programs_and_this_crate_share_the_default_lockspace() {
    require_cluster!();
    let prog = c_program();
    let ls = Lockspace::default_lockspace().unwrap();
    assert_eq!(ls.name(), DEFAULT_LOCKSPACE);

    // The crate holds EX: the C program's try is refused.
    let g = ls.lock("def1", Mode::Ex).unwrap();
    assert_eq!(c_try(&prog, "def1"), "busy");
    g.unlock().unwrap();
    assert_eq!(c_try(&prog, "def1"), "granted");

    // The C program holds EX: both kinds of the crate's handles see it.
    let poll = LockspaceBuilder::default_lockspace()
        .poll_mode()
        .join()
        .unwrap();
    let file = std::env::temp_dir().join(format!("dlm_default_release_{}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let mut child = Command::new(&prog)
        .args(["hold", "def2"])
        .arg(&file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "granted");
    assert!(matches!(
        ls.try_lock("def2", Mode::Pr),
        Err(Error::WouldBlock)
    ));
    assert!(matches!(
        poll.try_lock("def2", Mode::Cr),
        Err(Error::WouldBlock)
    ));
    std::fs::write(&file, b"").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "released");
    assert!(child.wait().unwrap().success());
    // Granted to the crate now; a blocking request from the poll-mode
    // handle, waiting for the threaded handle's lock, is granted when it goes.
    let g = ls.lock("def2", Mode::Ex).unwrap();
    assert_eq!(c_try(&prog, "def2"), "busy");
    let waiter = std::thread::spawn(move || {
        let t = Instant::now();
        let g = poll.lock("def2", Mode::Ex).unwrap();
        g.unlock().unwrap();
        (t.elapsed(), poll)
    });
    std::thread::sleep(Duration::from_millis(300));
    g.unlock().unwrap();
    let (waited, poll) = waiter.join().unwrap();
    assert!(waited >= Duration::from_millis(250), "{waited:?}");
    assert_eq!(c_try(&prog, "def2"), "granted");

    let _ = std::fs::remove_file(&file);
    let _ = std::fs::remove_file(&prog);
    drop((ls, poll));
    dlm::leave(DEFAULT_LOCKSPACE, Release::IfUnused).unwrap();
}
