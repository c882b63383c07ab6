//! `dlm-lock ls` and `dlm-lock status`: the lockspaces of this node and the
//! node's view of the cluster, as `dlm_controld` reports them (through the
//! crate `dlm-control`, over libdlmcontrol), in `dlm_tool`'s words or as
//! JSON.

use crate::events::json_string;
use dlm_control::{
    Change, ClusterStatus, Event, Lockspace, MemberState, Node, NodeSet, NodeState, NodeStatus,
    Result, StatusFormat,
};

/// One lockspace and its nodes, as `dlm-lock ls` reports it.
#[derive(Debug)]
pub struct LsEntry {
    /// The lockspace.
    pub lockspace: Lockspace,
    /// Its members (the last completed change).
    pub members: Vec<Node>,
    /// Every node the daemon knows in it.
    pub nodes: Vec<Node>,
}

/// Gathers the lockspaces (all, or the one named) with their nodes.
///
/// # Errors
/// As `dlm_control::lockspaces`, `lockspace` and `nodes`.
pub fn gather(name: Option<&str>) -> Result<Vec<LsEntry>> {
    let all = match name {
        Some(n) => vec![dlm_control::lockspace(n)?],
        None => dlm_control::lockspaces()?,
    };
    all.into_iter()
        .map(|lockspace| {
            let members = dlm_control::nodes(&lockspace.name, NodeSet::Members)?;
            let nodes = dlm_control::nodes(&lockspace.name, NodeSet::All)?;
            Ok(LsEntry {
                lockspace,
                members,
                nodes,
            })
        })
        .collect()
}

fn change_words(c: &Change) -> String {
    format!(
        "member {} joined {} remove {} failed {} seq {},{}",
        c.member_count, c.joined_count, c.remove_count, c.failed_count, c.seq, c.combined_seq
    )
}

/// `dlm_tool ls`'s layout (with `-n`'s node lines when `nodes` is set,
/// each followed by a `state` word).
pub fn ls_text(entries: &[LsEntry], nodes: bool) -> String {
    let mut out = String::from("dlm lockspaces\n");
    for e in entries {
        let ls = &e.lockspace;
        out += &format!("name          {}\n", ls.name);
        out += &format!("id            0x{:08x}\n", ls.global_id);
        out += &format!(
            "flags         0x{:08x} {}\n",
            ls.flags.0,
            ls.flags.names().join(" ")
        );
        if let Some(c) = &ls.completed {
            out += &format!("change        {}\n", change_words(c));
        }
        if let Some(c) = &ls.in_progress {
            out += &format!("new change    {}\n", change_words(c));
            out += &format!("new status    wait {}\n", c.wait.name());
        }
        let ids: Vec<String> = e.members.iter().map(|n| n.nodeid.to_string()).collect();
        out += &format!("members       {}\n", ids.join(" "));
        if nodes {
            out += "all nodes\n";
            for n in &e.nodes {
                // dlm_tool's line (member -1 for a disallowed node; the
                // check dlm_controld waits for), then the state.
                let member = if n.flags.disallowed() {
                    -1
                } else {
                    i32::from(n.flags.member())
                };
                let check = if n.flags.need_fencing() {
                    "fence"
                } else if n.flags.check_fs() {
                    "fs"
                } else {
                    "none"
                };
                out += &format!(
                    "nodeid {} member {} failed {} start {} seq_add {} seq_rem {} check {} state {}\n",
                    n.nodeid,
                    member,
                    n.fail_reason.raw(),
                    u8::from(n.flags.started()),
                    n.added_seq,
                    n.removed_seq,
                    check,
                    n.state().name()
                );
            }
        }
        out.push('\n');
    }
    out
}

fn change_json(c: Option<&Change>) -> String {
    match c {
        None => "null".into(),
        Some(c) => format!(
            "{{\"member\": {}, \"joined\": {}, \"remove\": {}, \"failed\": {}, \"seq\": {}, \"combined_seq\": {}, \"wait\": {}}}",
            c.member_count,
            c.joined_count,
            c.remove_count,
            c.failed_count,
            c.seq,
            c.combined_seq,
            json_string(c.wait.name())
        ),
    }
}

fn node_json(n: &Node) -> String {
    format!(
        "{{\"nodeid\": {}, \"state\": {}, \"member\": {}, \"failed\": {}, \"start\": {}, \"need_fencing\": {}, \"seq_add\": {}, \"seq_rem\": {}, \"fail_walltime\": {}}}",
        n.nodeid,
        json_string(n.state().name()),
        n.flags.member(),
        n.fail_reason.raw(),
        n.flags.started(),
        n.flags.need_fencing(),
        n.added_seq,
        n.removed_seq,
        n.fail_walltime
    )
}

