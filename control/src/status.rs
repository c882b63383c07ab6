//! The node's view of the cluster: `dlmc_print_status`, what `dlm_tool
//! status` prints.
//!
//! libdlmcontrol gives this view only as text on `stdout`
//! (`capture.rs` reads it). [`status`] asks for the verbose form
//! (`DLMC_STATUS_VERBOSE`: every `key=value` the daemon reports, one per
//! line) and parses it; [`status_text`] returns either form as printed.

use crate::capture;
use crate::error::{Error, Result};
use std::collections::BTreeMap;

/// The node's view of the cluster: dlm_controld's own state and one
/// [`NodeStatus`] per node it knows (`dlm_tool status`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterStatus {
    /// This node's corosync node id (`cluster nodeid N`).
    pub our_nodeid: i32,
    /// Whether the cluster has quorum (`quorate`).
    pub quorate: bool,
    /// Corosync's ring sequence number (`cluster_ringid`).
    pub cluster_ringid: u64,
    /// The ring sequence number dlm_controld has processed
    /// (`daemon_ringid`); lower than `cluster_ringid` while it catches up.
    pub daemon_ringid: u64,
    /// The daemon's monotonic clock, seconds (`monotime`; `daemon now`).
    pub monotime: u64,
    /// The fence agent running now, 0 if none (`fence_pid`).
    pub fence_pid: u64,
    /// Every `key=value` of the daemon's own record, as reported.
    pub fields: BTreeMap<String, String>,
    /// The nodes the daemon knows, by node id: members and former members.
    pub nodes: Vec<NodeStatus>,
}

impl ClusterStatus {
    /// The node with this id, if the daemon knows it.
    pub fn node(&self, nodeid: i32) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.nodeid == nodeid)
    }

    /// The ids of the nodes that are cluster members now.
    pub fn members(&self) -> Vec<i32> {
        self.nodes
            .iter()
            .filter(|n| n.member)
            .map(|n| n.nodeid)
            .collect()
    }
}

/// One node in the daemon's view (one `node N M|X add .. rem .. fail ..
/// fence .. at ..` line of `dlm_tool status`, and its `fence` line).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeStatus {
    /// The corosync node id.
    pub nodeid: i32,
    /// A cluster member now (`M` rather than `X`).
    pub member: bool,
    /// It failed and must be fenced; recovery waits (`need_fencing`).
    pub need_fencing: bool,
    /// Why it left, as the daemon names it (`left_reason`: `unknown`,
    /// `leave`, `nodedown`, `procdown`, ...).
    pub left_reason: String,
    /// When it was added, daemon monotonic seconds (`add_time`).
    pub add_time: u64,
    /// When it was removed, 0 if it has not been (`rem_time`).
    pub rem_time: u64,
    /// When it failed, daemon monotonic seconds, 0 if never
    /// (`fail_monotime`).
    pub fail_monotime: u64,
    /// When it failed, seconds since the epoch (`fail_walltime`).
    pub fail_walltime: u64,
    /// When it was last fenced (or the fence was acknowledged), daemon
    /// monotonic seconds, 0 if never (`fence_monotime`).
    pub fence_monotime: u64,
    /// When it was last fenced, seconds since the epoch (`fence_walltime`).
    pub fence_walltime: u64,
    /// Every `key=value` the daemon reported for the node.
    pub fields: BTreeMap<String, String>,
}

impl NodeStatus {
    /// The node's state in the cluster, from the fields above.
    pub fn state(&self) -> NodeState {
        if self.member {
            NodeState::Member
        } else if self.need_fencing {
            NodeState::NeedsFencing
        } else if self.fail_monotime != 0 && self.fence_monotime >= self.fail_monotime {
            NodeState::Fenced
        } else {
            NodeState::Down
        }
    }
}

/// A node's state in the cluster, as [`NodeStatus::state`] derives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// A cluster member.
    Member,
    /// Failed and not fenced yet: lockspaces it was in wait.
    NeedsFencing,
    /// Failed, then fenced (or the fence acknowledged) since.
    Fenced,
    /// Not a member: left, or failed with nothing to fence.
    Down,
}

