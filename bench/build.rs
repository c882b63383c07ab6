//! Compiles the C contenders (`c/cbench.c`) against the threaded libdlm.

fn main() {
    println!("cargo:rerun-if-changed=c/cbench.c");
    cc::Build::new()
        .file("c/cbench.c")
        // libdlm.h declares the threaded calls only under _REENTRANT.
        .define("_REENTRANT", None)
        .flag_if_supported("-Wall")
        .flag_if_supported("-Wextra")
        .warnings_into_errors(true)
        .compile("cbench");
    // The C code calls libdlm itself: -ldlm -lpthread, after libcbench.a.
    println!("cargo:rustc-link-lib=dylib=dlm");
    println!("cargo:rustc-link-lib=dylib=pthread");
}
