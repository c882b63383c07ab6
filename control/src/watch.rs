//! Watching the cluster change: snapshots taken by polling, and the events
//! between two of them.
//!
//! libdlmcontrol has no notification of membership changes for ordinary
//! programs (`dlmc_fs_connect` and its results serve only a cluster file
//! system registered with a lockspace), so a [`Watcher`] polls.

use crate::error::{Error, Result};
use crate::lockspace::{lockspaces, Lockspace};
use crate::node::{node, MemberState, Node};
use crate::status::{status, ClusterStatus, NodeState};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Everything this node's `dlm_controld` reports at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The node's view of the cluster ([`status`]).
    pub status: ClusterStatus,
    /// Each lockspace by name, with every node of the cluster status that
    /// the daemon knows in it ([`node`]).
    pub lockspaces: BTreeMap<String, (Lockspace, Vec<Node>)>,
}

impl Snapshot {
    /// Takes a snapshot: [`status`], [`lockspaces`], and for each
    /// lockspace, [`node`] of every node the status lists
    /// (`dlmc_print_status`, `dlmc_lockspaces`, `dlmc_node_info`; not
    /// `dlmc_lockspace_nodes`, which leaks, see [`nodes`](crate::nodes)).
    /// A lockspace that goes away between the calls is left out.
    ///
    /// # Errors
    /// As those calls.
    pub fn take() -> Result<Snapshot> {
        let status = status()?;
        let mut map = BTreeMap::new();
        'ls: for ls in lockspaces()? {
            let mut members = Vec::new();
            for n in &status.nodes {
                match node(&ls.name, n.nodeid) {
                    Ok(m) => members.push(m),
                    Err(Error::NodeNotFound) => {}
                    Err(Error::LockspaceNotFound) => continue 'ls,
                    Err(e) => return Err(e),
                }
            }
            map.insert(ls.name.clone(), (ls, members));
        }
        Ok(Snapshot {
            status,
            lockspaces: map,
        })
    }

    /// What changed from `old` to `self`, in a stable order: quorum, then
    /// nodes, then lockspaces (added, changing, members, removed).
    pub fn changes_since(&self, old: &Snapshot) -> Vec<Event> {
        let mut out = Vec::new();
        if self.status.quorate != old.status.quorate {
            out.push(Event::Quorum {
                quorate: self.status.quorate,
            });
        }
        let states = |s: &ClusterStatus| -> BTreeMap<i32, NodeState> {
            s.nodes.iter().map(|n| (n.nodeid, n.state())).collect()
        };
        for (nodeid, from, to) in diff(&states(&old.status), &states(&self.status)) {
            out.push(Event::Node { nodeid, from, to });
        }
        for (name, (ls, members)) in &self.lockspaces {
            let Some((old_ls, old_members)) = old.lockspaces.get(name) else {
                out.push(Event::LockspaceAdded { name: name.clone() });
                for n in members {
                    out.push(Event::Member {
                        lockspace: name.clone(),
                        nodeid: n.nodeid,
                        from: None,
                        to: Some(n.state()),
                    });
                }
                continue;
            };
            if ls.is_changing() != old_ls.is_changing() {
                out.push(Event::LockspaceChanging {
                    name: name.clone(),
                    changing: ls.is_changing(),
                });
            }
            let m = |v: &[Node]| -> BTreeMap<i32, MemberState> {
                v.iter().map(|n| (n.nodeid, n.state())).collect()
            };
            for (nodeid, from, to) in diff(&m(old_members), &m(members)) {
                out.push(Event::Member {
                    lockspace: name.clone(),
                    nodeid,
                    from,
                    to,
                });
            }
        }
        for name in old.lockspaces.keys() {
            if !self.lockspaces.contains_key(name) {
                out.push(Event::LockspaceRemoved { name: name.clone() });
            }
        }
        out
    }
}

/// The keys whose values differ between two maps, with both values.
fn diff<V: Copy + PartialEq>(
    old: &BTreeMap<i32, V>,
    new: &BTreeMap<i32, V>,
) -> Vec<(i32, Option<V>, Option<V>)> {
    let mut keys: Vec<i32> = old.keys().chain(new.keys()).copied().collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let (a, b) = (old.get(&k).copied(), new.get(&k).copied());
            (a != b).then_some((k, a, b))
        })
        .collect()
}

/// One change between two [`Snapshot`]s.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The cluster gained or lost quorum.
    Quorum {
        /// Quorate now.
        quorate: bool,
    },
    /// A node's state in the cluster changed; `None`: not known to the
    /// daemon then.
    Node {
        /// The node.
        nodeid: i32,
        /// Before.
        from: Option<NodeState>,
        /// Now.
        to: Option<NodeState>,
    },
    /// This node joined a lockspace (or another program of it created one).
    LockspaceAdded {
        /// The lockspace.
        name: String,
    },
    /// This node left a lockspace.
    LockspaceRemoved {
        /// The lockspace.
        name: String,
    },
    /// A membership change of a lockspace started (`changing`) or
    /// finished: see [`Lockspace::in_progress`].
    LockspaceChanging {
        /// The lockspace.
        name: String,
        /// A change is in progress now.
        changing: bool,
    },
    /// A node's state in a lockspace changed; `None`: not known to the
    /// daemon in that lockspace then.
    Member {
        /// The lockspace.
        lockspace: String,
        /// The node.
        nodeid: i32,
        /// Before.
        from: Option<MemberState>,
        /// Now.
        to: Option<MemberState>,
    },
}

