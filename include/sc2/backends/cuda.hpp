#pragma once
/// \file
/// The CUDA backend: `sc2::cuda::Context`, `sc2::cuda::Backend` and the CUDA
/// implementation of every op. Host code includes this with any C++20
/// compiler; the kernels themselves are compiled once per program from
/// `sc2/backends/cuda/kernels.cu` (CMake's `sc2::cuda` target adds it).
///
///     #include <sc2/sc2.hpp>
///     #include <sc2/backends/cuda.hpp>
///     sc2::cuda::Context gpu;
///     auto lm = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, sc2::cuda::Backend>>::load(gpu, dir);

#include <sc2/backends/cuda/context.hpp>
#include <sc2/backends/cuda/ops.hpp>