impl NodeState {
    /// A short name: `member`, `needs-fencing`, `fenced`, `down`.
    pub fn name(self) -> &'static str {
        match self {
            NodeState::Member => "member",
            NodeState::NeedsFencing => "needs-fencing",
            NodeState::Fenced => "fenced",
            NodeState::Down => "down",
        }
    }
}

/// Which form of `dlmc_print_status`'s text [`status_text`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFormat {
    /// The summary `dlm_tool status` prints.
    Summary,
    /// Every `key=value`, one per line (`DLMC_STATUS_VERBOSE`, `dlm_tool
    /// status -v`).
    Verbose,
}

/// The node's view of the cluster (wraps `dlmc_print_status` with
/// `DLMC_STATUS_VERBOSE` and parses what it prints).
///
/// The call runs in a short-lived child process, because the library only
/// prints this view to the C `stdout`; the caller's own output is not
/// touched.
///
/// # Errors
/// [`Error::NotRunning`] if `dlm_controld` does not answer;
/// [`Error::Parse`] if its output has an unexpected form; [`Error::Io`] if
/// the child process could not be run.
pub fn status() -> Result<ClusterStatus> {
    parse_verbose(&status_text(StatusFormat::Verbose)?)
}

/// The text `dlmc_print_status` prints, as `dlm_tool status` (or with
/// [`StatusFormat::Verbose`], `dlm_tool status -v`) shows it.
///
/// # Errors
/// As [`status`], but never [`Error::Parse`].
pub fn status_text(format: StatusFormat) -> Result<String> {
    capture::print_status(match format {
        StatusFormat::Summary => 0,
        StatusFormat::Verbose => dlmcontrol_sys::DLMC_STATUS_VERBOSE,
    })
}

/// Parses the verbose form: `our_nodeid N` then indented `key=value`
/// lines for the daemon, then `nodeid N` and its lines for each node.
pub(crate) fn parse_verbose(text: &str) -> Result<ClusterStatus> {
    let mut st = ClusterStatus::default();
    let mut seen_daemon = false;
    // None: the daemon's fields; Some(i): st.nodes[i]'s.
    let mut current: Option<usize> = None;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let (k, v) = trimmed
                .split_once('=')
                .ok_or_else(|| Error::Parse(format!("no key=value: {trimmed:?}")))?;
            let fields = match current {
                None if seen_daemon => &mut st.fields,
                None => {
                    return Err(Error::Parse(format!(
                        "field before our_nodeid: {trimmed:?}"
                    )))
                }
                Some(i) => &mut st.nodes[i].fields,
            };
            fields.insert(k.to_string(), v.to_string());
            continue;
        }
        let mut words = trimmed.split_whitespace();
        match (words.next(), words.next()) {
            (Some("our_nodeid"), Some(id)) => {
                st.our_nodeid = parse_num(id)?;
                seen_daemon = true;
                current = None;
            }
            (Some("nodeid"), Some(id)) => {
                st.nodes.push(NodeStatus {
                    nodeid: parse_num(id)?,
                    ..Default::default()
                });
                current = Some(st.nodes.len() - 1);
            }
            // "startup node N": a node seen at the daemon's start, already
            // listed with its own record.
            (Some("startup"), _) => {}
            (Some("cannot"), _) => {
                return Err(Error::NotRunning {
                    code: libc::ECONNREFUSED,
                })
            }
            _ => return Err(Error::Parse(format!("unexpected line: {trimmed:?}"))),
        }
    }
    if !seen_daemon {
        return Err(Error::Parse("no our_nodeid line".into()));
    }
    let get = |f: &BTreeMap<String, String>, k: &str| -> u64 {
        f.get(k).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    st.quorate = get(&st.fields, "quorate") != 0;
    st.cluster_ringid = get(&st.fields, "cluster_ringid");
    st.daemon_ringid = get(&st.fields, "daemon_ringid");
    st.monotime = get(&st.fields, "monotime");
    st.fence_pid = get(&st.fields, "fence_pid");
    for n in &mut st.nodes {
        n.member = get(&n.fields, "member") != 0;
        n.need_fencing = get(&n.fields, "need_fencing") != 0;
        n.left_reason = n.fields.get("left_reason").cloned().unwrap_or_default();
        n.add_time = get(&n.fields, "add_time");
        n.rem_time = get(&n.fields, "rem_time");
        n.fail_monotime = get(&n.fields, "fail_monotime");
        n.fail_walltime = get(&n.fields, "fail_walltime");
        n.fence_monotime = get(&n.fields, "fence_monotime");
        n.fence_walltime = get(&n.fields, "fence_walltime");
    }
    st.nodes.sort_by_key(|n| n.nodeid);
    Ok(st)
}

