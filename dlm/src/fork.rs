//! Telling a fork's child from its parent, cheaply.
//!
//! After `fork`, the child shares the parent's lockspace descriptors but
//! has no AST thread: anything it wrote would act on the parent's locks,
//! and answers to its requests would reach the parent's AST thread. So
//! every handle and guard records the process *generation* it was made in,
//! and a `pthread_atfork` child handler bumps the generation: an atomic
//! load on each call tells a child (no `getpid()`, a system call, on the
//! hot path).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Bumped in every fork's child.
static GENERATION: AtomicU32 = AtomicU32::new(0);

extern "C" fn child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Installs the child handler (once per process; the handler stays
/// installed in children).
pub(crate) fn install() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        // SAFETY: registers a handler that only bumps an atomic, which is
        // async-signal-safe as `fork` requires of child handlers.
        let rc = unsafe { libc::pthread_atfork(None, None, Some(child)) };
        // ENOMEM is the only failure: forks then go undetected, as before.
        let _ = rc;
    });
}

/// The current process generation: 0 in the process that first used the
/// crate, one more in each generation of fork's children.
pub(crate) fn generation() -> u32 {
    GENERATION.load(Ordering::Relaxed)
}

/// A process-wide helper thread's "started in this generation" mark.
#[derive(Debug)]
pub(crate) struct StartedIn(AtomicU32);

impl StartedIn {
    /// Not started yet.
    pub(crate) const fn new() -> StartedIn {
        StartedIn(AtomicU32::new(u32::MAX))
    }

    /// Whether it was started in this process generation.
    pub(crate) fn started(&self) -> bool {
        self.0.load(Ordering::Relaxed) == generation()
    }

    /// Whether the caller is the first to ask in this process generation
    /// (then it starts the thread: a fork's child has none of its
    /// parent's threads).
    pub(crate) fn first(&self) -> bool {
        let g = generation();
        self.0.load(Ordering::Relaxed) != g && self.0.swap(g, Ordering::AcqRel) != g
    }
}
