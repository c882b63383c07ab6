//! libdlmcontrol's view, checked against `dlm_tool ls` and `dlm_tool
//! status` (the same daemon asked by another program) in the one-node
//! test cluster.

mod common;

use common::{dlm_tool, field, ls_name};
use dlm_control::{
    lockspace, lockspaces, node, nodes, status, status_text, Error, Event, MemberState, NodeSet,
    NodeState, StatusFormat, Wait, Watcher,
};
use std::time::Duration;

/// A lockspace joined with dlm_tool for the test's length.
struct Joined(String);

impl Joined {
    fn new(test: &str) -> Joined {
        let name = ls_name(test);
        dlm_tool(&["join", &name]);
        Joined(name)
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dlm_tool")
            .args(["leave", &self.0])
            .output();
    }
}

#[test]
fn lockspaces_are_what_dlm_tool_ls_shows() {
    require_cluster!();
    let j = Joined::new("ctl_ls");
    let text = dlm_tool(&["ls", &j.0]);
    let all = lockspaces().unwrap();
    let ls = all
        .iter()
        .find(|l| l.name == j.0)
        .expect("the joined lockspace is listed");
    assert_eq!(
        *ls,
        lockspace(&j.0).unwrap(),
        "dlmc_lockspace_info agrees with dlmc_lockspaces"
    );

    assert_eq!(field(&text, "name"), [j.0.as_str()]);
    assert_eq!(field(&text, "id"), [format!("0x{:08x}", ls.global_id)]);
    assert_eq!(field(&text, "flags")[0], format!("0x{:08x}", ls.flags.0));
    assert!(
        ls.flags.names().is_empty(),
        "a settled lockspace has no flags: {:?}",
        ls.flags
    );
    let c = ls.completed.expect("a completed change");
    assert_eq!(
        field(&text, "change"),
        [
            "member".to_string(),
            c.member_count.to_string(),
            "joined".into(),
            c.joined_count.to_string(),
            "remove".into(),
            c.remove_count.to_string(),
            "failed".into(),
            c.failed_count.to_string(),
            "seq".into(),
            format!("{},{}", c.seq, c.combined_seq),
        ]
    );
    assert_eq!((c.member_count, c.wait), (1, Wait::Nothing));
    assert!(!ls.is_changing());

    let members: Vec<String> = nodes(&j.0, NodeSet::Members)
        .unwrap()
        .iter()
        .map(|n| n.nodeid.to_string())
        .collect();
    assert_eq!(field(&text, "members"), members);
    assert!(
        nodes(&j.0, NodeSet::Next).unwrap().is_empty(),
        "no change in progress"
    );
}

#[test]
fn nodes_are_what_dlm_tool_ls_n_shows() {
    require_cluster!();
    let j = Joined::new("ctl_nodes");
    let text = dlm_tool(&["ls", "-n", &j.0]);
    let all = nodes(&j.0, NodeSet::All).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    for n in &all {
        // "nodeid 1 member 1 failed 0 start 1 seq_add 1 seq_rem 0 check none"
        let line = format!(
            "nodeid {} member {} failed {} start {} seq_add {} seq_rem {} check none",
            n.nodeid,
            u8::from(n.flags.member()),
            n.fail_reason.raw(),
            u8::from(n.flags.started()),
            n.added_seq,
            n.removed_seq
        );
        assert!(
            text.lines().any(|l| l.trim_end() == line),
            "{line:?} not in\n{text}"
        );
        assert_eq!(n.state(), MemberState::Joined);
        assert_eq!(node(&j.0, n.nodeid).unwrap(), *n, "dlmc_node_info agrees");
    }
}

