//! The Linux DLM cluster as this node's `dlm_controld` sees it: a safe API
//! over **libdlmcontrol**, the library `dlm_tool ls` and `dlm_tool status`
//! are written with.
//!
//! ```no_run
//! // The lockspaces of this node, their members and their state.
//! for ls in dlm_control::lockspaces()? {
//!     let members = dlm_control::nodes(&ls.name, dlm_control::NodeSet::All)?;
//!     for n in members {
//!         println!("{} node {}: {}", ls.name, n.nodeid, n.state().name());
//!     }
//! }
//! // The node's view of the cluster: quorum, every node, fencing.
//! let st = dlm_control::status()?;
//! println!("node {} quorate {} members {:?}", st.our_nodeid, st.quorate, st.members());
//! // Wait for the next change.
//! let mut w = dlm_control::Watcher::new(std::time::Duration::from_secs(1))?;
//! for event in w.next(None)? {
//!     println!("{event:?}");
//! }
//! # Ok::<(), dlm_control::Error>(())
//! ```
//!
//! Lock users want the crate `libdlm` (`dlm`); this crate is for the
//! operator's questions a program may also need answered: who is in my
//! lockspace, is a member being fenced, does the cluster have quorum (the
//! membership information lvmlockd's source asks libdlm for in a FIXME).
//!
//! Every query connects to `dlm_controld`'s query socket, which only root
//! may use; without a running daemon every call returns
//! [`Error::NotRunning`]. Nothing here changes the cluster.
//!
//! # What wraps each libdlmcontrol function
//!
//! | libdlmcontrol | here |
//! |---|---|
//! | `dlmc_lockspaces` | [`lockspaces`] (frees the library's array) |
//! | `dlmc_lockspace_info` | [`lockspace`] |
//! | `dlmc_lockspace_nodes` | [`nodes`] with [`NodeSet`] |
//! | `dlmc_node_info` | [`node`] |
//! | `dlmc_print_status` | [`status`] (parsed) and [`status_text`]: the library only prints, so it runs in a short-lived child process whose output is read back |
//! | `dlmc_dump_debug`, `dlmc_dump_config`, `dlmc_dump_run`, `dlmc_dump_log_plock`, `dlmc_dump_plocks` | [`dump`] with [`Dump`] |
//! | (polling of the above) | [`Watcher`], [`Snapshot`]: the library has no change notification for programs |
//! | `dlmc_fs_connect`, `dlmc_fs_disconnect`, `dlmc_fs_register`, `dlmc_fs_unregister`, `dlmc_fs_notified`, `dlmc_fs_result` | not wrapped: the protocol between a cluster file system's kernel side (gfs2/ocfs2 mount helpers) and dlm_controld for recovery; a registered program must answer every recovery or the lockspace waits for ever |
//! | `dlmc_deadlock_check` | not wrapped: asks the daemon for a cluster-wide deadlock scan of a lockspace, which it runs only with its `enable_deadlk` option (off by default) |
//! | `dlmc_fence_ack` | not wrapped: tells the daemon a failed node was fenced by hand; sent for a node that was not fenced, it lets recovery go on while that node may still write shared storage: an operator's act (`dlm_tool fence_ack`) |
//! | `dlmc_reload_config`, `dlmc_set_config` | not wrapped: reconfigure the daemon (`dlm_tool reload_config`, `set_config`) |
//! | `dlmc_run_start`, `dlmc_run_check` | not wrapped: run a shell command on every node through the daemon (`dlm_tool run`) |
//!
//! The raw declarations of all of them are in `dlmcontrol-sys`.
#![deny(missing_docs, unsafe_op_in_unsafe_fn, missing_debug_implementations)]

mod capture;
mod dump;
mod error;
mod lockspace;
mod name;
mod node;
mod query;
mod status;
mod watch;

pub use dump::{dump, Dump};
pub use error::{Error, Result};
pub use lockspace::{lockspace, lockspaces, Change, Lockspace, LockspaceFlags, Wait};
pub use node::{node, nodes, FailReason, MemberState, Node, NodeFlags, NodeSet};
pub use status::{status, status_text, ClusterStatus, NodeState, NodeStatus, StatusFormat};
pub use watch::{Event, Snapshot, Watcher};
