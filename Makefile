# Entry points for humans and CI. `make demo` and `make test` work on a fresh Debian bookworm.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: deps configure build release-smoke demo test test-long bench bench-e2e format clean

deps:
	bash scripts/setup-deps.sh

configure: deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

demo: build
	$(BUILD_DIR)/app/socialpulse demo

# The suite, then a Release build of the binary (how packagers build: -O3 must not break on
# compiler false positives, issue 19) and a smoke run of it.
test: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -j $(JOBS) -LE long
	$(MAKE) release-smoke

release-smoke: deps
	cmake -S . -B $(BUILD_DIR)-release -G Ninja -DCMAKE_BUILD_TYPE=Release \
	  -DSOCIALPULSE_BUILD_TESTS=OFF -DSOCIALPULSE_BUILD_BENCHMARKS=OFF $(CMAKE_FLAGS)
	cmake --build $(BUILD_DIR)-release -j $(JOBS) --target socialpulse
	bash scripts/release-smoke.sh $(BUILD_DIR)-release/app/socialpulse

test-long: build
	ctest --test-dir $(BUILD_DIR) --output-on-failure -L long

bench: build
	bash benchmarks/run.sh $(BUILD_DIR)

# Every SPEC 9 end-to-end figure: bench_e2e (ratio, latency, RSS, scrape) at the default
# checkpoint interval and at 250 ms, with 64 and 256 partitions (issue #20), then restart after
# kill -9 with 1 M keys (bench_recovery builds that state through the real runner).
bench-e2e: build
	$(BUILD_DIR)/benchmarks/bench_e2e --events 1000000
	$(BUILD_DIR)/benchmarks/bench_e2e --events 1000000 --checkpoint-ms 250
	$(BUILD_DIR)/benchmarks/bench_e2e --events 1000000 --partitions 256
	$(BUILD_DIR)/benchmarks/bench_e2e --events 1000000 --partitions 256 --checkpoint-ms 250
	$(BUILD_DIR)/benchmarks/bench_recovery

# clang-format -i over product code (operators/ state/ pipeline/ app/), the file set the ctest
# `clang_format` checks (scripts/format.sh).
format: deps
	bash scripts/format.sh

clean:
	rm -rf $(BUILD_DIR)
