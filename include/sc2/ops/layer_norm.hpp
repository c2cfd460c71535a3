#pragma once
/// \file
/// Layer normalisation with weight and bias.
///
///     mu[t]    = mean_d in[t, d]
///     var[t]   = mean_d (in[t, d] - mu[t])^2          (biased, as torch)
///     out[t,d] = (in[t, d] - mu[t]) / sqrt(var[t] + eps) * weight[d] + bias[d]
///
/// in, out (T, D); weight, bias (D). Statistics are accumulated in double so
/// the result is the float rounding of the exact value; torch's float
/// accumulation differs from it by a few ulps. `out` may alias `in`.

#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cmath>
#include <span>

namespace sc2::ops {

/// Normalises each row of `in` (T, D) into `out` (T, D).
template <class Context>
void layer_norm(Context& ctx, MatrixView out, ConstMatrixView in, std::span<const float> weight,
                std::span<const float> bias, float eps) {
  SC2_CHECK(out.extents() == in.extents(), "layer_norm: output ({}, {}) and input ({}, {}) differ", out.extent(0),
            out.extent(1), in.extent(0), in.extent(1));
  SC2_CHECK(static_cast<std::int64_t>(weight.size()) == in.extent(1) &&
                static_cast<std::int64_t>(bias.size()) == in.extent(1),
            "layer_norm: weight ({}) and bias ({}) must have the hidden size {}", weight.size(), bias.size(),
            in.extent(1));
  run_layer_norm(ctx, out, in, weight, bias, eps);
}

namespace reference {
/// Plain two-pass layer norm in double.
inline void layer_norm(MatrixView out, ConstMatrixView in, std::span<const float> weight,
                       std::span<const float> bias, float eps) {
  const std::int64_t D = in.extent(1);
  for (std::int64_t t = 0; t < in.extent(0); ++t) {
    double mean = 0.0, var = 0.0;
    for (std::int64_t d = 0; d < D; ++d) mean += in(t, d);
    mean /= static_cast<double>(D);
    for (std::int64_t d = 0; d < D; ++d) var += (in(t, d) - mean) * (in(t, d) - mean);
    var /= static_cast<double>(D);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (std::int64_t d = 0; d < D; ++d)
      out(t, d) = static_cast<float>((in(t, d) - mean) * inv * weight[static_cast<std::size_t>(d)] +
                                     bias[static_cast<std::size_t>(d)]);
  }
}
}  // namespace reference

}  // namespace sc2::ops
