#pragma once
/// \file
/// CPU grouped-query attention over the pages of a KV pool, and `kv_append`.
///
/// For row t at position i and query head h, with visible keys j ∈ [lo, i]:
///   s_j = scale · q_h · k_j,   p = softmax(s),   out_h = Σ_j p_j · v_j.
///   q, out: (T, H·Dh)   pages: (pages, Hkv, P, Dh)
/// Work items are (kv head, row) pairs, split over the threads. An item takes
/// the G = H/Hkv query heads that share one kv head, computes their scores
/// against every visible key (runs of consecutive positions, one per page),
/// a float softmax per head, and the weighted sum of the values. Keys and
/// values are read once per item for all G heads, in blocks that stay in L2
/// while every head passes over them; the AVX2 kernels are register tiles of
/// 6 heads × 2 keys (scores) and 6 heads × 16 floats (outputs), so each key or
/// value chunk is loaded once for 6 heads; the AVX-512 ones (head dims that
/// are multiples of 16) the same tiles 16 lanes wide, 6 heads × 32 floats. Scores live in per-thread scratch
/// of the context.
///
/// On the `amx_bf16` path the queries of up to 16 rows of a sequence run
/// together on AMX tiles instead, with q, k, v and the softmax weights rounded
/// to bf16 for the products (detail/amx_attention.hpp).
///
/// A row's result depends only on its query and its keys: a score is reduced
/// by the same tree whichever tile computes it, the softmax runs over the
/// keys lo..i in order, and the values are summed in key order. So it is the
/// same bits whatever the batch, the chunking or the page size.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/detail/amx_attention.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/backends/cpu/pointwise.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/batch_plan.hpp>

#include <algorithm>
#include <cstring>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

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

/// row[0, n) = softmax(row[0, n)), in place, in float.
inline void softmax_scalar(float* row, std::int64_t n) noexcept {
  const float m = *std::max_element(row, row + n);
  float sum = 0.0f;
  for (std::int64_t j = 0; j < n; ++j) sum += (row[j] = std::exp(row[j] - m));
  const float inv = 1.0f / sum;
  for (std::int64_t j = 0; j < n; ++j) row[j] *= inv;
}

inline constexpr int kTileHeads = 6;  ///< query heads per register tile: 6 × 2 = 12 accumulators

#if SC2_HAVE_X86_SIMD
inline constexpr int kQkKeys = 2;               ///< keys per score tile
inline constexpr int kPvChunks = 2;             ///< 8-float chunks of Dh per output tile
inline constexpr std::int64_t kKeyBlock = 128;  ///< keys whose rows stay in L2 while every head passes over them
/// How many keys ahead the first tile over a block asks for key and value
/// rows. The hardware prefetcher follows the ring's contiguous rows, but
/// asking ahead still took decode attention at a full 4096-key window from
/// 22 to 19 ms per token (3B shape, `sc2-attention-bench`).
inline constexpr std::int64_t kPrefetchKeys = 32;

/// Calls `f.template operator()<HB>(h)` over h = 0, HB, … < G with HB =
/// `kTileHeads`, then once with the 1 to 5 heads left: the tile's head count
/// is a compile-time constant, so its accumulators live in registers.
template <class F> SC2_TARGET_AVX2 inline void for_each_head_tile(int G, F&& f) {
  static_assert(kTileHeads == 6, "the remainder cases below are 1 .. kTileHeads - 1");
  int h = 0;
  for (; h + kTileHeads <= G; h += kTileHeads) f.template operator()<kTileHeads>(h);
  switch (G - h) {
    case 5: f.template operator()<5>(h); break;
    case 4: f.template operator()<4>(h); break;
    case 3: f.template operator()<3>(h); break;
    case 2: f.template operator()<2>(h); break;
    case 1: f.template operator()<1>(h); break;
    default: break;
  }
}

/// Asks for the `n` floats at `row` to be brought into L1.
SC2_TARGET_AVX2 inline void prefetch_row(const float* row, int n) noexcept {
  for (int i = 0; i < n; i += 16) _mm_prefetch(reinterpret_cast<const char*>(row + i), _MM_HINT_T0);
}

