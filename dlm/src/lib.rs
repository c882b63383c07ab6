//! Safe Rust bindings to **libdlm**, the userspace library of the Linux
//! kernel's Distributed Lock Manager: cluster-wide locks shared by every
//! node of a corosync/dlm_controld cluster (the lock manager of GFS2,
//! OCFS2, lvmlockd and pacemaker stacks). Blocking calls, futures on any
//! runtime, and libdlm's poll mode, over one completion path.
//!
//! ```no_run
//! use dlm::{LockOptions, Lockspace, Mode};
//! use std::time::Duration;
//!
//! // Open the lockspace "myapp", creating it if needed (needs root).
//! let ls = Lockspace::join("myapp", 0o600)?;
//!
//! // A cluster-wide exclusive lock, released when the guard drops.
//! {
//!     let _guard = ls.lock("config", Mode::Ex)?;
//!     // ... only this holder, on any node, is here ...
//! }
//!
//! // Shared, with a timeout; then a value kept in the lock value block.
//! let mut guard = ls.lock_with("counter", Mode::Pr, LockOptions::new().lvb().timeout(Duration::from_secs(5)))?;
//! guard.convert(Mode::Ex)?;
//! let n = guard.lvb().map_or(0, |l| l.bytes[0]);
//! guard.set_lvb(&[n + 1])?;
//! guard.unlock()?; // publishes the new value, then unlocks
//! # Ok::<(), dlm::Error>(())
//! ```
//!
//! # What is here
//! - [`Lockspace`]: create, open, [`join`] (open or create), close on drop,
//!   [`release`](Lockspace::release) / [`leave`] with or without force
//!   ([`Release`]),
//!   [`with_lockspace`].
//! - Futures of every waiting call (`*_async`), and libdlm's poll mode
//!   ([`LockspaceBuilder::poll_mode`], [`Lockspace::dispatch`]): see the
//!   threading model below.
//! - [`LockGuard`]: a granted lock. [`Lockspace::lock`] waits;
//!   [`Lockspace::try_lock`] does not; [`Lockspace::lock_with`] takes
//!   [`LockOptions`]: a timeout, every request flag. Conversions up and
//!   down, lock value blocks ([`Lvb`]), blocking notifications,
//!   persistent locks and orphans ([`Lockspace::purge_orphans`] by
//!   [`Node`] and [`Owner`]), unlock on drop ([`DropBehavior`]),
//!   [`with_lock`] / [`with_lock_with`].
//! - [`CachedLock`] ([`Lockspace::cached`]): one DLM lock kept across
//!   local uses (served with no system call) and given up when a blocking
//!   notification says another holder waits; see [`cache`].
//! - [`Mode`] with the DLM's compatibility table; [`Error`], one enum that
//!   keeps the operating system's error code.
//! - Every flag combination the kernel rejects is rejected here first with
//!   [`Error::InvalidArgument`]; bad names with [`Error::InvalidName`].
//!
//! # Threading model
//! Each open lockspace handle calls `dlm_ls_pthread_init`: libdlm starts
//! one thread per handle that reads the kernel's answers and runs the AST
//! (completion) and BAST (blocking) callbacks. This crate's callbacks run
//! on that thread and do almost nothing: a completion is copied into the
//! lock's cell and handed to the waiting thread by one compare-and-swap
//! and one unpark; a blocking notification goes over a `crossbeam-channel`
//! to the guard's [`blocking`](LockGuard::blocking) receiver. No user code
//! runs on libdlm's thread, with one exception: waking a future calls the
//! executor's `Waker::wake` there (every common executor only schedules
//! the task). No panic can cross into C. Every state and transition of
//! that hand-over is in one file, `cell.rs`, with its table, and is
//! model-checked with loom on every interleaving of its small cases.
//!
//! A cancel names the kernel's lock id, and the kernel frees a lock id the
//! moment it hands out the answer that ends the lock (a try refused, a
//! cancel done) and gives it to the next new request of the node, any
//! process's. So the crate writes a cancel only where no answer can have
//! ended the lock without the cancel itself: conversions, and new requests
//! sent without `NOQUEUE`, while unanswered. A try
//! ([`try_lock`](Lockspace::try_lock), [`LockOptions::no_wait`]) is never
//! cancelled: its timeout and a dropped try future just stop waiting, and
//! a late grant is released in the background.
//!
//! So every call here blocks the calling thread until the kernel has
//! answered, and any number of threads can lock through one
//! [`Lockspace`] (it is `Send + Sync`, and cheap to clone) at the same
//! time. A [`LockGuard`] is `Send`: it can be unlocked on another thread
//! than the one that locked it. Helper threads: one process-wide watchdog
//! (untimed waits check once a second that their lockspace still exists;
//! it watches the device directory with inotify, so a lockspace released
//! by another process, even by force, is known within milliseconds), and
//! per handle, from the first lock that needs it, a *reaper*, which
//! releases locks nobody owns any more.
//!
//! Each lock's status block and value-block buffer live at a fixed heap
//! address until the lock's last callback. A waiter that gives up on an
//! answer (its cancel unanswered for [`CANCEL_GRACE`], its lockspace gone)
//! and a late answer meet in one atomic handshake: exactly one of them
//! owns the answer. If the late answer leaves a lock held, the reaper
//! converts it to NL and unlocks it, so no value block gets bytes nobody
//! chose. The reaper writes each request and goes on (the answer comes
//! back to it as a job): it never waits, so one handle's background
//! releases never wait on another's, and a poll-mode handle that nobody
//! dispatches holds up only its own. Writes the kernel refuses for a while
//! (`EBUSY`, `ENOBUFS`, a stopped lockspace) are tried again with a
//! back-off of up to a second. The limits: an answer that never comes (a
//! lockspace stopped for good, a poll-mode handle never dispatched again)
//! leaves the lock held until its handle closes, when the kernel unlocks
//! it; so does a release the kernel refuses outright, counted in
//! [`Stats::release_failures`]. When the last handle of a lockspace is
//! dropped while such releases are under way, the worker keeps the libdlm
//! handle open until they are done, for five seconds at most (reading a
//! poll-mode handle's answers itself: nobody else can any more), so that a
//! persistent lock is unlocked rather than orphaned and a value set under
//! EX is published; a [`release`](Lockspace::release) or [`leave`] of the
//! lockspace waits for them first. [`stats`] counts give-ups, retries and
//! reaped locks.
//!
//! **Futures.** Every waiting call has an async counterpart
//! ([`Lockspace::lock_async`], [`try_lock_async`](Lockspace::try_lock_async),
//! [`lock_with_async`](Lockspace::lock_with_async),
//! [`LockGuard::convert_async`], [`convert_with_async`](LockGuard::convert_with_async),
//! [`unlock_async`](LockGuard::unlock_async),
//! [`blocking_async`](LockGuard::blocking_async), [`with_lock_async`],
//! [`with_lock_with_async`]). They
//! take the same completion path: the future hands its request to its
//! handle's worker thread, which writes it (the kernel blocks a write while
//! the DLM recovers from a node's failure, for seconds: never an executor's
//! thread; the worker runs under `SCHED_BATCH`, so waking it does not
//! preempt the task that handed the request over, which hands the rest
//! of its requests over first; on a CPU kept busy by the polling thread,
//! a request then waits for that thread to block or for the end of its
//! time slice, a few milliseconds), registers its task's waker in the lock's cell, and the callback
//! wakes the task instead of a thread. No `poll` or `drop` of a future
//! makes a system call that can block. No runtime is required (tokio, smol, `block_on` all work;
//! the futures are `Send`); timeouts are kept by one process-wide timer
//! thread, started by the first timed future, and the watchdog wakes
//! waiting futures once a second to check that their lockspace still
//! exists. Many requests can
//! be in flight from one thread (join the futures). Dropping a pending
//! future cancels its request (where a cancel may be written, see above)
//! and gives its cell up exactly as a blocking call that gives up does:
//! whatever the kernel answers later, no lock is left held. In a fork's
//! child, dropping a copy of a future does nothing. A guard from an `_async` call releases its lock in the
//! background when dropped ([`DropBehavior::Background`]), so that a
//! drop never blocks an executor; a later request of the same resource may
//! then still meet it for a moment (await
//! [`unlock_async`](LockGuard::unlock_async) to be sure it is gone).
//!
//! **Poll mode.** A handle opened with [`LockspaceBuilder::poll_mode`] has no
//! libdlm thread: the program polls its descriptor
//! ([`AsFd`](std::os::fd::AsFd)) and calls [`Lockspace::dispatch`] when it
//! is readable, and the callbacks — the same ones — run on that thread,
//! waking the futures of the handle. Since the program owns the
//! descriptor, the crate reads the kernel's answers from it itself rather
//! than through `dlm_dispatch`: the descriptor is non-blocking from the
//! open on, each answer (`struct dlm_lock_result`) is one `read(2)`,
//! checked, and applied as libdlm applies it, through the same callbacks
//! (one completion path for both modes). A blocking call on a poll-mode
//! handle reads its own answer, applying those of other requests that
//! come first on the way: with nothing else in flight, a lock is one
//! `write` and one `read` — measured in the repository's benchmark at
//! about the cost of a C program reading its own answers, well below
//! libdlm's AST thread (`BENCHMARKS.md`). A kernel whose device protocol
//! is not 6.0.x (checked once per handle) is read with `dlm_dispatch`
//! instead. So a single-threaded program
//! needs no other thread at all (no watchdog unless a future is used or a
//! lock asks for blocking notifications, which hear of a forced release
//! through it; no worker unless a future is used or a lock is given up or
//! released in the background; no timer unless a future has a deadline). Never both modes
//! on one handle: `dlm_dispatch` toggles the descriptor's flags under the
//! AST thread's feet, and a reader there would take the thread's answers.
//!
//! **Unwinding.** From the moment a request is written until its answer is
//! seen, the lock's cell is owned by a guard whose drop abandons it to the
//! lockspace (and the lock to the reaper) instead of freeing it: a panic
//! on the way, or an early return, never frees memory the kernel still
//! writes into, and never leaves a lock held.
//!
//! **Fork.** A `fork`'s child inherits the lockspace descriptors but not
//! libdlm's thread. The crate tells a child by a `pthread_atfork`
//! generation (no system call on the hot path): in the child, calls on the
//! parent's handles and guards fail with [`Error::Forked`] and send
//! nothing, and dropping them does nothing to the parent's locks (the
//! child closes only its copy of the descriptor). A child opens its own
//! handles. Descriptors are close-on-exec, so a program the process runs
//! never keeps its locks alive. As with any multi-threaded program, a
//! child that forks while another thread holds one of the crate's internal
//! mutexes (opening or closing a lockspace, the watchdog's once-a-second
//! pass) would block on it; fork from a quiet moment, or exec at once.
//!
//! **Forced release by another process.** When another process releases
//! the lockspace with force, its locks go with it. The kernel deletes the
//! lockspace's device first; the crate's watchdog sees the deletion
//! (inotify) and, from then on, nothing is granted through the handle:
//! new requests, conversions and unlocks fail with
//! [`Error::LockspaceGone`], waits under way end with it,
//! [`LockGuard::is_held`] says `false`, and [`LockGuard::wait_blocking`]
//! and [`LockGuard::blocking_async`] return it. The window until the
//! handle knows is the watchdog's reaction to the deletion: tens of
//! milliseconds as measured (`RELIABILITY.md`); a second at most where
//! inotify is not to be had. A lock that asked for blocking
//! notifications also gets one on its [`LockGuard::blocking`] receiver at
//! that moment, whose [`Blocking::lockspace_gone`] is `true` (a program
//! that only `select!`s on the receiver hears of the loss too). The other
//! nodes may grant the released locks as soon as this node has left the
//! lockspace.
//!
//! **Re-entrance.** DLM locks belong to a lockspace handle, not to a
//! thread: a thread asking again for a resource it holds in an
//! incompatible mode conflicts with itself like any other holder. The DLM
//! does not detect it, and neither does this crate (that would cost a
//! table lookup on every request): an untimed request then waits for
//! ever. Use [`Lockspace::try_lock`] or [`LockOptions::timeout`] where a
//! thread may hold the resource already.
//!
//! # When the cluster fails
//! What each failure looks like to a caller. The figures measured in the
//! repository's test cluster (user-mode Linux nodes; dlm_controld with
//! fencing and the harness's fence agent, which kills the victim's kernel)
//! are in `RELIABILITY.md` (the chaos suite and the scenarios of
//! `ci/scenarios`), not repeated here.
//! - **Another node crashes**: the DLM recovers once corosync and
//!   dlm_controld have removed (with fencing: fenced) the node; meanwhile
//!   requests on resources that need it wait (in the kernel: no error, no
//!   timeout other than the request's own), and the kernel blocks the
//!   *write* of a request, cancel or unlock while the recovery runs (a
//!   blocking call's thread waits there; a future's write is made by its
//!   handle's worker thread, so no `poll` or `drop` waits). The dead
//!   node's locks are dropped; a value block it held in PW or EX is then
//!   reported not valid ([`Lvb::valid`] `false`). A node rebooted after a
//!   fence rejoins.
//! - **A process holding locks dies**: the kernel closes its descriptor,
//!   unlocks its locks (waiters elsewhere are granted) and keeps its
//!   persistent ones as orphans.
//! - **dlm_controld (or corosync) dies on this node**: the kernel stops
//!   every lockspace of the node, and blocks every write to it (lock,
//!   unlock, cancel, open, release, close) *uninterruptibly* until a
//!   recovery that never comes. The crate sees that state from outside
//!   without writing (the lockspace's recovery status in sysfs reads 0 and
//!   nobody holds dlm_controld's pid-file lock), re-read as soon as the
//!   daemon exits (the watchdog waits on a pidfd of it) and once a second:
//!   from then on new requests fail with [`Error::LockspaceStopped`]
//!   without being written, and waits end with it. What cannot be helped:
//!   a request written in the moment between the daemon's death and the
//!   watchdog's re-read (milliseconds), a write already in the kernel, and
//!   closing the handle or exiting, stay blocked until the daemons are
//!   back or the node is restarted. The other nodes fence this one and go
//!   on.
//! - **Released by force by another process**: waits end with
//!   [`Error::LockspaceGone`] as soon as the watchdog sees the device
//!   deleted (see "Forced release by another process" above); the locks
//!   are gone.
//! - **Partition**: with fencing, the majority fences the isolated node;
//!   the isolated node's programs die with it. Until then, on the
//!   isolated node, requests to resources mastered elsewhere wait in the
//!   kernel; in the moment the membership changes the kernel may refuse
//!   them with `ENOBUFS` (no way to reach the master), which the crate
//!   sends again for [`BUSY_PATIENCE`] before it answers
//!   [`Error::Unreachable`]. Without fencing, the majority may grant locks
//!   the isolated node still believes it holds: real clusters fence for
//!   that reason (the chaos suite saw exactly that overlap when its fence
//!   agent once answered without fencing). A link lost for less than
//!   corosync's token timeout changes nothing but latency.
//! - **A kernel defect panics the node** (seen on Linux 6.1; the code
//!   involved is unchanged in later kernels read, which were not run): if
//!   a node crashes while this node's new request on a resource waits
//!   for the crashed node to say who masters it, and that request is
//!   cancelled (a timed request that runs out, a dropped future), the
//!   next request on the same name from this node, in the seconds after
//!   the recovery, fails the kernel's assertion `r->res_nodeid >= 0` and
//!   panics the whole node. Nothing a program can do rules it out; it is
//!   shown with the plain command-line tool by
//!   `ci/kernel-defects/uncertain-master.sh`. Programs that cancel many
//!   new requests around node failures (short timeouts, `select!`) on a
//!   small set of names run into it most. A second way into the same
//!   assertion (seen on Linux 6.1 in `ci/scenarios/10-executor-stall.sh`,
//!   about one run in four before that scenario paused its new names
//!   around the crash): a new request made in the moment this node's
//!   kernel has already dropped its connection to the crashed node but
//!   the lockspace has not yet stopped for the recovery, on a name whose
//!   directory node is the crashed one, cannot send its master lookup and
//!   is left with no master; cancelling it (the same timeouts and drops)
//!   panics the node at once, in `dlm_user_cancel`.
//! - **A kernel defect leaves a lock record behind** (seen on Linux 6.1):
//!   a try ([`Lockspace::try_lock`] and every `no_wait` request) in flight
//!   to a master that dies, when this node becomes the resource's new
//!   master, is resent by the recovery on this node and refused there
//!   ([`Error::WouldBlock`], as the caller sees); the kernel never frees
//!   its lock record. It holds nothing (every request on the resource is
//!   granted as if it were not there), but the lockspace stays busy on
//!   this node: a release without force ([`Lockspace::release`] with
//!   [`Release::IfUnused`], [`leave`]) fails with
//!   [`Error::LockspaceBusy`] for good, and only a forced release frees
//!   it. Shown with the plain command-line tool by
//!   `ci/kernel-defects/try-resend-leak.sh`.
//! - **The last handle is dropped during a recovery**: the close of the
//!   libdlm handle (`dlm_close_lockspace`) waits in the kernel until the
//!   recovery is done, on the thread that drops it (unless releases of
//!   the handle are still under way: then the handle's worker closes it).
//!   In async code, keep a clone of the lockspace outside the tasks, or
//!   drop the last one where blocking is allowed (`spawn_blocking`).
//!
//! # How libdlm's defects are avoided
//! - The `_wait` calls (`dlm_ls_lock_wait`, `dlm_ls_unlock_wait`) are never
//!   used: they can return before the kernel is done with the caller's
//!   stack. Everything goes through `dlm_ls_lock`/`dlm_ls_unlock` and this
//!   crate's own callbacks.
//! - `dlm_ls_unlock` sends uninitialised bytes as the lock value block, and
//!   the kernel stores them if the lock was last requested with
//!   `LKF_VALBLK` in PW or EX. A guard in that state is first converted to
//!   NL (publishing a value set with [`LockGuard::set_lvb`], or writing
//!   nothing), then unlocked.
//! - The kernel's lock timeouts are gone (Linux 6.4); a timeout here waits
//!   with a deadline, then cancels, and handles the cancel racing the
//!   grant (the grant wins: the guard is returned).
//! - An orphan adoption gets no callback: it is answered by the call.
//! - libdlm's global state (control device, version) is unlocked: the
//!   crate initialises it once, under a process-wide lock, before the
//!   first create or open (`dlm_kernel_version`), and only reads it after
//!   that; creates, opens, closes and releases take no process-wide lock,
//!   so one the kernel blocks (a close through a recovery) holds up no
//!   other lockspace call of the process.
//! - `dlm_release_lockspace` ignores the kernel's answer: the error is
//!   recovered from `errno`. The kernel finishes removing a lockspace only
//!   once every handle of it is closed, so a release while this process
//!   still has another handle open is refused ([`Error::HandlesOpen`]) rather than
//!   left to wait for ever.
//! - With no DLM, libdlm can fail with `errno` 0: that is
//!   [`Error::NotAvailable`].
//! - **Poll mode does not use `dlm_dispatch`** (on device protocol 6.0.x):
//!   the crate reads the answers itself. Why, and what it does that
//!   libdlm's dispatch does not:
//!   - `dlm_dispatch` sets `O_NONBLOCK`, reads until `EAGAIN` and restores
//!     the flags on every call (about six system calls per answer, and a
//!     flag change another thread of the program can observe); here the
//!     descriptor is made non-blocking once, at open, and an answer costs
//!     one `read(2)`. A blocking call stops reading at its own answer.
//!   - libdlm copies each result wherever it points and calls whatever
//!     function it names, trusting its length; here a result is applied
//!     only if its length is the length read, its protocol version is
//!     known, its value block lies inside it, its callback is one of this
//!     crate's and its status block one of the two of the lock its
//!     callback argument names. Anything else is [`Error::BadAnswer`]
//!     (counted in [`Stats::bad_answers`]), and nothing of it is applied;
//!     since its waiter cannot be told which it was, every wait of the
//!     handle then ends with that error and requests that could wait are
//!     refused with it, while releases and conversions down are still
//!     written (no wait is left waiting for ever for an answer that was
//!     refused, and no lock is kept from the other nodes).
//!   - A completion is applied to the status block of the slot its
//!     argument names, whichever of the lock's two the result names: the
//!     kernel's cancel replaces the lock's status block and completion
//!     argument (but not its blocking argument, so blocking notifications
//!     after a cancel name the cancel's status block), and a result read
//!     while a cancel is being written can pair the old status block with
//!     the new argument. libdlm writes the status block the result names
//!     and calls the callback with the other slot's argument then.
//!   - The reader stores the lock id into the status block atomically,
//!     and the thread that wrote a new request reads it atomically right
//!     after its write (the id a cancel names): the answer can be read on
//!     another thread meanwhile. libdlm's own store of the same id, on
//!     the writing thread after its write, is a plain C store this crate
//!     cannot change; both store the same value.
//!   - libdlm drops the blocking notification's mode; here it is passed on
//!     ([`Blocking::mode`]).
//!   - libdlm rewrites the lock's status block at every blocking
//!     notification (with the lock's last status); the reader writes a
//!     status block only at a completion, the moment the crate reads it
//!     (libdlm's thread, in the default mode, still does).
//!
//! # Cluster set-up
//! The DLM needs the `dlm` kernel module, corosync and dlm_controld
//! running on every node; creating or releasing a lockspace needs
//! `CAP_SYS_ADMIN`. The repository's `ci/vm` runs any command in a
//! one-node cluster of user-mode Linux.
//!
//! # Cargo features
//! - `tokio` (off by default): `dlm::tokio::drive`, which reads
//!   a poll-mode handle's answers on a tokio runtime through its reactor
//!   (`AsyncFd`). Nothing else needs a runtime: the futures run on any
//!   executor without a feature.
//! - `lt` (off by default): build on `libdlm_lt`, the library without
//!   threads (dlm-sys's feature `lt`): poll mode only; the calls that need
//!   libdlm's thread (`Lockspace::open`, `create`, `join`, ...) do not
//!   compile, with a message that says so.
//!
//! The library itself comes from [`dlm-sys`](https://docs.rs/dlm-sys),
//! which links the system's `libdlm.so` (Debian: `libdlm-dev`; Fedora:
//! `dlm-devel`), found with pkg-config or `DLM_LIB_DIR`. On a machine
//! without libdlm, `DLM_NO_LINK=1 cargo check` (or `cargo doc`) checks a
//! program that uses this crate without linking it.
//!
//! # Examples
//! Runnable programs in the package's `examples/` directory; each runs
//! with no arguments (`cargo run --example NAME` from the crate's
//! directory, as root on a node of a DLM cluster) and prints its usage
//! with `--help`:
//! - [`quickstart`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/quickstart.rs):
//!   join a lockspace, lock in EX, then PR, release the lockspace;
//! - [`lvb-counter`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/lvb-counter.rs):
//!   a counter kept in a lock value block, one NL lock converted up and
//!   down;
//! - [`async-quickstart`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/async-quickstart.rs):
//!   tokio tasks sharing a counter through `lock_with_async`;
//! - [`poll-loop`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/poll-loop.rs):
//!   poll mode from one thread, with `poll(2)` and [`Lockspace::dispatch`];
//! - [`timeout-race`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/timeout-race.rs):
//!   timed requests racing a holder (grants crossing cancels);
//! - [`many-in-flight`](https://github.com/dlm-rs/dlm-rs/blob/main/dlm/examples/many-in-flight.rs):
//!   a hundred requests in flight from one thread.
#![doc = include_str!("calls.md")]
// docs.rs builds with `--cfg docsrs` on nightly: items behind a feature
// (`dlm::tokio`) are badged with it. (`doc_auto_cfg` was merged into
// `doc_cfg` in Rust 1.92.)
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(missing_docs, unsafe_op_in_unsafe_fn, missing_debug_implementations)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod cache;
mod cell;
mod deadlock;
mod default;
mod error;
mod flags;
mod fork;
mod future;
mod guard;
mod handle;
mod health;
mod lockspace;
mod lt;
mod lvb;
mod mode;
mod name;
mod options;
mod reader;
mod reaper;
mod request;
mod state;
mod stats;
mod timer;
#[cfg(feature = "tokio")]
pub mod tokio;
mod version;
mod wait;

