//! The guard's model of what the kernel holds for one lock, and the one
//! function, [`LockState::apply`], that applies every answer to it.
//!
//! The kernel keeps, per lock: the granted mode, the flags of the last
//! request or conversion it accepted (`lkb_exflags`: it *replaces* them on
//! every accepted request, success or not, and ORs an unlock's or cancel's
//! flags into them; the model keeps the replaced flags, which are the ones
//! that matter: `PERSISTENT`, `VALBLK`, `IVVALBLK`), and a value block
//! buffer. Those decide what a later
//! unlock or close does: `PERSISTENT` in the flags orphans the lock at
//! close, `VALBLK` in the flags of a PW/EX lock copies the lock's buffer
//! into the resource's value block at unlock. So the guard keeps the same
//! three things, plus where its copy of the value block stands, and every
//! answer — grant, `EAGAIN`, `EDEADLK`, `ECANCEL`, `DLM_SBF_DEMOTED`,
//! `DLM_SBF_ALTMODE`, `DLM_SBF_VALNOTVALID` — goes through
//! [`LockState::apply`]. What to send next (the flags of a conversion, how
//! to release) is derived from the model by [`LockState::convert_flags`]
//! and [`LockState::release_plan`], never from a second copy of the facts.

use crate::error::Error;
use crate::flags::LockFlags;
use crate::mode::Mode;
use dlm_sys as sys;

/// Where the guard's copy of the lock value block stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LvbState {
    /// Nothing read from the DLM yet (no `VALBLK` grant or up-conversion).
    NotRead,
    /// The buffer holds the block as last read from (or written to) the
    /// DLM; `valid` is false when the DLM said `DLM_SBF_VALNOTVALID`, or
    /// after this lock invalidated it.
    Read { valid: bool },
    /// The user set a value ([`LockGuard::set_lvb`](crate::LockGuard::set_lvb))
    /// not yet published: the next conversion that writes carries it.
    Set,
    /// The user asked for invalidation, not yet carried out.
    Invalidate,
}

impl LvbState {
    fn pending(self) -> bool {
        matches!(self, LvbState::Set | LvbState::Invalidate)
    }
}

/// What the DLM does with the value block on a grant of `requested` to a
/// lock granted in `granted` (`None`: a new lock): the kernel's
/// `dlm_lvb_operations` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LvbOp {
    /// The resource's block is copied to the lock (with `VALBLK`).
    Read,
    /// The lock's block is copied to the resource (with `VALBLK`), or the
    /// resource's block marked not valid (with `IVVALBLK`).
    Write,
    /// Nothing.
    None,
}

/// `dlm_lvb_operations[granted + 1][requested + 1]` for the six modes.
const LVB_OPS: [[LvbOp; 6]; 6] = {
    use LvbOp::{None as N, Read as R, Write as W};
    [
        // NL CR CW PR PW EX   (requested)
        [R, R, R, R, R, R], // NL
        [N, R, R, R, R, R], // CR
        [N, N, R, R, R, R], // CW
        [N, N, N, R, R, R], // PR
        [W, W, W, W, W, R], // PW
        [W, W, W, W, W, W], // EX
    ]
};

/// The value block operation of a grant of `requested` over `granted`.
pub(crate) fn lvb_op(granted: Option<Mode>, requested: Mode) -> LvbOp {
    match granted {
        None => LvbOp::Read,
        Some(g) => LVB_OPS[g as usize][requested as usize],
    }
}

/// What the guard knows of the kernel's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LockState {
    /// The granted mode.
    pub(crate) mode: Mode,
    /// The kernel's `lkb_exflags`: the raw flags of the last accepted
    /// request (`LKF_*`), with an unlock's or cancel's ORed in.
    pub(crate) exflags: u32,
    /// The guard's copy of the value block.
    pub(crate) lvb: LvbState,
    /// The user asked for the value block ([`LockOptions::lvb`](crate::LockOptions::lvb)
    ///): conversions that read it send `VALBLK`.
    pub(crate) uses_lvb: bool,
}