/// s[h · s_stride + j] = scale · q_h · k_j for HB heads (rows of q, Dh apart)
/// and KB ≤ 2 keys (rows of k, k_stride apart); Dh a multiple of 8. Each key
/// chunk is loaded once for all HB heads; the HB × KB dot products run in
/// registers and are reduced at the end. `prefetch`, if set, is the row of
/// the tile's first key some keys ahead, asked for while this tile computes.
template <int HB, int KB>
SC2_TARGET_AVX2 inline void qk_tile_avx2(const float* q, int Dh, const float* k, std::int64_t k_stride, float* s,
                                         std::int64_t s_stride, float scale, const float* prefetch = nullptr) noexcept {
  static_assert(KB == 1 || KB == 2);
  if (prefetch)
    SC2_UNROLL for (int j = 0; j < KB; ++j) prefetch_row(prefetch + j * k_stride, Dh);
  __m256 acc[HB][KB];
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int j = 0; j < KB; ++j) acc[h][j] = _mm256_setzero_ps();
  for (int d = 0; d < Dh; d += 8) {
    __m256 kj[KB];
    SC2_UNROLL for (int j = 0; j < KB; ++j) kj[j] = _mm256_loadu_ps(k + j * k_stride + d);
    SC2_UNROLL for (int h = 0; h < HB; ++h) {
      const __m256 qh = _mm256_loadu_ps(q + h * Dh + d);
      SC2_UNROLL for (int j = 0; j < KB; ++j) acc[h][j] = _mm256_fmadd_ps(qh, kj[j], acc[h][j]);
    }
  }
  SC2_UNROLL for (int h = 0; h < HB; ++h) {
    // [a0₀+a0₁, a0₂+a0₃, a1₀+a1₁, a1₂+a1₃] per 128-bit half; the halves added, then one more
    // hadd. A single key goes through the same tree (paired with itself), so a score has the
    // same bits whether its key was computed alone or in a pair.
    const __m256 pairs = _mm256_hadd_ps(acc[h][0], acc[h][KB - 1]);
    const __m128 quads = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
    const __m128 dots = _mm_mul_ps(_mm_hadd_ps(quads, quads), _mm_set1_ps(scale));  // [Σa0, Σa1, Σa0, Σa1]
    if constexpr (KB == 2) _mm_storel_pi(reinterpret_cast<__m64*>(s + h * s_stride), dots);
    else s[h * s_stride] = _mm_cvtss_f32(dots);
  }
}

/// out[h · Dh + c · 8 …] += Σ_j p[h · p_stride + j] · v_j[c · 8 …] for HB heads
/// and DC 8-float chunks of the head dimension, over `count` value rows
/// (v_stride apart); each value chunk is loaded once for all HB heads, and
/// the HB × DC partial outputs stay in registers. Rows j + kPrefetchKeys
/// below `prefetch_count` are asked for ahead (the first tile of a block).
template <int HB, int DC>
SC2_TARGET_AVX2 inline void pv_tile_avx2(const float* p, std::int64_t p_stride, const float* v, std::int64_t v_stride,
                                         std::int64_t count, float* out, int Dh, std::int64_t prefetch_count = 0) noexcept {
  __m256 acc[HB][DC];
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int c = 0; c < DC; ++c) acc[h][c] =
      _mm256_loadu_ps(out + h * Dh + c * 8);
  for (std::int64_t j = 0; j < count; ++j) {
    if (j + kPrefetchKeys < prefetch_count) prefetch_row(v + (j + kPrefetchKeys) * v_stride, Dh);
    __m256 vj[DC];
    SC2_UNROLL for (int c = 0; c < DC; ++c) vj[c] = _mm256_loadu_ps(v + j * v_stride + c * 8);
    SC2_UNROLL for (int h = 0; h < HB; ++h) {
      const __m256 w = _mm256_broadcast_ss(p + h * p_stride + j);
      SC2_UNROLL for (int c = 0; c < DC; ++c) acc[h][c] = _mm256_fmadd_ps(w, vj[c], acc[h][c]);
    }
  }
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int c = 0; c < DC; ++c)
      _mm256_storeu_ps(out + h * Dh + c * 8, acc[h][c]);
}

