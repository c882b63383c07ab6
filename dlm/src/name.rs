//! Validation of lockspace and resource names, before they reach libdlm.

use crate::error::{Error, Result};
use std::ffi::CString;

/// Longest lockspace name, in bytes (`DLM_LOCKSPACE_LEN`).
pub const MAX_LOCKSPACE_NAME: usize = dlm_sys::DLM_LOCKSPACE_LEN;
/// Longest resource name, in bytes (`DLM_RESNAME_MAXLEN`).
pub const MAX_RESOURCE_NAME: usize = dlm_sys::DLM_RESNAME_MAXLEN;

/// Checks a lockspace name: 1 to 64 bytes, no NUL (libdlm passes it as a C
/// string) and no `/` (it becomes the device `/dev/misc/dlm_<name>`).
pub(crate) fn lockspace_name(name: &str) -> Result<CString> {
    if name.is_empty() {
        return Err(Error::InvalidName("a lockspace name cannot be empty"));
    }
    if name.len() > MAX_LOCKSPACE_NAME {
        return Err(Error::InvalidName("a lockspace name is at most 64 bytes"));
    }
    if name.contains('/') {
        return Err(Error::InvalidName("a lockspace name cannot contain '/'"));
    }
    CString::new(name).map_err(|_| Error::InvalidName("a lockspace name cannot contain NUL"))
}

/// Checks a resource name: 1 to 64 arbitrary bytes (they are not
/// NUL-terminated; NUL is an ordinary byte).
pub(crate) fn resource_name(name: &[u8]) -> Result<&[u8]> {
    if name.is_empty() {
        return Err(Error::InvalidName("a resource name cannot be empty"));
    }
    if name.len() > MAX_RESOURCE_NAME {
        return Err(Error::InvalidName("a resource name is at most 64 bytes"));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockspace_names() {
        assert!(lockspace_name("myapp").is_ok());
        assert!(lockspace_name(&"x".repeat(64)).is_ok());
        assert!(matches!(lockspace_name(""), Err(Error::InvalidName(_))));
        assert!(matches!(
            lockspace_name(&"x".repeat(65)),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(lockspace_name("a\0b"), Err(Error::InvalidName(m)) if m.contains("NUL")));
        assert!(matches!(lockspace_name("a/b"), Err(Error::InvalidName(_))));
    }

    #[test]
    fn resource_names() {
        assert!(resource_name(b"r").is_ok());
        assert!(
            resource_name(&[0u8, 255, 7]).is_ok(),
            "arbitrary bytes, NUL included"
        );
        assert!(resource_name(&[b'x'; 64]).is_ok());
        assert!(matches!(resource_name(b""), Err(Error::InvalidName(_))));
        assert!(matches!(
            resource_name(&[b'x'; 65]),
            Err(Error::InvalidName(_))
        ));
    }
}
