//! Lockspaces: create, open, join, close, release.

use crate::error::{set_errno, Error, Result};
use crate::guard::LockGuard;
use crate::handle::{
    count_open, open_count, release_by_name, release_handle, wait_lingering, Handle, How,
};
use crate::mode::Mode;
use crate::name;
use crate::options::LockOptions;
use crate::request::Patience;
use dlm_sys as sys;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An open lockspace: the namespace that lock names live in.
///
/// A `Lockspace` is a cheap, clonable handle (`Send + Sync`): many threads
/// can lock through one handle, or through clones of it, at once. Each
/// open lockspace has its own libdlm AST thread, started here with
/// `dlm_ls_pthread_init`.
///
/// # Closing
/// The lockspace is closed (`dlm_close_lockspace`) when the last handle
/// *and the last [`LockGuard`] of it* are dropped: every guard keeps its
/// lockspace open, so dropping a handle never strands a lock or a waiter,
/// and never blocks. Closing does not remove the lockspace from the
/// cluster; [`Lockspace::release`] (or [`leave`]) does.
///
/// # Example
/// ```no_run
/// use dlm::{Lockspace, Mode};
/// let ls = Lockspace::join("myapp", 0o600)?;
/// let guard = ls.lock("mylock1", Mode::Ex)?;
/// // ... the resource "mylock1" is ours, cluster-wide ...
/// guard.unlock()?;
/// # Ok::<(), dlm::Error>(())
/// ```
#[derive(Clone)]
pub struct Lockspace {
    pub(crate) inner: Arc<Handle>,
}

impl fmt::Debug for Lockspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lockspace")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

