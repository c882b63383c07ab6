//! The lockspaces `dlm_controld` runs on this node: `dlmc_lockspaces` and
//! `dlmc_lockspace_info`, what `dlm_tool ls` prints.

use crate::error::{Error, Result};
use crate::name::{from_c_array, CName};
use crate::query::call;
use dlmcontrol_sys as sys;

/// One lockspace of this node as `dlm_controld` sees it (`struct
/// dlmc_lockspace`): the lines `name`, `id`, `flags`, `change` and
/// `new change` of `dlm_tool ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lockspace {
    /// The lockspace's name.
    pub name: String,
    /// The cluster-wide id dlm_controld gave it (a hash of the name; `id`
    /// in `dlm_tool ls`).
    pub global_id: u32,
    /// Its state flags (`DLMC_LF_*`).
    pub flags: LockspaceFlags,
    /// The last membership change that completed (`cg_prev`): the current
    /// membership. `None` before the first one has (while joining).
    pub completed: Option<Change>,
    /// A membership change still in progress (`cg_next`): a node joining
    /// or leaving, or recovery after a failure, not finished yet (waiting
    /// for fencing, quorum, or the other members' messages).
    pub in_progress: Option<Change>,
}

impl Lockspace {
    pub(crate) fn from_raw(raw: &sys::dlmc_lockspace) -> Lockspace {
        Lockspace {
            name: from_c_array(&raw.name),
            global_id: raw.global_id,
            flags: LockspaceFlags(raw.flags),
            completed: Change::from_raw(&raw.cg_prev),
            in_progress: Change::from_raw(&raw.cg_next),
        }
    }

    /// Whether a membership change is under way ([`in_progress`] is set):
    /// while it is, the lockspace's locking may be stopped for recovery.
    ///
    /// [`in_progress`]: Lockspace::in_progress
    pub fn is_changing(&self) -> bool {
        self.in_progress.is_some()
    }
}

/// A lockspace's state flags (`DLMC_LF_*`), as `dlm_tool ls` prints after
/// the hexadecimal value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockspaceFlags(pub u32);

impl LockspaceFlags {
    /// This node is joining the lockspace (`DLMC_LF_JOINING`).
    pub fn joining(self) -> bool {
        self.0 & sys::DLMC_LF_JOINING != 0
    }
    /// This node is leaving the lockspace (`DLMC_LF_LEAVING`).
    pub fn leaving(self) -> bool {
        self.0 & sys::DLMC_LF_LEAVING != 0
    }
    /// The kernel's locking in the lockspace is stopped for a membership
    /// change (`DLMC_LF_KERNEL_STOPPED`): lock requests wait until it
    /// ends.
    pub fn kernel_stopped(self) -> bool {
        self.0 & sys::DLMC_LF_KERNEL_STOPPED != 0
    }
    /// A cluster file system (GFS2, OCFS2) registered with the lockspace
    /// (`DLMC_LF_FS_REGISTERED`).
    pub fn fs_registered(self) -> bool {
        self.0 & sys::DLMC_LF_FS_REGISTERED != 0
    }
    /// POSIX locks must be synchronised from another node
    /// (`DLMC_LF_NEED_PLOCKS`).
    pub fn need_plocks(self) -> bool {
        self.0 & sys::DLMC_LF_NEED_PLOCKS != 0
    }
    /// POSIX lock state is being saved (`DLMC_LF_SAVE_PLOCKS`).
    pub fn save_plocks(self) -> bool {
        self.0 & sys::DLMC_LF_SAVE_PLOCKS != 0
    }

    /// The names of the flags set, in bit order, as `dlm_tool ls` prints
    /// them (`joining leaving kernel_stopped fs_registered need_plocks
    /// save_plocks`).
    pub fn names(self) -> Vec<&'static str> {
        [
            (self.joining(), "joining"),
            (self.leaving(), "leaving"),
            (self.kernel_stopped(), "kernel_stopped"),
            (self.fs_registered(), "fs_registered"),
            (self.need_plocks(), "need_plocks"),
            (self.save_plocks(), "save_plocks"),
        ]
        .into_iter()
        .filter_map(|(set, name)| set.then_some(name))
        .collect()
    }
}

