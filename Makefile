# meshver front door: build the filter, run the tests, run the demo.
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/meshver.wasm
# The same build with the body and response callbacks: the body filter (src/filter/body.rs).
BODY_WASM := target/$(WASM_TARGET)/release/meshver_body.wasm
# Cargo's own artifact, which the trim step reads and never changes.
WASM_BUILT := target/$(WASM_TARGET)/release/deps/meshver.wasm
VENV := .venv
# Re-install only when the pinned requirements change.
VENV_STAMP := $(VENV)/.installed

.PHONY: build cli venv test demo lint clean

build:
	@rustup target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)
	cargo build --release --target $(WASM_TARGET)
	@# Keep only the callbacks each filter implements (src/host/mod.rs says why).
	cargo run --quiet -p meshver-trim-exports -- --out $(WASM) $(WASM_BUILT)
	cargo run --quiet -p meshver-trim-exports -- --section meshver.body_callbacks --out $(BODY_WASM) $(WASM_BUILT)
	@wc -c < $(WASM) | awk '{ printf "$(WASM): %d bytes (%.1f KiB)\n", $$1, $$1 / 1024 }'

# The operator CLI, target/release/meshver (a native binary; none of its crates reach the module).
cli:
	cargo build --release -p meshver-cli
	@echo "target/release/meshver"

venv: $(VENV_STAMP)

$(VENV_STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# Native unit tests first (filter core and CLI): they fail fastest. The e2e tests build
# the CLI they use (debug profile: quick to compile).
test:
	cargo test --workspace
	$(MAKE) --no-print-directory build venv
	$(VENV)/bin/python -m pytest -q tests

demo: build venv
	$(VENV)/bin/python examples/demo.py

# On a fresh machine with only rustup: the components and the target it needs come first.
lint:
	@rustup -q component add clippy rustfmt >/dev/null 2>&1 || rustup component add clippy rustfmt
	@rustup -q target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) -- -D warnings

clean:
	cargo clean
	rm -rf $(VENV) .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The benchmark (not part of `make test`): native routing vs Lua vs meshver vs an empty wasm
# filter on the same Envoy and upstream, then JSON bodies moved between versions (the body
# filter vs plain proxying vs Envoy's transform filter); results and method in BENCHMARKS.md.
# About 15 minutes.
.PHONY: bench
bench: build cli venv
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cargo build --release --target $(WASM_TARGET) -p meshver-bench-empty-filter
	cargo run --quiet -p meshver-trim-exports -- target/$(WASM_TARGET)/release/meshver_bench_empty_filter.wasm
	cargo build --release -p meshver-bench-openloop
	cargo build --release --target $(WASM_TARGET) -p meshver-bench-decide-wasm
	CARGO_TARGET_DIR=$(CURDIR)/target/bench-decide cargo bench --manifest-path bench/decide/Cargo.toml
	CARGO_TARGET_DIR=$(CURDIR)/target/bench-body cargo bench --manifest-path bench/body/Cargo.toml
	$(VENV)/bin/python bench/run.py