/// What a request asked the kernel for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The mode asked for.
    pub(crate) mode: Mode,
    /// The raw `LKF_*` flags sent (`LKF_CONVERT` for a conversion).
    pub(crate) flags: u32,
    /// This crate cancelled it (a timeout): `ECANCEL` then means
    /// [`Error::TimedOut`].
    pub(crate) timed_out: bool,
}

/// The DLM's answer to a request: `sb_status` and `sb_flags`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Answer {
    pub(crate) status: i32,
    pub(crate) sb_flags: u8,
}

impl Answer {
    fn has(self, flag: i8) -> bool {
        self.sb_flags & flag as u8 != 0
    }
}

/// What a grant or conversion gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The mode now held: the requested one, or PR/CW when an alternate
    /// mode was accepted ([`LockOptions::alt_pr`](crate::LockOptions::alt_pr),
    /// [`LockOptions::alt_cw`](crate::LockOptions::alt_cw)).
    pub mode: Mode,
    /// The DLM granted the alternate mode instead of the requested one
    /// (`DLM_SBF_ALTMODE`).
    pub alternate: bool,
    /// The granted mode was demoted to NL to break a conversion deadlock
    /// before this conversion was granted (`DLM_SBF_DEMOTED`, with
    /// [`LockOptions::demote_on_deadlock`](crate::LockOptions::demote_on_deadlock)):
    /// other holders may have changed the protected state meanwhile.
    pub demoted: bool,
}

/// How to release a lock without writing bytes nobody chose into the
/// resource's value block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReleasePlan {
    /// Unlock with these flags (0, or `LKF_IVVALBLK`).
    Unlock(u32),
    /// Convert to NL with these flags first (publishing a set value, or
    /// clearing the kernel's `VALBLK`), then unlock with none.
    ConvertFirst(u32),
}

impl LockState {
    /// The model after the grant of a new request (`Ok`), or the error it
    /// failed with: a failed new request leaves no lock.
    pub(crate) fn granted_new(
        sent: Sent,
        answer: Answer,
        uses_lvb: bool,
    ) -> Result<(LockState, Granted), Error> {
        if answer.status != 0 {
            return Err(failure(sent, answer.status));
        }
        let mode = granted_mode(sent, answer);
        let lvb = if sent.flags & sys::LKF_VALBLK != 0 {
            LvbState::Read {
                valid: !answer.has(sys::DLM_SBF_VALNOTVALID),
            }
        } else {
            LvbState::NotRead
        };
        let state = LockState {
            mode,
            exflags: sent.flags,
            lvb,
            uses_lvb,
        };
        Ok((
            state,
            Granted {
                mode,
                alternate: answer.has(sys::DLM_SBF_ALTMODE),
                demoted: false,
            },
        ))
    }

    /// The model of an adopted orphan: the kernel gives it the adoption's
    /// flags (`dlm_user_adopt_orphan` sets `lkb_exflags`).
    pub(crate) fn adopted(mode: Mode, flags: u32) -> LockState {
        LockState {
            mode,
            exflags: flags,
            lvb: LvbState::NotRead,
            uses_lvb: flags & sys::LKF_VALBLK != 0,
        }
    }

    /// After a failed or cancelled `CONVDEADLK` conversion whose answer
    /// cannot show a demotion (the kernel clears an answer's flags when it
    /// takes a cancel): the lock may have been demoted to NL meanwhile, so
    /// a pending value or invalidation can no longer be trusted to be the
    /// newest; it is dropped. `held_nl` when the lock is known to be NL.
    pub(crate) fn maybe_demoted(&mut self, held_nl: bool) {
        if self.lvb.pending() {
            self.lvb = LvbState::NotRead;
        }
        if held_nl {
            self.mode = Mode::Nl;
        }
    }

    /// Whether the kernel will orphan the lock at close (`PERSISTENT` in
    /// its flags) rather than unlock it.
    pub(crate) fn persistent(&self) -> bool {
        self.exflags & sys::LKF_PERSISTENT != 0
    }

