#pragma once
/// \file
/// CPU implementations of the row-wise ops: embedding, layer norm, GELU,
/// RoPE and the residual add. Each splits its tokens (or elements) over the
/// threads when there are enough of them to pay for it; Eigen maps do the
/// arithmetic that Eigen vectorises well.

#include <sc2/backends/eigen/context.hpp>
#include <sc2/backends/eigen/detail/simd.hpp>
#include <sc2/ops/activation.hpp>
#include <sc2/ops/elementwise.hpp>
#include <sc2/ops/embedding.hpp>
#include <sc2/ops/layer_norm.hpp>
#include <sc2/ops/rope.hpp>

#include <Eigen/Core>

#include <cmath>
#include <cstdint>
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

/// Widens `n` elements of a weight row to float.
template <class E> void widen_row(const E* src, float* dst, std::int64_t n) noexcept {
  for (std::int64_t i = 0; i < n; ++i) dst[i] = to_float(src[i]);
}

}  // namespace detail

/// CPU implementation of `ops::embedding`.
inline void run_embedding(Context& ctx, MatrixView out, const WeightMatrix& table, std::span<const std::int32_t> ids) {
  detail::for_tokens(ctx, out.extent(0), out.extent(1), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const std::int64_t id = ids[static_cast<std::size_t>(t)];
      float* dst = out.row(t).data();
      switch (table.dtype) {
        case DType::f32: detail::widen_row(table.row<float>(id), dst, table.cols); break;
        case DType::bf16: detail::widen_row(table.row<bf16>(id), dst, table.cols); break;
        case DType::f16: detail::widen_row(table.row<f16>(id), dst, table.cols); break;
      }
    }
  });
}

/// CPU implementation of `ops::layer_norm`: statistics in double, two passes.
inline void run_layer_norm(Context& ctx, MatrixView out, ConstMatrixView in, std::span<const float> weight,
                           std::span<const float> bias, float eps) {
  const std::int64_t D = in.extent(1);
  detail::for_tokens(ctx, in.extent(0), D, [&](std::int64_t t0, std::int64_t t1) {
    const Eigen::Map<const Eigen::ArrayXf> w(weight.data(), D), b(bias.data(), D);
    for (std::int64_t t = t0; t < t1; ++t) {
      const Eigen::Map<const Eigen::ArrayXf> x(in.row(t).data(), D);
      const double mean = x.cast<double>().sum() / static_cast<double>(D);
      const double var = (x.cast<double>() - mean).square().sum() / static_cast<double>(D);
      const float inv = static_cast<float>(1.0 / std::sqrt(var + static_cast<double>(eps)));
      const float meanf = static_cast<float>(mean);
      Eigen::Map<Eigen::ArrayXf> y(out.row(t).data(), D);
      y = (x - meanf) * inv * w + b;
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
inline void run_rope(Context& ctx, TensorView<float, 3> x, std::span<const std::int64_t> positions,
                     const ops::RotaryTable& table) {
  const std::int64_t heads = x.extent(1), half = table.rotary_dim() / 2;
  detail::for_tokens(ctx, x.extent(0), heads * x.extent(2), [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t)
      for (std::int64_t i = 0; i < half; ++i) {
        float c, s;
        table.cos_sin(positions[static_cast<std::size_t>(t)], static_cast<std::size_t>(i), c, s);
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

}  // namespace sc2::cpu
