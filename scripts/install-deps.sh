#!/usr/bin/env bash
# Installs the Debian packages the build needs, only those missing. Uses sudo when not root.
set -euo pipefail
packages=(cmake ninja-build g++ libtbb-dev libspdlog-dev nlohmann-json3-dev catch2 libcli11-dev libopenblas-dev libhwy-dev pkg-config
          python3-numpy python3-torch)  # the last two: the Python package's tests (ctest -R python)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  echo "installing: ${missing[*]}"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${missing[@]}"
fi
