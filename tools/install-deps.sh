#!/usr/bin/env bash
# Installs the Debian packages sc2 builds and tests with, skipping those present.
# Runs apt-get as root, or through sudo otherwise.
set -euo pipefail
packages=(g++ cmake make pkg-config libeigen3-dev libfmt-dev catch2 nlohmann-json3-dev libcli11-dev libsimde-dev libcpp-httplib-dev curl clang libclang-rt-dev doxygen)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
