//! Lock modes and the DLM's compatibility table.

use crate::error::Error;
use std::fmt;
use std::str::FromStr;

/// A DLM lock mode, weakest to strongest.
///
/// The numeric values are libdlm's `LKM_*` constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u32)]
pub enum Mode {
    /// Null (`LKM_NLMODE`): no access; keeps the lock (and its LVB) alive.
    Nl = dlm_sys::LKM_NLMODE,
    /// Concurrent read (`LKM_CRMODE`).
    Cr = dlm_sys::LKM_CRMODE,
    /// Concurrent write (`LKM_CWMODE`).
    Cw = dlm_sys::LKM_CWMODE,
    /// Protected read (`LKM_PRMODE`): shared.
    Pr = dlm_sys::LKM_PRMODE,
    /// Protected write (`LKM_PWMODE`).
    Pw = dlm_sys::LKM_PWMODE,
    /// Exclusive (`LKM_EXMODE`).
    Ex = dlm_sys::LKM_EXMODE,
}

/// `COMPAT[a][b]`: a lock held in mode `a` allows another in mode `b`.
const COMPAT: [[bool; 6]; 6] = [
    //  NL    CR     CW     PR     PW     EX
    [true, true, true, true, true, true],      // NL
    [true, true, true, true, true, false],     // CR
    [true, true, true, false, false, false],   // CW
    [true, true, false, true, false, false],   // PR
    [true, true, false, false, false, false],  // PW
    [true, false, false, false, false, false], // EX
];

impl Mode {
    /// Every mode, weakest first.
    pub const ALL: [Mode; 6] = [Mode::Nl, Mode::Cr, Mode::Cw, Mode::Pr, Mode::Pw, Mode::Ex];

    /// Whether a lock held in `self` and one held in `other` can be granted
    /// on one resource at the same time (the DLM's compatibility table; it
    /// is symmetric).
    pub fn is_compatible(self, other: Mode) -> bool {
        COMPAT[self as usize][other as usize]
    }

    /// The libdlm `LKM_*` value of this mode.
    pub fn as_raw(self) -> u32 {
        self as u32
    }

    /// The mode for a libdlm `LKM_*` value.
    pub fn from_raw(raw: u32) -> Option<Mode> {
        Mode::ALL.get(raw as usize).copied()
    }

    /// Whether a holder in this mode writes the lock value block when it
    /// converts down or unlocks (PW and EX).
    pub fn writes_lvb(self) -> bool {
        self >= Mode::Pw
    }

    /// The two-letter name: `NL`, `CR`, `CW`, `PR`, `PW` or `EX`.
    pub fn name(self) -> &'static str {
        ["NL", "CR", "CW", "PR", "PW", "EX"][self as usize]
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Mode {
    type Err = Error;

    /// Parses `NL CR CW PR PW EX` in any case.
    fn from_str(s: &str) -> Result<Mode, Error> {
        Mode::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(s))
            .ok_or(Error::InvalidArgument(
                "unknown lock mode (expected NL, CR, CW, PR, PW or EX)",
            ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_symmetric_and_nl_is_compatible_with_all() {
        for a in Mode::ALL {
            assert!(Mode::Nl.is_compatible(a));
            for b in Mode::ALL {
                assert_eq!(a.is_compatible(b), b.is_compatible(a), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn well_known_pairs() {
        assert!(Mode::Pr.is_compatible(Mode::Pr));
        assert!(!Mode::Pr.is_compatible(Mode::Cw));
        assert!(Mode::Cw.is_compatible(Mode::Cw));
        assert!(!Mode::Ex.is_compatible(Mode::Cr));
        assert!(Mode::Pw.is_compatible(Mode::Cr));
        assert!(!Mode::Pw.is_compatible(Mode::Pw));
        let compatible_with_ex: Vec<_> = Mode::ALL
            .into_iter()
            .filter(|m| m.is_compatible(Mode::Ex))
            .collect();
        assert_eq!(compatible_with_ex, [Mode::Nl]);
    }

    #[test]
    fn parse_display_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
            assert_eq!(m.name().to_lowercase().parse::<Mode>().unwrap(), m);
            assert_eq!(Mode::from_raw(m.as_raw()), Some(m));
        }
        assert_eq!(format!("{:>4}", Mode::Ex), "  EX");
        assert!("XX".parse::<Mode>().is_err());
        assert!("".parse::<Mode>().is_err());
        assert_eq!(Mode::from_raw(6), None);
    }

    #[test]
    fn values_match_libdlm() {
        assert_eq!(Mode::Nl as u32, 0);
        assert_eq!(Mode::Ex as u32, 5);
        assert!(Mode::Pw.writes_lvb() && Mode::Ex.writes_lvb() && !Mode::Pr.writes_lvb());
    }
}