impl Lockspace {
    /// Creates the lockspace `name`, or joins it if it exists already
    /// (`dlm_new_lockspace` with no flags), and opens it. `mode` is the
    /// permission of its device, e.g. `0o600`.
    ///
    /// Needs `CAP_SYS_ADMIN`. Each create is counted by the kernel and
    /// undone by one [`release`](Lockspace::release).
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::PermissionDenied`];
    /// [`Error::NotAvailable`] with no DLM (module or `dlm_controld`).
    #[cfg(not(feature = "lt"))]
    pub fn create(name: &str, mode: u32) -> Result<Lockspace> {
        Lockspace::get(name, How::Create { mode, flags: 0 }, false)
    }

    /// Creates the lockspace `name`, failing with
    /// [`Error::LockspaceExists`] if it exists (`dlm_new_lockspace` with
    /// `DLM_LSFL_NEWEXCL`).
    ///
    /// # Errors
    /// As [`create`](Lockspace::create), and [`Error::LockspaceExists`].
    #[cfg(not(feature = "lt"))]
    pub fn create_exclusive(name: &str, mode: u32) -> Result<Lockspace> {
        Lockspace::get(
            name,
            How::Create {
                mode,
                flags: sys::DLM_LSFL_NEWEXCL,
            },
            false,
        )
    }

    /// Opens an existing lockspace (`dlm_open_lockspace`). Needs only
    /// permission on its device, as set by its creator.
    ///
    /// # Errors
    /// [`Error::LockspaceNotFound`]; [`Error::PermissionDenied`];
    /// [`Error::NotAvailable`]; [`Error::InvalidName`].
    #[cfg(not(feature = "lt"))]
    pub fn open(name: &str) -> Result<Lockspace> {
        Lockspace::get(name, How::Open, false)
    }

    /// A builder for the other ways of getting a handle: poll mode
    /// ([`LockspaceBuilder::poll_mode`]) and the device's permissions.
    ///
    /// ```no_run
    /// let ls = dlm::Lockspace::builder("myapp").poll_mode().join()?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    pub fn builder(name: &str) -> LockspaceBuilder {
        LockspaceBuilder {
            name: name.to_owned(),
            permissions: 0o600,
            // libdlm_lt (feature `lt`) has no thread: poll mode only.
            poll: cfg!(feature = "lt"),
            writes: AsyncWrites::default(),
            libdlm_dispatch: false,
            patience: Patience::default(),
        }
    }

    /// Opens the lockspace `name`, creating it if it does not exist
    /// (`dlm_open_lockspace`, else `dlm_new_lockspace`); ocaml-dlm's
    /// `join`. The same as the free function [`join`].
    ///
    /// # Errors
    /// As [`open`](Lockspace::open) and [`create`](Lockspace::create).
    /// [`created`](Lockspace::created) tells which of the two it did.
    #[cfg(not(feature = "lt"))]
    pub fn join(name: &str, mode: u32) -> Result<Lockspace> {
        match Lockspace::open(name) {
            Err(Error::LockspaceNotFound) => Lockspace::create(name, mode),
            other => other,
        }
    }

    /// Whether this handle came from `dlm_new_lockspace`
    /// ([`create`](Lockspace::create), [`create_exclusive`](Lockspace::create_exclusive)
    ///, or a [`join`](Lockspace::join) that
    /// created): the kernel counts each create, and one
    /// [`release`](Lockspace::release) is owed for it. `false` for a
    /// handle from [`open`](Lockspace::open) (or a join that opened).
    pub fn created(&self) -> bool {
        self.inner.created
    }

    #[cfg(not(feature = "lt"))]
    fn get(name: &str, how: How, polled: bool) -> Result<Lockspace> {
        Lockspace::get_with(
            name,
            how,
            polled,
            AsyncWrites::default(),
            false,
            Patience::default(),
        )
    }

    fn get_with(
        name: &str,
        how: How,
        polled: bool,
        writes: AsyncWrites,
        libdlm_dispatch: bool,
        patience: Patience,
    ) -> Result<Lockspace> {
        let cname = name::lockspace_name(name)?;
        let in_poll = writes == AsyncWrites::InPoll;
        Ok(Lockspace {
            inner: Arc::new(Handle::open(
                cname,
                how,
                polled,
                in_poll,
                libdlm_dispatch,
                patience,
            )?),
        })
    }

    /// The lockspace's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The libdlm handle (`dlm_lshandle_t`), for calls this crate does not
    /// wrap. Do not close or release it, and do not read its file
    /// descriptor: libdlm's AST thread reads it.
    pub fn as_raw(&self) -> sys::dlm_lshandle_t {
        self.inner.raw()
    }

    /// Poll mode: reads every answer the kernel has for this handle and runs
    /// its callbacks on the calling thread: waiting calls and futures of
    /// this handle then see their answers. Call it when the descriptor
    /// ([`AsFd`](std::os::fd::AsFd)) is readable; it does not wait for one.
    /// The crate reads the answers itself, one `read(2)` each until none
    /// is left (see the crate docs' poll mode), or with `dlm_dispatch` on a
    /// kernel whose device protocol it does not know.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] unless the handle is in poll mode
    /// (libdlm's thread reads the descriptor of the others);
    /// [`Error::Forked`]; [`Error::BadAnswer`] when an answer could not be
    /// applied (the others read with it were); errors of `read(2)` or
    /// `dlm_dispatch`.
    pub fn dispatch(&self) -> Result<()> {
        if !self.inner.is_polled() {
            return Err(Error::InvalidArgument(
                "dispatch is for handles opened in poll mode",
            ));
        }
        if self.inner.forked() {
            return Err(Error::Forked);
        }
        self.inner.dispatch_now()
    }

    /// Whether the handle was opened in poll mode
    /// ([`LockspaceBuilder::poll_mode`]).
    pub fn is_polled(&self) -> bool {
        self.inner.is_polled()
    }

    /// Whether the lockspace is still in service: its device disappears when
    /// it is released (possibly by force, by another process). Always
    /// `true` when the device could not be seen at open. `false` too on a
    /// poll-mode handle whose reader refused an answer
    /// ([`Error::BadAnswer`]), for good.
    pub fn is_alive(&self) -> bool {
        self.inner.is_alive()
    }

    /// Takes the lock `name` in `mode`, waiting as long as it takes
    /// (`dlm_ls_lock`, then the completion AST).
    ///
    /// The wait has no bound: a lock this process (this thread included:
    /// the DLM does not detect re-entrance) holds in an incompatible mode
    /// makes it wait for ever; see [`lock_with`](Lockspace::lock_with) with
    /// a timeout. While the lockspace is stopped (dlm_controld dead), the
    /// kernel blocks the request's write itself (crate docs, "When the
    /// cluster fails").
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::LockspaceGone`]; [`Error::Forked`];
    /// [`Error::LockspaceStopped`]; [`Error::InProgress`] or
    /// [`Error::Unreachable`] after [`BUSY_PATIENCE`](crate::BUSY_PATIENCE)
    /// of refused writes; other errors of `dlm_ls_lock`. (The DLM's own deadlock detection
    /// answers [`Error::Deadlock`] only to conversions.)
    pub fn lock(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, LockOptions::new())
    }

    /// Takes the lock `name` in `mode` if that can be done at once
    /// (`LKF_NOQUEUE`).
    ///
    /// Queue order counts: a request compatible with every granted lock is
    /// still refused while an incompatible request or conversion waits
    /// ahead of it (add [`LockOptions::no_order`] to ignore the queue).
    /// "At once" is the DLM's answer, not a bound on the call's time: while
    /// the resource's master is being recovered the answer waits for the
    /// recovery, and a write the kernel refuses with `EBUSY` or `ENOBUFS`
    /// is sent again for up to [`BUSY_PATIENCE`](crate::BUSY_PATIENCE).
    ///
    /// # Errors
    /// [`Error::WouldBlock`] when another holder's mode is incompatible,
    /// and the errors of [`lock`](Lockspace::lock).
    pub fn try_lock(&self, name: impl AsRef<[u8]>, mode: Mode) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, LockOptions::new().no_wait())
    }

    /// Takes the lock `name` in `mode` with `options`: flags, a timeout,
    /// blocking notifications (`dlm_ls_lock`; with a timeout, `dlm_ls_unlock`
    /// with `LKF_CANCEL` when it expires).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a flag combination the kernel
    /// rejects; [`Error::TimedOut`]; [`Error::WouldBlock`]; and the errors
    /// of [`lock`](Lockspace::lock).
    pub fn lock_with(
        &self,
        name: impl AsRef<[u8]>,
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        LockGuard::request(self, name.as_ref(), mode, options)
    }

    /// Adopts an orphan: a [persistent](LockOptions::persistent) lock
    /// left behind by a closed handle or an exited process, held in `mode`
    /// (`dlm_ls_lock` with `LKF_PERSISTENT | LKF_ORPHAN`). The kernel
    /// answers at once and sends no AST. The adopted lock stays persistent.
    ///
    /// `options` may add [`lvb`](LockOptions::lvb) (the LVB is read at the
    /// next conversion) and [`notify_blocking`](LockOptions::notify_blocking).
    ///
    /// # Errors
    /// [`Error::OrphanNotFound`] when there is no orphan of that name;
    /// [`Error::OrphanModeMismatch`] when there is one in another mode.
    pub fn adopt_orphan(
        &self,
        name: impl AsRef<[u8]>,
        mode: Mode,
        options: LockOptions,
    ) -> Result<LockGuard> {
        LockGuard::adopt(self, name.as_ref(), mode, options)
    }

    /// Removes orphan locks (`dlm_ls_purge`): those of `owner` on `node`.
    /// `purge_orphans(Node::This, Owner::Any)` removes every orphan this
    /// node holds in the lockspace.
    ///
    /// The kernel records as a lock's owner the id of the *thread* that
    /// made its last request or conversion (the process id only for a
    /// process's main thread); [`LockGuard::owner_tid`] tells it, so a
    /// program that orphans locks can note it for a later purge with
    /// [`Owner::Thread`].
    ///
    /// Call it from another thread than the owner's: when the owner is the
    /// calling thread's own id, the kernel purges *this handle's* locks
    /// instead of orphans; that call is refused here.
    ///
    /// ```no_run
    /// use dlm::{Lockspace, Node, Owner};
    /// let ls = Lockspace::open("myapp")?;
    /// ls.purge_orphans(Node::This, Owner::Any)?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `owner` is the calling thread's id;
    /// [`Error::Forked`]; errors of `dlm_ls_purge`.
    pub fn purge_orphans(&self, node: Node, owner: Owner) -> Result<()> {
        self.inner.check()?;
        let nodeid = node.raw();
        let pid = owner.raw();
        // SAFETY: gettid has no preconditions.
        if pid != 0 && pid == unsafe { libc::gettid() } as u32 {
            return Err(Error::InvalidArgument(
                "the owner is the calling thread's id: the kernel would purge this handle's own locks, not orphans; purge from another thread",
            ));
        }
        set_errno(0);
        // SAFETY: the handle is open for as long as `self` lives.
        let rc = unsafe { sys::dlm_ls_purge(self.as_raw(), nodeid as i32, pid as i32) };
        if rc != 0 {
            return Err(Error::last("dlm_ls_purge"));
        }
        Ok(())
    }

    /// Releases the lockspace (`dlm_release_lockspace`): undoes one
    /// create; the kernel removes the lockspace when the last is undone.
    ///
    /// With [`Release::IfUnused`], the kernel refuses while locks exist in
    /// it (orphans included, and other nodes' locks):
    /// [`Error::LockspaceBusy`]. With [`Release::Force`], the lockspace
    /// goes with its locks, and every other process's waits on it end with
    /// [`Error::LockspaceGone`].
    ///
    /// The kernel finishes removing a lockspace only when every handle of
    /// it, in every process, is closed; until then the call waits. So that
    /// it cannot wait for this process itself, it is refused with
    /// [`Error::HandlesOpen`] while this process has another handle of the
    /// lockspace open: a clone of this one, a [`LockGuard`] (guards keep
    /// their lockspace open) or another [`open`](Lockspace::open).
    ///
    /// libdlm closes this handle before asking the kernel, which unlocks
    /// its non-persistent locks (there are none: a guard would have kept
    /// the handle from being the last) and orphans its persistent ones.
    ///
    /// # Errors
    /// A [`ReleaseError`] with the error and, when the lockspace is still
    /// there (refused before the call, or by the kernel), a handle to it
    /// ([`ReleaseError::into_lockspace`]): the refused handle itself, or
    /// one opened anew after the kernel's refusal.
    ///
    /// ```no_run
    /// use dlm::{Lockspace, Release};
    /// let ls = Lockspace::create("myapp", 0o600)?;
    /// // ...
    /// ls.release(Release::IfUnused)?;
    /// # Ok::<(), dlm::Error>(())
    /// ```
    pub fn release(self, how: Release) -> std::result::Result<(), ReleaseError> {
        let refuse = |ls: Lockspace, error: Error| ReleaseError {
            error,
            lockspace: Some(ls),
        };
        if let Err(e) = self.inner.check() {
            return Err(refuse(self, e));
        }
        wait_lingering(&self.inner.name);
        if open_count(&self.inner.name) > 1 {
            return Err(refuse(self, Error::HandlesOpen));
        }
        // Releases still under way in the background (guards dropped, given
        // up requests) finish first, for a moment at most: unfinished, they
        // would leave locks (persistent ones as orphans) and the kernel
        // would refuse the release.
        let deadline = std::time::Instant::now() + crate::handle::LINGER;
        while self.inner.handoff().has_work() && std::time::Instant::now() < deadline {
            if self.inner.is_polled() {
                self.inner.drive(10);
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        // Another owner: a clone, a guard, a future.
        let handle = match Arc::try_unwrap(self.inner) {
            Ok(handle) => handle,
            Err(inner) => return Err(refuse(Lockspace { inner }, Error::HandlesOpen)),
        };
        let created = handle.created;
        let mut core = handle.into_core();
        // The handle's worker may hold the libdlm handle for the write at
        // hand: wait for it to let go (a write the kernel blocks for a
        // recovery makes this wait as long).
        let mut core = loop {
            match Arc::try_unwrap(core) {
                Ok(core) => break core,
                Err(shared) => {
                    core = shared;
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
            }
        };
        // SAFETY: sole owner of the libdlm handle; libdlm stops its AST
        // thread, closes and frees it; `closed` keeps Drop from closing it
        // again.
        let result = unsafe { release_handle(&core.name, core.raw(), how.force()) };
        core.closed = true;
        count_open(&core.name, -1);
        // The kept cells go: the AST thread is gone with the handle.
        drop(core.handoff().close());
        let polled = core.is_polled();
        let writes = if core.writes_in_poll() {
            AsyncWrites::InPoll
        } else {
            AsyncWrites::Worker
        };
        let name = core.name.clone();
        let patience = core.patience();
        let libdlm_dispatch = core.reads_with_libdlm();
        drop(core);
        result.map_err(|error| {
            // The kernel refused: the lockspace is still there. Give the
            // caller a handle back, as the one it gave was closed.
            let lockspace = match error {
                Error::LockspaceBusy | Error::PermissionDenied { .. } => name
                    .to_str()
                    .ok()
                    .and_then(|n| {
                        Lockspace::get_with(n, How::Open, polled, writes, libdlm_dispatch, patience)
                            .ok()
                    })
                    .map(|ls| {
                        // The create this release was to undo still counts.
                        if created {
                            Lockspace::mark_created(ls)
                        } else {
                            ls
                        }
                    }),
                _ => None,
            };
            ReleaseError { error, lockspace }
        })
    }

    /// The same handle, recorded as owing a release.
    fn mark_created(ls: Lockspace) -> Lockspace {
        match Arc::try_unwrap(ls.inner) {
            Ok(mut inner) => {
                inner.created = true;
                Lockspace {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => Lockspace { inner },
        }
    }
}

/// How [`Lockspace::release`] and [`leave`] treat the locks left in the
/// lockspace (the `force` argument of `dlm_release_lockspace`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Release {
    /// Only a lockspace without locks: the kernel refuses while locks
    /// exist in it (orphans included, and other nodes' locks), with
    /// [`Error::LockspaceBusy`].
    IfUnused,
    /// The lockspace goes with its locks: every other process's waits on
    /// it end with [`Error::LockspaceGone`].
    Force,
}

impl Release {
    /// libdlm's `force` argument.
    pub(crate) fn force(self) -> bool {
        match self {
            Release::IfUnused => false,
            Release::Force => true,
        }
    }
}

/// The node whose orphans [`Lockspace::purge_orphans`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Node {
    /// The node this process runs on (`nodeid` 0 for `dlm_ls_purge`).
    This,
    /// The node with this cluster node id (corosync's `nodeid`, as
    /// `dlm_tool status` shows it). `Id(0)` is the same as
    /// [`Node::This`].
    Id(u32),
}

impl Node {
    /// The `nodeid` of `dlm_ls_purge`: 0 for this node.
    fn raw(self) -> u32 {
        match self {
            Node::This => 0,
            Node::Id(id) => id,
        }
    }
}

/// Whose orphans [`Lockspace::purge_orphans`] removes: the kernel records
/// as a lock's owner the thread that made its last request or conversion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Owner {
    /// Every owner's (`pid` 0 for `dlm_ls_purge`).
    Any,
    /// Those of the thread with this id (`gettid`; the process id for a
    /// process's main thread), as [`LockGuard::owner_tid`] tells it. Never
    /// the calling thread's own id: the kernel would purge the calling
    /// handle's locks instead, so that call is refused. `Thread(0)` is the
    /// same as [`Owner::Any`].
    Thread(u32),
}

impl Owner {
    /// The `pid` of `dlm_ls_purge`: 0 for every owner.
    fn raw(self) -> u32 {
        match self {
            Owner::Any => 0,
            Owner::Thread(tid) => tid,
        }
    }
}

/// The lockspace's descriptor (`dlm_ls_get_fd`). In poll mode, poll it for
/// readability (an event loop's `AsyncFd`, mio's `SourceFd`, `poll(2)`) and
/// call [`Lockspace::dispatch`]; never read it. In the default mode
/// libdlm's thread reads it: do not poll or read it.
impl std::os::fd::AsRawFd for Lockspace {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.inner.fd()
    }
}