    /// The raw flags of a conversion to `to` with the caller's `flags`:
    /// `PERSISTENT` repeated while the lock is persistent (the kernel
    /// replaces its flags), `VALBLK` only where it reads for a lock that
    /// uses the value block or writes a value the user set, `IVVALBLK`
    /// where it writes a pending invalidation. A value set but not yet
    /// publishable (PW -> EX reads) stays pending: the conversion is sent
    /// without `VALBLK`, so the read cannot overwrite it.
    pub(crate) fn convert_flags(&self, to: Mode, flags: LockFlags) -> u32 {
        let mut raw = flags.without(LockFlags::VALBLK).bits() | sys::LKF_CONVERT;
        if self.persistent() {
            raw |= sys::LKF_PERSISTENT;
        }
        let uses_lvb = self.uses_lvb || flags.contains(LockFlags::VALBLK);
        match (lvb_op(Some(self.mode), to), self.lvb) {
            (LvbOp::Write, LvbState::Set) => raw |= sys::LKF_VALBLK,
            (LvbOp::Write, LvbState::Invalidate) => raw |= sys::LKF_IVVALBLK,
            (LvbOp::Read, lvb) if uses_lvb && !lvb.pending() => raw |= sys::LKF_VALBLK,
            _ => {}
        }
        raw
    }

    /// Applies the answer to a conversion (`sent.flags` has
    /// `LKF_CONVERT`): the kernel accepted it, so its flags replaced the
    /// lock's; `DLM_SBF_DEMOTED` means the granted mode went to NL,
    /// whatever the outcome; a failure leaves the lock in its (possibly
    /// demoted) mode.
    ///
    /// `Ok` tells whether the grant read the value block into the lock's
    /// buffer (then the buffer holds the DLM's value).
    pub(crate) fn apply_convert(
        &mut self,
        sent: Sent,
        answer: Answer,
    ) -> Result<(Granted, bool), Error> {
        self.exflags = sent.flags;
        let demoted = answer.has(sys::DLM_SBF_DEMOTED);
        if demoted {
            self.mode = Mode::Nl;
            if self.lvb.pending() {
                // A value or invalidation that was to be written from
                // PW/EX can no longer be: the lock is NL now.
                self.lvb = LvbState::NotRead;
            }
        }
        if answer.status != 0 {
            let e = failure(sent, answer.status);
            return Err(if demoted {
                Error::Demoted(Box::new(e))
            } else {
                e
            });
        }
        let to = granted_mode(sent, answer);
        let mut read = false;
        match lvb_op(Some(self.mode), to) {
            LvbOp::Read if sent.flags & sys::LKF_VALBLK != 0 => {
                self.lvb = LvbState::Read {
                    valid: !answer.has(sys::DLM_SBF_VALNOTVALID),
                };
                read = true;
            }
            LvbOp::Write if sent.flags & sys::LKF_IVVALBLK != 0 => {
                self.lvb = LvbState::Read { valid: false };
            }
            LvbOp::Write if sent.flags & sys::LKF_VALBLK != 0 => {
                self.lvb = LvbState::Read { valid: true };
            }
            _ => {}
        }
        self.mode = to;
        if !to.writes_lvb() && self.lvb.pending() {
            // Nothing carried the pending write out (cannot happen with
            // `convert_flags`, kept for safety): it is lost with PW/EX.
            self.lvb = LvbState::NotRead;
        }
        Ok((
            Granted {
                mode: to,
                alternate: answer.has(sys::DLM_SBF_ALTMODE),
                demoted,
            },
            read,
        ))
    }

    /// How to unlock without the kernel writing libdlm's uninitialised
    /// unlock bytes (or any value the user did not choose) into the
    /// resource's value block: only a PW/EX lock whose flags hold `VALBLK`
    /// (or a pending value) needs a conversion to NL first.
    pub(crate) fn release_plan(&self) -> ReleasePlan {
        if !self.mode.writes_lvb() {
            return ReleasePlan::Unlock(0);
        }
        match self.lvb {
            LvbState::Invalidate => ReleasePlan::Unlock(sys::LKF_IVVALBLK),
            LvbState::Set => ReleasePlan::ConvertFirst(sys::LKF_CONVERT | sys::LKF_VALBLK),
            _ if self.exflags & (sys::LKF_VALBLK | sys::LKF_IVVALBLK) != 0 => {
                ReleasePlan::ConvertFirst(sys::LKF_CONVERT)
            }
            _ => ReleasePlan::Unlock(0),
        }
    }

