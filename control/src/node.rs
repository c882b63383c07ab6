//! The members of a lockspace and their state: `dlmc_lockspace_nodes` and
//! `dlmc_node_info`, the `members` line and the `-n` node lines of
//! `dlm_tool ls`.

use crate::error::{Error, Result};
use crate::name::CName;
use crate::query::call;
use dlmcontrol_sys as sys;

/// Which nodes [`nodes`] lists (`DLMC_NODES_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeSet {
    /// The members of the last completed membership change
    /// (`DLMC_NODES_MEMBERS`): the `members` line of `dlm_tool ls`.
    Members,
    /// The members of the change in progress (`DLMC_NODES_NEXT`): the
    /// `new members` line; empty when no change is in progress.
    Next,
    /// Every node the daemon remembers for the lockspace, members or not:
    /// former members that left or failed included (`DLMC_NODES_ALL`, the
    /// node lines of `dlm_tool ls -n`).
    All,
}

impl NodeSet {
    fn raw(self) -> std::os::raw::c_int {
        match self {
            NodeSet::Members => sys::DLMC_NODES_MEMBERS,
            NodeSet::Next => sys::DLMC_NODES_NEXT,
            NodeSet::All => sys::DLMC_NODES_ALL,
        }
    }
}

/// One node of a lockspace as this node's `dlm_controld` sees it (`struct
/// dlmc_node`; one `nodeid ... member ... failed ... start ... check`
/// line of `dlm_tool ls -n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// The node's corosync node id.
    pub nodeid: i32,
    /// Its flags (`DLMC_NF_*`).
    pub flags: NodeFlags,
    /// The membership change that added it.
    pub added_seq: u32,
    /// The membership change that removed it (0 while it is a member).
    pub removed_seq: u32,
    /// Why it last left the lockspace's group, 0 if never.
    pub fail_reason: FailReason,
    /// When it failed, seconds since the epoch (0 if it has not).
    pub fail_walltime: u64,
    /// When it failed, on dlm_controld's monotonic clock in seconds.
    pub fail_monotime: u64,
}

impl Node {
    pub(crate) fn from_raw(raw: &sys::dlmc_node) -> Node {
        Node {
            nodeid: raw.nodeid,
            flags: NodeFlags(raw.flags),
            added_seq: raw.added_seq,
            removed_seq: raw.removed_seq,
            fail_reason: FailReason::from_raw(raw.fail_reason),
            fail_walltime: raw.fail_walltime,
            fail_monotime: raw.fail_monotime,
        }
    }

    /// The node's state in the lockspace, from its flags and failure.
    pub fn state(&self) -> MemberState {
        if self.flags.need_fencing() {
            MemberState::NeedsFencing
        } else if self.flags.member() {
            MemberState::Joined
        } else {
            match self.fail_reason {
                FailReason::None | FailReason::Leave => MemberState::Left,
                reason => MemberState::Failed(reason),
            }
        }
    }
}

/// A node's flags in a lockspace (`DLMC_NF_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeFlags(pub u32);

impl NodeFlags {
    /// A member of the lockspace's group (`DLMC_NF_MEMBER`; `member 1`).
    pub fn member(self) -> bool {
        self.0 & sys::DLMC_NF_MEMBER != 0
    }
    /// Its start message for the change was received (`DLMC_NF_START`;
    /// `start 1`).
    pub fn started(self) -> bool {
        self.0 & sys::DLMC_NF_START != 0
    }
    /// Refused into the lockspace (`DLMC_NF_DISALLOWED`), for instance a
    /// node that rejoined with stale state.
    pub fn disallowed(self) -> bool {
        self.0 & sys::DLMC_NF_DISALLOWED != 0
    }
    /// It failed and must be fenced before recovery can go on
    /// (`DLMC_NF_NEED_FENCING`; `check fence`).
    pub fn need_fencing(self) -> bool {
        self.0 & sys::DLMC_NF_NEED_FENCING != 0
    }
    /// Recovery waits for a cluster file system's check of it
    /// (`DLMC_NF_CHECK_FS`; `check fs`).
    pub fn check_fs(self) -> bool {
        self.0 & sys::DLMC_NF_CHECK_FS != 0
    }
}

/// Why a node left a lockspace's group: corosync's CPG reason, which
/// dlm_controld records (`fail_reason`, `failed N` in `dlm_tool ls -n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailReason {
    /// It has not left (0).
    None,
    /// It left cleanly (`CPG_REASON_LEAVE`, 2).
    Leave,
    /// Its node went down: crashed, cut off or fenced
    /// (`CPG_REASON_NODEDOWN`, 3).
    NodeDown,
    /// Its dlm_controld died (`CPG_REASON_PROCDOWN`, 5).
    ProcDown,
    /// Another code.
    Other(i32),
}

impl FailReason {
    pub(crate) fn from_raw(raw: i32) -> FailReason {
        match raw {
            0 => FailReason::None,
            2 => FailReason::Leave,
            3 => FailReason::NodeDown,
            5 => FailReason::ProcDown,
            other => FailReason::Other(other),
        }
    }

    /// The number dlm_controld reports.
    pub fn raw(self) -> i32 {
        match self {
            FailReason::None => 0,
            FailReason::Leave => 2,
            FailReason::NodeDown => 3,
            FailReason::ProcDown => 5,
            FailReason::Other(n) => n,
        }
    }
}

