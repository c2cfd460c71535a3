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

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cmath>

namespace sc2::ops {

/// Normalises each row of `in` (T, D) into `out` (T, D).
template <ExecutionContext Ctx>
void layer_norm(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> in,
                Vector<const float, SpaceOf<Ctx>> weight, Vector<const float, SpaceOf<Ctx>> bias, float eps) {
  SC2_CHECK(out.extents() == in.extents(), "layer_norm: output ({}, {}) and input ({}, {}) differ", out.extent(0),
            out.extent(1), in.extent(0), in.extent(1));
  SC2_CHECK(weight.extent(0) == in.extent(1) && bias.extent(0) == in.extent(1) && weight.stride(0) == 1 &&
                bias.stride(0) == 1 && in.stride(1) == 1 && out.stride(1) == 1,
            "layer_norm: weight ({}) and bias ({}) must be contiguous with the hidden size {}", weight.size(), bias.size(),
            in.extent(1));
  run_layer_norm(ctx, out, in, weight, bias, eps);
}

namespace reference {
/// Plain two-pass layer norm in double.
inline void layer_norm(MatrixView out, ConstMatrixView in, Vector<const float, Host> weight,
                       Vector<const float, Host> bias, float eps) {
  const std::int64_t D = in.extent(1);
  for (std::int64_t t = 0; t < in.extent(0); ++t) {
    double mean = 0.0, var = 0.0;
    for (std::int64_t d = 0; d < D; ++d) mean += in(t, d);
    mean /= static_cast<double>(D);
    for (std::int64_t d = 0; d < D; ++d) var += (in(t, d) - mean) * (in(t, d) - mean);
    var /= static_cast<double>(D);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (std::int64_t d = 0; d < D; ++d)
      out(t, d) = static_cast<float>((in(t, d) - mean) * inv * weight(d) + bias(d));
  }
}
}  // namespace reference

}  // namespace sc2::ops
