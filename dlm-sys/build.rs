//! Finds libdlm (the threaded `libdlm.so`, or with the `lt` feature
//! `libdlm_lt.so`) and, with the `bindgen` feature, regenerates the
//! bindings from the installed `libdlm.h`.
//!
//! Environment:
//! - `DLM_LIB_DIR`: directory holding `libdlm.so` (`libdlm_lt.so`); skips
//!   pkg-config.
//! - `DLM_INCLUDE_DIR`: directory holding `libdlm.h` (default: pkg-config's,
//!   else `/usr/include`).
//! - `DOCS_RS`: set when building documentation only (docs.rs); nothing is
//!   probed or linked.
//! - `DLM_NO_LINK`: the same, for `cargo check` or `cargo doc` on a machine
//!   without libdlm; a `cargo build` of a program then fails to link.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=device.h");
    println!("cargo:rerun-if-env-changed=DLM_LIB_DIR");
    println!("cargo:rerun-if-env-changed=DLM_INCLUDE_DIR");
    println!("cargo:rerun-if-env-changed=DOCS_RS");
    println!("cargo:rerun-if-env-changed=DLM_NO_LINK");

    if env::var_os("DOCS_RS").is_some() || env::var_os("DLM_NO_LINK").is_some_and(|v| v != "0") {
        // Checks and documentation need no library: the bindings are only
        // declarations. With feature `bindgen` there may be no libdlm.h
        // either: the checked-in bindings stand in for a generation.
        #[cfg(feature = "bindgen")]
        {
            let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
            std::fs::copy("src/bindings.rs", out.join("bindings.rs"))
                .expect("could not copy src/bindings.rs into OUT_DIR");
            std::fs::copy("src/device.rs", out.join("device.rs"))
                .expect("could not copy src/device.rs into OUT_DIR");
        }
        return;
    }

    let include_dirs = find_library();
    let include = include_dirs
        .iter()
        .find(|d| d.join("libdlm.h").is_file())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("/usr/include"));
    // Dependent crates that declare `dlm-sys` as a dependency see this as
    // DEP_DLM_INCLUDE (the `links = "dlm"` metadata).
    println!("cargo:include={}", include.display());

    #[cfg(feature = "bindgen")]
    generate(&include);
    #[cfg(feature = "bindgen")]
    generate_device();
}

/// Emits the link instructions; returns the include directories to search.
fn find_library() -> Vec<PathBuf> {
    let mut includes = Vec::new();
    if let Some(dir) = env::var_os("DLM_INCLUDE_DIR") {
        includes.push(PathBuf::from(dir));
    }
    if let Some(dir) = env::var_os("DLM_LIB_DIR") {
        println!(
            "cargo:rustc-link-search=native={}",
            Path::new(&dir).display()
        );
        link_libs();
        return includes;
    }
    if cfg!(feature = "lt") {
        return find_lt(includes);
    }
    match pkg_config::Config::new().probe("libdlm") {
        Ok(lib) => {
            includes.extend(lib.include_paths);
            includes
        }
        Err(err) => {
            // Fall back to the usual directories of the target before
            // giving up: the library may be installed without its .pc
            // file. Debian's multiarch directory is named by the GNU
            // triple (x86_64-linux-gnu, aarch64-linux-gnu, ...); Fedora-like
            // systems use /usr/lib64.
            for dir in fallback_dirs() {
                if dir.join("libdlm.so").exists() {
                    println!("cargo:rustc-link-search=native={}", dir.display());
                    link_libs();
                    return includes;
                }
            }
            // The remedy first (cargo shows `cargo::error` lines above the
            // build script's output); pkg-config's long explanation after.
            for line in [
                "dlm-sys: libdlm was not found. Install it (Debian/Ubuntu: `apt-get install libdlm-dev`; Fedora/RHEL: `dnf install dlm-devel`),",
                "or set DLM_LIB_DIR to the directory holding libdlm.so (and DLM_INCLUDE_DIR to the one holding libdlm.h).",
                "To check or document code without libdlm: DLM_NO_LINK=1 cargo check (or cargo doc).",
            ] {
                println!("cargo::error={line}");
            }
            eprintln!("dlm-sys: pkg-config said: {err}");
            std::process::exit(1);
        }
    }
}

/// The libraries to link: `-ldlm -lpthread`, or with `lt` `-ldlm_lt`.
fn link_libs() {
    if cfg!(feature = "lt") {
        println!("cargo:rustc-link-lib=dylib=dlm_lt");
    } else {
        println!("cargo:rustc-link-lib=dylib=dlm");
        println!("cargo:rustc-link-lib=dylib=pthread");
    }
}

