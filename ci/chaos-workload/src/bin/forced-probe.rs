//! forced-probe LOCKSPACE RESOURCE: what a handle sees when another
//! process of its node releases the lockspace with force (issue 15,
//! defect 3), for ci/scenarios/11-forced-release.sh.
//!
//! Joins LOCKSPACE, takes RESOURCE in EX (with blocking notifications)
//! and prints `granted EX`. Then, every millisecond, looks at the guard;
//! once it no longer says it is held it prints `lost UNIX_TIME alive
//! BOOL` and tries the lock again on the same handle (blocking with a
//! 3 s timeout, as a try, and as a future), printing `relock KIND
//! RESULT` for each. Exits 0 after that, 3 if the loss was not seen
//! within 120 s. Every line is printed as soon as it is known.

use dlm::{LockOptions, Lockspace, Mode};
use std::io::Write;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 3 {
        eprintln!("usage: forced-probe LOCKSPACE RESOURCE");
        std::process::exit(64);
    }
    let ls = Lockspace::join(&args[1], 0o600).expect("join");
    let res = args[2].as_str();
    let mut g = ls
        .lock_with(res, Mode::Ex, LockOptions::new().notify_blocking())
        .expect("lock");
    say("granted EX");
    let start = Instant::now();
    while g.is_held() {
        if start.elapsed() > Duration::from_secs(120) {
            say("still held after 120 s");
            std::process::exit(3);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    say(&format!(
        "lost {:.3} alive {}",
        now.as_secs_f64(),
        ls.is_alive()
    ));
    // The guard's own notification channel hears of the loss too.
    let heard = g.wait_blocking(Some(Duration::from_millis(100)));
    say(&format!("blocking {heard:?}"));
    let timed = ls.lock_with(
        res,
        Mode::Ex,
        LockOptions::new().timeout(Duration::from_secs(3)),
    );
    say(&format!(
        "relock timed {:?}",
        timed.as_ref().map(|g| g.is_held())
    ));
    let tried = ls.try_lock(res, Mode::Ex);
    say(&format!(
        "relock try {:?}",
        tried.as_ref().map(|g| g.is_held())
    ));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let fut = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), ls.lock_async(res, Mode::Ex)).await
    });
    match fut {
        Ok(r) => say(&format!(
            "relock async {:?}",
            r.as_ref().map(|g| g.is_held())
        )),
        Err(_) => say("relock async pending after 3 s"),
    }
    drop((timed, tried, g));
    drop(ls);
}
