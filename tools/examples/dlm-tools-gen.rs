//! `dlm-tools-gen`: writes dlm-flock's and dlm-lock's man pages
//! (`man/*.1`) and shell completions (`completions/`: bash, zsh, fish)
//! from their clap definitions.
//!
//! ```text
//! cargo run -p dlm-tools --example dlm-tools-gen [-- DIR]   # default: the package's directory
//! cargo run -p dlm-tools --example dlm-tools-gen -- --check # exit 1 if the committed files are stale
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut check = false;
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--check" => check = true,
            "-h" | "--help" => {
                println!("Usage: dlm-tools-gen [--check] [DIR]\n\nWrites man/*.1 and completions/* under DIR (default: {})", dir.display());
                return ExitCode::SUCCESS;
            }
            a if a.starts_with('-') => {
                eprintln!("dlm-tools-gen: unknown option {a}");
                return ExitCode::from(64);
            }
            a => dir = PathBuf::from(a),
        }
    }
    if check {
        return match dlm_tools::generate::stale(&dir) {
            Ok(s) if s.is_empty() => ExitCode::SUCCESS,
            Ok(s) => {
                for p in s {
                    eprintln!("dlm-tools-gen: stale: {}", p.display());
                }
                ExitCode::from(1)
            }
            Err(e) => {
                eprintln!("dlm-tools-gen: {e}");
                ExitCode::from(1)
            }
        };
    }
    match dlm_tools::generate::write_all(&dir) {
        Ok(paths) => {
            for p in paths {
                println!("{}", p.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("dlm-tools-gen: {e}");
            ExitCode::from(1)
        }
    }
}
