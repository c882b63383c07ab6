//! `struct dlm_lksb` and the constants must match the C ABI libdlm was built
//! with (x86_64 and every other LP64 Linux target).

use dlm_sys::*;
use std::mem::{align_of, offset_of, size_of};

#[test]
fn lksb_layout_matches_c() {
    assert_eq!(offset_of!(dlm_lksb, sb_status), 0);
    assert_eq!(offset_of!(dlm_lksb, sb_lkid), 4);
    assert_eq!(offset_of!(dlm_lksb, sb_flags), 8);
    assert_eq!(offset_of!(dlm_lksb, sb_lvbptr), 8 + size_of::<usize>());
    assert_eq!(size_of::<dlm_lksb>(), 8 + 2 * size_of::<usize>());
    assert_eq!(align_of::<dlm_lksb>(), align_of::<usize>());
}

#[test]
fn constants_have_the_header_values() {
    assert_eq!(DLM_LVB_LEN, 32);
    assert_eq!(DLM_RESNAME_MAXLEN, 64);
    assert_eq!(DLM_LOCKSPACE_LEN, 64);
    assert_eq!(
        [LKM_NLMODE, LKM_CRMODE, LKM_CWMODE, LKM_PRMODE, LKM_PWMODE, LKM_EXMODE],
        [0, 1, 2, 3, 4, 5]
    );
    assert_eq!((LKF_NOQUEUE, LKF_CONVERT, LKF_VALBLK), (1, 4, 8));
    assert_eq!(
        (LKF_ORPHAN, LKF_ALTPR, LKF_ALTCW),
        (0x4000, 0x8000, 0x10000)
    );
    assert_eq!(LKF_WAIT, 0x8000_0000u32);
    assert_eq!(
        (DLM_SBF_DEMOTED, DLM_SBF_VALNOTVALID, DLM_SBF_ALTMODE),
        (1, 2, 4)
    );
    assert_eq!(DLM_LSFL_NEWEXCL, 8);
    assert_eq!((ECANCEL, EUNLOCK, EINPROG), (0x10001, 0x10002, 0x10003));
}

#[test]
fn library_version_is_plausible() {
    let (mut maj, mut min, mut patch) = (0u32, 0u32, 0u32);
    // SAFETY: the three pointers are valid for writes of one u32 each.
    unsafe { dlm_library_version(&mut maj, &mut min, &mut patch) };
    // libdlm 3.x and 4.x report their protocol version here (6.0.x).
    assert!(maj >= 6, "library version {maj}.{min}.{patch}");
}
