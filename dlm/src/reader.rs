//! The crate's own dispatch for poll mode: answers read straight from the
//! lockspace's descriptor, one `read(2)` each, and applied through the
//! same callbacks libdlm's thread calls.
//!
//! In poll mode the program owns the descriptor, so nothing else reads it:
//! instead of `dlm_dispatch` (which sets `O_NONBLOCK`, reads until
//! `EAGAIN` and restores the flags on every call: about six system calls
//! per answer) a handle keeps its descriptor non-blocking from its open on
//! and reads each `struct dlm_lock_result` (`linux/dlm_device.h`,
//! [`dlm_sys::device`]) itself. Each result is applied as libdlm's
//! `do_dlm_dispatch_v6` applies it — status (negated: the kernel's codes
//! are negative), lock id and flags into the status block the result
//! names, the value block from `result + lvb_offset` into the lock's
//! buffer — and then [`completion_ast`](crate::cell::completion_ast) or
//! [`blocking_ast`](crate::cell::blocking_ast)'s path runs with the
//! callback argument the result carries: one completion path for both
//! modes.
//!
//! What this reader does that libdlm's does not, and why:
//! - it checks every result before it applies it (the length the read
//!   returned, the protocol version, the value block's offset, that the
//!   callback is one of this crate's and the status block one of the two
//!   of the cell its argument names, see
//!   [`apply_result`](crate::cell::apply_result)): libdlm writes wherever
//!   the result points and calls whatever function it names;
//! - it hands the blocking notification's mode (`bast_mode`) to the
//!   notification ([`Blocking::mode`](crate::Blocking::mode)); libdlm's
//!   callback has no parameter for it;
//! - it leaves the status block alone at a blocking notification (libdlm
//!   copies the lock's last status into it again): the crate reads a
//!   status block only at a completion;
//! - it stores the lock id atomically, so that the writer of a new request,
//!   which reads the id right after its write, never races the store.
//!
//! A kernel whose device protocol is not 6.0.x (checked once per handle,
//! `dlm_kernel_version`) is read with `dlm_dispatch` instead.

use crate::error::{Error, Result};
use dlm_sys::device as dev;
use std::mem::{offset_of, size_of};

/// The length of a result record without its value block.
pub(crate) const RESULT_LEN: usize = size_of::<dev::dlm_lock_result>();
/// One read's buffer: a result and the value block that may follow it.
pub(crate) const BUF_LEN: usize = RESULT_LEN + dev::DLM_USER_LVB_LEN;

/// A read buffer, aligned for the result's pointers.
#[repr(C, align(8))]
pub(crate) struct Buf(pub(crate) [u8; BUF_LEN]);

impl Buf {
    pub(crate) const fn new() -> Buf {
        Buf([0; BUF_LEN])
    }
}

/// How a handle's answers are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// Device protocol 6.0.x: this module's reader.
    Direct,
    /// Any other: libdlm's `dlm_dispatch`.
    Libdlm,
}

impl Protocol {
    /// The reader for the running kernel's device protocol version.
    pub(crate) fn for_version(major: u32, minor: u32) -> Protocol {
        if major == dev::DLM_DEVICE_VERSION_MAJOR && minor == dev::DLM_DEVICE_VERSION_MINOR {
            Protocol::Direct
        } else {
            Protocol::Libdlm
        }
    }
}

/// Which callback a result asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The completion of a request, conversion, unlock or cancel.
    Completion {
        /// `sb_status` as libdlm gives it (positive).
        status: i32,
        /// `sb_lkid`.
        lkid: u32,
        /// `sb_flags`.
        flags: u8,
        /// The value block, when the kernel sent one.
        lvb: Option<[u8; dev::DLM_USER_LVB_LEN]>,
    },
    /// A blocking notification: another request waits for `mode` (raw
    /// `LKM_*`).
    Blocking { mode: u8 },
}

/// One result, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Parsed {
    /// The callback argument (`user_astparam`).
    pub(crate) arg: usize,
    /// The status block the kernel names (`user_lksb`).
    pub(crate) lksb: usize,
    pub(crate) kind: Kind,
}

/// Reads a native-endian `u32` at `at` (in range: checked by the caller).
fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

/// Reads a native-endian pointer-sized value at `at`.
fn usize_at(bytes: &[u8], at: usize) -> usize {
    const N: usize = size_of::<usize>();
    usize::from_ne_bytes(bytes[at..at + N].try_into().expect("a word"))
}

