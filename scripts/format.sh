#!/usr/bin/env bash
# clang-format (Debian's clang-format 14, the root .clang-format) over product code: every .h/.cc
# under operators/ state/ pipeline/ app/. One file set for both uses:
#   scripts/format.sh           reformat in place (`make format`)
#   scripts/format.sh --check   list the files that are not formatted and fail (ctest `clang_format`);
#                               SOCIALPULSE_FORMAT_VERBOSE=1 also prints clang-format's diagnostics
# CLANG_FORMAT overrides the binary. A missing clang-format fails instead of skipping.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
clang_format="${CLANG_FORMAT:-clang-format}"
if ! command -v "$clang_format" >/dev/null 2>&1; then
  echo "format: $clang_format not found (scripts/setup-deps.sh installs clang-format)" >&2
  exit 1
fi
# Other major versions break lines differently: the result would not match CI's.
version="$("$clang_format" --version)"
if [[ ! "$version" =~ version\ 14\. ]]; then
  echo "format: note: expected clang-format 14, have: $version" >&2
fi
mapfile -d '' files < <(find operators state pipeline app -type f \( -name '*.h' -o -name '*.cc' \) \
                          -print0 | sort -z)
if [ ${#files[@]} -eq 0 ]; then
  echo "format: no sources under operators/ state/ pipeline/ app/ in $root" >&2
  exit 1
fi
style="--style=file:$root/.clang-format"

if [ "${1:-}" != "--check" ]; then
  "$clang_format" "$style" -i "${files[@]}"
  exit 0
fi

flagged=0
for f in "${files[@]}"; do
  if out="$("$clang_format" "$style" --dry-run -Werror "$f" 2>&1)"; then continue; fi
  flagged=$((flagged + 1))
  echo "$f: $(grep -c 'Wclang-format-violations' <<<"$out" || true) place(s) to reformat"
  if [ "${SOCIALPULSE_FORMAT_VERBOSE:-0}" = 1 ]; then echo "$out"; fi
done
if [ "$flagged" -gt 0 ]; then
  echo "format: $flagged of ${#files[@]} files are not clang-formatted (run: make format)"
  exit 1
fi
echo "format: all ${#files[@]} files clang-formatted"
