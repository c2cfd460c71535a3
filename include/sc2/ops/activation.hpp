#pragma once
/// \file
/// GELU with the tanh approximation (`gelu_pytorch_tanh`), in place.
///
///     gelu(x) = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
///
/// x (T, F). This is torch's `gelu(approximate="tanh")`, not the erf GELU.

#include <sc2/core/context.hpp>
#include <sc2/core/tensor.hpp>

#include <cmath>

namespace sc2::ops {

/// gelu_pytorch_tanh of one value, in float as torch computes it.
inline float gelu_tanh(float x) noexcept {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  constexpr float kCubic = 0.044715f;
  const float inner = kSqrt2OverPi * (x + kCubic * x * x * x);
  return 0.5f * x * (1.0f + std::tanh(inner));
}

/// Applies gelu_pytorch_tanh to every element of `x` (T, F).
template <ExecutionContext Ctx> void gelu_tanh(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> x) {
  SC2_CHECK(x.stride(1) == 1, "gelu_tanh: rows must be contiguous");
  run_gelu_tanh(ctx, x);
}

namespace reference {
/// Plain element-wise GELU (tanh form) in double.
inline void gelu_tanh(MatrixView x) {
  for (std::int64_t t = 0; t < x.extent(0); ++t)
    for (std::int64_t f = 0; f < x.extent(1); ++f) {
      const double v = x(t, f);
      x(t, f) = static_cast<float>(0.5 * v * (1.0 + std::tanh(std::sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    }
}
}  // namespace reference

}  // namespace sc2::ops
