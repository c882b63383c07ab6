//! Request flags, and the rules the kernel enforces on their combinations,
//! checked here before any call reaches libdlm.

use crate::error::{Error, Result};
use crate::mode::Mode;
use dlm_sys as sys;
use std::fmt;
use std::ops::{BitOr, BitOrAssign};

/// A set of `LKF_*` request flags a caller may choose.
///
/// The flags this crate sets itself are not here: `LKF_CONVERT` (used by
/// [`LockGuard::convert`](crate::LockGuard::convert)), `LKF_CANCEL` (used
/// for timeouts), `LKF_ORPHAN` (used by
/// [`Lockspace::adopt_orphan`](crate::Lockspace::adopt_orphan)),
/// `LKF_IVVALBLK` (used by
/// [`LockGuard::invalidate_lvb`](crate::LockGuard::invalidate_lvb)).
/// `LKF_TIMEOUT` is gone from current kernels (timeouts are done by this
/// crate), `LKF_NODLCKBLK` is not implemented by the kernel and
/// `LKF_FORCEUNLOCK` is for the kernel's internal use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct LockFlags(u32);

impl LockFlags {
    /// No flags.
    pub const EMPTY: LockFlags = LockFlags(0);
    /// `LKF_NOQUEUE`: fail with [`Error::WouldBlock`] instead of waiting.
    pub const NOQUEUE: LockFlags = LockFlags(sys::LKF_NOQUEUE);
    /// `LKF_VALBLK`: read the lock value block on grant; on conversion
    /// down from PW/EX, write it.
    pub const VALBLK: LockFlags = LockFlags(sys::LKF_VALBLK);
    /// `LKF_QUECVT`: queue a conversion behind waiting ones even when it is
    /// compatible (conversions only, and only up-conversions).
    pub const QUECVT: LockFlags = LockFlags(sys::LKF_QUECVT);
    /// `LKF_CONVDEADLK`: on a conversion deadlock, demote the granted mode
    /// to NL instead of failing (conversions only; not with NOQUEUE).
    pub const CONVDEADLK: LockFlags = LockFlags(sys::LKF_CONVDEADLK);
    /// `LKF_PERSISTENT`: the lock survives the close of its lockspace
    /// handle (and the process's exit) as an orphan.
    pub const PERSISTENT: LockFlags = LockFlags(sys::LKF_PERSISTENT);
    /// `LKF_NODLCKWT`: the request is not subject to deadlock cancellation.
    pub const NODLCKWT: LockFlags = LockFlags(sys::LKF_NODLCKWT);
    /// `LKF_EXPEDITE`: grant a new NL request at once, ahead of the queue
    /// (new NL requests only; not with NOQUEUE).
    pub const EXPEDITE: LockFlags = LockFlags(sys::LKF_EXPEDITE);
    /// `LKF_NOQUEUEBAST`: with NOQUEUE, still send blocking notifications
    /// to the holders that block the request.
    pub const NOQUEUEBAST: LockFlags = LockFlags(sys::LKF_NOQUEUEBAST);
    /// `LKF_HEADQUE`: queue the request at the head of the wait queue.
    pub const HEADQUE: LockFlags = LockFlags(sys::LKF_HEADQUE);
    /// `LKF_NOORDER`: grant as soon as compatible, ignoring queue order.
    pub const NOORDER: LockFlags = LockFlags(sys::LKF_NOORDER);
    /// `LKF_ALTPR`: grant PR if the requested mode cannot be granted.
    pub const ALTPR: LockFlags = LockFlags(sys::LKF_ALTPR);
    /// `LKF_ALTCW`: grant CW if the requested mode cannot be granted.
    pub const ALTCW: LockFlags = LockFlags(sys::LKF_ALTCW);

    const PUBLIC: u32 = sys::LKF_NOQUEUE
        | sys::LKF_VALBLK
        | sys::LKF_QUECVT
        | sys::LKF_CONVDEADLK
        | sys::LKF_PERSISTENT
        | sys::LKF_NODLCKWT
        | sys::LKF_EXPEDITE
        | sys::LKF_NOQUEUEBAST
        | sys::LKF_HEADQUE
        | sys::LKF_NOORDER
        | sys::LKF_ALTPR
        | sys::LKF_ALTCW;

