# moesim: `make run` runs the main job, `make test` the tests. Both install what is missing first.
SWIFT ?= swift
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
BIN := .build/release/moesim

.PHONY: deps build run test test-fast python-test bench fuzz clean

# libopenblas-dev and zlib (headers and pkg-config files), through apt-get when absent.
deps:
	@command -v $(SWIFT) >/dev/null || { echo "error: Swift 6 is required (https://www.swift.org/install/linux/)"; exit 1; }
	@if ! pkg-config --exists openblas 2>/dev/null || [ ! -f /usr/include/zlib.h ]; then \
		echo "installing libopenblas-dev zlib1g-dev pkg-config (apt-get)"; \
		$(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas-dev zlib1g-dev pkg-config >/dev/null; \
	fi

build: deps
	$(SWIFT) build -c release --product moesim

run: build
	$(BIN) compare

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --parallel --num-workers 2
	$(SWIFT) build -c release --product moesim
	bash docs/make-validation.sh --short --check
	$(MAKE) python-test

# What a contributor runs while working: the same tests, every property over two of its seeds
# (MOESIM_TEST_SEEDS=fast, Tests/MoESimTests/Seeds.swift), without the release build and the validation check.
test-fast: deps
	$(SWIFT) build --build-tests
	MOESIM_TEST_SEEDS=fast $(SWIFT) test --skip-build --parallel --num-workers 2
	$(MAKE) python-test

# The Python companion (python/): installs it with torch (a CPU build), transformers and pyarrow (pip), then runs
# its tests against this checkout's sources; MOESIM_REQUIRE_TORCH makes a missing torch a failure, not a skip.
python-test:
	@command -v python3 >/dev/null || { echo "installing python3 (apt-get)"; $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-pip >/dev/null; }
	bash python/install-deps.sh
	MOESIM_REQUIRE_TORCH=1 python3 -m unittest discover -s python/tests

bench: build
	$(BIN) bench

# libFuzzer on every input path (docs/robustness.md): FUZZ_SECONDS per target (default 60), or FUZZ_RUNS executions.
fuzz: build
	Fuzz/run.sh

clean:
	rm -rf .build reports Fuzz/.build Fuzz/out
