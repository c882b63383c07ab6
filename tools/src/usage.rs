//! Command-line parsing as the tools answer it: `--help` and `--version`
//! print and exit 0; anything wrong (unknown option, bad number, missing
//! argument) is one line on standard error and exit status 64
//! (`EX_USAGE`, as flock(1) uses it), never clap's own status 2 or a
//! panic.

use clap::error::ErrorKind;
use std::ffi::OsString;

/// The exit status of a usage error (`EX_USAGE` of `<sysexits.h>`).
pub const EX_USAGE: u8 = 64;

/// What parsing a command line came to.
#[derive(Debug)]
pub enum Parsed {
    /// The arguments, to run with.
    Run(clap::ArgMatches),
    /// Help or version text was asked for: print it (to standard output)
    /// and exit 0.
    Print(String),
    /// A usage error: this one line (without the program's name) goes to
    /// standard error, then exit [`EX_USAGE`].
    Usage(String),
}

/// Parses `args` (the program's name first) with `cmd`.
pub fn parse<I, T>(cmd: clap::Command, args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let name = cmd.get_name().to_string();
    match cmd.try_get_matches_from(args) {
        Ok(m) => Parsed::Run(m),
        Err(e) => match e.kind() {
            ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => Parsed::Print(e.to_string()),
            _ => Parsed::Usage(one_line(&name, &e)),
        },
    }
}

/// The first line of clap's message, without its `error: ` prefix, with a
/// pointer to `--help`.
pub fn one_line(name: &str, e: &clap::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("usage error").trim();
    let mut first = first.strip_prefix("error: ").unwrap_or(first).to_string();
    // "the following required arguments were not provided:" lists them on
    // the next, indented, lines.
    if first.ends_with(':') {
        let more: Vec<&str> = lines
            .take_while(|l| l.starts_with(' '))
            .map(str::trim)
            .collect();
        first = format!("{} {}", first, more.join(" "));
    }
    format!("{first} (see {name} --help)")
}

/// Prints a usage error as the tools do and returns its exit status.
pub fn report(name: &str, line: &str) -> u8 {
    eprintln!("{name}: {line}");
    EX_USAGE
}

/// Parses the process's own arguments with `cmd`: prints help, version or
/// a usage error and exits when there is nothing to run.
pub fn parse_env(cmd: clap::Command) -> clap::ArgMatches {
    let name = cmd.get_name().to_string();
    match parse(cmd, std::env::args_os()) {
        Parsed::Run(m) => m,
        Parsed::Print(text) => {
            println!("{}", text.trim_end());
            std::process::exit(0);
        }
        Parsed::Usage(line) => std::process::exit(report(&name, &line).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, Command};

    fn cmd() -> Command {
        Command::new("t").version("1").arg(
            Arg::new("n")
                .short('n')
                .value_parser(clap::value_parser!(u8)),
        )
    }

    #[test]
    fn errors_are_one_line() {
        match parse(cmd(), ["t", "--bogus"]) {
            Parsed::Usage(l) => {
                assert!(!l.contains('\n'), "{l}");
                assert!(
                    l.contains("--bogus") && l.ends_with("(see t --help)"),
                    "{l}"
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(cmd().arg(Arg::new("x").required(true)), ["t"]) {
            Parsed::Usage(l) => assert!(l.contains("<x>") && !l.contains('\n'), "{l}"),
            other => panic!("{other:?}"),
        }
        match parse(cmd(), ["t", "-n", "256"]) {
            Parsed::Usage(l) => assert!(l.contains("256"), "{l}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn help_and_version_print() {
        assert!(matches!(parse(cmd(), ["t", "--help"]), Parsed::Print(_)));
        assert!(matches!(parse(cmd(), ["t", "-V"]), Parsed::Print(t) if t.contains('1')));
        assert!(matches!(parse(cmd(), ["t", "-n", "3"]), Parsed::Run(_)));
    }
}