/// AVX2 form of `softmax_scalar`: e^x through `exp8`.
SC2_TARGET_AVX2 inline void softmax_avx2(float* row, std::int64_t n) noexcept {
  std::int64_t j = 0;
  __m256 m8 = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  for (; j + 8 <= n; j += 8) m8 = _mm256_max_ps(m8, _mm256_loadu_ps(row + j));
  float m = hmax(m8);
  for (; j < n; ++j) m = std::max(m, row[j]);
  const __m256 mv = _mm256_set1_ps(m);
  __m256 sum8 = _mm256_setzero_ps();
  for (j = 0; j + 8 <= n; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), mv));
    _mm256_storeu_ps(row + j, e);
    sum8 = _mm256_add_ps(sum8, e);
  }
  float sum = hsum(sum8);
  for (; j < n; ++j) sum += (row[j] = std::exp(row[j] - m));
  const float inv = 1.0f / sum;
  const __m256 inv8 = _mm256_set1_ps(inv);
  for (j = 0; j + 8 <= n; j += 8) _mm256_storeu_ps(row + j, _mm256_mul_ps(_mm256_loadu_ps(row + j), inv8));
  for (; j < n; ++j) row[j] *= inv;
}

SC2_AVX512_BEGIN
/// AVX-512 form of `qk_tile_avx2` (Dh a multiple of 16): 16-lane partial
/// sums, whose halves are added before the AVX2 tile's reduction tree; one key
/// goes through the same tree as a pair, as there.
template <int HB, int KB>
SC2_TARGET_AVX512 inline void qk_tile_avx512(const float* q, int Dh, const float* k, std::int64_t k_stride, float* s,
                                             std::int64_t s_stride, float scale, const float* prefetch = nullptr) noexcept {
  static_assert(KB == 1 || KB == 2);
  if (prefetch)
    SC2_UNROLL for (int j = 0; j < KB; ++j) prefetch_row(prefetch + j * k_stride, Dh);
  __m512 acc[HB][KB];
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int j = 0; j < KB; ++j) acc[h][j] = _mm512_setzero_ps();
  for (int d = 0; d < Dh; d += 16) {
    __m512 kj[KB];
    SC2_UNROLL for (int j = 0; j < KB; ++j) kj[j] = _mm512_loadu_ps(k + j * k_stride + d);
    SC2_UNROLL for (int h = 0; h < HB; ++h) {
      const __m512 qh = _mm512_loadu_ps(q + h * Dh + d);
      SC2_UNROLL for (int j = 0; j < KB; ++j) acc[h][j] = _mm512_fmadd_ps(qh, kj[j], acc[h][j]);
    }
  }
  SC2_UNROLL for (int h = 0; h < HB; ++h) {
    __m256 halves[KB];
    SC2_UNROLL for (int j = 0; j < KB; ++j)
      halves[j] = _mm256_add_ps(_mm512_castps512_ps256(acc[h][j]),
                                _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[h][j]), 1)));
    const __m256 pairs = _mm256_hadd_ps(halves[0], halves[KB - 1]);
    const __m128 quads = _mm_add_ps(_mm256_castps256_ps128(pairs), _mm256_extractf128_ps(pairs, 1));
    const __m128 dots = _mm_mul_ps(_mm_hadd_ps(quads, quads), _mm_set1_ps(scale));
    if constexpr (KB == 2) _mm_storel_pi(reinterpret_cast<__m64*>(s + h * s_stride), dots);
    else s[h * s_stride] = _mm_cvtss_f32(dots);
  }
}

/// AVX-512 form of `pv_tile_avx2`: DC 16-float chunks. Each output lane is the
/// same chain of multiply-adds in key order as there, so the bits are the AVX2 tile's.
template <int HB, int DC>
SC2_TARGET_AVX512 inline void pv_tile_avx512(const float* p, std::int64_t p_stride, const float* v,
                                             std::int64_t v_stride, std::int64_t count, float* out, int Dh,
                                             std::int64_t prefetch_count = 0) noexcept {
  __m512 acc[HB][DC];
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int c = 0; c < DC; ++c) acc[h][c] =
      _mm512_loadu_ps(out + h * Dh + c * 16);
  for (std::int64_t j = 0; j < count; ++j) {
    if (j + kPrefetchKeys < prefetch_count) prefetch_row(v + (j + kPrefetchKeys) * v_stride, Dh);
    __m512 vj[DC];
    SC2_UNROLL for (int c = 0; c < DC; ++c) vj[c] = _mm512_loadu_ps(v + j * v_stride + c * 16);
    SC2_UNROLL for (int h = 0; h < HB; ++h) {
      const __m512 w = _mm512_set1_ps(p[h * p_stride + j]);
      SC2_UNROLL for (int c = 0; c < DC; ++c) acc[h][c] = _mm512_fmadd_ps(w, vj[c], acc[h][c]);
    }
  }
  SC2_UNROLL for (int h = 0; h < HB; ++h) SC2_UNROLL for (int c = 0; c < DC; ++c)
      _mm512_storeu_ps(out + h * Dh + c * 16, acc[h][c]);
}

