#!/usr/bin/env bash
# Installs everything nncompress needs to build and test on Debian 12, and only what is missing:
# Debian packages (apt-get) and the ONNX Runtime oracle from npm (npm ci, install script skipped:
# it would try to download CUDA libraries). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make clang-format clang-14 libclang-rt-14-dev
  libonnx-dev libprotobuf-dev protobuf-compiler libeigen3-dev libcli11-dev libspdlog-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev libstb-dev zlib1g-dev pkg-config libbenchmark-dev
  libonnx-testdata dataset-fashion-mnist python3-skimage time chromium)
command -v node >/dev/null 2>&1 || packages+=(nodejs npm)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "bootstrap: installing ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if [ -f package-lock.json ] && [ ! -d node_modules/onnxruntime-node ]; then
  echo "bootstrap: installing onnxruntime-node (npm ci, install script skipped)"
  ONNXRUNTIME_NODE_INSTALL=skip npm ci --ignore-scripts --no-audit --no-fund
fi
