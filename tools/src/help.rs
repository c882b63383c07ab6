//! The parts of the tools' documentation that clap does not model: exit
//! statuses, examples, notes. Written once here, they end up both in
//! `--help` (as text after the options) and in the man pages (as sections
//! of their own, see [`crate::generate`]).

/// One exit status and what it means.
#[derive(Debug, Clone, Copy)]
pub struct ExitStatus {
    /// The status, or a range of them (`"128+N"`).
    pub code: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// One example: what it does, and the command line.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// What the example does.
    pub what: &'static str,
    /// The shell command.
    pub command: &'static str,
}

/// One entry of a table of terms: a term (an event line, say) and what it
/// means.
#[derive(Debug, Clone, Copy)]
pub struct Term {
    /// The term, as the program prints or takes it.
    pub term: &'static str,
    /// What it means.
    pub meaning: &'static str,
}

/// Everything a tool's documentation adds to its clap definition.
#[derive(Debug, Clone, Copy)]
pub struct Extra {
    /// The forms of the command line other than the one of its options and
    /// arguments and those of its subcommands (both made from the clap
    /// definition), without the program's name:
    /// `[--lockspace NAME] --purge NODEID [PID]`.
    pub other_forms: &'static [&'static str],
    /// The lines the program prints, and what each means (dlm-lock's
    /// events); empty when there is no such table.
    pub events: &'static [Term],
    /// Paragraphs of notes (the man page's NOTES section).
    pub notes: &'static [&'static str],
    /// The exit statuses.
    pub exit_statuses: &'static [ExitStatus],
    /// The examples.
    pub examples: &'static [Example],
    /// Related pages, as `name(section)`.
    pub see_also: &'static [&'static str],
}

impl Extra {
    /// The text shown after the options by `--help`.
    pub fn help_text(&self) -> String {
        let mut s = String::new();
        if !self.events.is_empty() {
            s.push_str("Events:\n");
            s.push_str(&table(self.events.iter().map(|t| (t.term, t.meaning)), 24));
            s.push('\n');
        }
        if !self.notes.is_empty() {
            s.push_str("Notes:\n");
            for n in self.notes {
                s.push_str(&indent(&wrap(n, 74), 2));
                s.push_str("\n\n");
            }
        }
        s.push_str("Exit status:\n");
        s.push_str(&table(
            self.exit_statuses.iter().map(|e| (e.code, e.meaning)),
            8,
        ));
        s.push_str("\nExamples:\n");
        for ex in self.examples {
            s.push_str(&indent(&wrap(ex.what, 74), 2));
            s.push('\n');
            s.push_str(&indent(ex.command, 4));
            s.push_str("\n\n");
        }
        s.truncate(s.trim_end().len());
        s
    }
}

/// A two-column table, two spaces in: each term, then its meaning wrapped
/// at 78 columns in a second column as wide as the widest term (at most
/// `max_term` columns; a longer term has its meaning on the lines below).
fn table<'a>(rows: impl Iterator<Item = (&'a str, &'a str)> + Clone, max_term: usize) -> String {
    let width = rows
        .clone()
        .map(|(t, _)| t.len())
        .filter(|&w| w <= max_term)
        .max()
        .unwrap_or(0);
    let column = 2 + width + 2;
    let mut s = String::new();
    for (term, meaning) in rows {
        let lines = wrap(meaning, 78 - column);
        let mut it = lines.lines();
        if term.len() <= width {
            s.push_str(&format!("  {term:width$}  {}\n", it.next().unwrap_or("")));
        } else {
            s.push_str(&format!("  {term}\n"));
        }
        for l in it {
            s.push_str(&format!("{:column$}{l}\n", ""));
        }
    }
    s
}

/// Wraps `text` at `width` columns, on spaces.
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            out.push_str(&line);
            out.push('\n');
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

fn indent(text: &str, n: usize) -> String {
    text.lines()
        .map(|l| format!("{:n$}{l}", ""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_on_spaces() {
        assert_eq!(wrap("a bb ccc dddd", 6), "a bb\nccc\ndddd");
        assert_eq!(wrap("", 6), "");
    }

    #[test]
    fn help_text_has_every_part() {
        let extra = Extra {
            other_forms: &[],
            events: &[
                Term {
                    term: "granted MODE",
                    meaning: "the request was granted",
                },
                Term {
                    term: "a-very-long-event-name NAME",
                    meaning: "a meaning on the next line",
                },
            ],
            notes: &["A note."],
            exit_statuses: &[ExitStatus {
                code: "0",
                meaning: "fine",
            }],
            examples: &[Example {
                what: "Do it.",
                command: "tool it",
            }],
            see_also: &["flock(1)"],
        };
        let t = extra.help_text();
        assert!(t.contains("Notes:\n  A note."), "{t}");
        assert!(
            t.contains("Events:\n  granted MODE  the request was granted\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "  a-very-long-event-name NAME\n                a meaning on the next line\n"
            ),
            "{t}"
        );
        assert!(t.contains("Exit status:\n  0  fine"), "{t}");
        assert!(t.contains("Examples:\n  Do it.\n    tool it"), "{t}");
    }
}