impl std::os::fd::AsFd for Lockspace {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the descriptor stays open as long as the handle (and so
        // `self`) lives.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.inner.fd()) }
    }
}

/// How to get a lockspace handle ([`Lockspace::builder`]): the device's
/// permissions, and poll mode.
#[derive(Debug, Clone)]
pub struct LockspaceBuilder {
    name: String,
    permissions: u32,
    poll: bool,
    writes: AsyncWrites,
    libdlm_dispatch: bool,
    patience: Patience,
}

/// Which thread writes the requests of a handle's futures
/// ([`LockspaceBuilder::async_writes`]). Blocking calls always write on
/// their own thread.
///
/// The kernel blocks the write of a request for as long as the DLM's
/// recovery runs after a node's failure (seconds, growing with the locks to
/// recover). A future whose `poll` writes blocks its executor's thread for
/// that long; handing the write to another thread costs a hand-over per
/// batch of requests. BENCHMARKS.md ("Futures written by the handle's
/// worker") gives both as measured in the test cluster: the longest poll
/// through a peer's crash and recovery (scenario `10-executor-stall`), and
/// many requests in flight against C (case 7, `rust` and `rust_inpoll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AsyncWrites {
    /// The handle's worker thread writes every request and cancel of its
    /// futures: no `poll` and no `drop` of a future makes a system call
    /// that can block. The default.
    #[default]
    Worker,
    /// A future writes its request in its first `poll`, on the executor's
    /// thread (faster with many requests in flight; blocks that thread
    /// while a recovery runs). Cancels and refused writes (`EBUSY`) still
    /// go to the worker; a drop never writes.
    InPoll,
}