SC2_AVX512_END

/// The AVX2 register tiles, for `qk_scores_simd` and `pv_accumulate_simd`.
struct Avx2AttentionTiles {
  static constexpr int lanes = 8;  ///< floats per vector
  /// `qk_tile_avx2`.
  template <int HB, int KB, class... A> static void qk(A... a) noexcept { qk_tile_avx2<HB, KB>(a...); }
  /// `pv_tile_avx2`.
  template <int HB, int DC, class... A> static void pv(A... a) noexcept { pv_tile_avx2<HB, DC>(a...); }
};

/// The AVX-512 register tiles, for `qk_scores_simd` and `pv_accumulate_simd`.
struct Avx512AttentionTiles {
  static constexpr int lanes = 16;  ///< floats per vector
  /// `qk_tile_avx512`.
  template <int HB, int KB, class... A> static void qk(A... a) noexcept { qk_tile_avx512<HB, KB>(a...); }
  /// `pv_tile_avx512`.
  template <int HB, int DC, class... A> static void pv(A... a) noexcept { pv_tile_avx512<HB, DC>(a...); }
};

/// SIMD form of `qk_scores_scalar` (Dh a multiple of `Tiles::lanes`): keys in
/// blocks of `kKeyBlock`, each block swept by tiles of 6 heads × 2 keys.
template <class Tiles>
inline void qk_scores_simd(const float* q, int G, int Dh, const KvSegment& seg, float* s, std::int64_t s_stride,
                           float scale) noexcept {
  for (std::int64_t j0 = 0; j0 < seg.count; j0 += kKeyBlock) {
    const std::int64_t j1 = std::min(seg.count, j0 + kKeyBlock);
    for_each_head_tile(G, [&]<int HB>(int h) {
      const float* qh = q + h * Dh;
      float* sh = s + h * s_stride;
      std::int64_t j = j0;
      for (; j + kQkKeys <= j1; j += kQkKeys) {
        const bool ahead = h == 0 && j + kPrefetchKeys + kQkKeys <= seg.count;
        Tiles::template qk<HB, kQkKeys>(qh, Dh, seg.keys + j * seg.stride, seg.stride, sh + j, s_stride, scale,
                                        ahead ? seg.keys + (j + kPrefetchKeys) * seg.stride : nullptr);
      }
      for (; j < j1; ++j)
        Tiles::template qk<HB, 1>(qh, Dh, seg.keys + j * seg.stride, seg.stride, sh + j, s_stride, scale,
                                  static_cast<const float*>(nullptr));
    });
  }
}

/// SIMD form of `pv_accumulate_scalar` (Dh a multiple of `Tiles::lanes`):
/// values in blocks of `kKeyBlock`, each block swept by tiles of 6 heads × 2
/// vectors.
template <class Tiles>
inline void pv_accumulate_simd(const float* p, std::int64_t p_stride, int G, int Dh, const KvSegment& seg,
                               float* out) noexcept {
  constexpr int W = Tiles::lanes;
  for (std::int64_t j0 = 0; j0 < seg.count; j0 += kKeyBlock) {
    const std::int64_t n = std::min(seg.count - j0, kKeyBlock);
    const float* v = seg.values + j0 * seg.stride;
    for_each_head_tile(G, [&]<int HB>(int h) {
      const float* ph = p + h * p_stride + j0;
      int d = 0;
      for (; d + W * kPvChunks <= Dh; d += W * kPvChunks)
        Tiles::template pv<HB, kPvChunks>(ph, p_stride, v + d, seg.stride, n, out + h * Dh + d, Dh,
                                          h == 0 && d == 0 ? seg.count - j0 : std::int64_t{0});
      for (; d < Dh; d += W)
        Tiles::template pv<HB, 1>(ph, p_stride, v + d, seg.stride, n, out + h * Dh + d, Dh, std::int64_t{0});
    });
  }
}
#endif

}  // namespace detail

