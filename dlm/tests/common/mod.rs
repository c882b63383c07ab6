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

/// Removes the lockspace `name` once nothing holds a lock in it (releases
/// still under way in the background), failing the test if locks are
/// left after 15 s.
pub fn leave_when_unused(name: &str) {
    let t = std::time::Instant::now();
    while let Err(e) = dlm::leave(name, dlm::Release::IfUnused) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(15),
            "locks left behind in {name}: {e}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
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

/// Run first thing in a test that starts itself again with
/// [`spawn_force_release`]: in that child (the variable `var` names the
/// lockspace) releases the lockspace by force with libdlm's own calls and
/// exits (0 released; 2 not opened; 3 refused; 9 still waiting after
/// 30 s). In the test's own process it does nothing. The crate's `leave`
/// would be refused while the parent has the lockspace open: the refusal
/// is per process, so a second process is the way.
pub fn force_release_child(var: &str) {
    let Ok(name) = std::env::var(var) else {
        return;
    };
    std::thread::spawn(|| {
        std::thread::sleep(std::time::Duration::from_secs(30));
        std::process::exit(9);
    });
    let cname = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid C string; the handle is released once, not used after.
    let code = unsafe {
        let h = dlm_sys::dlm_open_lockspace(cname.as_ptr());
        if h.is_null() {
            2
        } else if dlm_sys::dlm_release_lockspace(cname.as_ptr(), h, 1) != 0 {
            3
        } else {
            0
        }
    };
    std::process::exit(code);
}

/// Starts this test binary again, running only `test`, as a process that
/// releases the lockspace `ls` by force ([`force_release_child`] with
/// `var`).
pub fn spawn_force_release(var: &str, test: &str, ls: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--test-threads=1"])
        .env(var, ls)
        .spawn()
        .unwrap()
}

/// Waits for `child` until `limit` after `start`; kills it and panics with
/// `what` past that. Its exit status.
pub fn wait_child(
    child: &mut std::process::Child,
    start: std::time::Instant,
    limit: std::time::Duration,
    what: &str,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
