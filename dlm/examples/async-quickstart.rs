//! `async-quickstart`: a tokio service that takes and converts locks
//! asynchronously. Eight tasks on a multi-threaded runtime each add one to
//! a counter kept in a lock value block, 25 times: take the lock in EX
//! (`lock_with_async`), read and set the value, convert down to NL (which
//! publishes it) and up again, unlock (`unlock_async`). No thread waits for
//! the DLM: libdlm's thread wakes the tasks.
//!
//! Run it in the test cluster with `ci/vm cargo run --example async-quickstart`.

use dlm::{LockOptions, Lockspace, Mode, Release};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), dlm::Error> {
    if std::env::args().skip(1).any(|a| a == "-h" || a == "--help") {
        println!("usage: async-quickstart (no arguments; needs root on a node of a DLM cluster)");
        return Ok(());
    }
    let ls = Lockspace::join("async-quickstart", 0o600)?;
    // An NL lock keeps the resource, and its value block, between holders.
    let keeper = ls.lock_async("counter", Mode::Nl).await?;
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let ls = ls.clone();
            tokio::spawn(async move {
                for _ in 0..25 {
                    let mut g = ls
                        .lock_with_async("counter", Mode::Ex, LockOptions::new().lvb())
                        .await?;
                    let n =
                        u64::from_le_bytes(g.lvb().expect("read").bytes[..8].try_into().unwrap());
                    g.set_lvb(&(n + 1).to_le_bytes())?;
                    g.convert_async(Mode::Nl).await?; // publishes
                    g.unlock_async().await?;
                }
                println!("task {task} done");
                Ok::<(), dlm::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task panicked")?;
    }
    let g = ls
        .lock_with_async("counter", Mode::Pr, LockOptions::new().lvb())
        .await?;
    let v = g.lvb().expect("read");
    println!(
        "counter {} {}",
        u64::from_le_bytes(v.bytes[..8].try_into().unwrap()),
        if v.valid { "valid" } else { "not valid" }
    );
    g.unlock_async().await?;
    keeper.unlock_async().await?;
    let created = ls.created();
    if created {
        ls.release(Release::IfUnused)?;
    }
    Ok(())
}