/// CPU implementation of `ops::kv_append`: each row's kv heads go to their page slots.
inline void run_kv_append(Context& ctx, const ops::KvLayer<float, Host>& layer, ConstMatrixView k, ConstMatrixView v,
                          const ops::BatchView<Host>& plan) {
  const std::int64_t Hkv = layer.kv_heads, Dh = layer.head_dim, P = layer.page_size;
  const auto body = [&](std::int64_t t0, std::int64_t t1) {
    for (std::int64_t t = t0; t < t1; ++t) {
      const ops::BatchEntry& e = plan.entries(plan.row_entry(t));
      const std::int64_t position = plan.positions(t);
      const std::int64_t page = ops::page_of(e, plan.page_table.data(), P, position);
      for (std::int64_t g = 0; g < Hkv; ++g) {
        const std::int64_t at = layer.offset(page, g, position % P);
        std::memcpy(layer.keys + at, k.data() + t * k.stride(0) + g * Dh, static_cast<std::size_t>(Dh) * sizeof(float));
        std::memcpy(layer.values + at, v.data() + t * v.stride(0) + g * Dh,
                    static_cast<std::size_t>(Dh) * sizeof(float));
      }
    }
  };
  if (k.extent(0) * k.extent(1) < (1 << 15)) body(0, k.extent(0));
  else ctx.pool().parallel_for(k.extent(0), 1, body);
}

/// CPU implementation of `ops::rope_kv_append`: rope on q and k, then the append.
inline void run_rope_kv_append(Context& ctx, const ops::KvLayer<float, Host>& layer, TensorView<float, 3> q,
                               TensorView<float, 3> k, ConstMatrixView v, const ops::BatchView<Host>& plan,
                               const ops::RotaryTable& table) {
  run_rope(ctx, q, plan.positions, table);
  run_rope(ctx, k, plan.positions, table);
  const std::int64_t T = k.extent(0), width = k.extent(1) * k.extent(2);
  run_kv_append(ctx, layer, ConstMatrixView(k.data(), {T, width}), v, plan);
}

