//! The values the tools' options take: seconds, lock modes, lockspace and
//! resource names, lock value blocks. Each parser is a clap value parser:
//! a bad value is a usage error (exit 64), never a panic.

use std::time::Duration;

/// The longest wait or hold accepted, in seconds (`u32::MAX`, about 136
/// years): beyond it a number is refused as a usage error rather than
/// overflow a clock.
pub const MAX_SECONDS: f64 = u32::MAX as f64;

/// Longest lockspace name, in bytes.
pub const MAX_LOCKSPACE_NAME: usize = dlm::MAX_LOCKSPACE_NAME;

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_NAME: usize = dlm::MAX_RESOURCE_NAME;

/// Parses a number of seconds: a decimal number, fractions allowed
/// (`0.25`, `1e-3`), from 0 to [`MAX_SECONDS`].
///
/// # Errors
/// A message for anything else: not a number, negative, NaN, infinite or
/// too large.
pub fn seconds(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| "not a number of seconds".to_string())?;
    if v.is_nan() {
        return Err("not a number of seconds".into());
    }
    if v < 0.0 {
        return Err("a number of seconds cannot be negative".into());
    }
    if v > MAX_SECONDS {
        return Err(format!("at most {MAX_SECONDS} seconds"));
    }
    Ok(Duration::from_secs_f64(v))
}

/// A lock mode as written on the command line (any case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum ModeArg {
    /// Null: no access; keeps the resource (and its lock value block) alive.
    Nl,
    /// Concurrent read.
    Cr,
    /// Concurrent write.
    Cw,
    /// Protected read: shared.
    Pr,
    /// Protected write: one writer, concurrent readers.
    Pw,
    /// Exclusive.
    Ex,
}

impl From<ModeArg> for dlm::Mode {
    fn from(m: ModeArg) -> dlm::Mode {
        match m {
            ModeArg::Nl => dlm::Mode::Nl,
            ModeArg::Cr => dlm::Mode::Cr,
            ModeArg::Cw => dlm::Mode::Cw,
            ModeArg::Pr => dlm::Mode::Pr,
            ModeArg::Pw => dlm::Mode::Pw,
            ModeArg::Ex => dlm::Mode::Ex,
        }
    }
}

/// Lockspace names the library refuses although they look like names:
/// `plock` is the kernel's POSIX-lock device, `.` and `..` become paths
/// dlm_controld cannot serve (the kernel's create would wait for ever).
const RESERVED_LOCKSPACES: [&str; 3] = ["plock", ".", ".."];

/// Checks a lockspace name as the `dlm` crate does before it reaches
/// libdlm, so that a name it would refuse is a usage error here: 1 to 64
/// bytes of printable ASCII without spaces (`!` to `~`: the name becomes a
/// device, sysfs and configfs paths and part of the kernel's log), no
/// `/`, and none of `plock`, `.`, `..`.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn lockspace(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a lockspace name cannot be empty".into());
    }
    if s.len() > MAX_LOCKSPACE_NAME {
        return Err(format!(
            "a lockspace name is at most {MAX_LOCKSPACE_NAME} bytes"
        ));
    }
    if s.contains('/') {
        return Err("a lockspace name cannot contain '/'".into());
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "a lockspace name is printable ASCII without spaces or control characters".into(),
        );
    }
    if RESERVED_LOCKSPACES.contains(&s) {
        return Err(
            "'plock', '.' and '..' cannot be lockspace names (the kernel's POSIX-lock device; paths dlm_controld cannot serve)".into(),
        );
    }
    Ok(s.to_string())
}

/// Checks the name of a lockspace to look up in dlm_controld (`dlm-lock
/// ls NAME`) as the `dlm-control` crate does: 1 to 64 bytes. Looser than
/// [`lockspace`]: any lockspace the daemon runs (`dlm_tool join` takes
/// other names) can be asked about.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn listed_lockspace(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a lockspace name cannot be empty".into());
    }
    if s.len() > MAX_LOCKSPACE_NAME {
        return Err(format!(
            "a lockspace name is at most {MAX_LOCKSPACE_NAME} bytes"
        ));
    }
    Ok(s.to_string())
}

/// Checks a resource (lock) name: 1 to 64 bytes.
///
/// # Errors
/// A message saying what is wrong with the name.
pub fn resource(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("a resource name cannot be empty".into());
    }
    if s.len() > MAX_RESOURCE_NAME {
        return Err(format!(
            "a resource name is at most {MAX_RESOURCE_NAME} bytes"
        ));
    }
    Ok(s.to_string())
}

