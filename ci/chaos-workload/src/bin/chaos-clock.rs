//! chaos-clock DIR: the host side of the chaos suite's clock probes
//! ([`dlm_chaos::host_probe`]). Watches DIR (inotify); for each file
//! `q-ID` created there reads the host's `CLOCK_REALTIME` and writes it
//! (nanoseconds, decimal) into `a-ID`, renamed into place whole. Runs
//! until killed; ci/chaos starts it before the workers and kills it at
//! the end of the run.
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: chaos-clock DIR");
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
            let t = dlm_chaos::now_ns();
            let tmp = dir.join(format!(".a-{id}"));
            if std::fs::write(&tmp, format!("{t}\n")).is_ok() {
                let _ = std::fs::rename(&tmp, dir.join(format!("a-{id}")));
            }
        }
    }
}
