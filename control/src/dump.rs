//! dlm_controld's text dumps: `dlmc_dump_debug`, `dlmc_dump_config`,
//! `dlmc_dump_run`, `dlmc_dump_log_plock`, `dlmc_dump_plocks` (`dlm_tool
//! dump`, `dump_config`, `log_plock`, `plocks`).

use crate::error::{Error, Result};
use crate::name::CName;
use crate::query::call;
use dlmcontrol_sys as sys;
use parking_lot::Mutex;

/// The dumps copy through one static buffer inside libdlmcontrol
/// (`copy_buf`): one at a time per process.
static DUMP: Mutex<()> = Mutex::new(());

/// Which dump [`dump`] asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dump<'a> {
    /// The daemon's debug log buffer (`dlmc_dump_debug`, `dlm_tool dump`).
    Debug,
    /// Its configuration, one `key=value` a line (`dlmc_dump_config`,
    /// `dlm_tool dump_config`).
    Config,
    /// The commands run with `dlmc_run_start` (`dlmc_dump_run`,
    /// `dlm_tool run_list`).
    Run,
    /// The POSIX-lock log (`dlmc_dump_log_plock`, `dlm_tool log_plock`).
    LogPlock,
    /// The POSIX locks of a lockspace (`dlmc_dump_plocks`, `dlm_tool
    /// plocks NAME`).
    Plocks(&'a str),
}

/// One of dlm_controld's text dumps (wraps the `dlmc_dump_*` call
/// [`Dump`] names), at most `DLMC_DUMP_SIZE` (1 MiB).
///
/// # Errors
/// [`Error::InvalidName`] for a bad lockspace name of [`Dump::Plocks`];
/// [`Error::NotRunning`] if `dlm_controld` does not answer.
pub fn dump(which: Dump<'_>) -> Result<String> {
    let mut name = match which {
        Dump::Plocks(n) => Some(CName::new(n.as_bytes())?),
        _ => None,
    };
    // One byte more than the library writes, so the text always ends in NUL.
    let mut buf = vec![0u8; sys::DLMC_DUMP_SIZE + 1];
    let p = buf.as_mut_ptr().cast::<std::os::raw::c_char>();
    let _one = DUMP.lock();
    let (rv, errno) = call(|| {
        // `buf` holds DLMC_DUMP_SIZE bytes, the most the library
        // copies; the name, if any, is NUL-terminated and only read; the
        // DUMP lock keeps other dumps of this process off the library's
        // static buffer.
        // SAFETY: buf is big enough, the name is NUL-terminated, DUMP serialises the buffer.
        unsafe {
            match (which, name.as_mut()) {
                (Dump::Debug, _) => sys::dlmc_dump_debug(p),
                (Dump::Config, _) => sys::dlmc_dump_config(p),
                (Dump::Run, _) => sys::dlmc_dump_run(p),
                (Dump::LogPlock, _) => sys::dlmc_dump_log_plock(p),
                (Dump::Plocks(_), Some(n)) => sys::dlmc_dump_plocks(n.as_mut_ptr(), p),
                (Dump::Plocks(_), None) => unreachable!("checked above"),
            }
        }
    });
    if rv < 0 {
        return Err(Error::from_query(rv, errno, Error::LockspaceNotFound));
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    buf.truncate(end);
    Ok(String::from_utf8_lossy(&buf).into_owned())
}