impl LockspaceBuilder {
    /// The permissions of the device a create makes (default `0o600`).
    pub fn permissions(mut self, mode: u32) -> LockspaceBuilder {
        self.permissions = mode;
        self
    }

    /// Poll mode: no libdlm thread for this handle. The program polls the
    /// handle's descriptor and calls [`Lockspace::dispatch`] when it is
    /// readable, which runs the callbacks on its own thread (libdlm's
    /// `dlm_dispatch` way, as mdadm and rgmanager do; the crate reads the
    /// answers itself, one `read(2)` each, and keeps the descriptor
    /// non-blocking). Blocking notifications say which mode is waited for
    /// ([`Blocking::mode`](crate::Blocking::mode)). Blocking calls on
    /// the handle dispatch while they wait, so a single-threaded program
    /// needs no other thread; futures are woken from `dispatch` (so they
    /// complete only while something dispatches: the program's loop, or
    /// `dlm::tokio::drive`; a plain `block_on` of a poll-mode future with
    /// nothing dispatching waits for ever). Meant for
    /// one thread: several threads blocking on one poll-mode handle take
    /// turns dispatching (one that finds another at it rechecks every few
    /// milliseconds).
    pub fn poll_mode(mut self) -> LockspaceBuilder {
        self.poll = true;
        self
    }

