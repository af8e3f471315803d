#!/usr/bin/env bash
# Build the tag filter as WASM modules (wasm32-wasip1): the same plugin crate the host links
# natively, compiled as a core module that exports the plugin ABI and Fluent Bit's `filter`.
#   target/flowtag_filter.wasm            +simd128, with tract: for flowtag's wasm runtime
#                                         (wasmtime) and the tests
#   target/flowtag_filter_fluentbit.wasm  no SIMD, no tract: for Fluent Bit, whose WAMR is built
#                                         without SIMD; bundles its own evaluators cannot run are
#                                         refused with the reason
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
cargo wasm --quiet
cp target/wasm32-wasip1/release/flowtag_plugin.wasm target/flowtag_filter.wasm
printf '[wasm] target/flowtag_filter.wasm (%s bytes)\n' "$(stat -c %s target/flowtag_filter.wasm)"
# RUSTFLAGS replaces .cargo/config.toml's target rustflags (+simd128); its own target dir keeps
# both builds cached.
RUSTFLAGS="-C debuginfo=0 -C strip=debuginfo" cargo rustc --quiet -p flowtag-plugin --release \
    --target wasm32-wasip1 --crate-type cdylib --no-default-features --target-dir target/fluentbit
cp target/fluentbit/wasm32-wasip1/release/flowtag_plugin.wasm target/flowtag_filter_fluentbit.wasm
printf '[wasm] target/flowtag_filter_fluentbit.wasm (%s bytes)\n' "$(stat -c %s target/flowtag_filter_fluentbit.wasm)"
