//! Finds libdlmcontrol and, with the `bindgen` feature, regenerates the
//! bindings from the installed `libdlmcontrol.h`.
//!
//! Environment:
//! - `DLMCONTROL_LIB_DIR`: directory holding `libdlmcontrol.so`; skips
//!   pkg-config.
//! - `DLMCONTROL_INCLUDE_DIR`: directory holding `libdlmcontrol.h` (default:
//!   pkg-config's, else `/usr/include`).
//! - `DOCS_RS`: set when building documentation only (docs.rs); nothing is
//!   probed or linked.
//! - `DLM_NO_LINK`: the same, for `cargo check` or `cargo doc` on a machine
//!   without libdlmcontrol (as for dlm-sys).

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-env-changed=DLMCONTROL_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DLMCONTROL_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-env-changed=DLM_NO_LINK");

    if env::var_os("DOCS_RS").is_some() || env::var_os("DLM_NO_LINK").is_some_and(|v| v != "0") {
        // Declarations only: nothing to link. With feature `bindgen` the
        // checked-in bindings stand in for a generation.
        #[cfg(feature = "bindgen")]
        {
            let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
            std::fs::copy("src/bindings.rs", out.join("bindings.rs"))
                .expect("could not copy src/bindings.rs into OUT_DIR");
        }
        return;
    }

    let include_dirs = find_library();
    let include = include_dirs
        .iter()
        .find(|d| d.join("libdlmcontrol.h").is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    println!("cargo:include={}", include.display());

    #[cfg(feature = "bindgen")]
    generate(&include);
}

/// Emits the link instructions; returns the include directories to search.
fn find_library() -> Vec<PathBuf> {
    let mut includes = Vec::new();
    if let Some(dir) = env::var_os("DLMCONTROL_INCLUDE_DIR") {
        includes.push(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("DLMCONTROL_LIB_DIR") {
        println!(
            "cargo:rustc-link-search=native={}",
            Path::new(&dir).display()
        );
        println!("cargo:rustc-link-lib=dylib=dlmcontrol");
        return includes;
    }
    match pkg_config::Config::new().probe("libdlmcontrol") {
        Ok(lib) => {
            includes.extend(lib.include_paths);
            includes
        }
        Err(err) => {
            // The runtime package (libdlmcontrol3) has no .pc file and no
            // unversioned libdlmcontrol.so: both come with the -dev package.
            for dir in ["/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"] {
                if Path::new(dir).join("libdlmcontrol.so").exists() {
                    println!("cargo:rustc-link-search=native={dir}");
                    println!("cargo:rustc-link-lib=dylib=dlmcontrol");
                    return includes;
                }
            }
            for line in [
                "dlmcontrol-sys: libdlmcontrol was not found. Install it (Debian/Ubuntu: `apt-get install libdlmcontrol-dev`; Fedora/RHEL: `dnf install dlm-devel`),",
                "or set DLMCONTROL_LIB_DIR to the directory holding libdlmcontrol.so (and DLMCONTROL_INCLUDE_DIR to the one holding libdlmcontrol.h).",
                "To check or document code without it: DLM_NO_LINK=1 cargo check (or cargo doc).",
            ] {
                println!("cargo::error={line}");
            }
            eprintln!("dlmcontrol-sys: pkg-config said: {err}");
            std::process::exit(1);
        }
    }
}

#[cfg(feature = "bindgen")]
fn generate(include: &Path) {
    use bindgen::callbacks::{IntKind, ParseCallbacks};

    /// Gives every libdlmcontrol constant the integer type of the parameter
    /// or field it is used with.
    #[derive(Debug)]
    struct Types;

    impl ParseCallbacks for Types {
        fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
            let kind = if name.starts_with("DLMC_NF_")
                || name.starts_with("DLMC_LF_")
                || name.starts_with("DLMC_STATUS_")
                || name.starts_with("DLMC_FLAG_")
                || name.starts_with("DLMC_RUN_STATUS_")
            {
                // flags fields and parameters are uint32_t.
                IntKind::U32
            } else if name.starts_with("DLMC_NODES_")
                || name.starts_with("DLMC_LS_WAIT_")
                || name.starts_with("DLMC_RESULT_")
            {
                // compared with or passed as int.
                IntKind::Int
            } else if matches!(
                name,
                "DLMC_DUMP_SIZE"
                    | "DLMC_RUN_UUID_LEN"
                    | "DLMC_RUN_COMMAND_LEN"
                    | "DLM_LOCKSPACE_LEN"
            ) {
                // buffer lengths.
                IntKind::Custom {
                    name: "usize",
                    is_signed: false,
                }
            } else {
                return None;
            };
            Some(kind)
        }
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("bindings.rs");
    bindgen::Builder::default()
        .header("wrapper.h")
        .clang_arg(format!("-I{}", include.display()))
        .allowlist_function("dlmc_.*")
        .allowlist_type("dlmc_.*")
        .allowlist_var("DLMC_.*|DLM_LOCKSPACE_LEN")
        .parse_callbacks(Box::new(Types))
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(true)
        .ctypes_prefix("::std::os::raw")
        .generate()
        .expect("bindgen could not generate libdlmcontrol's bindings")
        .write_to_file(&out)
        .expect("could not write the bindings");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("libdlmcontrol.h").display()
    );
}
