//! The library behind the `dlm-flock` and `dlm-lock` command-line tools:
//! their clap definitions (shared by the programs, their `--help`, the man
//! pages and the shell completions), the values they parse, how they get
//! a lockspace, take signals and run a command, and dlm-lock's event
//! lines.
//!
//! The programs themselves are `src/bin/dlm-flock.rs` and
//! `src/bin/dlm-lock.rs`; `examples/dlm-tools-gen.rs` writes the man pages
//! and completions. Install them with `cargo install --path tools`.
#![deny(missing_docs, unsafe_op_in_unsafe_fn, missing_debug_implementations)]

pub mod command;
pub mod control_cli;
pub mod events;
pub mod flock_cli;
pub mod generate;
pub mod help;
pub mod lock_cli;
pub mod lockspace;
pub mod signals;
pub mod usage;
pub mod values;