#if SC2_HAVE_AMX
/// `run_attention` on the `amx_bf16` path: the queries of up to 16
/// consecutive rows of a sequence that share a kv head run together on AMX
/// tiles (detail/amx_attention.hpp). Work items are (kv head, block of rows,
/// group of query heads), kv head outermost, so a thread's items follow each
/// other along one sequence and convert each key to bf16 once.
template <ops::AttentionMask Mask>
void run_attention_amx(Context& ctx, MatrixView out, ConstMatrixView q, const ops::KvLayer<float, Host>& layer,
                       const ops::BatchView<Host>& plan, const ops::AttentionShape& shape, const Mask& mask) {
  const std::int64_t Hkv = shape.kv_heads, P = plan.page_size, Dh = shape.head_dim;
  const int G = shape.heads / shape.kv_heads;
  // Blocks of rows of one sequence; heads split into groups (each converts
  // the keys again) only when there are fewer (block, kv head) pairs than threads.
  struct Block {
    std::int64_t entry, row, rows;
  };
  std::int64_t row_count = 0;
  for (std::int64_t b = 0; b < plan.sequences(); ++b) row_count += plan.entries(b).rows;
  const int max_groups = std::max(1, G / detail::kTileHeads);
  const int groups = static_cast<int>(std::clamp<std::int64_t>(ctx.threads() / std::max<std::int64_t>(1, row_count * Hkv), 1,
                                                               max_groups));
  const int group_heads = (G + groups - 1) / groups;
  const int block_rows = detail::amx_attention_rows(group_heads);
  std::vector<Block> blocks;
  std::vector<std::int64_t> entry_first(static_cast<std::size_t>(plan.sequences()));
  std::int64_t capacity = detail::kAmxKeyStep;
  for (std::int64_t b = 0; b < plan.sequences(); ++b) {
    const ops::BatchEntry& e = plan.entries(b);
    std::int64_t first = std::numeric_limits<std::int64_t>::max();
    for (std::int64_t r0 = 0; r0 < e.rows; r0 += block_rows) {
      const std::int64_t rows = std::min<std::int64_t>(block_rows, e.rows - r0);
      blocks.push_back({b, e.first_row + r0, rows});
      std::int64_t lo = std::numeric_limits<std::int64_t>::max();
      for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t i = plan.positions(e.first_row + r0 + r);
        lo = std::min(lo, std::max<std::int64_t>(mask.first_visible(i), e.first_position));
      }
      const std::int64_t hi = plan.positions(e.first_row + r0 + rows - 1);
      capacity = std::max(capacity, detail::round_up(hi + 1, detail::kAmxKeyStep) - lo / detail::kAmxKeyStep * detail::kAmxKeyStep);
      first = std::min(first, lo);
    }
    entry_first[static_cast<std::size_t>(b)] = first;
  }
  const std::int64_t block_count = static_cast<std::int64_t>(blocks.size());
  const std::int32_t* page_table = plan.page_table.data();
  ctx.pool().parallel_for(Hkv * block_count * groups, 1, [&](std::int64_t first_item, std::int64_t last_item, int thread) {
    detail::AmxKvRing ring;
    detail::AmxQueryScratch tile;
    detail::amx_attention_carve(ctx.scratch(thread, detail::amx_attention_scratch(capacity, Dh)).data(), capacity, Dh,
                                ring, tile);
    for (std::int64_t item = first_item; item < last_item; ++item) {
      const std::int64_t g = item / (block_count * groups);
      const Block& block = blocks[static_cast<std::size_t>(item / groups % block_count)];
      const int h0 = static_cast<int>(item % groups) * group_heads, heads = std::min(group_heads, G - h0);
      if (heads <= 0) continue;
      const ops::BatchEntry& e = plan.entries(block.entry);
      detail::AmxAttentionBlock blk;
      const std::int64_t head = g * G + h0;  // the group's first query head
      blk.q = q.data() + block.row * q.stride(0) + head * Dh;
      blk.q_stride = q.stride(0);
      blk.out = out.data() + block.row * out.stride(0) + head * Dh;
      blk.out_stride = out.stride(0);
      blk.rows = static_cast<int>(block.rows);
      blk.heads = heads;
      blk.head_dim = Dh;
      blk.scale = shape.scale;
      std::int64_t lo = std::numeric_limits<std::int64_t>::max(), hi = 0;
      for (int r = 0; r < blk.rows; ++r) {
        blk.position[r] = plan.positions(block.row + r);
        blk.first[r] = std::max<std::int64_t>(mask.first_visible(blk.position[r]), e.first_position);
        lo = std::min(lo, blk.first[r]);
        hi = std::max(hi, blk.position[r]);
      }
      // The ring must hold the block's keys, whole 32-key steps.
      const std::int64_t from = lo / detail::kAmxKeyStep * detail::kAmxKeyStep;
      const std::int64_t to = detail::round_up(hi + 1, detail::kAmxKeyStep);
      if (ring.entry != block.entry || ring.kv_head != g || from < ring.valid_from || from > ring.ready) {
        ring.entry = block.entry;
        ring.kv_head = g;
        ring.valid_from = ring.ready = from;
      }
      if (to > ring.ready) {
        detail::amx_ring_convert(ring, layer, e, page_table, P, g, Dh, entry_first[static_cast<std::size_t>(block.entry)],
                                 std::int64_t{e.start} + e.rows - 1, ring.ready, to);
        ring.ready = to;
        ring.valid_from = std::max(ring.valid_from, to - ring.capacity);
      }
      detail::amx_attention_block(blk, ring, tile);
    }
  });
}
#endif

