//! Shared by the tests that need the real kernel DLM.
#![allow(dead_code)]

use std::path::Path;

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

/// A lockspace name unique to this test and process.
pub fn ls_name(test: &str) -> String {
    let mut name = format!("{}_{}", test, std::process::id());
    name.truncate(60);
    name
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

/// Whether `ls` can take `name` in `mode` at once (and releases it): the
/// observer's view of what the other handles hold.
pub fn can_take(ls: &dlm::Lockspace, name: impl AsRef<[u8]>, mode: dlm::Mode) -> bool {
    let name = name.as_ref();
    match ls.try_lock(name, mode) {
        Ok(g) => {
            g.unlock().unwrap();
            true
        }
        Err(dlm::Error::WouldBlock) => false,
        Err(e) => panic!("try_lock {} {mode}: {e}", String::from_utf8_lossy(name)),
    }
}

/// A test's seed: the number in the environment variable `var` (to replay
/// a run), else one from the clock (never 0: the generator needs a bit).
pub fn seed(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

/// The number in the environment variable `var`, else `default`.
pub fn env_number<T: std::str::FromStr>(var: &str, default: T) -> T {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A small xorshift generator for seeded test schedules.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
