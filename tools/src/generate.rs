//! Man pages (clap_mangen) and shell completions (clap_complete), made
//! from the same clap definitions as the programs' parsing and `--help`.
//! The installed programs print them (`dlm-lock --generate man`, see
//! [`Kind`]), so no source checkout is needed to install them; copies are
//! committed under `tools/man/` and `tools/completions/` for packagers,
//! `cargo run -p dlm-tools --example dlm-tools-gen` writes them anew, and a
//! unit test fails when the committed files differ from a fresh run.

use crate::help::Extra;
use clap::{ArgAction, ArgMatches};
use clap_complete::Shell;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// What `--generate KIND` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// The man page (roff): `man -l` shows it.
    Man,
    /// The bash completion script.
    CompleteBash,
    /// The zsh completion script (a `_NAME` file for `$fpath`).
    CompleteZsh,
    /// The fish completion script.
    CompleteFish,
}

/// The `--generate KIND` option of both tools (clap's id `generate`).
pub fn arg() -> clap::Arg {
    clap::Arg::new("generate")
        .long("generate")
        .value_name("KIND")
        .value_parser(clap::value_parser!(Kind))
        .exclusive(true)
        .help("Print the man page (man) or a shell completion script (complete-bash, complete-zsh, complete-fish) to standard output, and exit")
}

/// `cmd`'s man page or completion script, as `kind` asks.
///
/// # Errors
/// I/O errors of the man page's rendering.
pub fn generate(kind: Kind, cmd: clap::Command, extra: &Extra) -> io::Result<Vec<u8>> {
    let shell = match kind {
        Kind::Man => return man_page(cmd, extra),
        Kind::CompleteBash => Shell::Bash,
        Kind::CompleteZsh => Shell::Zsh,
        Kind::CompleteFish => Shell::Fish,
    };
    let mut buf = Vec::new();
    let mut cmd = cmd;
    let name = cmd.get_name().to_string();
    clap_complete::generate(shell, &mut cmd, name, &mut buf);
    Ok(buf)
}

/// Answers `--generate KIND` if `m` (matches of `cmd`) has it: prints the
/// page or script to standard output and returns the exit status (0, or 74,
/// `EX_IOERR`, when it cannot be written). `None` without `--generate`.
pub fn answer(m: &ArgMatches, cmd: clap::Command, extra: &Extra) -> Option<u8> {
    let kind = *m.try_get_one::<Kind>("generate").ok().flatten()?;
    let name = cmd.get_name().to_string();
    let written = generate(kind, cmd, extra).and_then(|bytes| {
        let mut out = io::stdout().lock();
        out.write_all(&bytes)?;
        out.flush()
    });
    Some(match written {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name}: --generate: {e}");
            74
        }
    })
}

/// The tools: name, clap definition, extra documentation.
fn tools() -> Vec<(clap::Command, Extra)> {
    vec![
        (crate::flock_cli::command(), crate::flock_cli::EXTRA),
        (crate::lock_cli::command(), crate::lock_cli::EXTRA),
    ]
}

