//! The seed example of ocaml-dlm, in Rust: join the lockspace `myapp`, open
//! it, take `mylock1` in EX, then in PR, and leave.
//!
//! Run it in the test cluster with `ci/vm cargo run --example quickstart`,
//! or as root on a node of a real cluster.

use dlm::{Lockspace, Mode, Release};

fn main() -> Result<(), dlm::Error> {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("usage: quickstart (no arguments; needs root on a node of a DLM cluster)");
        return Ok(());
    }
    let kernel = dlm::kernel_version()?;
    println!(
        "DLM kernel protocol {kernel}, libdlm protocol {}",
        dlm::library_version()
    );

    // Open `myapp`, creating it if needed (needs root), as ocaml-dlm's join.
    dlm::join("myapp", 0o600)?;
    println!("joined lockspace myapp");
    let ls = Lockspace::open("myapp")?;
    println!("opened lockspace {}", ls.name());

    let guard = ls.lock("mylock1", Mode::Ex)?;
    println!(
        "locked mylock1 in {} (lock id {:#x})",
        guard.mode(),
        guard.lkid()
    );
    guard.unlock()?;
    println!("unlocked mylock1");

    dlm::with_lock(&ls, "mylock1", Mode::Pr, |guard| {
        println!(
            "locked mylock1 in {} (lock id {:#x})",
            guard.mode(),
            guard.lkid()
        );
    })?;
    println!("unlocked mylock1");

    drop(ls);
    dlm::leave("myapp", Release::IfUnused)?;
    println!("left lockspace myapp");
    Ok(())
}