    /// The flags of a conversion to the same mode that publishes a pending
    /// value or invalidation in place (PW -> PW and EX -> EX write), for
    /// orphaning a lock without losing it; `None` when nothing is pending.
    pub(crate) fn publish_in_place_flags(&self) -> Option<u32> {
        let base = sys::LKF_CONVERT | (self.exflags & sys::LKF_PERSISTENT);
        match self.lvb {
            LvbState::Set if self.mode.writes_lvb() => Some(base | sys::LKF_VALBLK),
            LvbState::Invalidate if self.mode.writes_lvb() => Some(base | sys::LKF_IVVALBLK),
            _ => None,
        }
    }

    /// The flags to unlock with when a conversion down could not be made
    /// first: `IVVALBLK` if the kernel would otherwise copy libdlm's
    /// uninitialised bytes (the block is then marked not valid rather
    /// than filled with garbage).
    pub(crate) fn fallback_unlock_flags(&self) -> u32 {
        if self.mode.writes_lvb() && self.exflags & sys::LKF_VALBLK != 0 {
            sys::LKF_IVVALBLK
        } else {
            0
        }
    }
}

/// The mode a successful answer to `sent` grants.
fn granted_mode(sent: Sent, answer: Answer) -> Mode {
    if answer.has(sys::DLM_SBF_ALTMODE) {
        if sent.flags & sys::LKF_ALTPR != 0 {
            return Mode::Pr;
        }
        if sent.flags & sys::LKF_ALTCW != 0 {
            return Mode::Cw;
        }
    }
    sent.mode
}