    /// Which thread writes the requests of the handle's futures (default
    /// [`AsyncWrites::Worker`]: never the executor's); see [`AsyncWrites`]
    /// for what each costs.
    pub fn async_writes(mut self, writes: AsyncWrites) -> LockspaceBuilder {
        self.writes = writes;
        self
    }

    /// Poll mode: reads the answers with libdlm's `dlm_dispatch`, as the
    /// crate does by itself on a kernel whose device protocol its own
    /// reader does not know, instead of that reader (no effect without
    /// [`poll_mode`](Self::poll_mode)). What changes: each dispatch sets
    /// `O_NONBLOCK`, reads until `EAGAIN` and restores the flags (about
    /// six system calls for a lone answer against one `read(2)`), a
    /// blocking call polls before it reads, blocking notifications do not
    /// say which mode is waited for ([`Blocking::mode`](crate::Blocking::mode)
    /// is `None`), and libdlm applies each result without the reader's
    /// checks (see the crate docs, "How libdlm's defects are avoided").
    /// For comparing the two, and for tests of the fallback.
    pub fn libdlm_dispatch(mut self) -> LockspaceBuilder {
        self.libdlm_dispatch = true;
        self
    }

    /// How long a cancelled request of this handle may take to answer
    /// before its waiter gives up on it (default [`CANCEL_GRACE`](crate::CANCEL_GRACE),
    /// 10 s): the waiter then returns and the handle's worker releases
    /// the lock if the kernel grants it later. Shorter makes a timed call
    /// return sooner when the DLM is slow to answer a cancel (a remote
    /// master busy or a recovery under way), at the price of more
    /// requests given up (counted in [`Stats::given_up`](crate::Stats));
    /// tests use it to reach the give-up path.
    pub fn cancel_grace(mut self, grace: Duration) -> LockspaceBuilder {
        self.patience.cancel_grace = grace;
        self
    }

