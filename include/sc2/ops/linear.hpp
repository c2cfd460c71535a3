#pragma once
/// \file
/// Linear layer: a matrix product with the weight transposed, plus a bias.
///
///     out[t, n] = sum_k in[t, k] * W[n, k]  (+ bias[n])
///
/// in (T, K) activations; W (N, K) in its dtype (f32, bf16, f16) and its
/// backend's layout, as Linear weights are (out_features, in_features); bias
/// (N) or empty; out (T, N). Accumulation is in float. With T = 1 (decode)
/// this is a matrix-vector product bounded by the memory bandwidth of reading
/// W; with large T (prefill) it is bounded by the FMA units, and the CPU
/// backend blocks over T, N and K so that W is read from memory once.
///
/// Every row of `out` is computed in an order that depends on neither T nor
/// the row's place among the T rows, so a sequence's results do not depend on
/// what else runs in the same batch.

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

namespace sc2::ops {

/// out (T, N) = in (T, K) · Wᵀ (+ bias). `out` must not alias `in`.
template <ExecutionContext Ctx>
void linear(Ctx& ctx, Matrix<ActivationOf<Ctx>, SpaceOf<Ctx>> out, Matrix<const ActivationOf<Ctx>, SpaceOf<Ctx>> in,
            const WeightView<SpaceOf<Ctx>>& weight, Vector<const float, SpaceOf<Ctx>> bias = {}) {
  SC2_CHECK(in.extent(1) == weight.cols && out.extent(1) == weight.rows && out.extent(0) == in.extent(0),
            "linear: input ({}, {}) · weight ({}, {})ᵀ does not fit output ({}, {})", in.extent(0), in.extent(1),
            weight.rows, weight.cols, out.extent(0), out.extent(1));
  SC2_CHECK(bias.empty() || bias.extent(0) == weight.rows,
            "linear: bias of {} for {} outputs", bias.size(), weight.rows);
  SC2_CHECK(bias.empty() || bias.stride(0) == 1, "linear: the bias must be contiguous");
  SC2_CHECK(in.stride(1) == 1 && out.stride(1) == 1, "linear: rows must be contiguous");
  run_linear(ctx, out, in, weight, bias);
}

namespace reference {
/// Plain triple loop with double accumulation.
inline void linear(MatrixView out, ConstMatrixView in, const WeightMatrix& weight, Vector<const float, Host> bias = {}) {
  for (std::int64_t t = 0; t < in.extent(0); ++t)
    for (std::int64_t n = 0; n < weight.rows; ++n) {
      double acc = bias.empty() ? 0.0 : bias(n);
      for (std::int64_t k = 0; k < weight.cols; ++k) acc += static_cast<double>(in(t, k)) * weight.at(n, k);
      out(t, n) = static_cast<float>(acc);
    }
}
}  // namespace reference

}  // namespace sc2::ops