/// Checks and decodes the `bytes` one read returned. `completion` and
/// `blocking` are the addresses of the crate's two callbacks: a result
/// naming any other function is refused.
pub(crate) fn parse(bytes: &[u8], completion: usize, blocking: usize) -> Result<Parsed> {
    let bad = Error::BadAnswer;
    if bytes.len() < RESULT_LEN {
        return Err(bad("a result shorter than struct dlm_lock_result"));
    }
    let version = offset_of!(dev::dlm_lock_result, version);
    if u32_at(bytes, version) != dev::DLM_DEVICE_VERSION_MAJOR {
        return Err(bad("a result of an unknown device protocol version"));
    }
    let length = u32_at(bytes, offset_of!(dev::dlm_lock_result, length)) as usize;
    if length != bytes.len() {
        return Err(bad("a result whose length is not the length read"));
    }
    let lvb_offset = u32_at(bytes, offset_of!(dev::dlm_lock_result, lvb_offset)) as usize;
    let lvb = match lvb_offset {
        0 => None,
        at if at >= RESULT_LEN && at + dev::DLM_USER_LVB_LEN <= bytes.len() => Some(
            bytes[at..at + dev::DLM_USER_LVB_LEN]
                .try_into()
                .expect("the value block's length"),
        ),
        _ => return Err(bad("a value block offset outside the result")),
    };
    let astaddr = usize_at(bytes, offset_of!(dev::dlm_lock_result, user_astaddr));
    let arg = usize_at(bytes, offset_of!(dev::dlm_lock_result, user_astparam));
    let lksb = usize_at(bytes, offset_of!(dev::dlm_lock_result, user_lksb));
    if arg == 0 || lksb == 0 {
        return Err(bad("a result without callback argument or status block"));
    }
    let sb = offset_of!(dev::dlm_lock_result, lksb);
    let kind = if astaddr == completion {
        Kind::Completion {
            // The kernel's codes are negative; libdlm's statuses positive.
            status: (u32_at(bytes, sb + offset_of!(dev::dlm_lksb, sb_status)) as i32)
                .wrapping_neg(),
            lkid: u32_at(bytes, sb + offset_of!(dev::dlm_lksb, sb_lkid)),
            flags: bytes[sb + offset_of!(dev::dlm_lksb, sb_flags)],
            lvb,
        }
    } else if astaddr == blocking {
        Kind::Blocking {
            mode: bytes[offset_of!(dev::dlm_lock_result, bast_mode)],
        }
    } else {
        return Err(bad("a result naming a callback that is not this crate's"));
    };
    Ok(Parsed { arg, lksb, kind })
}

/// The addresses of the crate's two callbacks, as results name them.
pub(crate) fn callbacks() -> (usize, usize) {
    (
        crate::cell::completion_ast as unsafe extern "C" fn(*mut std::ffi::c_void) as usize,
        crate::cell::blocking_ast as unsafe extern "C" fn(*mut std::ffi::c_void) as usize,
    )
}

/// What one read of the descriptor gave.
#[derive(Debug)]
pub(crate) enum Read {
    /// A result was read and applied.
    Applied,
    /// Nothing to read (`EAGAIN`).
    Empty,
}