/// Escapes text for roff: backslashes, hyphens (`\-`, so they copy and
/// search as ASCII hyphens), and a leading `.` or `'`.
fn roff_text(s: &str) -> String {
    let s = s.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Styles a word of a synopsis: options in bold, placeholders (upper case)
/// in italics, other words (subcommands) in bold; brackets, bars and `...`
/// as they are.
fn synopsis_word(word: &str) -> String {
    let core_start = word.find(|c: char| c != '[').unwrap_or(word.len());
    let core_end = word
        .rfind(|c: char| c != ']' && c != '.')
        .map_or(core_start, |i| i + 1)
        .max(core_start);
    let (open, core, close) = (
        &word[..core_start],
        &word[core_start..core_end],
        &word[core_end..],
    );
    let styled = core
        .split('|')
        .map(|part| {
            if part.is_empty() {
                String::new()
            } else if !part.starts_with('-')
                && part.chars().all(|c| c.is_ascii_uppercase() || c == '_')
            {
                format!("\\fI{}\\fR", roff_text(part))
            } else {
                format!("\\fB{}\\fR", roff_text(part))
            }
        })
        .collect::<Vec<_>>()
        .join("|");
    format!("{open}{styled}{}", roff_text(close))
}

/// The synopsis of `cmd`'s options and arguments, each with its
/// arguments (`[-w|--timeout SECONDS]`), as plain words. With
/// `first_required`, the first positional argument is shown required even
/// when clap has it optional (dlm-lock's RESOURCE, optional only in the
/// other forms).
fn synopsis_words(cmd: &clap::Command, first_required: bool) -> Vec<String> {
    let mut words = Vec::new();
    let skip = ["help", "version", "generate"];
    let args: Vec<&clap::Arg> = cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !skip.contains(&a.get_id().as_str()))
        .collect();
    for a in args.iter().filter(|a| !a.is_positional()) {
        let mut flag = Vec::new();
        if let Some(s) = a.get_short() {
            flag.push(format!("-{s}"));
        }
        if let Some(l) = a.get_long() {
            flag.push(format!("--{l}"));
        }
        let mut w = vec![format!("[{}", flag.join("|"))];
        let takes_value = !matches!(
            a.get_action(),
            ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
        );
        let names: Vec<&str> = if takes_value {
            a.get_value_names()
                .map(|n| n.iter().map(|s| s.as_str()).collect())
                .unwrap_or_default()
        } else {
            Vec::new()
        };
        let min = a.get_num_args().map_or(1, |r| r.min_values()).max(1);
        for (i, n) in names.iter().enumerate() {
            if i < min {
                w.push(n.to_string());
            } else {
                w.push(format!("[{n}]"));
            }
        }
        if let Some(last) = w.last_mut() {
            last.push(']');
            // Given more than once (steps): one value each time.
            if matches!(a.get_action(), ArgAction::Append) && names.len() == 1 {
                last.push_str("...");
            }
        }
        words.extend(w);
    }
    for a in args.iter().filter(|a| a.is_positional()) {
        let name = a
            .get_value_names()
            .and_then(|n| n.first())
            .map_or_else(|| a.get_id().to_string(), |n| n.to_string());
        if a.is_trailing_var_arg_set() {
            words.push(format!("[{name}"));
            words.push("[ARGUMENTS...]]".to_string());
        } else if a.is_required_set() || (first_required && a.get_index() == Some(1)) {
            // The first argument (RESOURCE) is what this form is about: it
            // is only optional in the other forms.
            words.push(name);
        } else {
            words.push(format!("[{name}]"));
        }
    }
    words
}

/// The subcommands a man page documents: all but clap's `help`.
fn subcommands(cmd: &clap::Command) -> impl Iterator<Item = &clap::Command> {
    cmd.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
}

/// The man page's SYNOPSIS: the form made from the options and arguments
/// (each option with its arguments), the other forms of `extra`, one form
/// per subcommand (made from its definition), and `--generate`.
fn synopsis(cmd: &clap::Command, extra: &Extra) -> String {
    let name = cmd.get_name();
    let bold_name = format!("\\fB{}\\fR", roff_text(name));
    let mut forms = vec![synopsis_words(cmd, true)];
    for form in extra.other_forms {
        forms.push(form.split_whitespace().map(str::to_string).collect());
    }
    for sub in subcommands(cmd) {
        let mut words = vec![sub.get_name().to_string()];
        words.extend(synopsis_words(sub, false));
        forms.push(words);
    }
    if cmd.get_arguments().any(|a| a.get_id() == "generate") {
        forms.push(vec!["--generate".into(), "KIND".into()]);
    }
    // No hyphenation, ragged right: option names stay whole.
    let mut s = String::from(".SH SYNOPSIS\n.nh\n.ad l\n");
    for (i, words) in forms.iter().enumerate() {
        if i > 0 {
            s.push_str(".br\n");
        }
        let styled: Vec<String> = words.iter().map(|w| synopsis_word(w)).collect();
        s.push_str(&format!("{bold_name} {}\n", styled.join(" ")));
    }
    s.push_str(".ad\n.hy\n");
    s
}

