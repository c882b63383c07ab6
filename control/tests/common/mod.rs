//! Shared by the tests that need the real kernel DLM and dlm_controld.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

/// Whether the kernel DLM is here (the test cluster, as root). Outside it
/// the caller skips, printing why; with `DLM_TEST_REQUIRE_CLUSTER=1` (set
/// by ci/test inside the cluster) a missing DLM fails the test instead.
pub fn cluster() -> bool {
    let dev = Path::new("/dev/misc/dlm-control").exists();
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if dev && root {
        return true;
    }
    let why = if dev {
        "not root"
    } else {
        "no /dev/misc/dlm-control"
    };
    if std::env::var_os("DLM_TEST_REQUIRE_CLUSTER").is_some_and(|v| v == "1") {
        panic!("DLM_TEST_REQUIRE_CLUSTER=1 but there is no DLM here: {why}");
    }
    eprintln!("skipping: no kernel DLM here ({why}); run the test with ci/vm");
    false
}

/// Skips the test (returns) outside the cluster.
#[macro_export]
macro_rules! require_cluster {
    () => {
        if !common::cluster() {
            return;
        }
    };
}

/// A lockspace name unique to this test and process.
pub fn ls_name(test: &str) -> String {
    let mut name = format!("{}_{}", test, std::process::id());
    name.truncate(60);
    name
}

/// Runs `dlm_tool ARGS`, the independent view; returns its stdout.
pub fn dlm_tool(args: &[&str]) -> String {
    let out = Command::new("dlm_tool")
        .args(args)
        .output()
        .expect("run dlm_tool");
    assert!(out.status.success(), "dlm_tool {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The words after `key` on the first line of `text` that starts with it.
pub fn field<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no line {key:?} in {text}"))
        .split_whitespace()
        .collect()
}
