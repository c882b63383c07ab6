//! Without dlm_controld (the host, outside the test cluster) every query
//! is a clean [`Error::NotRunning`], the status's child process included.

use dlm_control::{lockspaces, status, status_text, Error, StatusFormat};
use std::path::Path;

#[test]
fn no_daemon_is_not_running() {
    if Path::new("/dev/misc/dlm-control").exists() || Path::new("/dev/dlm-control").exists() {
        eprintln!("skipping: a DLM is here");
        return;
    }
    assert!(
        matches!(lockspaces(), Err(Error::NotRunning { .. })),
        "{:?}",
        lockspaces()
    );
    assert!(
        matches!(status(), Err(Error::NotRunning { .. })),
        "{:?}",
        status()
    );
    assert!(matches!(
        status_text(StatusFormat::Summary),
        Err(Error::NotRunning { .. })
    ));
    assert!(matches!(
        dlm_control::lockspace("x"),
        Err(Error::NotRunning { .. })
    ));
}