/// The man page's COMMANDS section (empty without subcommands): each
/// subcommand's synopsis, what it does, and its options and arguments, in
/// this page (clap_mangen's own section names a page per subcommand,
/// which nothing installs).
fn commands_section(cmd: &clap::Command) -> String {
    let mut s = String::new();
    for sub in subcommands(cmd) {
        if s.is_empty() {
            s.push_str(".SH COMMANDS\n");
        }
        let words: Vec<String> = std::iter::once(sub.get_name().to_string())
            .chain(synopsis_words(sub, false))
            .map(|w| synopsis_word(&w))
            .collect();
        s.push_str(&format!(
            ".TP\n\\fB{}\\fR {}\n",
            roff_text(cmd.get_name()),
            words.join(" ")
        ));
        if let Some(about) = sub.get_long_about().or(sub.get_about()) {
            s.push_str(&roff_text(&about.to_string()));
            s.push('\n');
        }
        let args: Vec<&clap::Arg> = sub
            .get_arguments()
            .filter(|a| !a.is_hide_set() && !["help", "version"].contains(&a.get_id().as_str()))
            .collect();
        if args.is_empty() {
            continue;
        }
        s.push_str(".RS\n");
        for a in args {
            let mut term = Vec::new();
            if let Some(c) = a.get_short() {
                term.push(format!("\\fB\\-{c}\\fR"));
            }
            if let Some(l) = a.get_long() {
                term.push(format!("\\fB\\-\\-{}\\fR", roff_text(l)));
            }
            let value = a
                .get_value_names()
                .and_then(|n| n.first())
                .map(|n| format!("\\fI{}\\fR", roff_text(n)));
            let flag = matches!(
                a.get_action(),
                ArgAction::SetTrue | ArgAction::SetFalse | ArgAction::Count
            );
            let mut term = term.join(", ");
            if a.is_positional() {
                term = value.unwrap_or_else(|| roff_text(a.get_id().as_str()));
            } else if let Some(v) = value.filter(|_| !flag) {
                term.push(' ');
                term.push_str(&v);
            }
            let defaults: Vec<String> = a
                .get_default_values()
                .iter()
                .map(|d| d.to_string_lossy().into_owned())
                .collect();
            if !flag && !defaults.is_empty() {
                term.push_str(&format!(" [default: {}]", roff_text(&defaults.join(","))));
            }
            s.push_str(&format!(".TP\n{term}\n"));
            if let Some(help) = a.get_long_help().or(a.get_help()) {
                s.push_str(&roff_text(&help.to_string()));
                s.push('\n');
            }
        }
        s.push_str(".RE\n");
    }
    s
}

/// The man page of `cmd`, with the sections of `extra`.
pub fn man_page(cmd: clap::Command, extra: &Extra) -> io::Result<Vec<u8>> {
    let version = cmd.get_version().unwrap_or("").to_string();
    // The long help's after-text is the same as the sections below: keep
    // it out of clap_mangen's "EXTRA" section.
    let cmd = cmd.after_long_help(None::<&str>).after_help(None::<&str>);
    let mut cmd_for_synopsis = cmd.clone();
    cmd_for_synopsis.build();
    let man = clap_mangen::Man::new(cmd)
        .source(format!("dlm-tools {version}"))
        .manual("User Commands");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    out.extend_from_slice(synopsis(&cmd_for_synopsis, extra).as_bytes());
    man.render_description_section(&mut out)?;
    let mut options = Vec::new();
    man.render_options_section(&mut options)?;
    out.extend_from_slice(optional_values(&cmd_for_synopsis, &options).as_bytes());
    let mut s = commands_section(&cmd_for_synopsis);
    if !extra.events.is_empty() {
        s.push_str(".SH EVENTS\n");
        for t in extra.events {
            s.push_str(&format!(
                ".TP\n\\fB{}\\fR\n{}\n",
                roff_text(t.term),
                roff_text(t.meaning)
            ));
        }
    }
    if !extra.notes.is_empty() {
        s.push_str(".SH NOTES\n");
        for (i, n) in extra.notes.iter().enumerate() {
            if i > 0 {
                s.push_str(".PP\n");
            }
            s.push_str(&roff_text(n));
            s.push('\n');
        }
    }
    s.push_str(".SH \"EXIT STATUS\"\n");
    for e in extra.exit_statuses {
        s.push_str(&format!(
            ".TP\n\\fB{}\\fR\n{}\n",
            roff_text(e.code),
            roff_text(e.meaning)
        ));
    }
    s.push_str(".SH EXAMPLES\n");
    for ex in extra.examples {
        s.push_str(&format!(".PP\n{}\n.PP\n.RS 4\n.nf\n", roff_text(ex.what)));
        for line in ex.command.lines() {
            s.push_str(&roff_text(line));
            s.push('\n');
        }
        s.push_str(".fi\n.RE\n");
    }
    s.push_str(".SH \"SEE ALSO\"\n");
    let refs: Vec<String> = extra
        .see_also
        .iter()
        .map(|r| match r.split_once('(') {
            Some((page, sect)) => format!("\\fB{}\\fR({sect}", roff_text(page)),
            None => roff_text(r),
        })
        .collect();
    s.push_str(&refs.join(",\n"));
    s.push('\n');
    out.extend_from_slice(s.as_bytes());
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// clap_mangen's options section with the values an option may leave out
/// bracketed, as its synopsis and `--help` show them: `--purge <NODEID>
/// [<PID>]`, not `--purge <NODEID> <PID>`.
fn optional_values(cmd: &clap::Command, options: &[u8]) -> String {
    let mut text = String::from_utf8_lossy(options).into_owned();
    for arg in cmd.get_arguments() {
        let (Some(range), Some(names)) = (arg.get_num_args(), arg.get_value_names()) else {
            continue;
        };
        let required = range.min_values();
        if required >= names.len() || required == 0 {
            continue;
        }
        let shown = |name: &clap::builder::Str| format!("\\fI<{name}>\\fR");
        let whole: Vec<String> = names.iter().map(shown).collect();
        let mut bracketed = whole[..required].join("\\fI \\fR");
        for name in &names[required..] {
            bracketed.push_str(&format!(" [{}]", shown(name)));
        }
        // Only on the option's own `.TP` line.
        let Some(long) = arg.get_long() else { continue };
        let head = format!("\\fB\\-\\-{}\\fR", long.replace('-', "\\-"));
        let from = whole.join("\\fI \\fR");
        text = text
            .split_inclusive('\n')
            .map(|line| {
                if line.contains(&head) {
                    line.replace(&from, &bracketed)
                } else {
                    line.to_string()
                }
            })
            .collect();
    }
    text
}

/// Every generated file: its path under the package directory, and its
/// contents.
pub fn files() -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for (cmd, extra) in tools() {
        let name = cmd.get_name().to_string();
        for kind in [
            Kind::Man,
            Kind::CompleteBash,
            Kind::CompleteZsh,
            Kind::CompleteFish,
        ] {
            let file = match kind {
                Kind::Man => PathBuf::from("man").join(format!("{name}.1")),
                Kind::CompleteBash => PathBuf::from("completions").join(format!("{name}.bash")),
                Kind::CompleteZsh => PathBuf::from("completions").join(format!("_{name}")),
                Kind::CompleteFish => PathBuf::from("completions").join(format!("{name}.fish")),
            };
            out.push((file, generate(kind, cmd.clone(), &extra)?));
        }
    }
    Ok(out)
}