    /// How long an unlock of this handle may take to answer before
    /// [`LockGuard::unlock`](crate::LockGuard::unlock) returns
    /// [`Error::TimedOut`] (default [`UNLOCK_PATIENCE`](crate::UNLOCK_PATIENCE), 60 s; counted in
    /// whole seconds, at least one). The kernel still carries the unlock
    /// out.
    pub fn unlock_patience(mut self, patience: Duration) -> LockspaceBuilder {
        self.patience.unlock = patience;
        self
    }

    /// How long this handle sends a request again while the kernel answers
    /// `EBUSY` or `ENOBUFS` (default [`BUSY_PATIENCE`](crate::BUSY_PATIENCE), 10 s) before
    /// [`Error::InProgress`] or [`Error::Unreachable`].
    pub fn busy_patience(mut self, patience: Duration) -> LockspaceBuilder {
        self.patience.busy = patience;
        self
    }

    fn get(&self, how: How) -> Result<Lockspace> {
        Lockspace::get_with(
            &self.name,
            how,
            self.poll,
            self.writes,
            self.libdlm_dispatch,
            self.patience,
        )
    }

    /// [`Lockspace::create`] with these settings.
    ///
    /// # Errors
    /// As [`Lockspace::create`].
    pub fn create(self) -> Result<Lockspace> {
        let how = How::Create {
            mode: self.permissions,
            flags: 0,
        };
        self.get(how)
    }

