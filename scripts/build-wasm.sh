#!/usr/bin/env bash
# Build the tag filter as a WASM module (wasm32-wasip1, +simd128): the same plugin crate the
# host links natively, compiled as a core module that exports the plugin ABI and Fluent Bit's
# `filter`. Result: target/flowtag_filter.wasm (also used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
cargo wasm --quiet
cp target/wasm32-wasip1/release/flowtag_plugin.wasm target/flowtag_filter.wasm
printf '[wasm] target/flowtag_filter.wasm (%s bytes)\n' "$(stat -c %s target/flowtag_filter.wasm)"
