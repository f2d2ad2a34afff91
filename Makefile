# Berth's entry points. The README's two fresh-machine commands are
# `make run` and `make test`.

.PHONY: run test lint build images

## Build, install runtime deps, start berthd with its defaults, run a first container.
run:
	scripts/run

## The whole test suite (what CI runs).
test:
	scripts/test

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

build:
	cargo build --workspace --bins

## Test images (OCI and docker-save archives) into target/test-images.
images:
	scripts/build-test-images target/test-images

.PHONY: bench
## Side-by-side benchmarks, berthd vs Debian's containerd 1.6 through ctr (as
## root; see bench/README.md). Flags via BENCH_ARGS, e.g.
## make bench BENCH_ARGS="--runs 5 --only latency,memory"
bench:
	cargo build --release --workspace --bins
	target/release/berth-bench $(BENCH_ARGS)

.PHONY: fuzz
## Fuzz targets (layer tars, digests, identifiers, namespace header, image
## references) for BERTH_FUZZ_SECS seconds each (60 by default; `make test`
## runs each for 2). Failing inputs land in target/fuzz-failures/.
fuzz:
	BERTH_FUZZ_SECS=$${BERTH_FUZZ_SECS:-60} cargo test --workspace --test fuzz -- --test-threads=1 --nocapture