/// A value to write into a lock value block: at most 32 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LvbValue(pub Vec<u8>);

/// Parses a value for a lock value block: `0x` followed by hex digits is
/// bytes in hex, anything else is text, its bytes taken as they are; at
/// most 32 bytes either way (the rest of the block is zeros).
///
/// # Errors
/// A message for odd or bad hex digits and for values over 32 bytes.
pub fn lvb_value(s: &str) -> Result<LvbValue, String> {
    let bytes = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => unhex(h)?,
        None => s.as_bytes().to_vec(),
    };
    if bytes.len() > dlm::LVB_LEN {
        return Err(format!(
            "{} bytes: a lock value block holds {}",
            bytes.len(),
            dlm::LVB_LEN
        ));
    }
    Ok(LvbValue(bytes))
}

fn unhex(h: &str) -> Result<Vec<u8>, String> {
    if h.len() % 2 != 0 {
        return Err("an odd number of hex digits".into());
    }
    h.as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
                .ok_or_else(|| format!("not hex: {h}"))
        })
        .collect()
}

/// The bytes in lower-case hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_fractions_and_refuse_nonsense() {
        assert_eq!(seconds("0.25").unwrap(), Duration::from_millis(250));
        assert_eq!(seconds("2").unwrap(), Duration::from_secs(2));
        assert_eq!(seconds("1e-3").unwrap(), Duration::from_millis(1));
        assert_eq!(seconds("0").unwrap(), Duration::ZERO);
        assert!(seconds("4294967295").is_ok());
        for bad in [
            "1e30",
            "-1",
            "NaN",
            "nan",
            "inf",
            "-inf",
            "",
            "abc",
            "1s",
            "4294967296",
        ] {
            assert!(seconds(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names() {
        assert!(lockspace("a").is_ok());
        assert!(lockspace(&"x".repeat(64)).is_ok());
        for bad in [
            "", ".", "..", "plock", "a/b", "a\0b", "a b", "a\tb", "a\nb", "\u{1}", "\u{7f}", "é",
        ] {
            assert!(lockspace(bad).is_err(), "{bad:?}");
        }
        for good in ["...", "plock2", "PLOCK", "my-app_1.0", "a:b@c"] {
            assert!(lockspace(good).is_ok(), "{good:?}");
        }
        assert!(lockspace(&"x".repeat(65)).is_err());
        assert!(resource("r").is_ok());
        assert!(resource(&"r".repeat(64)).is_ok());
        assert!(resource("").is_err());
        assert!(resource(&"r".repeat(65)).is_err());
    }

    #[test]
    fn lockspace_names_agree_with_the_library() {
        // The library checks names before it opens anything: a name it
        // refuses is InvalidName whether or not there is a DLM here.
        for name in [
            "a", "a b", "plock", ".", "..", "...", "a/b", "a\tb", "\u{1b}", "é", "x-y_z.1",
        ] {
            let library_refuses =
                matches!(dlm::Lockspace::open(name), Err(dlm::Error::InvalidName(_)));
            assert_eq!(lockspace(name).is_err(), library_refuses, "{name:?}");
        }
    }

    #[test]
    fn listed_lockspace_names() {
        assert!(listed_lockspace("").is_err());
        assert!(listed_lockspace(&"x".repeat(65)).is_err());
        assert_eq!(listed_lockspace(&"x".repeat(64)).unwrap().len(), 64);
        assert_eq!(listed_lockspace("a b").unwrap(), "a b");
    }

    #[test]
    fn lvb_values() {
        assert_eq!(lvb_value("hi").unwrap().0, b"hi");
        assert_eq!(lvb_value("0x00ff10").unwrap().0, [0, 255, 16]);
        assert_eq!(lvb_value("0X0A").unwrap().0, [10]);
        assert!(lvb_value("0x0").is_err());
        assert!(lvb_value("0xzz").is_err());
        assert!(lvb_value(&"x".repeat(33)).is_err());
        assert_eq!(lvb_value(&"x".repeat(32)).unwrap().0.len(), 32);
        assert_eq!(hex(&[0, 0xab]), "00ab");
    }

    #[test]
    fn modes_convert() {
        assert_eq!(dlm::Mode::from(ModeArg::Pr), dlm::Mode::Pr);
        assert_eq!(dlm::Mode::from(ModeArg::Nl), dlm::Mode::Nl);
    }
}
