#!/usr/bin/env bash
# Installs the Debian bookworm packages socialpulse needs. Idempotent: does nothing when all are
# present, and only installs the missing ones otherwise.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config git curl ca-certificates
  librdkafka-dev librocksdb-dev prometheus-cpp-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev libsimdjson-dev libcli11-dev libspdlog-dev
  libexpected-dev libabsl-dev libxxhash-dev libssl-dev openssl
  kcat prometheus prometheus-alertmanager python3 python3-jsonschema python3-yaml python3-prometheus-client clang libclang-rt-14-dev
  clang-format fonts-dejavu-core
  chromium python3-websocket
)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "setup-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
