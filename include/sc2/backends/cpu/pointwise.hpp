#pragma once
/// \file
/// CPU implementations of the row-wise ops: embedding, layer norm, GELU,
/// RoPE and the residual add. Each splits its tokens (or elements) over the
/// threads when there are enough of them to pay for it; Eigen maps do the
/// element-wise sums. Every row is computed in an order fixed by its own
/// length, never by its address or its place in the batch: the layer norm's
/// statistics are summed in four fixed lanes, not by Eigen's reductions,
/// whose order follows the alignment of the row.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/ops/activation.hpp>
#include <sc2/ops/elementwise.hpp>
#include <sc2/ops/embedding.hpp>
#include <sc2/ops/layer_norm.hpp>
#include <sc2/ops/rope.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <span>

namespace sc2::cpu {
namespace detail {

/// Elements below which a row-wise op runs on the calling thread alone.
inline constexpr std::int64_t kSerialElements = 1 << 14;

/// Calls `body(t0, t1)` over token ranges: split when the work is large.
template <class F> void for_tokens(Context& ctx, std::int64_t tokens, std::int64_t per_token, F&& body) {
  if (tokens * per_token < kSerialElements) body(std::int64_t{0}, tokens);
  else ctx.pool().parallel_for(tokens, 1, body);
}

/// Widens `n` elements of a weight row (`stride` elements apart) to float.
template <class E> void widen_row(const E* src, std::int64_t stride, float* dst, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i * stride]);
}

/// Σ x[d] and Σ (x[d] − mean)² in double, in four lanes d mod 4 added at the end:
/// an order fixed by n alone.
inline double lane_sum(const float* x, std::int64_t n) noexcept {
  double lane[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t d = 0;
  for (; d + 4 <= n; d += 4)
    for (int j = 0; j < 4; ++j) lane[j] += static_cast<double>(x[d + j]);
  for (; d < n; ++d) lane[0] += static_cast<double>(x[d]);
  return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}
/// Σ (x[d] − mean)² in double, in the lanes of `lane_sum`.
inline double lane_square_sum(const float* x, std::int64_t n, double mean) noexcept {
  double lane[4] = {0.0, 0.0, 0.0, 0.0};
  std::int64_t d = 0;
  for (; d + 4 <= n; d += 4)
    for (int j = 0; j < 4; ++j) {
      const double c = static_cast<double>(x[d + j]) - mean;
      lane[j] += c * c;
    }
  for (; d < n; ++d) {
    const double c = static_cast<double>(x[d]) - mean;
    lane[0] += c * c;
  }
  return (lane[0] + lane[1]) + (lane[2] + lane[3]);
}

}  // namespace detail

/// CPU implementation of `ops::embedding`: rows of a row-major or panel table, of floats or blocks.
inline void run_embedding(Context& ctx, MatrixView out, const WeightMatrix& table, Vector<const std::int32_t, Host> ids) {
  detail::for_tokens(ctx, out.extent(0), out.extent(1), [&](std::int64_t t0, std::int64_t t1) {
    const std::int64_t stride = table.layout == WeightLayout::panels16 ? kPanelRows : 1;
    for (std::int64_t t = t0; t < t1; ++t) {
      if (table.blocks) {  // GGML blocks: the row dequantized
        table.row_to_float(ids(t), out.row(t).data());
        continue;
      }
      const std::int64_t first = table.index(ids(t), 0);
      float* dst = out.row(t).data();
      switch (table.dtype) {
        case DType::f32: detail::widen_row(static_cast<const float*>(table.data) + first, stride, dst, table.cols); break;
        case DType::bf16: detail::widen_row(static_cast<const bf16*>(table.data) + first, stride, dst, table.cols); break;
        case DType::f16: detail::widen_row(static_cast<const f16*>(table.data) + first, stride, dst, table.cols); break;
      }
    }
  });
}

/// CPU implementation of `ops::layer_norm`: statistics in double, two passes.
inline void run_layer_norm(Context& ctx, MatrixView out, ConstMatrixView in, Vector<const float, Host> weight,
                           Vector<const float, Host> bias, float eps) {
  const std::int64_t D = in.extent(1);
  detail::for_tokens(ctx, in.extent(0), D, [&](std::int64_t t0, std::int64_t t1) {
    const float* w = weight.data();
    const float* b = bias.data();
    for (std::int64_t t = t0; t < t1; ++t) {
      const float* x = in.row(t).data();
      const double mean = detail::lane_sum(x, D) / static_cast<double>(D);
      const double var = detail::lane_square_sum(x, D, mean) / static_cast<double>(D);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      const float meanf = static_cast<float>(mean);
      float* y = out.row(t).data();
      for (std::int64_t d = 0; d < D; ++d) y[d] = (x[d] - meanf) * inv * w[d] + b[d];
    }
  });
}