/// One membership change of a lockspace (`struct dlmc_change`): the
/// `change` line of `dlm_tool ls`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// Members once the change is done.
    pub member_count: i32,
    /// Nodes the change adds.
    pub joined_count: i32,
    /// Nodes the change removes (left or failed).
    pub remove_count: i32,
    /// Nodes the change removes because they failed.
    pub failed_count: i32,
    /// What a change in progress waits for ([`Wait::Nothing`] for a
    /// completed one).
    pub wait: Wait,
    /// The change's sequence number on this node.
    pub seq: u32,
    /// The combined sequence number (several changes folded into one
    /// recovery).
    pub combined_seq: u32,
}

impl Change {
    /// `None` for an empty slot (sequence number 0), as `dlm_tool` treats
    /// it.
    fn from_raw(raw: &sys::dlmc_change) -> Option<Change> {
        (raw.seq != 0).then(|| Change {
            member_count: raw.member_count,
            joined_count: raw.joined_count,
            remove_count: raw.remove_count,
            failed_count: raw.failed_count,
            wait: Wait::from_raw(raw.wait_condition, raw.wait_messages),
            seq: raw.seq,
            combined_seq: raw.combined_seq,
        })
    }
}

/// What a membership change in progress waits for (`wait_condition` and
/// `wait_messages` of `struct dlmc_change`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Nothing (a completed change, or one about to complete).
    Nothing,
    /// The messages of other members (`wait_messages`): `count` still
    /// needed.
    Messages {
        /// The number of messages still needed (`wait_condition`).
        count: i32,
    },
    /// Corosync's ring id to settle (`DLMC_LS_WAIT_RINGID`).
    RingId,
    /// The cluster to regain quorum (`DLMC_LS_WAIT_QUORUM`).
    Quorum,
    /// A failed node to be fenced (`DLMC_LS_WAIT_FENCING`).
    Fencing,
    /// A cluster file system to finish its own recovery
    /// (`DLMC_LS_WAIT_FSDONE`).
    FsDone,
    /// A condition this crate does not know.
    Other(i32),
}

impl Wait {
    pub(crate) fn from_raw(condition: i32, messages: i32) -> Wait {
        if messages != 0 {
            return Wait::Messages { count: condition };
        }
        match condition {
            0 => Wait::Nothing,
            sys::DLMC_LS_WAIT_RINGID => Wait::RingId,
            sys::DLMC_LS_WAIT_QUORUM => Wait::Quorum,
            sys::DLMC_LS_WAIT_FENCING => Wait::Fencing,
            sys::DLMC_LS_WAIT_FSDONE => Wait::FsDone,
            other => Wait::Other(other),
        }
    }

    /// A short name: `none`, `messages`, `ringid`, `quorum`, `fencing`,
    /// `fsdone`, `other`.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Nothing => "none",
            Wait::Messages { .. } => "messages",
            Wait::RingId => "ringid",
            Wait::Quorum => "quorum",
            Wait::Fencing => "fencing",
            Wait::FsDone => "fsdone",
            Wait::Other(_) => "other",
        }
    }
}

