//! How every libdlmcontrol query is called: `errno` cleared first and read
//! right after, so that the library's `-1` with `errno` (no connection) can
//! be told from the daemon's negated codes.

/// Runs the libdlmcontrol call `f` and returns its result with the `errno`
/// it left (0 if it set none).
pub(crate) fn call(f: impl FnOnce() -> i32) -> (i32, i32) {
    // SAFETY: __errno_location returns this thread's errno, valid for the
    // thread's life.
    unsafe { *libc::__errno_location() = 0 };
    let rv = f();
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    (rv, errno)
}