/// A node's state in one lockspace, as [`Node::state`] derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// A member (`DLMC_NF_MEMBER`).
    Joined,
    /// It failed and is waiting to be fenced (`DLMC_NF_NEED_FENCING`):
    /// the lockspace's recovery waits for the fence.
    NeedsFencing,
    /// It failed (node or daemon down) and was removed; fenced if fencing
    /// is enabled.
    Failed(FailReason),
    /// It left cleanly (or never was a member).
    Left,
}

impl MemberState {
    /// A short name: `joined`, `needs-fencing`, `failed`, `left`.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Joined => "joined",
            MemberState::NeedsFencing => "needs-fencing",
            MemberState::Failed(_) => "failed",
            MemberState::Left => "left",
        }
    }
}

/// The nodes of a lockspace (wraps `dlmc_lockspace_nodes`), sorted by node
/// id. Asks for up to 8 nodes, then again with room for 8 times as many
/// while the daemon reports too many (`E2BIG`).
///
/// libdlmcontrol (4.2.0 and, in its source, since) never frees the reply
/// buffer of this call: each call leaks about 100 + 40 x 8 bytes (more
/// when a lockspace has more than 8 nodes), measured in the test cluster.
/// Nothing in this crate calls it repeatedly: [`Watcher`](crate::Watcher)
/// asks [`node`] about each node instead, which leaks nothing.
///
/// # Errors
/// [`Error::InvalidName`] before any call for a bad name;
/// [`Error::LockspaceNotFound`] if this node runs no such lockspace;
/// [`Error::NotRunning`] if `dlm_controld` does not answer.
pub fn nodes(lockspace: impl AsRef<[u8]>, set: NodeSet) -> Result<Vec<Node>> {
    let mut cname = CName::new(lockspace.as_ref())?;
    let mut max: usize = 8;
    loop {
        let mut raw = vec![sys::dlmc_node::default(); max];
        let mut count: std::os::raw::c_int = 0;
        let cmax = std::os::raw::c_int::try_from(max).unwrap_or(std::os::raw::c_int::MAX);
        let (rv, errno) = call(|| {
            // SAFETY: `cname` is NUL-terminated and only read; `raw` holds
            // `max` dlmc_node entries, the most the library copies;
            // `count` is a live int it writes.
            unsafe {
                sys::dlmc_lockspace_nodes(
                    cname.as_mut_ptr(),
                    set.raw(),
                    cmax,
                    &mut count,
                    raw.as_mut_ptr(),
                )
            }
        });
        if rv < 0 {
            return Err(Error::from_query(rv, errno, Error::LockspaceNotFound));
        }
        if count == -libc::E2BIG {
            // More nodes than room: 1024 is far above corosync's limits.
            if max >= 1024 {
                return Err(Error::Daemon { code: libc::E2BIG });
            }
            max *= 8;
            continue;
        }
        let n = usize::try_from(count).unwrap_or(0).min(max);
        raw.truncate(n);
        let mut out: Vec<Node> = raw.iter().map(Node::from_raw).collect();
        out.sort_by_key(|n| n.nodeid);
        return Ok(out);
    }
}

/// One node of a lockspace (wraps `dlmc_node_info`): its state in the
/// change in progress if there is one, else in the last completed change.
///
/// # Errors
/// As [`nodes`]; [`Error::NodeNotFound`] if the daemon knows no such node
/// in the lockspace (it answers with an all-zero record, which this call
/// turns into the error).
pub fn node(lockspace: impl AsRef<[u8]>, nodeid: i32) -> Result<Node> {
    let mut cname = CName::new(lockspace.as_ref())?;
    let mut raw = sys::dlmc_node::default();
    let (rv, errno) = call(|| {
        // SAFETY: `cname` is NUL-terminated and only read; `raw` is a live
        // dlmc_node the library fills on success.
        unsafe { sys::dlmc_node_info(cname.as_mut_ptr(), nodeid, &mut raw) }
    });
    if rv < 0 {
        return Err(Error::from_query(rv, errno, Error::NodeNotFound));
    }
    // The daemon answers a node it does not know in the lockspace with an
    // all-zero record (seen in the test cluster); a known node was added
    // by some change (added_seq > 0).
    if raw.added_seq == 0 && raw.flags == 0 && raw.fail_reason == 0 {
        return Err(Error::NodeNotFound);
    }
    Ok(Node::from_raw(&raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(flags: u32, reason: i32) -> sys::dlmc_node {
        sys::dlmc_node {
            nodeid: 2,
            flags,
            fail_reason: reason,
            ..Default::default()
        }
    }

    #[test]
    fn states_from_flags_and_reasons() {
        let m = Node::from_raw(&raw(sys::DLMC_NF_MEMBER | sys::DLMC_NF_START, 0));
        assert!(m.flags.member() && m.flags.started());
        assert_eq!(m.state(), MemberState::Joined);
        assert_eq!(
            Node::from_raw(&raw(0, 3)).state(),
            MemberState::Failed(FailReason::NodeDown)
        );
        assert_eq!(
            Node::from_raw(&raw(0, 5)).state(),
            MemberState::Failed(FailReason::ProcDown)
        );
        assert_eq!(Node::from_raw(&raw(0, 2)).state(), MemberState::Left);
        assert_eq!(
            Node::from_raw(&raw(sys::DLMC_NF_NEED_FENCING, 3)).state(),
            MemberState::NeedsFencing
        );
        assert_eq!(FailReason::from_raw(7), FailReason::Other(7));
        assert_eq!(FailReason::Other(7).raw(), 7);
        assert_eq!(FailReason::NodeDown.raw(), 3);
        assert_eq!(MemberState::NeedsFencing.name(), "needs-fencing");
    }
}
