#!/usr/bin/env bash
# Builds the decoder libFuzzer target (clang++, -fsanitize=fuzzer,address,undefined) and runs it
# for N seconds, seeding the corpus from schemas/examples.
# Usage: scripts/fuzz-decoder.sh [seconds=60]
# Env: FUZZ_WORK_DIR (default build-fuzz/: binary, corpus, crash artifacts), CXX_FUZZ (clang++).
# Exit: 0 clean, 77 clang++/libFuzzer unavailable (ctest SKIP_RETURN_CODE), else libFuzzer's code.
set -euo pipefail

seconds="${1:-60}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${FUZZ_WORK_DIR:-$root/build-fuzz}"
cxx="${CXX_FUZZ:-$(command -v clang++ || command -v clang++-14 || true)}"

if [[ -z "$cxx" ]]; then
  echo "fuzz-decoder: clang++ not found, skipping" >&2
  exit 77
fi
mkdir -p "$work/corpus" "$work/artifacts"

# libFuzzer ships in libclang-rt-*-dev, which may be missing even when clang++ is present.
probe="$work/probe.cc"
echo 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }' >"$probe"
if ! "$cxx" -fsanitize=fuzzer "$probe" -o "$work/probe" 2>/dev/null; then
  echo "fuzz-decoder: $cxx cannot link -fsanitize=fuzzer (install libclang-rt-dev), skipping" >&2
  exit 77
fi

sources=(tests/fuzz/decoder_fuzz.cc pipeline/decoder.cc operators/deduplicator.cc operators/event.cc
         operators/vocabulary.cc)
binary="$work/decoder_fuzz"
rebuild=0
[[ -x "$binary" ]] || rebuild=1
for f in "${sources[@]}" pipeline/decoder.h operators/deduplicator.h operators/event.h "$0"; do
  [[ "$root/$f" -nt "$binary" ]] && rebuild=1
done
if (( rebuild )); then
  echo "fuzz-decoder: building $binary" >&2
  (cd "$root" && "$cxx" -std=c++20 -O1 -g -fno-omit-frame-pointer \
     -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
     -I"$root" "${sources[@]}" -o "$binary" \
     -lsimdjson $(pkg-config --cflags --libs libxxhash absl_flat_hash_map absl_hash))
fi

# New inputs go to the first directory only, so the examples are read, never written.
exec "$binary" "$work/corpus" "$root/schemas/examples/valid" "$root/schemas/examples/invalid" \
  -dict="$root/tests/fuzz/decoder.dict" \
  -max_len=70000 -timeout=5 -rss_limit_mb=2048 -max_total_time="$seconds" \
  -artifact_prefix="$work/artifacts/" -print_final_stats=1 -error_exitcode=1
