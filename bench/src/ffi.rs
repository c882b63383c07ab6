//! The C contenders (`c/cbench.c`), compiled by `build.rs` and linked with
//! `-ldlm -lpthread`. Their timing loops run in C.

use std::ffi::{c_char, c_uint, c_void, CStr};
use std::ptr::NonNull;
use std::time::Duration;

/// A C timing function: `(handle, name, name length, n) -> nanoseconds`,
/// negative on failure.
pub type TimedFn = unsafe extern "C" fn(*mut c_void, *const c_char, c_uint, u32) -> i64;

extern "C" {
    fn cb_open(name: *const c_char) -> *mut c_void;
    fn cb_close(ls: *mut c_void);
    fn cb_heap_in_use() -> u64;
    fn cb_set_signal_locked(locked: i32);
    fn cb_context_switches(voluntary: *mut u64, involuntary: *mut u64);
    pub fn cb_lock_unlock_ast(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_lock_unlock_wait(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_convert_ast(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_convert_wait(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_trylock_ast(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_trylock_wait(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_handoff_ast(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_handoff_wait(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    fn cb_open_polled(name: *const c_char) -> *mut c_void;
    pub fn cb_pipelined_ast(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_pipelined_dispatch(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_lock_unlock_dispatch(
        ls: *mut c_void,
        name: *const c_char,
        len: c_uint,
        n: u32,
    ) -> i64;
    pub fn cb_lock_unlock_direct(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    pub fn cb_pipelined_direct(ls: *mut c_void, name: *const c_char, len: c_uint, n: u32) -> i64;
    fn cb_held_new(ls: *mut c_void, cap: u32) -> *mut c_void;
    fn cb_held_grow(held: *mut c_void, prefix: *const c_char, upto: u32) -> i64;
}

/// What a negative result of a C function means.
fn describe(rc: i64) -> String {
    if rc <= -1_000_000 {
        format!("unexpected completion status {}", -rc - 1_000_000)
    } else {
        format!("{}", std::io::Error::from_raw_os_error((-rc) as i32))
    }
}

/// The process's heap in use as glibc's `mallinfo2` counts it (every
/// arena, `uordblks + hblkhd`): Rust's allocations (the global allocator
/// is glibc's malloc) and C's alike.
pub fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads malloc's statistics.
    unsafe { cb_heap_in_use() }
}

/// Context switches of the whole process so far (`getrusage`):
/// voluntary, involuntary.
pub fn context_switches() -> (u64, u64) {
    let (mut v, mut i) = (0, 0);
    // SAFETY: two valid out-pointers.
    unsafe { cb_context_switches(&mut v, &mut i) };
    (v, i)
}

/// How the C AST functions wake their waiter: `false` (the default)
/// signals the condition variable after unlocking its mutex, `true` while
/// holding it (libdlm's own `sync_ast_routine` does so). Only between
/// timed calls.
pub fn set_signal_locked(locked: bool) {
    // SAFETY: sets a plain C global read by the AST functions; no C
    // request is in flight between timed calls.
    unsafe { cb_set_signal_locked(i32::from(locked)) }
}

/// A C lockspace handle (`dlm_open_lockspace` + `dlm_ls_pthread_init`):
/// its own fd and libdlm AST thread, closed on drop.
#[derive(Debug)]
pub struct CHandle(NonNull<c_void>);

impl CHandle {
    pub fn open(name: &CStr) -> Result<CHandle, String> {
        // SAFETY: name is a valid C string; no other thread uses libdlm's
        // global state now (the benchmark opens handles on its main thread
        // only, before any timing).
        let raw = unsafe { cb_open(name.as_ptr()) };
        NonNull::new(raw).map(CHandle).ok_or_else(|| {
            format!(
                "C: cannot open lockspace {name:?}: {}",
                std::io::Error::last_os_error()
            )
        })
    }

    /// A handle with no AST thread (libdlm's poll mode: `dlm_dispatch`).
    pub fn open_polled(name: &CStr) -> Result<CHandle, String> {
        // SAFETY: as in `open`.
        let raw = unsafe { cb_open_polled(name.as_ptr()) };
        NonNull::new(raw).map(CHandle).ok_or_else(|| {
            format!(
                "C: cannot open lockspace {name:?}: {}",
                std::io::Error::last_os_error()
            )
        })
    }

    /// Runs a C timing function: `n` operations on resource `name`.
    pub fn timed(&self, what: &str, f: TimedFn, name: &str, n: u32) -> Result<Duration, String> {
        // SAFETY: the handle is open (closed only on drop); the name
        // pointer and length describe a live buffer, which libdlm copies.
        let rc = unsafe {
            f(
                self.0.as_ptr(),
                name.as_ptr().cast(),
                name.len() as c_uint,
                n,
            )
        };
        if rc < 0 {
            return Err(format!("C {what}: {}", describe(rc)));
        }
        Ok(Duration::from_nanos(rc as u64))
    }
}

impl Drop for CHandle {
    fn drop(&mut self) {
        // SAFETY: the handle is open and not used again; no lock of it is
        // in flight (every C function waits for its completions).
        unsafe { cb_close(self.0.as_ptr()) }
    }
}

/// Locks held by C (their lksbs, in one array), as a C program keeps them.
/// Never freed: the kernel drops the locks when the process exits.
#[derive(Debug)]
pub struct CHeld {
    raw: NonNull<c_void>,
}

impl CHeld {
    /// Room for `cap` locks of lockspace `ls` (which must outlive them).
    pub fn new(ls: &CHandle, cap: u32) -> Result<CHeld, String> {
        // SAFETY: the handle is open; the structure keeps its pointer, and
        // the caller keeps the handle open for the rest of the process.
        let raw = unsafe { cb_held_new(ls.0.as_ptr(), cap) };
        NonNull::new(raw)
            .map(|raw| CHeld { raw })
            .ok_or_else(|| "C: out of memory".to_string())
    }

    /// Takes EX locks `<prefix><i>` until `upto` are held.
    pub fn grow(&mut self, prefix: &CStr, upto: u32) -> Result<(), String> {
        // SAFETY: `raw` came from cb_held_new; the prefix is a C string.
        let rc = unsafe { cb_held_grow(self.raw.as_ptr(), prefix.as_ptr(), upto) };
        if rc < 0 {
            return Err(format!("C: holding {upto} locks: {}", describe(rc)));
        }
        Ok(())
    }
}
