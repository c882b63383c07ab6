//! Lockspace names as libdlmcontrol takes them: C strings of 1..=64 bytes.

use crate::error::{Error, Result};
use dlmcontrol_sys::DLM_LOCKSPACE_LEN;

/// A checked lockspace name: NUL-terminated, at most
/// [`DLM_LOCKSPACE_LEN`] bytes before the NUL, which libdlmcontrol copies
/// with `strncpy` into its request (a longer name would be cut silently).
#[derive(Debug)]
pub(crate) struct CName([u8; DLM_LOCKSPACE_LEN + 1]);

impl CName {
    /// Checks `name` and copies it.
    pub(crate) fn new(name: &[u8]) -> Result<CName> {
        if name.is_empty() {
            return Err(Error::InvalidName("empty"));
        }
        if name.len() > DLM_LOCKSPACE_LEN {
            return Err(Error::InvalidName("longer than 64 bytes"));
        }
        if name.contains(&0) {
            return Err(Error::InvalidName("contains a NUL byte"));
        }
        let mut buf = [0u8; DLM_LOCKSPACE_LEN + 1];
        buf[..name.len()].copy_from_slice(name);
        Ok(CName(buf))
    }

    /// The pointer libdlmcontrol's `char *lsname` parameters take. They
    /// only read through it (`strncpy` into the request).
    pub(crate) fn as_mut_ptr(&mut self) -> *mut std::os::raw::c_char {
        self.0.as_mut_ptr().cast()
    }
}

/// Reads a NUL-terminated name out of a fixed C array (the daemon always
/// terminates it; a full array without NUL is read to its end).
pub(crate) fn from_c_array(raw: &[std::os::raw::c_char]) -> String {
    let bytes: Vec<u8> = raw
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(matches!(CName::new(b""), Err(Error::InvalidName(_))));
        assert!(matches!(
            CName::new(&[b'a'; 65]),
            Err(Error::InvalidName(_))
        ));
        assert!(matches!(CName::new(b"a\0b"), Err(Error::InvalidName(_))));
        assert!(CName::new(&[b'a'; 64]).is_ok());
        let mut n = CName::new(b"ls").unwrap();
        assert_eq!(n.0[..3], *b"ls\0");
        assert!(!n.as_mut_ptr().is_null());
    }

    #[test]
    fn names_are_read_to_the_nul() {
        let raw: Vec<std::os::raw::c_char> = b"abc\0def".iter().map(|&b| b as _).collect();
        assert_eq!(from_c_array(&raw), "abc");
        let full: Vec<std::os::raw::c_char> = b"abc".iter().map(|&b| b as _).collect();
        assert_eq!(from_c_array(&full), "abc");
    }
}
