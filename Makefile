# Entry points for humans and CI. `make demo` and `make test` work on a fresh Debian bookworm.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build demo test test-long bench bench-e2e format clean

deps:
	bash scripts/setup-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	$(BUILD_DIR)/app/socialpulse demo

test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -LE long

test-long: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -L long

bench: build
	bash benchmarks/run.sh $(BUILD_DIR)

# Every SPEC 9 end-to-end figure: bench_e2e (ratio, latency, RSS, scrape), then restart after
# kill -9 with 1 M keys (bench_recovery builds that state through the real runner).
bench-e2e: build
	$(BUILD_DIR)/benchmarks/bench_e2e --events 1000000
	$(BUILD_DIR)/benchmarks/bench_recovery

# clang-format -i over product code (operators/ state/ pipeline/ app/), the file set the ctest
# `clang_format` checks (scripts/format.sh).
format: deps
	bash scripts/format.sh

clean:
	rm -rf $(BUILD_DIR)
