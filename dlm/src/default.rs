//! libdlm's default lockspace, the lockspace named `"default"`.
//!
//! libdlm's man page begins with calls that name no lockspace:
//! `dlm_lock`, `dlm_unlock`, `dlm_lock_wait`, `dlm_unlock_wait`,
//! `dlm_get_fd`, `dlm_dispatch`, `dlm_pthread_init` and
//! `dlm_pthread_cleanup`. They act on the kernel lockspace `"default"`,
//! which libdlm opens on first use, or creates with device mode 0600 if it
//! does not exist (`dlm_open_lockspace`, else `dlm_create_lockspace`), and
//! keeps in one process-wide handle.
//!
//! This crate reaches the same kernel lockspace through a handle of its
//! own: [`Lockspace::default_lockspace`] opens or creates `"default"` in
//! exactly libdlm's way (threaded), and
//! [`LockspaceBuilder::default_lockspace`] gives a builder for the other
//! settings (poll mode). Locks are the kernel's, so a lock taken here and
//! one a C program takes with `dlm_lock` exclude each other like any two
//! holders (tested in the cluster with such a C program). Everything a
//! named handle offers works on it.
//!
//! libdlm's own default-lockspace calls are not wrapped:
//! - its handle is process-global state libdlm keeps without a lock
//!   (`default_ls`), opened lazily by whichever call comes first, and
//!   never closed: nothing could tell when its locks are gone;
//! - `dlm_pthread_init` starts one AST thread for it, and
//!   `dlm_pthread_cleanup` cancels that thread under every other user of
//!   the default lockspace in the process (a C library linked in, say);
//! - `dlm_lock_wait`/`dlm_unlock_wait` have the spurious-wake-up defect of
//!   every `_wait` call (see the crate docs).
//!
//! A handle of this crate has none of that: it is owned, closed on drop,
//! and the kernel keeps each handle's locks apart (closing one unlocks
//! only its own locks). A C library in the same process that uses libdlm's
//! default handle is another holder to this crate, as it would be in
//! another process.

#[cfg(not(feature = "lt"))]
use crate::error::Result;
use crate::lockspace::{Lockspace, LockspaceBuilder};

/// The name of libdlm's default lockspace (`DEFAULT_LOCKSPACE` in
/// libdlm's source).
pub const DEFAULT_LOCKSPACE: &str = "default";

impl Lockspace {
    /// libdlm's default lockspace (see the module docs of `default.rs`,
    /// repeated here): the lockspace `"default"` that `dlm_lock`,
    /// `dlm_unlock`, `dlm_get_fd` and `dlm_dispatch` act on, opened, or
    /// created with device mode 0600, as libdlm does on first use
    /// (`dlm_open_lockspace`, else `dlm_create_lockspace`), on a handle of
    /// this crate with libdlm's thread (`dlm_ls_pthread_init`).
    ///
    /// ```no_run
    /// let ls = dlm::Lockspace::default_lockspace()?;
    /// let _g = ls.lock("shared-with-a-c-program", dlm::Mode::Ex)?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`Lockspace::join`] (creating it needs `CAP_SYS_ADMIN`).
    #[cfg(not(feature = "lt"))]
    pub fn default_lockspace() -> Result<Lockspace> {
        Lockspace::join(DEFAULT_LOCKSPACE, 0o600)
    }
}

impl LockspaceBuilder {
    /// A builder for libdlm's default lockspace, `"default"` (device mode
    /// 0600 if a [`join`](LockspaceBuilder::join) creates it, as libdlm
    /// does); [`poll_mode`](LockspaceBuilder::poll_mode) gives the
    /// `dlm_get_fd`/`dlm_dispatch` way of libdlm's default calls.
    ///
    /// ```no_run
    /// let ls = dlm::LockspaceBuilder::default_lockspace().poll_mode().join()?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    pub fn default_lockspace() -> LockspaceBuilder {
        Lockspace::builder(DEFAULT_LOCKSPACE)
    }
}
