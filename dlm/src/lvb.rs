//! Lock value blocks: 32 bytes the DLM keeps with each resource.

/// Size of a lock value block in bytes (`DLM_LVB_LEN`).
pub const LVB_LEN: usize = dlm_sys::DLM_LVB_LEN;

/// The contents of a lock value block as a holder read them, with their
/// validity.
///
/// The DLM hands the block to a holder that asks for it (`LKF_VALBLK`) when
/// its lock is granted or converted up. The block is written by a PW or EX
/// holder when it converts down (this crate never writes it at unlock: see
/// [`LockGuard::set_lvb`](crate::LockGuard::set_lvb)).
///
/// The DLM keeps a resource's block only while at least one lock (of any
/// mode, NL included) exists on the resource, on any node: when the last
/// lock goes, the block is freed and the next holder reads zeros. Keep an
/// NL lock to preserve it between holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lvb {
    /// The 32 bytes.
    pub bytes: [u8; LVB_LEN],
    /// `false` when the DLM marked the block not valid
    /// (`DLM_SBF_VALNOTVALID`): a PW/EX holder died (its node failed) or a
    /// holder invalidated it (`LKF_IVVALBLK`), so the bytes may be stale.
    pub valid: bool,
}

impl Lvb {
    /// The bytes up to the first NUL, for blocks used as short strings.
    pub fn as_str_lossy(&self) -> std::borrow::Cow<'_, str> {
        let end = self.bytes.iter().position(|&b| b == 0).unwrap_or(LVB_LEN);
        String::from_utf8_lossy(&self.bytes[..end])
    }
}
