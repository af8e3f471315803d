# The project's entry points. `make demo` and `make test` are the README's first two commands.
.PHONY: setup build wasm demo demo-web test test-rust test-python bench fixtures fmt

setup:
	scripts/setup.sh

build:
	cargo build --release -p flowtag-host

# The tag filter as a WASM module: target/flowtag_filter.wasm
wasm:
	scripts/build-wasm.sh

demo: setup
	scripts/demo.sh

# The web demo: a site baseline learned from a generated access log, requests through syslog.
demo-web: setup
	scripts/demo_web.sh

test: setup
	scripts/test.sh

bench: setup build
	cargo bench -p flowtag-plugin --bench filter
	.venv/bin/python bench/plugin_report.py
	.venv/bin/python bench/host_bench.py

# Regenerate the plugin's golden fixtures (small bundles from generated data, onnxruntime's outputs).
fixtures: setup
	.venv/bin/flowtag-export fixtures --out plugin/tests/fixtures

fmt:
	cargo fmt --all
