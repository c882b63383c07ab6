//! placeholder
mod ast;
mod error;
mod flags;
mod guard;
mod lockspace;
mod lvb;
mod mode;
mod name;
mod options;
mod version;

pub use ast::Blocking;
pub use error::{Error, Result};
pub use flags::LockFlags;
pub use guard::{with_lock, with_lock_opts, Granted, LockGuard, CANCEL_GRACE, UNLOCK_PATIENCE};
pub use lockspace::{join, leave, with_lockspace, Lockspace};
pub use lvb::{Lvb, LVB_LEN};
pub use mode::Mode;
pub use name::{MAX_LOCKSPACE_NAME, MAX_RESOURCE_NAME};
pub use options::LockOptions;
pub use version::{kernel_version, library_version, Version};
