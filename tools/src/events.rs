//! dlm-lock's event lines: what happened to the lock, as text (one line
//! each, optionally time-stamped) or as JSON (one object a line).

use crate::values::hex;
use dlm::Mode;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// Something that happened to the lock (or the program).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A new request is about to be sent.
    Requesting(Mode),
    /// The request was granted.
    Granted(Mode),
    /// An orphan was adopted.
    Adopted(Mode),
    /// The lock value block read.
    Lvb {
        /// Not marked not valid by the DLM.
        valid: bool,
        /// The 32 bytes.
        bytes: Vec<u8>,
    },
    /// The value to be published.
    SetLvb(Vec<u8>),
    /// A conversion is about to be sent.
    Converting(Mode),
    /// The conversion was granted.
    Converted(Mode),
    /// A blocking notification.
    Blocking,
    /// The signal that ended an `--until-signal` hold.
    Signal(String),
    /// The unlock is about to be sent.
    Unlocking,
    /// Unlocked.
    Released,
    /// Left as an orphan; the owner pid the kernel recorded.
    Orphaned(u32),
    /// Orphans purged.
    Purged {
        /// The node.
        node: u32,
        /// The owner (0: every owner).
        pid: u32,
    },
    /// A `--try` request or conversion was refused.
    WouldBlock,
    /// Not granted in time.
    TimedOut,
    /// A deadlock.
    Deadlock,
    /// Cancelled by someone else.
    Cancelled,
    /// No orphan to adopt.
    NoOrphan,
    /// The orphan is held in another mode.
    OrphanModeMismatch,
    /// Anything else that failed.
    Error(String),
    /// The protocol versions: the kernel's (or why it is unknown), libdlm's.
    Versions {
        /// The running kernel's DLM device protocol, or the error.
        kernel: Result<String, String>,
        /// libdlm's.
        library: String,
    },
}

impl Event {
    /// The event as text, as the scenarios and operators read it.
    pub fn text(&self) -> String {
        match self {
            Event::Requesting(m) => format!("requesting {m}"),
            Event::Granted(m) => format!("granted {m}"),
            Event::Adopted(m) => format!("adopted {m}"),
            Event::Lvb { valid, bytes } => format!(
                "lvb {} {}",
                if *valid { "valid" } else { "not-valid" },
                hex(bytes)
            ),
            Event::SetLvb(b) => format!("set-lvb {}", hex(b)),
            Event::Converting(m) => format!("converting {m}"),
            Event::Converted(m) => format!("converted {m}"),
            Event::Blocking => "blocking".into(),
            Event::Signal(s) => format!("signal {s}"),
            Event::Unlocking => "unlocking".into(),
            Event::Released => "released".into(),
            Event::Orphaned(pid) => format!("orphaned {pid}"),
            Event::Purged { node, pid } => format!("purged {node} {pid}"),
            Event::WouldBlock => "would-block".into(),
            Event::TimedOut => "timed-out".into(),
            Event::Deadlock => "deadlock".into(),
            Event::Cancelled => "cancelled".into(),
            Event::NoOrphan => "no-orphan".into(),
            Event::OrphanModeMismatch => "orphan-mode-mismatch".into(),
            Event::Error(m) => format!("error: {m}"),
            Event::Versions { kernel, library } => format!(
                "kernel {}\nlibrary {library}",
                match kernel {
                    Ok(v) => v.clone(),
                    Err(e) => format!("unknown ({e})"),
                }
            ),
        }
    }

