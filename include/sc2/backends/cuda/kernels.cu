// The CUDA backend's kernels, compiled once per program: CMake's `sc2::cuda`
// target adds this file to the sources of every target that links it.
#include <sc2/backends/cuda/kernels.cuh>