/// The lockspaces `dlm_controld` runs on this node, in its order (wraps
/// `dlmc_lockspaces`, which `dlm_tool ls` calls). The array the library
/// allocates is freed here.
///
/// # Errors
/// [`Error::NotRunning`] if `dlm_controld` does not answer (it is not
/// running, or the caller is not root); [`Error::Daemon`] for another
/// refusal.
pub fn lockspaces() -> Result<Vec<Lockspace>> {
    let mut count: std::os::raw::c_int = 0;
    let mut lss: *mut sys::dlmc_lockspace = std::ptr::null_mut();
    let rv = call(|| {
        // SAFETY: both pointers point at live locals of the right types;
        // dlmc_lockspaces writes a malloc'ed array (or leaves NULL) to
        // `lss` and its length to `count`.
        unsafe { sys::dlmc_lockspaces(&mut count, &mut lss) }
    });
    /// Frees the array libdlmcontrol allocated, on every path.
    struct Freed(*mut sys::dlmc_lockspace);
    impl Drop for Freed {
        fn drop(&mut self) {
            // SAFETY: the pointer is NULL or the array dlmc_lockspaces
            // allocated with malloc; nothing else frees it.
            unsafe { libc::free(self.0.cast()) }
        }
    }
    let _freed = Freed(lss);
    let (rv, errno) = rv;
    if rv < 0 {
        return Err(Error::from_query(
            rv,
            errno,
            Error::Daemon { code: libc::ENOENT },
        ));
    }
    if lss.is_null() || count <= 0 {
        return Ok(Vec::new());
    }
    let count = usize::try_from(count).unwrap_or(0);
    // SAFETY: on success dlmc_lockspaces read `count` entries into the
    // array it allocated for exactly that many; it stays alive (owned by
    // `_freed`) while the slice is read.
    let raw = unsafe { std::slice::from_raw_parts(lss, count) };
    Ok(raw.iter().map(Lockspace::from_raw).collect())
}

/// One lockspace of this node (wraps `dlmc_lockspace_info`).
///
/// # Errors
/// [`Error::InvalidName`] before any call for a name that is empty, longer
/// than 64 bytes or holds a NUL; [`Error::LockspaceNotFound`] if this
/// node's `dlm_controld` runs no lockspace of that name;
/// [`Error::NotRunning`] if it does not answer.
pub fn lockspace(name: impl AsRef<[u8]>) -> Result<Lockspace> {
    let mut cname = CName::new(name.as_ref())?;
    let mut raw = sys::dlmc_lockspace::default();
    let (rv, errno) = call(|| {
        // SAFETY: `cname` is a NUL-terminated name the library only reads;
        // `raw` is a live dlmc_lockspace it fills on success.
        unsafe { sys::dlmc_lockspace_info(cname.as_mut_ptr(), &mut raw) }
    });
    if rv < 0 {
        return Err(Error::from_query(rv, errno, Error::LockspaceNotFound));
    }
    Ok(Lockspace::from_raw(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_have_dlm_tools_names() {
        assert!(LockspaceFlags(0).names().is_empty());
        let f = LockspaceFlags(sys::DLMC_LF_JOINING | sys::DLMC_LF_KERNEL_STOPPED);
        assert!(f.joining() && f.kernel_stopped() && !f.leaving());
        assert_eq!(f.names(), ["joining", "kernel_stopped"]);
    }

    #[test]
    fn changes_and_waits() {
        let mut raw = sys::dlmc_change::default();
        assert_eq!(Change::from_raw(&raw), None);
        raw.seq = 3;
        raw.member_count = 2;
        raw.wait_condition = sys::DLMC_LS_WAIT_FENCING;
        let c = Change::from_raw(&raw).unwrap();
        assert_eq!((c.member_count, c.seq, c.wait), (2, 3, Wait::Fencing));
        assert_eq!(Wait::from_raw(2, 1), Wait::Messages { count: 2 });
        assert_eq!(Wait::from_raw(0, 0), Wait::Nothing);
        assert_eq!(Wait::from_raw(9, 0), Wait::Other(9));
        assert_eq!(Wait::from_raw(sys::DLMC_LS_WAIT_QUORUM, 0).name(), "quorum");
    }

    #[test]
    fn lockspace_from_raw() {
        let mut raw = sys::dlmc_lockspace::default();
        for (d, s) in raw.name.iter_mut().zip(b"ls1") {
            *d = *s as _;
        }
        raw.global_id = 0x6ce2339d;
        raw.cg_prev.seq = 1;
        raw.cg_prev.member_count = 1;
        let ls = Lockspace::from_raw(&raw);
        assert_eq!(ls.name, "ls1");
        assert_eq!(ls.global_id, 0x6ce2339d);
        assert_eq!(ls.completed.map(|c| c.member_count), Some(1));
        assert!(!ls.is_changing());
    }
}