    /// The event's name in JSON.
    fn name(&self) -> &'static str {
        match self {
            Event::Requesting(_) => "requesting",
            Event::Granted(_) => "granted",
            Event::Adopted(_) => "adopted",
            Event::Lvb { .. } => "lvb",
            Event::SetLvb(_) => "set-lvb",
            Event::Converting(_) => "converting",
            Event::Converted(_) => "converted",
            Event::Blocking => "blocking",
            Event::Signal(_) => "signal",
            Event::Unlocking => "unlocking",
            Event::Released => "released",
            Event::Orphaned(_) => "orphaned",
            Event::Purged { .. } => "purged",
            Event::WouldBlock => "would-block",
            Event::TimedOut => "timed-out",
            Event::Deadlock => "deadlock",
            Event::Cancelled => "cancelled",
            Event::NoOrphan => "no-orphan",
            Event::OrphanModeMismatch => "orphan-mode-mismatch",
            Event::Error(_) => "error",
            Event::Versions { .. } => "versions",
        }
    }

    /// The event as one JSON object, with the time `time` (seconds since
    /// the epoch).
    pub fn json(&self, time: f64) -> String {
        let mut fields = vec![
            ("event", json_string(self.name())),
            ("time", format!("{time:.6}")),
        ];
        match self {
            Event::Requesting(m)
            | Event::Granted(m)
            | Event::Adopted(m)
            | Event::Converting(m)
            | Event::Converted(m) => fields.push(("mode", json_string(m.name()))),
            Event::Lvb { valid, bytes } => {
                fields.push(("valid", valid.to_string()));
                fields.push(("lvb", json_string(&hex(bytes))));
            }
            Event::SetLvb(b) => fields.push(("lvb", json_string(&hex(b)))),
            Event::Signal(s) => fields.push(("signal", json_string(s))),
            Event::Orphaned(pid) => fields.push(("pid", pid.to_string())),
            Event::Purged { node, pid } => {
                fields.push(("node", node.to_string()));
                fields.push(("pid", pid.to_string()));
            }
            Event::Error(m) => fields.push(("message", json_string(m))),
            Event::Versions { kernel, library } => {
                match kernel {
                    Ok(v) => fields.push(("kernel", json_string(v))),
                    Err(e) => {
                        fields.push(("kernel", "null".into()));
                        fields.push(("message", json_string(e)));
                    }
                }
                fields.push(("library", json_string(library)));
            }
            _ => {}
        }
        let body: Vec<String> = fields
            .into_iter()
            .map(|(k, v)| format!("\"{k}\": {v}"))
            .collect();
        format!("{{{}}}", body.join(", "))
    }
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes events to standard output, each flushed at once (the output is
/// read while the program runs).
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    /// Start text lines with the time.
    pub timestamps: bool,
    /// JSON instead of text.
    pub json: bool,
}

impl Printer {
    /// Prints `event`.
    pub fn say(&self, event: &Event) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut out = std::io::stdout().lock();
        if self.json {
            let _ = writeln!(out, "{}", event.json(now.as_secs_f64()));
        } else {
            for line in event.text().lines() {
                if self.timestamps {
                    let _ = write!(out, "{}.{:06} ", now.as_secs(), now.subsec_micros());
                }
                let _ = writeln!(out, "{line}");
            }
        }
        let _ = out.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_are_the_scenarios() {
        assert_eq!(Event::Granted(Mode::Ex).text(), "granted EX");
        assert_eq!(
            Event::Lvb {
                valid: false,
                bytes: vec![0, 1]
            }
            .text(),
            "lvb not-valid 0001"
        );
        assert_eq!(Event::Purged { node: 1, pid: 0 }.text(), "purged 1 0");
        assert_eq!(Event::Error("x".into()).text(), "error: x");
    }

    #[test]
    fn json_objects() {
        assert_eq!(
            Event::Granted(Mode::Pr).json(1.5),
            r#"{"event": "granted", "time": 1.500000, "mode": "PR"}"#
        );
        assert_eq!(
            Event::Error("a \"b\"\n".into()).json(0.0),
            r#"{"event": "error", "time": 0.000000, "message": "a \"b\"\n"}"#
        );
        let v = Event::Versions {
            kernel: Err("no DLM".into()),
            library: "6.0.1".into(),
        };
        assert!(v.json(0.0).contains(r#""kernel": null"#));
        assert_eq!(json_string("\u{1}"), "\"\\u0001\"");
    }
}