/// CPU implementation of `ops::attention`.
template <ops::AttentionMask Mask>
void run_attention(Context& ctx, MatrixView out, ConstMatrixView q, const ops::KvLayer<float, Host>& layer,
                   const ops::BatchView<Host>& plan, const ops::AttentionShape& shape, const Mask& mask) {
#if SC2_HAVE_AMX
  if (ctx.isa() == Isa::amx_bf16) {
    run_attention_amx(ctx, out, q, layer, plan, shape, mask);
    return;
  }
#endif
  const std::int64_t T = q.extent(0), Hkv = shape.kv_heads, P = plan.page_size;
  const int Dh = shape.head_dim, G = shape.heads / shape.kv_heads;
  const bool simd = uses_avx2(ctx.isa()) && Dh % 8 == 0;
  const bool simd512 = uses_avx512(ctx.isa()) && Dh % 16 == 0;
  // Work items are (row, kv head, group of query heads). The G heads of a kv
  // head are split only when there are fewer (row, kv head) pairs than
  // threads, as in decode on many cores, and only into groups of at least a
  // full register tile: each group reads the keys and values again, so more,
  // smaller groups would trade compute for memory traffic.
  const int max_groups = std::max(1, G / detail::kTileHeads);
  const int groups = static_cast<int>(std::clamp<std::int64_t>(ctx.threads() / (T * Hkv), 1, max_groups));
  const int group_heads = (G + groups - 1) / groups;
  const std::int64_t items = T * Hkv * groups;
  // The most keys one row sees: a sequence's last row sees the most.
  std::int64_t max_keys = 1;
  for (std::int64_t b = 0; b < plan.sequences(); ++b) {
    const ops::BatchEntry& e = plan.entries(b);
    const std::int64_t last = std::int64_t{e.start} + e.rows - 1;
    max_keys = std::max(max_keys, last - std::max<std::int64_t>(mask.first_visible(last), e.first_position) + 1);
  }
  const std::int32_t* page_table = plan.page_table.data();
  ctx.pool().parallel_for(items, 1, [&](std::int64_t first, std::int64_t last, int thread) {
    float* scores = ctx.scratch(thread, static_cast<std::size_t>(group_heads * max_keys)).data();  // (heads, max_keys)
    for (std::int64_t item = first; item < last; ++item) {
      // kv head outermost: a thread's consecutive items are consecutive rows of one kv
      // head, which read nearly the same keys and values while they are still in L2.
      const std::int64_t g = item / (T * groups), t = item / groups % T;
      const int h0 = static_cast<int>(item % groups) * group_heads, heads = std::min(group_heads, G - h0);
      if (heads <= 0) continue;
      const ops::BatchEntry& e = plan.entries(plan.row_entry(t));
      const std::int64_t i = plan.positions(t);
      const std::int64_t lo = std::max<std::int64_t>(mask.first_visible(i), e.first_position);
      const std::int64_t n_keys = i - lo + 1;
      const std::int64_t head = g * G + h0;                      // the group's first query head
      const float* qg = q.data() + t * q.stride(0) + head * Dh;  // (heads, Dh)
      float* og = out.data() + t * out.stride(0) + head * Dh;    // (heads, Dh)
      // The visible keys [lo, i] as runs of consecutive positions, one per page.
      const auto for_each_run = [&](auto&& f) {
        for (std::int64_t p = lo, offset = 0; p <= i;) {
          const std::int64_t slot = p % P, count = std::min(i + 1 - p, P - slot);
          const std::int64_t at = layer.offset(ops::page_of(e, page_table, P, p), g, slot);
          f(detail::KvSegment{layer.keys + at, layer.values + at, count, Dh}, offset);
          p += count;
          offset += count;
        }
      };
      for_each_run([&](const detail::KvSegment& run, std::int64_t offset) {
#if SC2_HAVE_X86_SIMD
        if (simd512) detail::qk_scores_simd<detail::Avx512AttentionTiles>(qg, heads, Dh, run, scores + offset, max_keys, shape.scale);
        else if (simd) detail::qk_scores_simd<detail::Avx2AttentionTiles>(qg, heads, Dh, run, scores + offset, max_keys, shape.scale);
        else
#endif
          detail::qk_scores_scalar(qg, heads, Dh, run, scores + offset, max_keys, shape.scale);
      });
      for (int h = 0; h < heads; ++h) {
#if SC2_HAVE_X86_SIMD
        if (simd) detail::softmax_avx2(scores + h * max_keys, n_keys);
        else
#endif
          detail::softmax_scalar(scores + h * max_keys, n_keys);
      }
      std::fill(og, og + heads * Dh, 0.0f);
      for_each_run([&](const detail::KvSegment& run, std::int64_t offset) {
#if SC2_HAVE_X86_SIMD
        if (simd512) detail::pv_accumulate_simd<detail::Avx512AttentionTiles>(scores + offset, max_keys, heads, Dh, run, og);
        else if (simd) detail::pv_accumulate_simd<detail::Avx2AttentionTiles>(scores + offset, max_keys, heads, Dh, run, og);
        else
#endif
          detail::pv_accumulate_scalar(scores + offset, max_keys, heads, Dh, run, og);
      });
    }
  });
}

}  // namespace sc2::cpu