/// The `lt` feature: libdlm_lt. pkg-config's `libdlm_lt` gives the
/// directories, but its libraries are not taken from it: Debian 12's
/// `libdlm_lt.pc` (dlm 4.2.0) says `-ldlm -lpthread`, which would link the
/// threaded library (fixed in 4.3.0). `-ldlm_lt` is linked instead.
fn find_lt(mut includes: Vec<PathBuf>) -> Vec<PathBuf> {
    match pkg_config::Config::new()
        .cargo_metadata(false)
        .probe("libdlm_lt")
    {
        Ok(lib) => {
            for dir in lib.link_paths.iter().filter(|d| d.is_dir()) {
                println!("cargo:rustc-link-search=native={}", dir.display());
            }
            includes.extend(lib.include_paths);
        }
        Err(_) => {
            let dir = fallback_dirs()
                .into_iter()
                .find(|d| d.join("libdlm_lt.so").exists())
                .unwrap_or_else(|| {
                    for line in [
                        "dlm-sys: libdlm_lt (feature `lt`) was not found. Install it (Debian/Ubuntu: `apt-get install libdlm-dev`; Fedora/RHEL: `dnf install dlm-devel`),",
                        "or set DLM_LIB_DIR to the directory holding libdlm_lt.so.",
                    ] {
                        println!("cargo::error={line}");
                    }
                    std::process::exit(1);
                });
            println!("cargo:rustc-link-search=native={}", dir.display());
        }
    }
    link_libs();
    includes
}

/// Where libdlm.so usually is for the target being built.
fn fallback_dirs() -> Vec<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env_ = env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    // Debian's multiarch names where they differ from Rust's arch names.
    let (arch, abi) = match arch.as_str() {
        "x86" => ("i386", "gnu"),
        "arm" => ("arm", "gnueabihf"),
        "powerpc64" if env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("little") => {
            ("powerpc64le", "gnu")
        }
        other => (
            other,
            if env_.is_empty() {
                "gnu"
            } else {
                env_.as_str()
            },
        ),
    };
    let mut dirs = vec![PathBuf::from(format!("/usr/lib/{arch}-linux-{abi}"))];
    dirs.extend(["/usr/lib64", "/usr/lib", "/lib64", "/lib"].map(PathBuf::from));
    dirs
}

#[cfg(feature = "bindgen")]
fn generate(include: &Path) {
    use bindgen::callbacks::{IntKind, ParseCallbacks};

    /// Gives every libdlm constant the integer type of the parameter or
    /// field it is used with.
    #[derive(Debug)]
    struct Types;

    impl ParseCallbacks for Types {
        fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
            let kind = if name.starts_with("LKM_")
                || name.starts_with("LKF_")
                || name.starts_with("DLM_LSFL_")
            {
                // mode and flags parameters are uint32_t.
                IntKind::U32
            } else if name.starts_with("DLM_SBF_") {
                // compared with `struct dlm_lksb`'s `char sb_flags`.
                IntKind::Custom {
                    name: "::std::os::raw::c_char",
                    is_signed: false,
                }
            } else if matches!(name, "ECANCEL" | "EUNLOCK" | "EINPROG") {
                // compared with `int sb_status`.
                IntKind::Int
            } else if matches!(
                name,
                "DLM_LVB_LEN" | "DLM_RESNAME_MAXLEN" | "DLM_LOCKSPACE_LEN"
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
        .clang_arg("-D_REENTRANT")
        .allowlist_function("dlm_.*|lock_resource|unlock_resource")
        .allowlist_type("dlm_.*")
        .allowlist_var("LKM_.*|LKF_.*|DLM_.*|ECANCEL|EUNLOCK|EINPROG")
        .blocklist_type("mode_t|__mode_t")
        .raw_line("use libc::mode_t;")
        .parse_callbacks(Box::new(Types))
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(true)
        .ctypes_prefix("::std::os::raw")
        .generate()
        .expect("bindgen could not generate libdlm's bindings")
        .write_to_file(&out)
        .expect("could not write the bindings");
    println!(
        "cargo:rerun-if-changed={}",
        include.join("libdlm.h").display()
    );
}

/// The lockspace device's protocol (`linux/dlm_device.h`): the result
/// records a read of the device returns. A bindgen run of its own: that
/// header's `struct dlm_lksb` (from `linux/dlm.h`) clashes with
/// `libdlm.h`'s.
#[cfg(feature = "bindgen")]
fn generate_device() {
    use bindgen::callbacks::{IntKind, ParseCallbacks};

    /// The version numbers as `u32` (the `version[]` fields' type), the
    /// value block length as `usize`.
    #[derive(Debug)]
    struct Types;

    impl ParseCallbacks for Types {
        fn int_macro(&self, name: &str, _value: i64) -> Option<IntKind> {
            if name.starts_with("DLM_DEVICE_VERSION_") {
                Some(IntKind::U32)
            } else if name == "DLM_USER_LVB_LEN" {
                Some(IntKind::Custom {
                    name: "usize",
                    is_signed: false,
                })
            } else {
                None
            }
        }
    }

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("device.rs");
    bindgen::Builder::default()
        .header("device.h")
        .allowlist_type("dlm_lock_result|dlm_device_version")
        .allowlist_var("DLM_DEVICE_VERSION_.*|DLM_USER_LVB_LEN")
        .parse_callbacks(Box::new(Types))
        .derive_default(true)
        .layout_tests(true)
        .generate_comments(true)
        .ctypes_prefix("::std::os::raw")
        .generate()
        .expect("bindgen could not generate linux/dlm_device.h's bindings")
        .write_to_file(&out)
        .expect("could not write the device bindings");
}
