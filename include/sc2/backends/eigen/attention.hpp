#pragma once
/// \file
/// CPU grouped-query attention over a ring-buffer KV cache.
///
/// Work items are (token, kv head) pairs, split over the threads. An item
/// takes the G = H/Hkv query heads that share one kv head, computes their
/// scores against every visible key (at most two contiguous segments of the
/// ring, then the chunk's own keys), a float softmax per head, and the
/// weighted sum of the values. Keys and values are read once per item for
/// all G heads. Scores live in per-thread scratch of the context.

#include <sc2/backends/eigen/context.hpp>
#include <sc2/backends/eigen/detail/simd.hpp>
#include <sc2/ops/attention.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace sc2::cpu {
namespace detail {

/// A run of consecutive keys/values laid out with a fixed row stride.
struct KvSegment {
  const float* keys;
  const float* values;
  std::int64_t count;   ///< number of keys
  std::int64_t stride;  ///< floats between consecutive keys
};

/// s[h * s_stride + j] = scale · q_h · k_j for G heads and a segment of keys.
inline void qk_scores_scalar(const float* q, int G, int Dh, const KvSegment& seg, float* s, std::int64_t s_stride,
                             float scale) noexcept {
  for (std::int64_t j = 0; j < seg.count; ++j) {
    const float* k = seg.keys + j * seg.stride;
    for (int h = 0; h < G; ++h) {
      float dot = 0.0f;
      for (int d = 0; d < Dh; ++d) dot += q[h * Dh + d] * k[d];
      s[h * s_stride + j] = dot * scale;
    }
  }
}

/// out_h += Σ_j p[h * p_stride + j] · v_j for G heads and a segment of values.
inline void pv_accumulate_scalar(const float* p, std::int64_t p_stride, int G, int Dh, const KvSegment& seg,
                                 float* out) noexcept {
  for (std::int64_t j = 0; j < seg.count; ++j) {
    const float* v = seg.values + j * seg.stride;
    for (int h = 0; h < G; ++h) {
      const float w = p[h * p_stride + j];
      for (int d = 0; d < Dh; ++d) out[h * Dh + d] += w * v[d];
    }
  }
}

#if SC2_HAVE_X86_SIMD
/// AVX2 form of `qk_scores_scalar` (Dh a multiple of 8).
SC2_TARGET_AVX2 inline void qk_scores_avx2(const float* q, int G, int Dh, const KvSegment& seg, float* s,
                                           std::int64_t s_stride, float scale) noexcept {
  for (std::int64_t j = 0; j < seg.count; ++j) {
    const float* k = seg.keys + j * seg.stride;
    for (int h = 0; h < G; ++h) {
      const float* qh = q + h * Dh;
      __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
      int d = 0;
      for (; d + 16 <= Dh; d += 16) {
        acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(k + d), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d + 8), _mm256_loadu_ps(k + d + 8), acc1);
      }
      for (; d < Dh; d += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(qh + d), _mm256_loadu_ps(k + d), acc0);
      s[h * s_stride + j] = hsum(_mm256_add_ps(acc0, acc1)) * scale;
    }
  }
}

/// AVX2 form of `pv_accumulate_scalar` (Dh a multiple of 8).
SC2_TARGET_AVX2 inline void pv_accumulate_avx2(const float* p, std::int64_t p_stride, int G, int Dh,
                                               const KvSegment& seg, float* out) noexcept {
  for (std::int64_t j = 0; j < seg.count; ++j) {
    const float* v = seg.values + j * seg.stride;
    for (int h = 0; h < G; ++h) {
      const __m256 w = _mm256_set1_ps(p[h * p_stride + j]);
      float* o = out + h * Dh;
      for (int d = 0; d < Dh; d += 8)
        _mm256_storeu_ps(o + d, _mm256_fmadd_ps(w, _mm256_loadu_ps(v + d), _mm256_loadu_ps(o + d)));
    }
  }
}
#endif

}  // namespace detail

/// CPU implementation of `ops::attention`.
template <ops::AttentionMask Mask>
void run_attention(Context& ctx, MatrixView out, ConstMatrixView q, ConstMatrixView k, ConstMatrixView v,
                   const ops::KvRing& past, std::int64_t start, const ops::AttentionShape& shape, const Mask& mask) {
  const std::int64_t T = q.extent(0), Hkv = shape.kv_heads, C = past.capacity;
  const int Dh = shape.head_dim, G = shape.heads / shape.kv_heads;
  const bool simd = ctx.isa() == Isa::avx2 && Dh % 8 == 0;
  // The most keys one query can see: the ring's and the chunk's.
  const std::int64_t max_keys = std::min(C, start - past.first) + T;
  ctx.pool().run([&](int thread) {
    const std::int64_t items = T * Hkv, threads = ctx.threads();
    const std::int64_t first = items * thread / threads, last = items * (thread + 1) / threads;
    if (first == last) return;
    float* scores = ctx.scratch(thread, static_cast<std::size_t>(G * max_keys)).data();  // (G, max_keys)
    for (std::int64_t item = first; item < last; ++item) {
      const std::int64_t t = item / Hkv, g = item % Hkv, i = start + t;
      const std::int64_t lo = std::max(mask.first_visible(i), past.first);
      // Visible past keys [lo, start) in at most two ring segments, then new keys [max(lo, start), i].
      detail::KvSegment segments[3];
      int n_segments = 0;
      for (std::int64_t p = lo; p < start;) {
        const std::int64_t slot = p % C, count = std::min(start - p, C - slot);
        segments[n_segments++] = {past.keys + (slot * Hkv + g) * Dh, past.values + (slot * Hkv + g) * Dh, count,
                                  Hkv * Dh};
        p += count;
      }
      const std::int64_t new_first = std::max(lo, start) - start;
      segments[n_segments++] = {k.data() + new_first * k.stride(0) + g * Dh,
                                v.data() + new_first * v.stride(0) + g * Dh, t - new_first + 1, k.stride(0)};
      SC2_ASSERT(k.stride(0) == v.stride(0));
      const std::int64_t n_keys = i - lo + 1;
      const float* qg = q.data() + t * q.stride(0) + g * G * Dh;  // (G, Dh)
      float* og = out.data() + t * out.stride(0) + g * G * Dh;    // (G, Dh)

      std::int64_t offset = 0;
      for (int s = 0; s < n_segments; ++s) {
#if SC2_HAVE_X86_SIMD
        if (simd) detail::qk_scores_avx2(qg, G, Dh, segments[s], scores + offset, max_keys, shape.scale);
        else
#endif
          detail::qk_scores_scalar(qg, G, Dh, segments[s], scores + offset, max_keys, shape.scale);
        offset += segments[s].count;
      }
      for (int h = 0; h < G; ++h) {
        float* row = scores + h * max_keys;
        const float m = *std::max_element(row, row + n_keys);
        float sum = 0.0f;
        for (std::int64_t j = 0; j < n_keys; ++j) sum += (row[j] = std::exp(row[j] - m));
        const float inv = 1.0f / sum;
        for (std::int64_t j = 0; j < n_keys; ++j) row[j] *= inv;
      }
      std::fill(og, og + G * Dh, 0.0f);
      offset = 0;
      for (int s = 0; s < n_segments; ++s) {
#if SC2_HAVE_X86_SIMD
        if (simd) detail::pv_accumulate_avx2(scores + offset, max_keys, G, Dh, segments[s], og);
        else
#endif
          detail::pv_accumulate_scalar(scores + offset, max_keys, G, Dh, segments[s], og);
        offset += segments[s].count;
      }
    }
  });
}

}  // namespace sc2::cpu
