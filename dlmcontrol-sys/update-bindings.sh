#!/bin/sh
# Regenerates src/bindings.rs from the installed libdlmcontrol.h (needs libclang:
# `apt-get install libclang-dev`). The test `bindings_are_fresh`, run by
# ci/test with `--features bindgen`, fails while the checked-in file differs
# from a fresh generation.
set -eu
cd "$(dirname "$0")"
out=$(cargo build -p dlmcontrol-sys --features bindgen --message-format=json 2>/dev/null |
	sed -n 's/.*"reason":"build-script-executed","package_id":"[^"]*dlmcontrol-sys[^"]*".*"out_dir":"\([^"]*\)".*/\1/p' | tail -n 1)
[ -n "$out" ] || { echo "update-bindings: build failed" >&2; exit 1; }
cp "$out/bindings.rs" src/bindings.rs
echo "updated src/bindings.rs from $out/bindings.rs"
