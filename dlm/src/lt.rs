//! The `lt` feature: the crate on libdlm_lt, the library without threads
//! (lvmlockd's and mdadm's choice), through dlm-sys's `lt` feature.
//!
//! libdlm_lt has no `dlm_ls_pthread_init`, so every handle is in poll mode:
//! the program reads the answers itself, with [`Lockspace::dispatch`] when
//! the descriptor is readable, or `dlm::tokio::drive`; blocking calls
//! dispatch while they wait. [`Lockspace::builder`] and
//! [`LockspaceBuilder::default_lockspace`](crate::LockspaceBuilder::default_lockspace)
//! then always give poll-mode handles.
//!
//! The calls that open a handle with libdlm's thread (`Lockspace::open`,
//! `create`, `create_exclusive`, `join`, and the free functions `join` and
//! `with_lockspace`) remain, with the same names, but every use is a
//! compile error that says so: their name parameter must implement
//! `NeedsLibdlmThread`, which nothing implements.
//! `Lockspace::default_lockspace`, which takes no name, carries the same
//! bound on `&()` instead.

#[cfg(feature = "lt")]
use crate::error::Result;
#[cfg(feature = "lt")]
use crate::lockspace::Lockspace;
use std::ptr::NonNull;

/// Starts libdlm's AST thread for a handle just opened
/// (`dlm_ls_pthread_init`); returns `pthread_create`'s error code (0 on
/// success).
pub(crate) fn start_ast_thread(handle: NonNull<std::ffi::c_void>) -> i32 {
    #[cfg(not(feature = "lt"))]
    {
        // SAFETY: `handle` is the open handle just returned by libdlm, with
        // no thread yet; one AST thread per handle.
        unsafe { dlm_sys::dlm_ls_pthread_init(handle.as_ptr()) }
    }
    #[cfg(feature = "lt")]
    {
        let _ = handle;
        unreachable!("with libdlm_lt every handle is opened in poll mode")
    }
}

#[cfg(feature = "lt")]
mod sealed {
    /// Implemented by nothing: see [`super::NeedsLibdlmThread`].
    pub trait Sealed {}
}

/// The mark of a call that needs libdlm's thread, which libdlm_lt (the
/// `lt` feature) does not have. Nothing implements it, so calling such a
/// function does not compile; the compiler's message says what to do.
#[cfg(feature = "lt")]
#[diagnostic::on_unimplemented(
    message = "this call needs libdlm's thread (dlm_ls_pthread_init), and the `lt` feature builds on libdlm_lt, which has none",
    label = "not available with the `lt` feature: poll mode only",
    note = "open the lockspace with `Lockspace::builder(name)` and `.open()`, `.create()` or `.join()` (poll mode with `lt`), and read its answers with `Lockspace::dispatch` or `dlm::tokio::drive`"
)]
pub trait NeedsLibdlmThread: sealed::Sealed {}

#[cfg(feature = "lt")]
impl Lockspace {
    /// Not with the `lt` feature (a compile error): needs libdlm's thread.
    /// Use `Lockspace::builder(name).permissions(mode).create()`.
    ///
    /// # Errors
    /// Never returns.
    pub fn create<N: ?Sized + NeedsLibdlmThread>(_name: &N, _mode: u32) -> Result<Lockspace> {
        unreachable!("NeedsLibdlmThread has no implementation")
    }

    /// Not with the `lt` feature (a compile error): needs libdlm's thread.
    /// Use `Lockspace::builder(name).permissions(mode).create_exclusive()`.
    ///
    /// # Errors
    /// Never returns.
    pub fn create_exclusive<N: ?Sized + NeedsLibdlmThread>(
        _name: &N,
        _mode: u32,
    ) -> Result<Lockspace> {
        unreachable!("NeedsLibdlmThread has no implementation")
    }

    /// Not with the `lt` feature (a compile error): needs libdlm's thread.
    /// Use `Lockspace::builder(name).open()`.
    ///
    /// # Errors
    /// Never returns.
    pub fn open<N: ?Sized + NeedsLibdlmThread>(_name: &N) -> Result<Lockspace> {
        unreachable!("NeedsLibdlmThread has no implementation")
    }

    /// Not with the `lt` feature (a compile error): needs libdlm's thread.
    /// Use `Lockspace::builder(name).permissions(mode).join()`.
    ///
    /// # Errors
    /// Never returns.
    pub fn join<N: ?Sized + NeedsLibdlmThread>(_name: &N, _mode: u32) -> Result<Lockspace> {
        unreachable!("NeedsLibdlmThread has no implementation")
    }

    /// Not with the `lt` feature (a compile error): needs libdlm's thread.
    /// Use `LockspaceBuilder::default_lockspace().join()` (poll mode).
    ///
    /// # Errors
    /// Never returns.
    // The bound names a lifetime, so the compiler checks it where the
    // function is called (with the trait's message), not here.
    pub fn default_lockspace() -> Result<Lockspace>
    where
        for<'a> &'a (): NeedsLibdlmThread,
    {
        unreachable!("NeedsLibdlmThread has no implementation")
    }
}

/// Not with the `lt` feature (a compile error): needs libdlm's thread. Use
/// `Lockspace::builder(name).permissions(mode).join()`.
///
/// # Errors
/// Never returns.
#[cfg(feature = "lt")]
pub fn join<N: ?Sized + NeedsLibdlmThread>(_name: &N, _mode: u32) -> Result<Lockspace> {
    unreachable!("NeedsLibdlmThread has no implementation")
}

/// Not with the `lt` feature (a compile error): needs libdlm's thread.
/// Join with `Lockspace::builder(name).join()` and release it yourself.
///
/// # Errors
/// Never returns.
#[cfg(feature = "lt")]
pub fn with_lockspace<T, N: ?Sized + NeedsLibdlmThread>(
    _name: &N,
    _f: impl FnOnce(&Lockspace) -> T,
) -> Result<T> {
    unreachable!("NeedsLibdlmThread has no implementation")
}
