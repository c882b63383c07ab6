//! Man pages (clap_mangen) and shell completions (clap_complete), made
//! from the same clap definitions as the programs' parsing and `--help`.
//! They are committed under `tools/man/` and `tools/completions/`;
//! `cargo run -p dlm-tools --example dlm-tools-gen` writes them anew, and a
//! unit test fails when the committed files differ from a fresh run.

use crate::help::Extra;
use clap_complete::Shell;
use std::io;
use std::path::{Path, PathBuf};

/// The shells completions are made for.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

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

/// The man page of `cmd`, with the sections of `extra`.
pub fn man_page(cmd: clap::Command, extra: &Extra) -> io::Result<Vec<u8>> {
    let version = cmd.get_version().unwrap_or("").to_string();
    let name = cmd.get_name().to_string();
    // The long help's after-text is the same as the sections below: keep
    // it out of clap_mangen's "EXTRA" section.
    let cmd = cmd.after_long_help(None::<&str>).after_help(None::<&str>);
    let man = clap_mangen::Man::new(cmd)
        .source(format!("dlm-tools {version}"))
        .manual("User Commands");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if name == "dlm-lock" {
        man.render_subcommands_section(&mut out)?;
    }
    let mut s = String::new();
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

/// Every generated file: its path under the package directory, and its
/// contents.
pub fn files() -> io::Result<Vec<(PathBuf, Vec<u8>)>> {
    let mut out = Vec::new();
    for (cmd, extra) in tools() {
        let name = cmd.get_name().to_string();
        out.push((
            PathBuf::from("man").join(format!("{name}.1")),
            man_page(cmd.clone(), &extra)?,
        ));
        for shell in SHELLS {
            let mut buf = Vec::new();
            let mut c = cmd.clone();
            clap_complete::generate(shell, &mut c, name.clone(), &mut buf);
            let file = match shell {
                Shell::Bash => format!("{name}.bash"),
                Shell::Zsh => format!("_{name}"),
                Shell::Fish => format!("{name}.fish"),
                _ => format!("{name}.{shell}"),
            };
            out.push((PathBuf::from("completions").join(file), buf));
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
        }
    }

    #[test]
    fn roff_escapes() {
        assert_eq!(roff_text("a-b"), "a\\-b");
        assert_eq!(roff_text(".x"), "\\&.x");
        assert_eq!(roff_text("a\\b"), "a\\eb");
    }
}
