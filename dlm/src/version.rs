//! Versions of the kernel's DLM device protocol and of libdlm.

use crate::error::{Error, Result};
use std::fmt;

/// A `major.minor.patch` version of the DLM device protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version {
    /// Major version (6 on every current kernel).
    pub major: u32,
    /// Minor version.
    pub minor: u32,
    /// Patch level.
    pub patch: u32,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The device protocol version of the running kernel's DLM
/// (`dlm_kernel_version`).
///
/// # Errors
/// [`Error::NotAvailable`] when there is no DLM (no control device).
pub fn kernel_version() -> Result<Version> {
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    let _global = crate::handle::GLOBAL.lock();
    crate::error::set_errno(0);
    // SAFETY: the pointers are valid for writes of one u32 each; libdlm's
    // global state is serialised by GLOBAL.
    let rc = unsafe { dlm_sys::dlm_kernel_version(&mut major, &mut minor, &mut patch) };
    if rc != 0 {
        return Err(match Error::last("dlm_kernel_version") {
            Error::Os { source, .. } if source.raw_os_error() == Some(libc::ENOENT) => {
                Error::NotAvailable { code: libc::ENOENT }
            }
            e => e,
        });
    }
    Ok(Version {
        major,
        minor,
        patch,
    })
}

/// The device protocol version libdlm was built for (`dlm_library_version`).
pub fn library_version() -> Version {
    let (mut major, mut minor, mut patch) = (0, 0, 0);
    // SAFETY: the pointers are valid for writes of one u32 each; the call
    // only stores constants.
    unsafe { dlm_sys::dlm_library_version(&mut major, &mut minor, &mut patch) };
    Version {
        major,
        minor,
        patch,
    }
}