namespace detail {
#if SC2_HAVE_X86_SIMD
/// gelu_pytorch_tanh of 8 floats through the identity
///     0.5 · x · (1 + tanh(u)) = x / (1 + e^(-2u)),   u = √(2/π) · (x + 0.044715 · x³),
/// which needs one exponential and is accurate to a few ulp for every x
/// (for very negative x, e^(-2u) overflows to +inf and the result is -0, as tanh = -1 gives).
SC2_TARGET_AVX2 inline __m256 gelu_tanh8(__m256 x) noexcept {
  const __m256 x3 = _mm256_mul_ps(_mm256_mul_ps(x, x), x);
  const __m256 u = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_set1_ps(0.044715f), x3, x));
  const __m256 z = _mm256_mul_ps(_mm256_set1_ps(-2.0f), u);
  // e^z overflows past 88.7: +inf, so that x / (1 + e) is -0 (and NaN for x = -inf, as in torch).
  const __m256 e = _mm256_blendv_ps(exp8(z), _mm256_set1_ps(std::numeric_limits<float>::infinity()),
                                    _mm256_cmp_ps(z, _mm256_set1_ps(88.5f), _CMP_GT_OQ));
  return _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/// gelu_pytorch_tanh over a row, 8 at a time; the tail goes through a padded vector.
SC2_TARGET_AVX2 inline void gelu_tanh_row_avx2(float* row, std::int64_t n) noexcept {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(row + i, gelu_tanh8(_mm256_loadu_ps(row + i)));
  if (i < n) {
    alignas(32) float tail[8] = {};
    for (std::int64_t j = i; j < n; ++j) tail[j - i] = row[j];
    _mm256_store_ps(tail, gelu_tanh8(_mm256_load_ps(tail)));
    for (std::int64_t j = i; j < n; ++j) row[j] = tail[j - i];
  }
}
#endif
}  // namespace detail

/// CPU implementation of `ops::gelu_tanh`.
inline void run_gelu_tanh(Context& ctx, MatrixView x) {
  const Isa isa = ctx.isa();
  detail::for_tokens(ctx, x.extent(0), x.extent(1), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
#if SC2_HAVE_X86_SIMD
      if (uses_avx2(isa)) {
        detail::gelu_tanh_row_avx2(x.row(t).data(), x.extent(1));
        continue;
      }
#endif
      for (float& value : x.row(t)) value = ops::gelu_tanh(value);
    }
  });
}

/// CPU implementation of `ops::rope`.
inline void run_rope(Context& ctx, TensorView<float, 3> x, Vector<const std::int32_t, Host> positions,
                     const ops::RotaryTable& table) {
  const std::int64_t heads = x.extent(1), half = table.rotary_dim() / 2;
  detail::for_tokens(ctx, x.extent(0), heads * x.extent(2), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t)
      for (std::int64_t i = 0; i < half; ++i) {
        float c, s;
        table.cos_sin(positions(t), static_cast<std::size_t>(i), c, s);
        for (std::int64_t h = 0; h < heads; ++h) {
          float* head = &x(t, h, 0);
          const float x1 = head[i], x2 = head[i + half];
          head[i] = x1 * c - x2 * s;
          head[i + half] = x2 * c + x1 * s;
        }
      }
  });
}

/// CPU implementation of `ops::add`.
inline void run_add(Context& ctx, MatrixView acc, ConstMatrixView x) {
  const std::int64_t D = acc.extent(1);
  detail::for_tokens(ctx, acc.extent(0), D, [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t)
      Eigen::Map<Eigen::ArrayXf>(acc.row(t).data(), D) += Eigen::Map<const Eigen::ArrayXf>(x.row(t).data(), D);
  });
}

/// CPU implementation of `ops::gather_rows`.
inline void run_gather_rows(Context&, MatrixView out, ConstMatrixView in, Vector<const std::int32_t, Host> rows) {
  for (std::int64_t r = 0; r < rows.extent(0); ++r)
    std::memcpy(out.row(r).data(), in.row(rows(r)).data(), static_cast<std::size_t>(in.extent(1)) * sizeof(float));
}

}  // namespace sc2::cpu
