//! Validation of lockspace and resource names, before they reach libdlm.

use crate::error::{Error, Result};
use std::ffi::CString;

/// Longest lockspace name, in bytes (`DLM_LOCKSPACE_LEN`).
pub const MAX_LOCKSPACE_NAME: usize = dlm_sys::DLM_LOCKSPACE_LEN;
/// Longest resource name, in bytes (`DLM_RESNAME_MAXLEN`).
pub const MAX_RESOURCE_NAME: usize = dlm_sys::DLM_RESNAME_MAXLEN;

/// Lockspace names that name something else, or that dlm_controld cannot
/// serve: `plock` is the kernel's POSIX-lock device (`/dev/misc/dlm_plock`),
/// not a lockspace; `.` and `..` become sysfs and configfs paths
/// (`/sys/kernel/dlm/<name>`) that dlm_controld can never answer for, so
/// the kernel's create would sleep uninterruptibly for ever.
const RESERVED: [&str; 3] = ["plock", ".", ".."];

/// Checks a lockspace name: 1 to 64 bytes of printable ASCII (`!` to `~`:
/// the name becomes the device `/dev/misc/dlm_<name>`, the sysfs directory
/// `/sys/kernel/dlm/<name>`, a configfs directory and part of
/// dlm_controld's messages and the kernel log), no `/`, and none of
/// `plock`, `.`, `..`.
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
    if !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidName(
            "a lockspace name is printable ASCII without spaces or control characters",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(Error::InvalidName(
            "'plock', '.' and '..' cannot be lockspace names (the kernel's POSIX-lock device; paths dlm_controld cannot serve)",
        ));
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
        assert!(matches!(lockspace_name("a\0b"), Err(Error::InvalidName(_))));
        for bad in [
            ".",
            "..",
            "plock",
            "a b",
            "a\nb",
            "a\tb",
            "\u{7f}",
            "é",
            "a\u{1b}[31m",
        ] {
            assert!(
                matches!(lockspace_name(bad), Err(Error::InvalidName(_))),
                "{bad:?}"
            );
        }
        for good in ["...", "plock2", "my-app_1.0", "a:b@c", "PLOCK"] {
            assert!(lockspace_name(good).is_ok(), "{good:?}");
        }
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