    /// [`Lockspace::create_exclusive`] with these settings.
    ///
    /// # Errors
    /// As [`Lockspace::create_exclusive`].
    pub fn create_exclusive(self) -> Result<Lockspace> {
        let how = How::Create {
            mode: self.permissions,
            flags: sys::DLM_LSFL_NEWEXCL,
        };
        self.get(how)
    }

    /// [`Lockspace::open`] with these settings.
    ///
    /// # Errors
    /// As [`Lockspace::open`].
    pub fn open(self) -> Result<Lockspace> {
        self.get(How::Open)
    }

    /// [`Lockspace::join`] with these settings.
    ///
    /// # Errors
    /// As [`Lockspace::join`].
    pub fn join(self) -> Result<Lockspace> {
        match self.get(How::Open) {
            Err(Error::LockspaceNotFound) => self.create(),
            other => other,
        }
    }
}

/// A refused or failed [`Lockspace::release`]: the error, and the
/// lockspace handle back when the lockspace is still there.
///
/// Converts into [`Error`] (with `?`), dropping the handle.
#[derive(Debug)]
pub struct ReleaseError {
    error: Error,
    lockspace: Option<Lockspace>,
}

impl ReleaseError {
    /// Why the release did not happen.
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The handle, when the lockspace is still there: the one given to
    /// [`release`](Lockspace::release) if it was refused before libdlm was
    /// called ([`Error::HandlesOpen`], [`Error::Forked`]), or one opened
    /// anew if the kernel refused ([`Error::LockspaceBusy`],
    /// [`Error::PermissionDenied`]).
    pub fn into_lockspace(self) -> Option<Lockspace> {
        self.lockspace
    }

    /// Both parts.
    pub fn into_parts(self) -> (Error, Option<Lockspace>) {
        (self.error, self.lockspace)
    }
}

impl fmt::Display for ReleaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "release refused: {}", self.error)
    }
}

impl std::error::Error for ReleaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ReleaseError> for Error {
    fn from(e: ReleaseError) -> Error {
        e.error
    }
}

/// Opens the lockspace `name`, creating it if needed (ocaml-dlm's `join`);
/// see [`Lockspace::join`].
///
/// # Errors
/// As [`Lockspace::join`].
#[cfg(not(feature = "lt"))]
pub fn join(name: &str, mode: u32) -> Result<Lockspace> {
    Lockspace::join(name, mode)
}

/// Releases the lockspace `name` (ocaml-dlm's `leave`), through a handle
/// opened for the purpose: `dlm_open_lockspace` then
/// `dlm_release_lockspace`. See [`Release`] for `how`, and
/// [`Lockspace::release`] for why it is refused while this process has the
/// lockspace open.
///
/// # Errors
/// [`Error::InvalidName`]; [`Error::LockspaceNotFound`];
/// [`Error::LockspaceBusy`] (locks remain and `how` is
/// [`Release::IfUnused`]);
/// [`Error::HandlesOpen`] (this process has the lockspace open);
/// [`Error::PermissionDenied`]; [`Error::NotAvailable`].
pub fn leave(name: &str, how: Release) -> Result<()> {
    let cname = name::lockspace_name(name)?;
    release_by_name(&cname, how.force())
}

/// Joins the lockspace `name` (creating it with mode `0o600` if needed),
/// runs `f` with it, then closes it; if the join created it, releases it
/// too ([`Release::IfUnused`]): ocaml-dlm's `with_lockspace`.
///
/// # Errors
/// The errors of [`join`]; those of [`Lockspace::release`] after `f` (for
/// instance [`Error::LockspaceBusy`] if `f` left orphans behind in it).
#[cfg(not(feature = "lt"))]
pub fn with_lockspace<T>(name: &str, f: impl FnOnce(&Lockspace) -> T) -> Result<T> {
    let ls = Lockspace::join(name, 0o600)?;
    let value = f(&ls);
    if ls.created() {
        ls.release(Release::IfUnused)?;
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send_sync<T: Send + Sync>() {}

    #[test]
    fn handles_and_guards_cross_threads() {
        send_sync::<Lockspace>();
        send_sync::<LockGuard>();
        send_sync::<Error>();
    }
}