pub use cache::{CacheOptions, CacheStats, CachedGuard, CachedLock, GiveUp};
pub use cell::{Blocking, BlockingReceiver};
/// The channel crate of [`LockGuard::blocking`]'s receiver, for
/// [`select!`](crossbeam_channel::select) over it and other channels.
pub use crossbeam_channel;
pub use default::DEFAULT_LOCKSPACE;
pub use error::{Error, Result};
pub use flags::LockFlags;
pub use future::{with_lock_async, with_lock_with_async};
pub use guard::{with_lock, with_lock_with, DropBehavior, LockGuard, WithLockError};
#[cfg(not(feature = "lt"))]
pub use lockspace::{join, with_lockspace};
pub use lockspace::{
    leave, AsyncWrites, Lockspace, LockspaceBuilder, Node, Owner, Release, ReleaseError,
};
#[cfg(feature = "lt")]
pub use lt::{join, with_lockspace, NeedsLibdlmThread};
pub use lvb::{Lvb, LVB_LEN};
pub use mode::Mode;
pub use name::{MAX_LOCKSPACE_NAME, MAX_RESOURCE_NAME};
pub use options::LockOptions;
pub use request::{BUSY_PATIENCE, CANCEL_GRACE, UNLOCK_PATIENCE};
pub use state::Granted;
pub use stats::{stats, Stats};
pub use version::{kernel_version, library_version, Version};
