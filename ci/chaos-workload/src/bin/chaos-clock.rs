//! chaos-clock DIR: the host side of the chaos suite's clock probes
//! ([`dlm_chaos::host_probe`]). Watches DIR (inotify); for each file
//! `q-ID` created there reads the host's `CLOCK_REALTIME` and writes it
//! (nanoseconds, decimal) into `a-ID`, renamed into place whole. Runs
//! until killed; ci/chaos starts it before the workers and kills it at
//! the end of the run.
//!
//! chaos-clock --calibrate FILE: writes the calibration of the host's time
//! stamp counter ([`dlm_chaos::calibrate_tsc`]) into FILE, which the
//! workers then stamp their records with ([`dlm_chaos::use_tsc_clock`]);
//! exits 1, writing nothing, when the host offers none.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() == 2 && args[0] == "--calibrate" {
        let Some(line) = dlm_chaos::calibrate_tsc() else {
            eprintln!("chaos-clock: no time stamp counter to calibrate (the host's clocksource is not tsc)");
            std::process::exit(1);
        };
        let tmp = format!("{}.tmp", args[1]);
        std::fs::write(&tmp, line).expect("write the calibration");
        std::fs::rename(&tmp, &args[1]).expect("rename the calibration");
        return;
    }
    let Some(dir) = args.first().cloned() else {
        eprintln!("usage: chaos-clock DIR | chaos-clock --calibrate FILE");
        std::process::exit(2);
    };
    let dir = std::path::PathBuf::from(dir);
    let _ = std::fs::create_dir_all(&dir);
    let c = CString::new(dir.as_os_str().as_bytes()).expect("path");
    // SAFETY: inotify_init1 has no memory preconditions.
    let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
    assert!(
        fd >= 0,
        "inotify_init1: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: a live NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_CREATE) };
    assert!(
        wd >= 0,
        "inotify_add_watch: {}",
        std::io::Error::last_os_error()
    );
    // Workers probe through this directory only once this file exists.
    let _ = std::fs::write(dir.join("running"), format!("{}\n", std::process::id()));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reads into our own buffer, at most its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            continue;
        }
        let n = n as usize;
        let mut off = 0;
        let hdr = std::mem::size_of::<libc::inotify_event>();
        while off + hdr <= n {
            // SAFETY: the kernel wrote a whole event header at `off`;
            // read_unaligned copes with the byte buffer's alignment.
            let ev: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[off..].as_ptr().cast()) };
            let name_bytes = &buf[off + hdr..off + hdr + ev.len as usize];
            off += hdr + ev.len as usize;
            let end = name_bytes
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(name_bytes.len());
            let name = String::from_utf8_lossy(&name_bytes[..end]);
            let Some(id) = name.strip_prefix("q-") else {
                continue;
            };
            let t = dlm_chaos::realtime_ns();
            let tmp = dir.join(format!(".a-{id}"));
            if std::fs::write(&tmp, format!("{t}\n")).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join(format!("a-{id}")));
            }
        }
    }
}