/// Writes every generated file under `dir` (the package directory);
/// returns the paths written.
///
/// # Errors
/// I/O errors creating or writing the files.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (rel, contents) in files()? {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&path, contents)?;
        written.push(path);
    }
    Ok(written)
}

/// The generated files under `dir` that are missing or differ from a
/// fresh generation.
///
/// # Errors
/// I/O errors of the generation itself.
pub fn stale(dir: &Path) -> io::Result<Vec<PathBuf>> {
    Ok(files()?
        .into_iter()
        .filter(|(rel, contents)| std::fs::read(dir.join(rel)).ok().as_ref() != Some(contents))
        .map(|(rel, _)| rel)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn committed_man_pages_and_completions_are_fresh() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let stale = stale(dir).unwrap();
        assert!(
            stale.is_empty(),
            "generated files out of date: {stale:?}; run `cargo run -p dlm-tools --example dlm-tools-gen` and commit tools/man and tools/completions"
        );
    }

    #[test]
    fn man_pages_describe_every_option() {
        for (cmd, extra) in tools() {
            let page = String::from_utf8(man_page(cmd.clone(), &extra).unwrap()).unwrap();
            for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    let needle = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&needle), "{}: {long} missing", cmd.get_name());
                }
            }
            for section in ["EXIT STATUS", "EXAMPLES", "SEE ALSO", "OPTIONS"] {
                assert!(page.contains(section), "{}: {section}", cmd.get_name());
            }
            // Each subcommand in the synopsis and in COMMANDS, with its
            // options, in this page: no page of its own is installed.
            let name = roff_text(cmd.get_name());
            assert!(
                !page.contains(&format!("{name}\\-")),
                "{}: names a page per subcommand",
                cmd.get_name()
            );
            let synopsis =
                &page[page.find(".SH SYNOPSIS").unwrap()..page.find(".SH DESCRIPTION").unwrap()];
            for sub in subcommands(&cmd) {
                let sub_name = format!("\\fB{}\\fR", roff_text(sub.get_name()));
                assert_eq!(
                    page.matches(&format!("\\fB{name}\\fR {sub_name}")).count(),
                    2,
                    "{}: {} not in SYNOPSIS and COMMANDS",
                    cmd.get_name(),
                    sub.get_name()
                );
                assert!(synopsis.contains(&sub_name), "{}", sub.get_name());
                for arg in sub.get_arguments().filter(|a| !a.is_hide_set()) {
                    if let Some(long) = arg.get_long().filter(|l| *l != "help") {
                        let needle = format!("\\fB\\-\\-{}\\fR", roff_text(long));
                        // In SYNOPSIS and in COMMANDS.
                        assert!(
                            page.matches(&needle).count() >= 2,
                            "{} {}: --{long} missing",
                            cmd.get_name(),
                            sub.get_name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text("a-b"), "a\\-b");
        assert_eq!(roff_text(".x"), "\\&.x");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