#[test]
fn status_is_what_dlm_tool_status_shows() {
    require_cluster!();
    let st = status().unwrap();
    let text = dlm_tool(&["status"]);
    // cluster nodeid 1 quorate 1 ring seq 5 5
    assert_eq!(
        field(&text, "cluster nodeid"),
        [
            st.our_nodeid.to_string(),
            "quorate".into(),
            u8::from(st.quorate).to_string(),
            "ring".into(),
            "seq".into(),
            st.cluster_ringid.to_string(),
            st.daemon_ringid.to_string(),
        ]
    );
    assert_eq!(st.our_nodeid, 1);
    assert!(st.quorate);
    assert_eq!(st.members(), [1]);
    let me = st.node(1).unwrap();
    assert_eq!(me.state(), NodeState::Member);
    let line = format!(
        "node 1 M add {} rem {} fail {} fence {} at",
        me.add_time, me.rem_time, me.fail_monotime, me.fence_monotime
    );
    assert!(
        text.lines().any(|l| l.starts_with(&line)),
        "{line:?} not in\n{text}"
    );

    // The summary text is dlm_tool's, but for the daemon's clock.
    let ours = status_text(StatusFormat::Summary).unwrap();
    let strip = |t: &str| -> Vec<String> {
        t.lines()
            .filter(|l| !l.starts_with("daemon now"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(strip(&ours), strip(&dlm_tool(&["status"])));
    let verbose = status_text(StatusFormat::Verbose).unwrap();
    assert!(verbose.starts_with("our_nodeid 1\n"), "{verbose}");
}

#[test]
fn unknown_names_are_errors() {
    require_cluster!();
    let missing = ls_name("ctl_missing");
    assert!(
        matches!(lockspace(&missing), Err(Error::LockspaceNotFound)),
        "{:?}",
        lockspace(&missing)
    );
    assert!(matches!(
        nodes(&missing, NodeSet::All),
        Err(Error::LockspaceNotFound)
    ));
    assert!(matches!(lockspace(""), Err(Error::InvalidName(_))));
    assert!(matches!(lockspace([b'x'; 65]), Err(Error::InvalidName(_))));
    assert!(matches!(
        nodes("a\0b", NodeSet::All),
        Err(Error::InvalidName(_))
    ));
    let j = Joined::new("ctl_nonode");
    let r = node(&j.0, 77);
    assert!(matches!(r, Err(Error::NodeNotFound)), "{r:?}");
}

#[test]
fn the_watcher_sees_a_lockspace_come_and_go() {
    require_cluster!();
    let name = ls_name("ctl_watch");
    let mut w = Watcher::new(Duration::from_millis(200)).unwrap();
    assert!(!w.snapshot().lockspaces.contains_key(&name));
    let j = Joined(name.clone());
    dlm_tool(&["join", &name]);
    let ev = w.next(Some(Duration::from_secs(30))).unwrap();
    assert!(
        ev.contains(&Event::LockspaceAdded { name: name.clone() }),
        "{ev:?}"
    );
    assert!(
        ev.contains(&Event::Member {
            lockspace: name.clone(),
            nodeid: 1,
            from: None,
            to: Some(MemberState::Joined)
        }),
        "{ev:?}"
    );
    dlm_tool(&["leave", &name]);
    let ev = w.next(Some(Duration::from_secs(30))).unwrap();
    assert_eq!(ev, vec![Event::LockspaceRemoved { name: name.clone() }]);
    // Nothing more happens.
    assert!(w.next(Some(Duration::from_millis(500))).unwrap().is_empty());
    drop(j);
}

/// VmRSS of this process, kB.
fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

#[test]
fn queries_do_not_leak() {
    require_cluster!();
    // Several lockspaces, so that dlmc_lockspaces' array is sizeable.
    let js: Vec<Joined> = (0..4)
        .map(|i| Joined::new(&format!("ctl_leak{i}")))
        .collect();
    for _ in 0..50 {
        lockspaces().unwrap();
    }
    let before = rss_kb();
    for _ in 0..1000 {
        let l = lockspaces().unwrap();
        assert!(l.len() >= js.len());
        node(&js[0].0, 1).unwrap();
        lockspace(&js[1].0).unwrap();
    }
    for _ in 0..100 {
        status().unwrap();
    }
    let after = rss_kb();
    // 1000 unfreed arrays of 4+ lockspaces (136 bytes each) would be
    // 540 kB at least.
    assert!(
        after < before + 256,
        "VmRSS grew from {before} to {after} kB"
    );
}

/// libdlmcontrol's own leak in dlmc_lockspace_nodes, measured: what
/// `nodes` documents.
#[test]
fn lockspace_nodes_leak_is_the_librarys() {
    require_cluster!();
    let j = Joined::new("ctl_nleak");
    for _ in 0..50 {
        nodes(&j.0, NodeSet::All).unwrap();
    }
    let before = rss_kb();
    for _ in 0..2000 {
        nodes(&j.0, NodeSet::All).unwrap();
    }
    let grown = rss_kb().saturating_sub(before);
    eprintln!("2000 dlmc_lockspace_nodes calls: VmRSS +{grown} kB");
    // About 420 bytes a call: 820 kB; never the 64-node buffer's 5 MB.
    assert!(grown < 2000, "VmRSS grew by {grown} kB");
}