/// The error of a failed answer.
fn failure(sent: Sent, status: i32) -> Error {
    match Error::from_status(status) {
        Some(Error::Cancelled) if sent.timed_out => Error::TimedOut,
        Some(e) => e,
        None => Error::InvalidArgument("unexpected success status"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use LvbState::*;

    const OK: Answer = Answer {
        status: 0,
        sb_flags: 0,
    };

    fn sent(mode: Mode, flags: u32) -> Sent {
        Sent {
            mode,
            flags,
            timed_out: false,
        }
    }

    fn held(mode: Mode, exflags: u32, lvb: LvbState, uses_lvb: bool) -> LockState {
        LockState {
            mode,
            exflags,
            lvb,
            uses_lvb,
        }
    }

    #[test]
    fn lvb_table_matches_the_kernel() {
        // Every new request reads; PW -> EX reads; every other conversion
        // from PW/EX writes; a conversion down from CR/CW/PR does nothing.
        for m in Mode::ALL {
            assert_eq!(lvb_op(None, m), LvbOp::Read);
            assert_eq!(lvb_op(Some(Mode::Nl), m), LvbOp::Read);
            assert_eq!(lvb_op(Some(Mode::Ex), m), LvbOp::Write);
        }
        assert_eq!(lvb_op(Some(Mode::Pw), Mode::Ex), LvbOp::Read);
        assert_eq!(lvb_op(Some(Mode::Pw), Mode::Pw), LvbOp::Write);
        assert_eq!(lvb_op(Some(Mode::Pr), Mode::Cw), LvbOp::None);
        assert_eq!(lvb_op(Some(Mode::Pr), Mode::Pr), LvbOp::Read);
        assert_eq!(lvb_op(Some(Mode::Cr), Mode::Nl), LvbOp::None);
    }

    #[test]
    fn persistence_is_repeated_on_every_conversion() {
        let s = held(Mode::Pr, sys::LKF_PERSISTENT, NotRead, false);
        let flags = s.convert_flags(Mode::Ex, LockFlags::EMPTY);
        assert_ne!(flags & sys::LKF_PERSISTENT, 0);
        // And a failed conversion keeps it, since it was sent.
        let mut s2 = s;
        let e = s2.apply_convert(
            sent(Mode::Ex, flags),
            Answer {
                status: libc::EAGAIN,
                sb_flags: 0,
            },
        );
        assert!(matches!(e, Err(Error::WouldBlock)));
        assert!(s2.persistent());
        assert_eq!(s2.mode, Mode::Pr);
    }

    #[test]
    fn a_failed_conversion_replaces_the_kernel_flags() {
        // PW granted without VALBLK; a try conversion to EX with .lvb()
        // fails: the kernel now holds VALBLK, so the release must convert
        // down first (else libdlm's unlock bytes land in the LVB).
        let mut s = held(Mode::Pw, 0, NotRead, false);
        assert_eq!(s.release_plan(), ReleasePlan::Unlock(0));
        let flags = s.convert_flags(Mode::Ex, LockFlags::VALBLK | LockFlags::NOQUEUE);
        assert_ne!(flags & sys::LKF_VALBLK, 0, "PW -> EX reads");
        let _ = s.apply_convert(
            sent(Mode::Ex, flags),
            Answer {
                status: libc::EAGAIN,
                sb_flags: 0,
            },
        );
        assert_eq!(s.mode, Mode::Pw);
        assert_eq!(
            s.release_plan(),
            ReleasePlan::ConvertFirst(sys::LKF_CONVERT)
        );
    }

    #[test]
    fn demotion_is_read_on_failures_and_cancels() {
        let mut s = held(Mode::Pr, 0, NotRead, false);
        let flags = s.convert_flags(Mode::Ex, LockFlags::CONVDEADLK);
        let r = s.apply_convert(
            Sent {
                mode: Mode::Ex,
                flags,
                timed_out: true,
            },
            Answer {
                status: sys::ECANCEL,
                sb_flags: sys::DLM_SBF_DEMOTED as u8,
            },
        );
        assert!(matches!(r, Err(Error::Demoted(ref e)) if matches!(**e, Error::TimedOut)));
        assert_eq!(s.mode, Mode::Nl);
        // And on a grant: reported, and the LVB op is NL -> EX (a read).
        let mut s = held(Mode::Pw, 0, Set, true);
        let flags = s.convert_flags(Mode::Ex, LockFlags::CONVDEADLK);
        assert_eq!(
            flags & sys::LKF_VALBLK,
            0,
            "a pending value is not read over"
        );
        let g = s
            .apply_convert(
                sent(Mode::Ex, flags),
                Answer {
                    status: 0,
                    sb_flags: sys::DLM_SBF_DEMOTED as u8,
                },
            )
            .unwrap()
            .0;
        assert!(g.demoted);
        assert_eq!(s.mode, Mode::Ex);
        assert_eq!(s.lvb, NotRead, "the value set under PW was lost with PW");
    }

    #[test]
    fn a_set_value_survives_pw_to_ex_and_is_published_later() {
        let mut s = held(Mode::Pw, sys::LKF_VALBLK, Set, true);
        let up = s.convert_flags(Mode::Ex, LockFlags::EMPTY);
        assert_eq!(up & sys::LKF_VALBLK, 0);
        s.apply_convert(sent(Mode::Ex, up), OK).unwrap();
        assert_eq!((s.mode, s.lvb), (Mode::Ex, Set));
        let down = s.convert_flags(Mode::Nl, LockFlags::EMPTY);
        assert_ne!(down & sys::LKF_VALBLK, 0);
        s.apply_convert(sent(Mode::Nl, down), OK).unwrap();
        assert_eq!(s.lvb, Read { valid: true });
    }

    #[test]
    fn nothing_is_written_unless_the_user_chose_it() {
        // EX -> NL with .lvb() on a guard that never read or set: no
        // VALBLK (it would publish the buffer's zeros).
        let s = held(Mode::Ex, 0, NotRead, false);
        let f = s.convert_flags(Mode::Nl, LockFlags::VALBLK);
        assert_eq!(f & (sys::LKF_VALBLK | sys::LKF_IVVALBLK), 0);
        // Nor a value merely read (possibly not valid).
        let s = held(Mode::Ex, sys::LKF_VALBLK, Read { valid: false }, true);
        let f = s.convert_flags(Mode::Pr, LockFlags::EMPTY);
        assert_eq!(f & sys::LKF_VALBLK, 0);
        // But the release must still clear the kernel's VALBLK first.
        assert_eq!(
            s.release_plan(),
            ReleasePlan::ConvertFirst(sys::LKF_CONVERT)
        );
        assert_eq!(s.fallback_unlock_flags(), sys::LKF_IVVALBLK);
    }

    #[test]
    fn release_plans() {
        assert_eq!(
            held(Mode::Pr, sys::LKF_VALBLK, Read { valid: true }, true).release_plan(),
            ReleasePlan::Unlock(0)
        );
        assert_eq!(
            held(Mode::Ex, 0, Invalidate, false).release_plan(),
            ReleasePlan::Unlock(sys::LKF_IVVALBLK)
        );
        assert_eq!(
            held(Mode::Ex, 0, Set, true).release_plan(),
            ReleasePlan::ConvertFirst(sys::LKF_CONVERT | sys::LKF_VALBLK)
        );
        assert_eq!(
            held(Mode::Ex, 0, NotRead, false).release_plan(),
            ReleasePlan::Unlock(0)
        );
        let adopt = sys::LKF_PERSISTENT | sys::LKF_ORPHAN;
        assert_eq!(
            LockState::adopted(Mode::Ex, adopt).release_plan(),
            ReleasePlan::Unlock(0)
        );
        assert_eq!(
            LockState::adopted(Mode::Ex, adopt | sys::LKF_VALBLK).release_plan(),
            ReleasePlan::ConvertFirst(sys::LKF_CONVERT)
        );
    }

    #[test]
    fn reads_follow_the_answer() {
        let (s, g) = LockState::granted_new(
            sent(Mode::Pr, sys::LKF_VALBLK),
            Answer {
                status: 0,
                sb_flags: sys::DLM_SBF_VALNOTVALID as u8,
            },
            true,
        )
        .unwrap();
        assert_eq!(s.lvb, Read { valid: false });
        assert_eq!(g.mode, Mode::Pr);
        let mut s = s;
        let f = s.convert_flags(Mode::Ex, LockFlags::EMPTY);
        assert_ne!(f & sys::LKF_VALBLK, 0, "the lock uses the LVB: up reads");
        s.apply_convert(sent(Mode::Ex, f), OK).unwrap();
        assert_eq!(s.lvb, Read { valid: true });
    }

    #[test]
    fn invalidation_is_carried_by_the_next_write() {
        let mut s = held(Mode::Ex, sys::LKF_VALBLK, Invalidate, true);
        let f = s.convert_flags(Mode::Pr, LockFlags::EMPTY);
        assert_ne!(f & sys::LKF_IVVALBLK, 0);
        s.apply_convert(sent(Mode::Pr, f), OK).unwrap();
        assert_eq!(s.lvb, Read { valid: false });
    }

    #[test]
    fn alternate_modes_and_failures_of_new_requests() {
        let alt = Answer {
            status: 0,
            sb_flags: sys::DLM_SBF_ALTMODE as u8,
        };
        let (s, g) = LockState::granted_new(sent(Mode::Ex, sys::LKF_ALTPR), alt, false).unwrap();
        assert_eq!((s.mode, g.alternate), (Mode::Pr, true));
        let (s, _) = LockState::granted_new(sent(Mode::Ex, sys::LKF_ALTCW), alt, false).unwrap();
        assert_eq!(s.mode, Mode::Cw);
        let timed = Sent {
            mode: Mode::Ex,
            flags: 0,
            timed_out: true,
        };
        let cancel = Answer {
            status: sys::ECANCEL,
            sb_flags: 0,
        };
        assert!(matches!(
            LockState::granted_new(timed, cancel, false),
            Err(Error::TimedOut)
        ));
        assert!(matches!(
            LockState::granted_new(sent(Mode::Ex, 0), cancel, false),
            Err(Error::Cancelled)
        ));
    }

    #[test]
    fn publishing_in_place_keeps_mode_and_persistence() {
        let s = held(Mode::Ex, sys::LKF_PERSISTENT, Set, true);
        let f = s.publish_in_place_flags().unwrap();
        assert_ne!(f & sys::LKF_VALBLK, 0);
        assert_ne!(f & sys::LKF_PERSISTENT, 0);
        assert!(held(Mode::Ex, 0, NotRead, false)
            .publish_in_place_flags()
            .is_none());
    }
}