/// Reads one result from the non-blocking descriptor `fd` and applies it.
///
/// # Safety
/// `fd` is the descriptor of a poll-mode handle of this process whose
/// requests were all written by this crate (every callback argument a
/// result can carry names a live cell of it: see
/// [`completion_ast`](crate::cell::completion_ast)), and no other thread
/// reads it meanwhile.
pub(crate) unsafe fn read_one(fd: i32, buf: &mut Buf) -> Result<Read> {
    let n = loop {
        // SAFETY: a valid buffer of BUF_LEN bytes; `fd` is the handle's.
        let n = unsafe { libc::read(fd, buf.0.as_mut_ptr().cast(), BUF_LEN) };
        if n >= 0 {
            break n as usize;
        }
        match crate::error::errno() {
            libc::EINTR => continue,
            libc::EAGAIN => return Ok(Read::Empty),
            code => return Err(Error::from_errno("read", code)),
        }
    };
    let (completion, blocking) = callbacks();
    let parsed = match parse(&buf.0[..n], completion, blocking) {
        Ok(parsed) => parsed,
        Err(e) => {
            crate::stats::count(&crate::stats::BAD_ANSWERS);
            return Err(e);
        }
    };
    // the result came from this handle's descriptor, whose
    // requests were written by this crate with its callbacks and their
    // arguments (the caller's contract): `parsed.arg` names a live cell,
    // exactly as when libdlm's thread calls the callback with it.
    // SAFETY: parsed.arg names a live cell of this handle (the caller's contract).
    let applied = unsafe { crate::cell::apply_result(&parsed) };
    if applied.is_err() {
        crate::stats::count(&crate::stats::BAD_ANSWERS);
    }
    applied.map(|()| Read::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPLETION: usize = 0x1000;
    const BLOCKING: usize = 0x2000;

    /// The byte image of a result as the kernel writes it
    /// (`copy_result_to_user`), with a value block when `lvb` is given.
    fn image(astaddr: usize, status: i32, bast_mode: u8, lvb: Option<[u8; 32]>) -> Vec<u8> {
        let mut r = dev::dlm_lock_result {
            version: [
                dev::DLM_DEVICE_VERSION_MAJOR,
                dev::DLM_DEVICE_VERSION_MINOR,
                dev::DLM_DEVICE_VERSION_PATCH,
            ],
            length: RESULT_LEN as u32,
            user_astaddr: astaddr as *mut _,
            user_astparam: 0x5000 as *mut _,
            user_lksb: 0x6000 as *mut _,
            bast_mode,
            ..Default::default()
        };
        r.lksb.sb_status = status;
        r.lksb.sb_lkid = 0x0102_0304;
        r.lksb.sb_flags = 2;
        if lvb.is_some() {
            r.lvb_offset = RESULT_LEN as u32;
            r.length += 32;
        }
        // SAFETY: a plain C struct read as bytes (padding was zeroed by
        // Default and the field writes above keep it so).
        let bytes = unsafe {
            std::slice::from_raw_parts((&r as *const dev::dlm_lock_result).cast::<u8>(), RESULT_LEN)
        };
        let mut v = bytes.to_vec();
        if let Some(lvb) = lvb {
            v.extend_from_slice(&lvb);
        }
        v
    }

    fn set_u32(v: &mut [u8], at: usize, x: u32) {
        v[at..at + 4].copy_from_slice(&x.to_ne_bytes());
    }

    #[test]
    fn lengths_match_the_header() {
        assert_eq!(
            RESULT_LEN,
            if cfg!(target_pointer_width = "64") {
                72
            } else {
                56
            }
        );
        assert_eq!(BUF_LEN, RESULT_LEN + 32);
        // A read of this length would be taken for a version query.
        assert_ne!(BUF_LEN, size_of::<dev::dlm_device_version>());
    }

    #[test]
    fn a_grant_with_its_value_block() {
        let lvb = [7u8; 32];
        let v = image(COMPLETION, 0, 0, Some(lvb));
        assert_eq!(v.len(), BUF_LEN);
        let p = parse(&v, COMPLETION, BLOCKING).unwrap();
        assert_eq!(p.arg, 0x5000);
        assert_eq!(p.lksb, 0x6000);
        assert_eq!(
            p.kind,
            Kind::Completion {
                status: 0,
                lkid: 0x0102_0304,
                flags: 2,
                lvb: Some(lvb)
            }
        );
    }

    #[test]
    fn statuses_are_negated_and_an_offset_of_zero_is_no_value_block() {
        let v = image(COMPLETION, -dlm_sys::EUNLOCK, 0, None);
        assert_eq!(v.len(), RESULT_LEN);
        match parse(&v, COMPLETION, BLOCKING).unwrap().kind {
            Kind::Completion { status, lvb, .. } => {
                assert_eq!(status, dlm_sys::EUNLOCK);
                assert_eq!(lvb, None);
            }
            k => panic!("{k:?}"),
        }
        // The value block's bytes present but the offset 0: not taken.
        let mut v = image(COMPLETION, -libc::EAGAIN, 0, Some([1; 32]));
        set_u32(&mut v, offset_of!(dev::dlm_lock_result, lvb_offset), 0);
        match parse(&v, COMPLETION, BLOCKING).unwrap().kind {
            Kind::Completion { status, lvb, .. } => {
                assert_eq!(status, libc::EAGAIN);
                assert_eq!(lvb, None);
            }
            k => panic!("{k:?}"),
        }
    }

    #[test]
    fn a_blocking_notification_carries_its_mode() {
        let v = image(BLOCKING, 0, 5, None);
        assert_eq!(
            parse(&v, COMPLETION, BLOCKING).unwrap().kind,
            Kind::Blocking { mode: 5 }
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let ok = image(COMPLETION, 0, 0, Some([0; 32]));
        let refused = |v: &[u8]| matches!(parse(v, COMPLETION, BLOCKING), Err(Error::BadAnswer(_)));
        // Short reads: nothing, a part of the header, all but one byte.
        for n in [0, 1, 16, RESULT_LEN - 1] {
            assert!(refused(&ok[..n]), "{n}");
        }
        // A read shorter than the length the result claims.
        assert!(refused(&ok[..RESULT_LEN + 8]));
        // Unknown versions.
        for major in [0, 5, 7] {
            let mut v = ok.clone();
            set_u32(&mut v, 0, major);
            assert!(refused(&v), "{major}");
        }
        // Value block offsets out of range.
        for at in [
            1,
            RESULT_LEN - 1,
            RESULT_LEN + 1,
            BUF_LEN,
            u32::MAX as usize,
        ] {
            let mut v = ok.clone();
            set_u32(
                &mut v,
                offset_of!(dev::dlm_lock_result, lvb_offset),
                at as u32,
            );
            assert!(refused(&v), "{at}");
        }
        // A callback that is not the crate's, or none.
        for addr in [0, 0x3000] {
            assert!(refused(&image(addr, 0, 0, None)));
        }
        // No argument or no status block.
        for field in [
            offset_of!(dev::dlm_lock_result, user_astparam),
            offset_of!(dev::dlm_lock_result, user_lksb),
        ] {
            let mut v = ok.clone();
            v[field..field + size_of::<usize>()].fill(0);
            assert!(refused(&v));
        }
        assert!(!refused(&ok));
    }

    #[test]
    fn protocols() {
        assert_eq!(Protocol::for_version(6, 0), Protocol::Direct);
        assert_eq!(Protocol::for_version(5, 0), Protocol::Libdlm);
        assert_eq!(Protocol::for_version(6, 1), Protocol::Libdlm);
        assert_eq!(Protocol::for_version(7, 0), Protocol::Libdlm);
    }
}
