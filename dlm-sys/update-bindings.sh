#!/bin/sh
# Regenerates src/bindings.rs from the installed libdlm.h and src/device.rs
# from linux/dlm_device.h (needs libclang:
# `apt-get install libclang-dev`). The test `bindings_are_fresh`, run by
# ci/test with `--features bindgen`, fails while the checked-in file differs
# from a fresh generation.
set -eu
cd "$(dirname "$0")"
out=$(cargo build -p dlm-sys --features bindgen --message-format=json 2>/dev/null |
	sed -n 's/.*"reason":"build-script-executed","package_id":"[^"]*dlm-sys[^"]*".*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$out" ] || { echo "update-bindings: build failed" >&2; exit 1; }
cp "$out/bindings.rs" src/bindings.rs
cp "$out/device.rs" src/device.rs
echo "updated src/bindings.rs and src/device.rs from $out"
