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

/// The lockspace device's result record (`linux/dlm_device.h`) as the
/// kernel writes it for a 64-bit process (`fs/dlm/user.c`,
/// `copy_result_to_user`); bindgen's own checks (computed by clang from
/// the header) are compiled into `dlm_sys::device`.
#[test]
#[cfg(target_pointer_width = "64")]
fn device_result_layout_matches_the_header() {
    use dlm_sys::device::*;
    assert_eq!(offset_of!(dlm_lock_result, version), 0);
    assert_eq!(offset_of!(dlm_lock_result, length), 12);
    assert_eq!(offset_of!(dlm_lock_result, user_astaddr), 16);
    assert_eq!(offset_of!(dlm_lock_result, user_astparam), 24);
    assert_eq!(offset_of!(dlm_lock_result, user_lksb), 32);
    assert_eq!(offset_of!(dlm_lock_result, lksb), 40);
    assert_eq!(offset_of!(dlm_lock_result, bast_mode), 64);
    assert_eq!(offset_of!(dlm_lock_result, lvb_offset), 68);
    assert_eq!(size_of::<dlm_lock_result>(), 72);
    // The header's dlm_lksb (linux/dlm.h) has libdlm.h's layout.
    assert_eq!(
        size_of::<dlm_sys::device::dlm_lksb>(),
        size_of::<dlm_sys::dlm_lksb>()
    );
    assert_eq!(
        offset_of!(dlm_sys::device::dlm_lksb, sb_flags),
        offset_of!(dlm_sys::dlm_lksb, sb_flags)
    );
    assert_eq!(size_of::<dlm_device_version>(), 12);
    assert_eq!((DLM_DEVICE_VERSION_MAJOR, DLM_DEVICE_VERSION_MINOR), (6, 0));
    assert_eq!(DLM_USER_LVB_LEN, dlm_sys::DLM_LVB_LEN);
}