/// Polls `dlm_controld` and reports what changed (see the module docs).
#[derive(Debug)]
pub struct Watcher {
    interval: Duration,
    last: Snapshot,
}

impl Watcher {
    /// Starts watching: takes the first [`Snapshot`]. `interval` is the
    /// time between polls (each poll runs [`Snapshot::take`]: a short
    /// child process, and 1 + lockspaces x nodes queries to the daemon).
    ///
    /// # Errors
    /// As [`Snapshot::take`].
    pub fn new(interval: Duration) -> Result<Watcher> {
        Ok(Watcher {
            interval,
            last: Snapshot::take()?,
        })
    }

    /// The last snapshot taken.
    pub fn snapshot(&self) -> &Snapshot {
        &self.last
    }

    /// Polls until something changed, or until `timeout` (if given) has
    /// passed; returns the changes (empty on timeout).
    ///
    /// # Errors
    /// As [`Snapshot::take`]; the last snapshot is kept, so the next call
    /// reports changes since the last good one.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Vec<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let now = Snapshot::take()?;
            let events = now.changes_since(&self.last);
            self.last = now;
            if !events.is_empty() {
                return Ok(events);
            }
            let mut sleep = self.interval;
            if let Some(d) = deadline {
                let left = d.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Vec::new());
                }
                sleep = sleep.min(left);
            }
            std::thread::sleep(sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::{FailReason, NodeFlags};
    use crate::status::NodeStatus;

    /// (nodeid, flags, fail reason) of a lockspace member.
    type Member = (i32, u32, i32);

    fn snap(quorate: bool, cluster: &[(i32, bool)], ls: &[(&str, &[Member])]) -> Snapshot {
        let status = ClusterStatus {
            quorate,
            nodes: cluster
                .iter()
                .map(|&(nodeid, member)| NodeStatus {
                    nodeid,
                    member,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let lockspaces = ls
            .iter()
            .map(|(name, members)| {
                let l = Lockspace {
                    name: name.to_string(),
                    global_id: 1,
                    flags: Default::default(),
                    completed: None,
                    in_progress: None,
                };
                let n = members
                    .iter()
                    .map(|&(nodeid, flags, reason)| Node {
                        nodeid,
                        flags: NodeFlags(flags),
                        added_seq: 1,
                        removed_seq: 0,
                        fail_reason: FailReason::from_raw(reason),
                        fail_walltime: 0,
                        fail_monotime: 0,
                    })
                    .collect();
                (name.to_string(), (l, n))
            })
            .collect();
        Snapshot { status, lockspaces }
    }

    #[test]
    fn no_change_no_event() {
        let a = snap(true, &[(1, true)], &[("ls", &[(1, 1, 0)])]);
        assert!(a.changes_since(&a.clone()).is_empty());
    }

    #[test]
    fn a_node_fails() {
        let a = snap(
            true,
            &[(1, true), (2, true)],
            &[("ls", &[(1, 1, 0), (2, 1, 0)])],
        );
        let b = snap(
            false,
            &[(1, true), (2, false)],
            &[("ls", &[(1, 1, 0), (2, 0, 3)])],
        );
        assert_eq!(
            b.changes_since(&a),
            vec![
                Event::Quorum { quorate: false },
                Event::Node {
                    nodeid: 2,
                    from: Some(NodeState::Member),
                    to: Some(NodeState::Down)
                },
                Event::Member {
                    lockspace: "ls".into(),
                    nodeid: 2,
                    from: Some(MemberState::Joined),
                    to: Some(MemberState::Failed(FailReason::NodeDown))
                },
            ]
        );
    }

    #[test]
    fn lockspaces_come_and_go() {
        let a = snap(true, &[(1, true)], &[("old", &[(1, 1, 0)])]);
        let b = snap(true, &[(1, true), (3, true)], &[("new", &[(1, 1, 0)])]);
        assert_eq!(
            b.changes_since(&a),
            vec![
                Event::Node {
                    nodeid: 3,
                    from: None,
                    to: Some(NodeState::Member)
                },
                Event::LockspaceAdded { name: "new".into() },
                Event::Member {
                    lockspace: "new".into(),
                    nodeid: 1,
                    from: None,
                    to: Some(MemberState::Joined)
                },
                Event::LockspaceRemoved { name: "old".into() },
            ]
        );
    }
}
