//! TEMPORARY: time stamps of a cached lock's hand-over (DLM_TRACE=prefix).
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

static ON: AtomicU8 = AtomicU8::new(2);
static LIVE: AtomicU32 = AtomicU32::new(0);
static LOG: Mutex<Vec<(u64, u8, u32)>> = Mutex::new(Vec::new());
static START: OnceLock<Instant> = OnceLock::new();

fn on() -> bool {
    match ON.load(Ordering::Relaxed) {
        0 => false,
        1 => true,
        _ => {
            let v = std::env::var_os("DLM_TRACE").is_some();
            ON.store(u8::from(v), Ordering::Relaxed);
            START.get_or_init(Instant::now);
            v
        }
    }
}

pub(crate) fn ev(c: u8) {
    if !on() || LIVE.load(Ordering::Relaxed) == 0 {
        return;
    }
    let t = START.get_or_init(Instant::now).elapsed().as_nanos() as u64;
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() } as u32;
    LOG.lock().unwrap().push((t, c, tid));
}

pub(crate) fn open() {
    if on() {
        LIVE.fetch_add(1, Ordering::Relaxed);
        ev(b'X');
    }
}

pub(crate) fn close() {
    if !on() {
        return;
    }
    ev(b'Z');
    LIVE.fetch_sub(1, Ordering::Relaxed);
    let v = std::mem::take(&mut *LOG.lock().unwrap());
    let path = format!(
        "{}.{}",
        std::env::var("DLM_TRACE").unwrap(),
        std::process::id()
    );
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let mut s = String::new();
        for (t, c, tid) in v {
            s.push_str(&format!("{t} {} {tid}\n", c as char));
        }
        let _ = f.write_all(s.as_bytes());
    }
}
