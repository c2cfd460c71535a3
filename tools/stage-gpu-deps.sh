#!/usr/bin/env bash
# Stages the header-only dependencies sc2 builds with into .gpu-deps/ (git-ignored),
# for a GPU machine that has nvcc, CMake and PyTorch but neither Debian's -dev
# packages nor a network: run it here (after tools/install-deps.sh), carry the
# folder along, and tools/gpu-check.sh finds it.
#
#   bash tools/stage-gpu-deps.sh          # writes .gpu-deps/{include,cmake}
#
# Each package gets a small CMake config of its own that defines the imported
# target sc2 links (Eigen3::Eigen, fmt::fmt in fmt's header-only mode,
# nlohmann_json::nlohmann_json, Catch2::Catch2 with its test discovery,
# CLI11::CLI11); SIMDe is found by its header.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dest="$root/.gpu-deps"
rm -rf "$dest"
mkdir -p "$dest/include" "$dest/cmake"
cp -r /usr/include/eigen3/Eigen "$dest/include/"
cp -r /usr/include/fmt /usr/include/nlohmann /usr/include/catch2 /usr/include/CLI /usr/include/simde "$dest/include/"

# package VERSION TARGET [definitions]: a config and a version file under cmake/<package>/.
config() {
  local package=$1 version=$2 target=$3 definitions=${4:-}
  mkdir -p "$dest/cmake/$package"
  cat >"$dest/cmake/$package/${package}Config.cmake" <<CMAKE
# Staged by tools/stage-gpu-deps.sh: headers only.
if(NOT TARGET $target)
  add_library($target INTERFACE IMPORTED)
  set_target_properties($target PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "\${CMAKE_CURRENT_LIST_DIR}/../../include"
                                           INTERFACE_COMPILE_DEFINITIONS "$definitions")
endif()
CMAKE
  cat >"$dest/cmake/$package/${package}ConfigVersion.cmake" <<CMAKE
set(PACKAGE_VERSION "$version")
if(PACKAGE_FIND_VERSION VERSION_GREATER PACKAGE_VERSION)
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
CMAKE
}
config Eigen3 3.4.0 Eigen3::Eigen
config fmt 9.1.0 fmt::fmt FMT_HEADER_ONLY=1
config nlohmann_json 3.11.2 nlohmann_json::nlohmann_json
config CLI11 2.1.2 CLI11::CLI11
config Catch2 2.13.10 Catch2::Catch2
cp /usr/lib/cmake/Catch2/Catch.cmake /usr/lib/cmake/Catch2/CatchAddTests.cmake "$dest/cmake/Catch2/"
echo 'list(APPEND CMAKE_MODULE_PATH "${CMAKE_CURRENT_LIST_DIR}")' >>"$dest/cmake/Catch2/Catch2Config.cmake"
echo "stage-gpu-deps: $(du -sh "$dest" | cut -f1) in $dest"