/// One JSON array on one line: an object per lockspace.
pub fn ls_json(entries: &[LsEntry]) -> String {
    let items: Vec<String> = entries
        .iter()
        .map(|e| {
            let ls = &e.lockspace;
            let flags: Vec<String> = ls.flags.names().into_iter().map(json_string).collect();
            let members: Vec<String> = e.members.iter().map(|n| n.nodeid.to_string()).collect();
            let nodes: Vec<String> = e.nodes.iter().map(node_json).collect();
            format!(
                "{{\"name\": {}, \"id\": {}, \"flags\": [{}], \"changing\": {}, \"change\": {}, \"new_change\": {}, \"members\": [{}], \"nodes\": [{}]}}",
                json_string(&ls.name),
                ls.global_id,
                flags.join(", "),
                ls.is_changing(),
                change_json(ls.completed.as_ref()),
                change_json(ls.in_progress.as_ref()),
                members.join(", "),
                nodes.join(", ")
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn node_status_json(n: &NodeStatus) -> String {
    format!(
        "{{\"nodeid\": {}, \"state\": {}, \"member\": {}, \"need_fencing\": {}, \"left_reason\": {}, \"add_time\": {}, \"rem_time\": {}, \"fail_monotime\": {}, \"fail_walltime\": {}, \"fence_monotime\": {}, \"fence_walltime\": {}}}",
        n.nodeid,
        json_string(n.state().name()),
        n.member,
        n.need_fencing,
        json_string(&n.left_reason),
        n.add_time,
        n.rem_time,
        n.fail_monotime,
        n.fail_walltime,
        n.fence_monotime,
        n.fence_walltime
    )
}

/// One JSON object on one line: the daemon's view and its nodes.
pub fn status_json(st: &ClusterStatus) -> String {
    let nodes: Vec<String> = st.nodes.iter().map(node_status_json).collect();
    let members: Vec<String> = st.members().iter().map(i32::to_string).collect();
    format!(
        "{{\"our_nodeid\": {}, \"quorate\": {}, \"cluster_ringid\": {}, \"daemon_ringid\": {}, \"monotime\": {}, \"fence_pid\": {}, \"members\": [{}], \"nodes\": [{}]}}",
        st.our_nodeid,
        st.quorate,
        st.cluster_ringid,
        st.daemon_ringid,
        st.monotime,
        st.fence_pid,
        members.join(", "),
        nodes.join(", ")
    )
}

/// `dlm-lock status`: `dlm_tool status`'s text, or [`status_json`].
///
/// # Errors
/// As `dlm_control::status`.
pub fn status(json: bool) -> Result<String> {
    if json {
        Ok(status_json(&dlm_control::status()?) + "\n")
    } else {
        dlm_control::status_text(StatusFormat::Summary)
    }
}

fn or_none<T>(v: Option<T>, name: impl Fn(T) -> &'static str) -> &'static str {
    v.map_or("none", name)
}

/// One line of `dlm-lock watch` for a change.
pub fn event_text(e: &Event) -> String {
    match e {
        Event::Quorum { quorate } => format!("quorum {}", if *quorate { "yes" } else { "no" }),
        Event::Node { nodeid, from, to } => format!(
            "node {nodeid} {} -> {}",
            or_none(*from, NodeState::name),
            or_none(*to, NodeState::name)
        ),
        Event::LockspaceAdded { name } => format!("lockspace-added {name}"),
        Event::LockspaceRemoved { name } => format!("lockspace-removed {name}"),
        Event::LockspaceChanging { name, changing } => format!(
            "lockspace {name} {}",
            if *changing { "changing" } else { "settled" }
        ),
        Event::Member {
            lockspace,
            nodeid,
            from,
            to,
        } => format!(
            "member {lockspace} {nodeid} {} -> {}",
            or_none(*from, MemberState::name),
            or_none(*to, MemberState::name)
        ),
        _ => format!("{e:?}"),
    }
}

/// One JSON object of `dlm-lock watch --json` for a change, at `time`
/// (seconds since the epoch).
pub fn event_json(e: &Event, time: f64) -> String {
    let s = |v: &str| json_string(v);
    let body = match e {
        Event::Quorum { quorate } => format!("\"event\": \"quorum\", \"quorate\": {quorate}"),
        Event::Node { nodeid, from, to } => format!(
            "\"event\": \"node\", \"nodeid\": {nodeid}, \"from\": {}, \"to\": {}",
            s(or_none(*from, NodeState::name)),
            s(or_none(*to, NodeState::name))
        ),
        Event::LockspaceAdded { name } => {
            format!("\"event\": \"lockspace-added\", \"lockspace\": {}", s(name))
        }
        Event::LockspaceRemoved { name } => {
            format!("\"event\": \"lockspace-removed\", \"lockspace\": {}", s(name))
        }
        Event::LockspaceChanging { name, changing } => format!(
            "\"event\": \"lockspace-changing\", \"lockspace\": {}, \"changing\": {changing}",
            s(name)
        ),
        Event::Member {
            lockspace,
            nodeid,
            from,
            to,
        } => format!(
            "\"event\": \"member\", \"lockspace\": {}, \"nodeid\": {nodeid}, \"from\": {}, \"to\": {}",
            s(lockspace),
            s(or_none(*from, MemberState::name)),
            s(or_none(*to, MemberState::name))
        ),
        _ => format!("\"event\": \"other\", \"message\": {}", s(&format!("{e:?}"))),
    };
    format!("{{{body}, \"time\": {time:.6}}}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_control::{LockspaceFlags, NodeFlags, Wait};

    fn entry() -> LsEntry {
        let n = Node {
            nodeid: 1,
            flags: NodeFlags(3),
            added_seq: 1,
            removed_seq: 0,
            fail_reason: dlm_control::FailReason::None,
            fail_walltime: 0,
            fail_monotime: 0,
        };
        LsEntry {
            lockspace: Lockspace {
                name: "foo".into(),
                global_id: 0x6ce2339d,
                flags: LockspaceFlags(0),
                completed: Some(Change {
                    member_count: 1,
                    joined_count: 1,
                    remove_count: 0,
                    failed_count: 0,
                    wait: Wait::Nothing,
                    seq: 1,
                    combined_seq: 1,
                }),
                in_progress: None,
            },
            members: vec![n],
            nodes: vec![n],
        }
    }

    #[test]
    fn ls_text_is_dlm_tools() {
        let t = ls_text(&[entry()], true);
        assert_eq!(
            t,
            "dlm lockspaces\nname          foo\nid            0x6ce2339d\nflags         0x00000000 \nchange        member 1 joined 1 remove 0 failed 0 seq 1,1\nmembers       1\nall nodes\nnodeid 1 member 1 failed 0 start 1 seq_add 1 seq_rem 0 check none state joined\n\n"
        );
    }

    #[test]
    fn ls_json_is_one_line() {
        let j = ls_json(&[entry()]);
        assert!(!j.contains('\n'));
        assert!(j.starts_with(r#"[{"name": "foo", "id": 1826763677, "flags": [], "changing": false, "change": {"member": 1,"#), "{j}");
        assert!(
            j.contains(
                r#""members": [1], "nodes": [{"nodeid": 1, "state": "joined", "member": true,"#
            ),
            "{j}"
        );
    }

    #[test]
    fn watch_lines() {
        let e = Event::Member {
            lockspace: "ctl".into(),
            nodeid: 3,
            from: Some(MemberState::Joined),
            to: Some(MemberState::Failed(dlm_control::FailReason::NodeDown)),
        };
        assert_eq!(event_text(&e), "member ctl 3 joined -> failed");
        assert_eq!(
            event_json(&e, 1.5),
            r#"{"event": "member", "lockspace": "ctl", "nodeid": 3, "from": "joined", "to": "failed", "time": 1.500000}"#
        );
        let n = Event::Node {
            nodeid: 3,
            from: None,
            to: Some(NodeState::Member),
        };
        assert_eq!(event_text(&n), "node 3 none -> member");
        assert_eq!(event_text(&Event::Quorum { quorate: false }), "quorum no");
        assert_eq!(
            event_text(&Event::LockspaceChanging {
                name: "a".into(),
                changing: true
            }),
            "lockspace a changing"
        );
    }

    #[test]
    fn status_json_is_one_line() {
        let st = ClusterStatus {
            our_nodeid: 2,
            quorate: true,
            nodes: vec![NodeStatus {
                nodeid: 2,
                member: true,
                left_reason: "unknown".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let j = status_json(&st);
        assert!(
            j.starts_with(r#"{"our_nodeid": 2, "quorate": true,"#),
            "{j}"
        );
        assert!(
            j.contains(r#""members": [2], "nodes": [{"nodeid": 2, "state": "member","#),
            "{j}"
        );
    }
}