fn parse_num<T: std::str::FromStr>(s: &str) -> Result<T> {
    s.parse()
        .map_err(|_| Error::Parse(format!("not a number: {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `dlm_tool status -v` of a one-node cluster (dlm 4.2.0).
    const ONE: &str = "our_nodeid 1\n    member_count=1\n    joined_count=1\n    remove_count=0\n    daemon_ringid=5\n    cluster_ringid=5\n    quorate=1\n    fence_pid=0\n    fence_in_progress_unknown=0\n    zombie_count=0\n    monotime=7\n    stateful_merge_wait=0\n    \nnodeid 1\n    member=1\n    killed=0\n    left_reason=unknown\n    need_fencing=0\n    delay_fencing=0\n    fence_pid=0\n    fence_pid_wait=0\n    fence_result_wait=0\n    fence_actor_last=0\n    fence_actor_done=0\n    add_time=6\n    rem_time=0\n    fail_walltime=0\n    fail_monotime=0\n    fence_walltime=0\n    fence_monotime=0\n    \n";

    #[test]
    fn parses_one_node() {
        let st = parse_verbose(ONE).unwrap();
        assert_eq!(st.our_nodeid, 1);
        assert!(st.quorate);
        assert_eq!(
            (st.cluster_ringid, st.daemon_ringid, st.monotime),
            (5, 5, 7)
        );
        assert_eq!(st.fields["zombie_count"], "0");
        assert_eq!(st.nodes.len(), 1);
        let n = st.node(1).unwrap();
        assert!(n.member);
        assert_eq!(n.add_time, 6);
        assert_eq!(n.left_reason, "unknown");
        assert_eq!(n.state(), NodeState::Member);
        assert_eq!(st.members(), [1]);
    }

    #[test]
    fn node_states() {
        let mut n = NodeStatus::default();
        assert_eq!(n.state(), NodeState::Down);
        n.fail_monotime = 10;
        n.need_fencing = true;
        assert_eq!(n.state(), NodeState::NeedsFencing);
        n.need_fencing = false;
        n.fence_monotime = 12;
        assert_eq!(n.state(), NodeState::Fenced);
        n.member = true;
        assert_eq!(n.state(), NodeState::Member);
        assert_eq!(NodeState::Fenced.name(), "fenced");
    }

    #[test]
    fn rejects_other_text() {
        assert!(matches!(parse_verbose(""), Err(Error::Parse(_))));
        assert!(matches!(
            parse_verbose("cannot connect to dlm_controld\n"),
            Err(Error::NotRunning { .. })
        ));
        assert!(matches!(parse_verbose("    a=1\n"), Err(Error::Parse(_))));
        assert!(matches!(
            parse_verbose("our_nodeid x\n"),
            Err(Error::Parse(_))
        ));
        assert!(matches!(
            parse_verbose("our_nodeid 1\nbogus\n"),
            Err(Error::Parse(_))
        ));
        assert!(matches!(
            parse_verbose("our_nodeid 1\n    novalue\n"),
            Err(Error::Parse(_))
        ));
    }
}