    /// The flags of a raw `LKF_*` value.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] if it holds a flag that is not one of
    /// the constants above.
    pub fn from_bits(bits: u32) -> Result<LockFlags> {
        if bits & !Self::PUBLIC != 0 {
            return Err(Error::InvalidArgument(
                "flags outside NOQUEUE VALBLK QUECVT CONVDEADLK PERSISTENT NODLCKWT EXPEDITE NOQUEUEBAST HEADQUE NOORDER ALTPR ALTCW",
            ));
        }
        Ok(LockFlags(bits))
    }

    /// The raw `LKF_*` value.
    pub fn bits(self) -> u32 {
        self.0
    }

    /// Whether every flag of `other` is set in `self`.
    pub fn contains(self, other: LockFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// `self` without the flags of `other`.
    pub fn without(self, other: LockFlags) -> LockFlags {
        LockFlags(self.0 & !other.0)
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitOr for LockFlags {
    type Output = LockFlags;
    fn bitor(self, rhs: LockFlags) -> LockFlags {
        LockFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for LockFlags {
    fn bitor_assign(&mut self, rhs: LockFlags) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for LockFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [(u32, &str); 12] = [
            (sys::LKF_NOQUEUE, "NOQUEUE"),
            (sys::LKF_VALBLK, "VALBLK"),
            (sys::LKF_QUECVT, "QUECVT"),
            (sys::LKF_CONVDEADLK, "CONVDEADLK"),
            (sys::LKF_PERSISTENT, "PERSISTENT"),
            (sys::LKF_NODLCKWT, "NODLCKWT"),
            (sys::LKF_EXPEDITE, "EXPEDITE"),
            (sys::LKF_NOQUEUEBAST, "NOQUEUEBAST"),
            (sys::LKF_HEADQUE, "HEADQUE"),
            (sys::LKF_NOORDER, "NOORDER"),
            (sys::LKF_ALTPR, "ALTPR"),
            (sys::LKF_ALTCW, "ALTCW"),
        ];
        let mut first = true;
        f.write_str("LockFlags(")?;
        for (bit, name) in NAMES {
            if self.0 & bit != 0 {
                if !first {
                    f.write_str(" | ")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        f.write_str(")")
    }
}

/// What a request does, for the flag rules.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request {
    /// A new lock.
    New,
    /// A conversion of a lock granted in `from`.
    Convert { from: Mode },
}

/// `QUECVT[granted][requested]`: conversions the kernel accepts with
/// `LKF_QUECVT` (its `__quecvt_compat_matrix`): up-conversions only.
const QUECVT: [[bool; 6]; 6] = [
    //  NL     CR     CW     PR     PW     EX
    [false, true, true, true, true, true],      // NL
    [false, false, true, true, true, true],     // CR
    [false, false, false, true, true, true],    // CW
    [false, false, true, false, true, true],    // PR
    [false, false, false, false, false, true],  // PW
    [false, false, false, false, false, false], // EX
];

/// Checks `flags` for a request of `mode`: the combinations the kernel
/// rejects with `EINVAL` (`set_lock_args`, `validate_lock_args` in
/// `fs/dlm/lock.c`; some also warn in the kernel log), plus NOQUEUEBAST
/// without NOQUEUE, which would be silently meaningless.
pub(crate) fn check(request: Request, mode: Mode, flags: LockFlags) -> Result<()> {
    let has = |f: LockFlags| flags.contains(f);
    let convert = matches!(request, Request::Convert { .. });
    if !convert && has(LockFlags::QUECVT) {
        return Err(Error::InvalidArgument("QUECVT applies to conversions only"));
    }
    if !convert && has(LockFlags::CONVDEADLK) {
        return Err(Error::InvalidArgument(
            "CONVDEADLK applies to conversions only",
        ));
    }
    if has(LockFlags::CONVDEADLK) && has(LockFlags::NOQUEUE) {
        return Err(Error::InvalidArgument(
            "CONVDEADLK cannot be combined with NOQUEUE",
        ));
    }
    if has(LockFlags::EXPEDITE) {
        if convert {
            return Err(Error::InvalidArgument(
                "EXPEDITE applies to new requests only, not conversions",
            ));
        }
        if has(LockFlags::NOQUEUE) {
            return Err(Error::InvalidArgument(
                "EXPEDITE cannot be combined with NOQUEUE",
            ));
        }
        if mode != Mode::Nl {
            return Err(Error::InvalidArgument(
                "EXPEDITE applies to NL requests only",
            ));
        }
    }
    if has(LockFlags::NOQUEUEBAST) && !has(LockFlags::NOQUEUE) {
        return Err(Error::InvalidArgument("NOQUEUEBAST needs NOQUEUE"));
    }
    if let Request::Convert { from } = request {
        if has(LockFlags::QUECVT) && !QUECVT[from as usize][mode as usize] {
            return Err(Error::InvalidArgument(
                "QUECVT applies to up-conversions only",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use LockFlags as F;

    fn new(mode: Mode, flags: LockFlags) -> Result<()> {
        check(Request::New, mode, flags)
    }
    fn convert(from: Mode, to: Mode, flags: LockFlags) -> Result<()> {
        check(Request::Convert { from }, to, flags)
    }

    #[test]
    fn plain_requests_pass() {
        for m in Mode::ALL {
            assert!(new(m, F::EMPTY).is_ok());
            assert!(new(
                m,
                F::NOQUEUE | F::VALBLK | F::PERSISTENT | F::NOORDER | F::HEADQUE
            )
            .is_ok());
            assert!(new(m, F::ALTPR | F::ALTCW | F::NODLCKWT).is_ok());
        }
        assert!(new(Mode::Ex, F::NOQUEUE | F::NOQUEUEBAST).is_ok());
    }

    #[test]
    fn conversion_only_flags_are_refused_on_new_requests() {
        assert!(matches!(
            new(Mode::Ex, F::QUECVT),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            new(Mode::Ex, F::CONVDEADLK),
            Err(Error::InvalidArgument(_))
        ));
        assert!(convert(Mode::Nl, Mode::Ex, F::QUECVT).is_ok());
        assert!(convert(Mode::Pr, Mode::Ex, F::CONVDEADLK).is_ok());
    }

    #[test]
    fn convdeadlk_with_noqueue_is_refused() {
        assert!(convert(Mode::Pr, Mode::Ex, F::CONVDEADLK | F::NOQUEUE).is_err());
    }

    #[test]
    fn expedite_rules() {
        assert!(new(Mode::Nl, F::EXPEDITE).is_ok());
        assert!(new(Mode::Nl, F::EXPEDITE | F::VALBLK).is_ok());
        assert!(new(Mode::Pr, F::EXPEDITE).is_err());
        assert!(new(Mode::Nl, F::EXPEDITE | F::NOQUEUE).is_err());
        assert!(convert(Mode::Nl, Mode::Nl, F::EXPEDITE).is_err());
    }

    #[test]
    fn quecvt_only_up() {
        assert!(convert(Mode::Nl, Mode::Ex, F::QUECVT).is_ok());
        assert!(convert(Mode::Pr, Mode::Cw, F::QUECVT).is_ok());
        assert!(convert(Mode::Ex, Mode::Nl, F::QUECVT).is_err());
        assert!(convert(Mode::Pr, Mode::Pr, F::QUECVT).is_err());
        assert!(convert(Mode::Pw, Mode::Pr, F::QUECVT).is_err());
    }

    #[test]
    fn noqueuebast_needs_noqueue() {
        assert!(new(Mode::Ex, F::NOQUEUEBAST).is_err());
    }

    #[test]
    fn raw_bits() {
        assert_eq!(
            LockFlags::from_bits(sys::LKF_NOQUEUE | sys::LKF_ALTPR).unwrap(),
            F::NOQUEUE | F::ALTPR
        );
        for internal in [
            sys::LKF_CONVERT,
            sys::LKF_CANCEL,
            sys::LKF_ORPHAN,
            sys::LKF_FORCEUNLOCK,
            sys::LKF_TIMEOUT,
            sys::LKF_WAIT,
            sys::LKF_NODLCKBLK,
            sys::LKF_IVVALBLK,
        ] {
            assert!(LockFlags::from_bits(internal).is_err(), "{internal:#x}");
        }
        assert_eq!(
            format!("{:?}", F::NOQUEUE | F::PERSISTENT),
            "LockFlags(NOQUEUE | PERSISTENT)"
        );
        assert!(F::EMPTY.is_empty());
        assert_eq!((F::NOQUEUE | F::VALBLK).without(F::NOQUEUE), F::VALBLK);
    }
}
