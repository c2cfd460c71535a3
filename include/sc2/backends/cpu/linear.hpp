#pragma once
/// \file
/// CPU linear layer: out (T, N) = in (T, K) · Wᵀ (+ bias), W in f32, bf16 or f16.
///
/// The output rows N are split over the threads in whole 16-row panels, one
/// contiguous range each. Two kernels share the work:
///
/// - Decode (T <= 4): a register tile of up to 4 tokens × 3 weight rows
///   accumulates dot products along K, widening bf16/f16 weights to float as
///   it loads them and streaming each row whole. W is read once, straight
///   from memory: this is the memory-bandwidth bound of decode. Each tile asks
///   for the rows of the tile two ahead as it goes, line by line.
/// - Prefill (T > 4, AVX2): W is cut into blocks of 128 rows × 256 k, each
///   block widened once into float panels of 16 rows laid out k-major, and
///   every token passes over the block while it sits in L2. The micro-kernel
///   is an outer product, 6 tokens × 16 rows in 12 vector accumulators: each
///   step broadcasts x[t, k] against the 16 weights of step k, so no
///   horizontal sums are needed and the FMA units stay busy (about 80% of
///   their peak on AVX2). The scalar path uses the tile kernel with K blocks.
///
/// The AVX-512 path runs the same two kernels with 16-lane vectors: the decode
/// tile steps 16 k at a time, and the prefill micro-kernel covers 6 tokens ×
/// 32 rows (two panels) in 12 accumulators over the same packed panels.
///
/// The opt-in AVX-512 BF16 path (`Isa::avx512_bf16`) multiplies bf16 weights
/// in prefill without widening them: a block is packed as pairs (w[r, k],
/// w[r, k + 1]) of 16 rows per 512-bit vector, the activations of the block are
/// rounded to bf16 pairs once, and `vdpbf16ps` adds both products of a pair
/// into a float accumulator, 6 tokens × 32 rows at a time.
///
/// Every path accumulates in float; results differ from a plain sum only in
/// the order of additions.

#include <sc2/backends/eigen/context.hpp>
#include <sc2/backends/eigen/detail/simd.hpp>
#include <sc2/ops/linear.hpp>

#include <algorithm>
#include <cstdint>
#include <span>

namespace sc2::cpu {
namespace detail {

inline constexpr std::int64_t kKc = 512;  ///< K block: a 4-token tile of x is 8 KiB
inline constexpr std::int64_t kNb = 48;   ///< row block: 48 × 512 weights, 48 KiB in bf16
inline constexpr int kTileTokens = 4;     ///< MT
inline constexpr int kTileRows = 3;       ///< NR
/// Decode tiles ask for the rows this many tiles ahead while streaming their
/// own: with the hardware prefetchers alone, decode was 8-10% slower (3B bf16,
/// 2 threads; 1 tile ahead gained less, 4 tiles less again).
inline constexpr int kPrefetchTiles = 2;

/// Scalar micro-kernel: out[t, r] += Σ_k x[t, k] · w[r, k] for an MT × NR tile.
template <class E, int MT, int NR>
void dot_tile_scalar(const float* x, std::int64_t x_stride, const E* w, std::int64_t w_stride, const E* /*ahead*/,
                     std::int64_t kc, float* out, std::int64_t out_stride) noexcept {
  float acc[MT][NR] = {};
  for (std::int64_t k = 0; k < kc; ++k) {
    float wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = to_float(w[r * w_stride + k]);
    for (int t = 0; t < MT; ++t) {
      const float xv = x[t * x_stride + k];
      for (int r = 0; r < NR; ++r) acc[t][r] += xv * wv[r];
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < NR; ++r) out[t * out_stride + r] += acc[t][r];
}

#if SC2_HAVE_X86_SIMD
/// AVX2 micro-kernel: the same tile, 8 k at a time in MT × NR registers. As
/// it reaches each cache line of its rows it asks for the same line of the NR
/// rows at `ahead` (same stride), a later tile's.
template <class E, int MT, int NR>
SC2_TARGET_AVX2 void dot_tile_avx2(const float* x, std::int64_t x_stride, const E* w, std::int64_t w_stride,
                                   const E* ahead, std::int64_t kc, float* out, std::int64_t out_stride) noexcept {
  __m256 acc[MT][NR];
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_setzero_ps();
  std::int64_t k = 0;
  for (; k + 8 <= kc; k += 8) {
    if (k * static_cast<std::int64_t>(sizeof(E)) % 64 == 0)
      for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(ahead + r * w_stride + k), _MM_HINT_T0);
    __m256 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load8(w + r * w_stride + k);
    for (int t = 0; t < MT; ++t) {
      const __m256 xv = _mm256_loadu_ps(x + t * x_stride + k);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm256_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  float tail[MT][NR] = {};
  for (; k < kc; ++k)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < NR; ++r) tail[t][r] += x[t * x_stride + k] * to_float(w[r * w_stride + k]);
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < NR; ++r) out[t * out_stride + r] += hsum(acc[t][r]) + tail[t][r];
}

SC2_AVX512_BEGIN
/// AVX-512 micro-kernel: the same tile, 16 k at a time.
template <class E, int MT, int NR>
SC2_TARGET_AVX512 void dot_tile_avx512(const float* x, std::int64_t x_stride, const E* w, std::int64_t w_stride,
                                       const E* ahead, std::int64_t kc, float* out, std::int64_t out_stride) noexcept {
  __m512 acc[MT][NR];
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_setzero_ps();
  std::int64_t k = 0;
  for (; k + 16 <= kc; k += 16) {
    if (k * static_cast<std::int64_t>(sizeof(E)) % 64 == 0)
      for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(ahead + r * w_stride + k), _MM_HINT_T0);
    __m512 wv[NR];
    for (int r = 0; r < NR; ++r) wv[r] = load16(w + r * w_stride + k);
    for (int t = 0; t < MT; ++t) {
      const __m512 xv = _mm512_loadu_ps(x + t * x_stride + k);
      for (int r = 0; r < NR; ++r) acc[t][r] = _mm512_fmadd_ps(xv, wv[r], acc[t][r]);
    }
  }
  float tail[MT][NR] = {};
  for (; k < kc; ++k)
    for (int t = 0; t < MT; ++t)
      for (int r = 0; r < NR; ++r) tail[t][r] += x[t * x_stride + k] * to_float(w[r * w_stride + k]);
  for (int t = 0; t < MT; ++t)
    for (int r = 0; r < NR; ++r) out[t * out_stride + r] += _mm512_reduce_add_ps(acc[t][r]) + tail[t][r];
}
SC2_AVX512_END
#endif

inline constexpr int kPanelRows = 16;           ///< NR of the packed kernel: two AVX2 vectors of rows
inline constexpr int kPanelTokens = 6;          ///< MR: 12 accumulators + 2 weights + 1 broadcast
inline constexpr std::int64_t kPackK = 256;     ///< K block of the packed path
inline constexpr std::int64_t kPackRows = 128;  ///< rows per packed block: 256 × 128 floats, 128 KiB

#if SC2_HAVE_X86_SIMD

/// Packs W[r0 : r0 + rows, k0 : k0 + kc] into float panels of `kPanelRows`
/// rows each, k-major: element (r0 + 16p + j, k0 + k) goes to
/// pack[p · kc · 16 + k · 16 + j]. Rows past `rows` are zero. Blocks of
/// 8 rows × 8 k are widened and transposed in registers.
template <class E>
SC2_TARGET_AVX2 void pack_panels(const E* w, std::int64_t K, std::int64_t r0, std::int64_t rows, std::int64_t k0,
                                 std::int64_t kc, float* pack) noexcept {
  const std::int64_t panels = (rows + kPanelRows - 1) / kPanelRows;
  const std::int64_t kc8 = kc / 8 * 8;
  for (std::int64_t p = 0; p < panels; ++p) {
    float* panel = pack + p * kc * kPanelRows;
    for (int j0 = 0; j0 < kPanelRows; j0 += 8) {
      const std::int64_t first = p * kPanelRows + j0;  // first of these 8 rows, relative to r0
      const int valid = static_cast<int>(std::clamp<std::int64_t>(rows - first, 0, 8));
      for (std::int64_t k = 0; k < kc8; k += 8) {
        __m256 block[8];
        for (int i = 0; i < 8; ++i)
          block[i] = i < valid ? load8(w + (r0 + first + i) * K + k0 + k) : _mm256_setzero_ps();
        transpose8(block);
        for (int i = 0; i < 8; ++i) _mm256_store_ps(panel + (k + i) * kPanelRows + j0, block[i]);
      }
      for (std::int64_t k = kc8; k < kc; ++k)
        for (int i = 0; i < 8; ++i)
          panel[k * kPanelRows + j0 + i] = i < valid ? to_float(w[(r0 + first + i) * K + k0 + k]) : 0.0f;
    }
  }
}

/// AVX2 outer-product micro-kernel: out[t, j] += Σ_k x[t, k] · panel[k, j] for
/// MT tokens × 16 packed rows. Each step broadcasts one x[t, k] and multiplies
/// it into the 16 weights of step k, so no horizontal sum is needed; `cols`
/// (<= 16) of the 16 results are stored.
template <int MT>
SC2_TARGET_AVX2 void panel_tile_avx2(const float* x, std::int64_t x_stride, const float* panel, std::int64_t kc,
                                     float* out, std::int64_t out_stride, int cols) noexcept {
  __m256 acc[MT][2];
  SC2_UNROLL for (int t = 0; t < MT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < kc; ++k) {
    const __m256 w0 = _mm256_load_ps(panel + k * kPanelRows), w1 = _mm256_load_ps(panel + k * kPanelRows + 8);
    SC2_UNROLL for (int t = 0; t < MT; ++t) {
      const __m256 xv = _mm256_broadcast_ss(x + t * x_stride + k);
      acc[t][0] = _mm256_fmadd_ps(xv, w0, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(xv, w1, acc[t][1]);
    }
  }
  SC2_UNROLL for (int t = 0; t < MT; ++t) {
    float* o = out + t * out_stride;
    if (cols == kPanelRows) {
      _mm256_storeu_ps(o, _mm256_add_ps(_mm256_loadu_ps(o), acc[t][0]));
      _mm256_storeu_ps(o + 8, _mm256_add_ps(_mm256_loadu_ps(o + 8), acc[t][1]));
    } else {
      alignas(32) float sums[kPanelRows];
      _mm256_store_ps(sums, acc[t][0]);
      _mm256_store_ps(sums + 8, acc[t][1]);
      for (int j = 0; j < cols; ++j) o[j] += sums[j];
    }
  }
}

SC2_AVX512_BEGIN
/// out[t, j] += acc[t][j / 16][j % 16] for MT tokens and the first `cols` of
/// NP × 16 columns.
template <int MT, int NP>
SC2_TARGET_AVX512 inline void add_tile_avx512(const __m512 (&acc)[MT][NP], float* out, std::int64_t out_stride,
                                              int cols) noexcept {
  SC2_UNROLL for (int t = 0; t < MT; ++t) {
    float* o = out + t * out_stride;
    if (cols == NP * kPanelRows) {
      SC2_UNROLL for (int p = 0; p < NP; ++p) {
        float* op = o + p * kPanelRows;
        _mm512_storeu_ps(op, _mm512_add_ps(_mm512_loadu_ps(op), acc[t][p]));
      }
    } else {
      float sums[NP * kPanelRows];
      SC2_UNROLL for (int p = 0; p < NP; ++p) _mm512_storeu_ps(sums + p * kPanelRows, acc[t][p]);
      for (int j = 0; j < cols; ++j) o[j] += sums[j];
    }
  }
}

/// AVX-512 outer-product micro-kernel: out[t, j] += Σ_k x[t, k] · panels[k, j]
/// for MT tokens × NP panels of 16 packed rows (panel p starts kc · 16 floats
/// after panel p - 1). One 16-lane vector holds a panel's step k, so NP = 2
/// gives the 12 accumulators of the AVX2 kernel with twice the rows; `cols`
/// (<= 16 · NP) of the results are stored.
template <int MT, int NP>
SC2_TARGET_AVX512 void panel_tile_avx512(const float* x, std::int64_t x_stride, const float* panel, std::int64_t kc,
                                         float* out, std::int64_t out_stride, int cols) noexcept {
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kc; ++k) {
    __m512 wv[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) wv[p] = _mm512_loadu_ps(panel + (p * kc + k) * kPanelRows);
    SC2_UNROLL for (int t = 0; t < MT; ++t) {
      const __m512 xv = _mm512_set1_ps(x[t * x_stride + k]);
      SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
    }
  }
  add_tile_avx512<MT, NP>(acc, out, out_stride, cols);
}
SC2_AVX512_END

/// Signature of the packed micro-kernels.
using PanelTile = void (*)(const float*, std::int64_t, const float*, std::int64_t, float*, std::int64_t, int) noexcept;

/// The packed micro-kernel for `mt` tokens (1 <= mt <= 6) over `panels` panels
/// (1, or 2 on AVX-512) on `isa`.
inline PanelTile panel_tile(Isa isa, int mt, int panels) noexcept {
  static constexpr PanelTile avx2[kPanelTokens] = {panel_tile_avx2<1>, panel_tile_avx2<2>, panel_tile_avx2<3>,
                                                   panel_tile_avx2<4>, panel_tile_avx2<5>, panel_tile_avx2<6>};
  static constexpr PanelTile avx512[2][kPanelTokens] = {
      {panel_tile_avx512<1, 1>, panel_tile_avx512<2, 1>, panel_tile_avx512<3, 1>, panel_tile_avx512<4, 1>,
       panel_tile_avx512<5, 1>, panel_tile_avx512<6, 1>},
      {panel_tile_avx512<1, 2>, panel_tile_avx512<2, 2>, panel_tile_avx512<3, 2>, panel_tile_avx512<4, 2>,
       panel_tile_avx512<5, 2>, panel_tile_avx512<6, 2>}};
  return uses_avx512(isa) ? avx512[panels - 1][mt - 1] : avx2[mt - 1];
}

/// out[:, n0:n1] += in · W[n0:n1, :]ᵀ through packed panels, for many tokens
/// (prefill) on `isa` (AVX2 or AVX-512). W is read once per call: each block of
/// kPackRows × kPackK is widened into `pack` and every token passes over it
/// while it sits in L2.
template <class E>
SC2_TARGET_AVX2 void linear_rows_packed(Isa isa, MatrixView out, ConstMatrixView in, const E* w, std::int64_t n0,
                                        std::int64_t n1, float* pack) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1);
  const int panels_per_tile = uses_avx512(isa) ? 2 : 1;
  for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
    const std::int64_t kc = std::min(kPackK, K - k0);
    for (std::int64_t nb = n0; nb < n1; nb += kPackRows) {
      const std::int64_t rows = std::min(kPackRows, n1 - nb);
      pack_panels(w, K, nb, rows, k0, kc, pack);
      for (std::int64_t t0 = 0; t0 < T; t0 += kPanelTokens) {
        const int mt = static_cast<int>(std::min<std::int64_t>(kPanelTokens, T - t0));
        const float* x = in.data() + t0 * in.stride(0) + k0;
        for (std::int64_t p = 0; p * kPanelRows < rows; p += panels_per_tile) {
          const int cols = static_cast<int>(std::min<std::int64_t>(panels_per_tile * kPanelRows, rows - p * kPanelRows));
          const int panels = (cols + kPanelRows - 1) / kPanelRows;
          panel_tile(isa, mt, panels)(x, in.stride(0), pack + p * kc * kPanelRows, kc,
                                      out.data() + t0 * out.stride(0) + nb + p * kPanelRows, out.stride(0), cols);
        }
      }
    }
  }
}

/// The bf16 pair (row[k], row[k + 1]) as one 32-bit word, row[k] in the low
/// half (the order of memory, so that lane i of a vector of pairs holds
/// elements 2i and 2i + 1); an element at or past `end` is zero.
inline std::uint32_t bf16_pair(const bf16* row, std::int64_t k, std::int64_t end) noexcept {
  const std::uint32_t high = k + 1 < end ? row[k + 1].bits : 0u;
  return static_cast<std::uint32_t>(row[k].bits) | high << 16;
}

/// Packs W[r0 : r0 + rows, k0 : k0 + kc] (bf16) into panels of 16 rows of
/// bf16 pairs, pair-major: the pair (r0 + 16p + j, k0 + 2i) goes to
/// pack[p · kc2 · 16 + i · 16 + j], kc2 = ⌈kc / 2⌉. Rows past `rows`, and the
/// second half of a last odd pair, are zero. Blocks of 8 rows × 8 pairs are
/// transposed in registers as 32-bit words (bits moved, never converted).
SC2_TARGET_AVX2 inline void pack_bf16_pairs(const bf16* w, std::int64_t K, std::int64_t r0, std::int64_t rows,
                                            std::int64_t k0, std::int64_t kc, std::uint32_t* pack) noexcept {
  const std::int64_t kc2 = (kc + 1) / 2, panels = (rows + kPanelRows - 1) / kPanelRows;
  const std::int64_t whole = kc / 16 * 8;  // pairs in whole blocks of 8 pairs
  for (std::int64_t p = 0; p < panels; ++p) {
    std::uint32_t* panel = pack + p * kc2 * kPanelRows;
    for (int j0 = 0; j0 < kPanelRows; j0 += 8) {
      const std::int64_t first = p * kPanelRows + j0;
      const int valid = static_cast<int>(std::clamp<std::int64_t>(rows - first, 0, 8));
      for (std::int64_t i = 0; i < whole; i += 8) {
        __m256 block[8];
        for (int r = 0; r < 8; ++r)
          block[r] = r < valid ? _mm256_loadu_ps(reinterpret_cast<const float*>(w + (r0 + first + r) * K + k0 + 2 * i))
                               : _mm256_setzero_ps();
        transpose8(block);
        for (int r = 0; r < 8; ++r) _mm256_storeu_ps(reinterpret_cast<float*>(panel + (i + r) * kPanelRows + j0), block[r]);
      }
      for (std::int64_t i = whole; i < kc2; ++i)
        for (int r = 0; r < 8; ++r)
          panel[i * kPanelRows + j0 + r] = r < valid ? bf16_pair(w + (r0 + first + r) * K, k0 + 2 * i, k0 + kc) : 0u;
    }
  }
}

/// Rounds x[:, k0 : k0 + kc] to bf16 pairs: xb[t · kc2 + i] holds
/// (x[t, k0 + 2i], x[t, k0 + 2i + 1]), the second zero past the block.
inline void round_bf16_pairs(ConstMatrixView in, std::int64_t k0, std::int64_t kc, std::uint32_t* xb) noexcept {
  const std::int64_t kc2 = (kc + 1) / 2;
  for (std::int64_t t = 0; t < in.extent(0); ++t) {
    const float* x = in.data() + t * in.stride(0) + k0;
    for (std::int64_t i = 0; i < kc2; ++i) {
      const std::uint32_t low = bf16::round(x[2 * i]).bits;
      const std::uint32_t high = 2 * i + 1 < kc ? bf16::round(x[2 * i + 1]).bits : 0u;
      xb[t * kc2 + i] = low | high << 16;
    }
  }
}

SC2_AVX512_BEGIN
/// AVX-512 BF16 micro-kernel: out[t, j] += Σ_i x2[t, i] · panels[i, j] over
/// MT tokens × NP panels of 16 rows, where each term is a bf16 pair dot
/// product (two products added in float). A vector holds one pair step of a
/// panel (16 rows × 2 k); the token's pair is broadcast as a 32-bit word.
template <int MT, int NP>
SC2_TARGET_AVX512_BF16 void panel_tile_avx512_bf16(const std::uint32_t* xb, std::int64_t xb_stride,
                                                   const std::uint32_t* panel, std::int64_t kc2, float* out,
                                                   std::int64_t out_stride, int cols) noexcept {
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < kc2; ++i) {
    __m512bh wv[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) wv[p] = (__m512bh)_mm512_loadu_si512(panel + (p * kc2 + i) * kPanelRows);
    SC2_UNROLL for (int t = 0; t < MT; ++t) {
      const __m512bh xv = (__m512bh)_mm512_set1_epi32(static_cast<int>(xb[t * xb_stride + i]));
      SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_dpbf16_ps(acc[t][p], wv[p], xv);
    }
  }
  add_tile_avx512<MT, NP>(acc, out, out_stride, cols);
}
SC2_AVX512_END

/// Signature of the bf16 pair micro-kernels.
using PairTile = void (*)(const std::uint32_t*, std::int64_t, const std::uint32_t*, std::int64_t, float*,
                          std::int64_t, int) noexcept;

/// out[:, n0:n1] += bf16(in) · W[n0:n1, :]ᵀ for bf16 W and many tokens, by
/// bf16 pair dot products (the opt-in `Isa::avx512_bf16` prefill). Blocked as
/// `linear_rows_packed`; `scratch` holds `bf16_pair_scratch(T)` floats.
SC2_TARGET_AVX2 inline void linear_rows_bf16_pairs(MatrixView out, ConstMatrixView in, const bf16* w,
                                                   std::int64_t n0, std::int64_t n1, float* scratch) noexcept {
  static constexpr PairTile tiles[2][kPanelTokens] = {
      {panel_tile_avx512_bf16<1, 1>, panel_tile_avx512_bf16<2, 1>, panel_tile_avx512_bf16<3, 1>,
       panel_tile_avx512_bf16<4, 1>, panel_tile_avx512_bf16<5, 1>, panel_tile_avx512_bf16<6, 1>},
      {panel_tile_avx512_bf16<1, 2>, panel_tile_avx512_bf16<2, 2>, panel_tile_avx512_bf16<3, 2>,
       panel_tile_avx512_bf16<4, 2>, panel_tile_avx512_bf16<5, 2>, panel_tile_avx512_bf16<6, 2>}};
  const std::int64_t T = in.extent(0), K = in.extent(1);
  std::uint32_t* pack = reinterpret_cast<std::uint32_t*>(scratch);
  std::uint32_t* xb = pack + kPackRows * kPackK / 2;
  for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
    const std::int64_t kc = std::min(kPackK, K - k0), kc2 = (kc + 1) / 2;
    round_bf16_pairs(in, k0, kc, xb);
    for (std::int64_t nb = n0; nb < n1; nb += kPackRows) {
      const std::int64_t rows = std::min(kPackRows, n1 - nb);
      pack_bf16_pairs(w, K, nb, rows, k0, kc, pack);
      for (std::int64_t t0 = 0; t0 < T; t0 += kPanelTokens) {
        const int mt = static_cast<int>(std::min<std::int64_t>(kPanelTokens, T - t0));
        for (std::int64_t p = 0; p * kPanelRows < rows; p += 2) {
          const int cols = static_cast<int>(std::min<std::int64_t>(2 * kPanelRows, rows - p * kPanelRows));
          tiles[cols > kPanelRows ? 1 : 0][mt - 1](xb + t0 * kc2, kc2, pack + p * kc2 * kPanelRows, kc2,
                                                   out.data() + t0 * out.stride(0) + nb + p * kPanelRows,
                                                   out.stride(0), cols);
        }
      }
    }
  }
}
#endif

/// Signature shared by every micro-kernel instantiation.
template <class E>
using DotTile = void (*)(const float*, std::int64_t, const E*, std::int64_t, const E*, std::int64_t, float*,
                         std::int64_t) noexcept;

/// The micro-kernel for an mt × nr tile (1 <= mt <= 4, 1 <= nr <= 3) on `isa`.
template <class E> DotTile<E> dot_tile(Isa isa, int mt, int nr) noexcept {
  // Row index: mt - 1; column index: nr - 1.
  static constexpr DotTile<E> scalar[4][3] = {
      {dot_tile_scalar<E, 1, 1>, dot_tile_scalar<E, 1, 2>, dot_tile_scalar<E, 1, 3>},
      {dot_tile_scalar<E, 2, 1>, dot_tile_scalar<E, 2, 2>, dot_tile_scalar<E, 2, 3>},
      {dot_tile_scalar<E, 3, 1>, dot_tile_scalar<E, 3, 2>, dot_tile_scalar<E, 3, 3>},
      {dot_tile_scalar<E, 4, 1>, dot_tile_scalar<E, 4, 2>, dot_tile_scalar<E, 4, 3>}};
#if SC2_HAVE_X86_SIMD
  static constexpr DotTile<E> avx2[4][3] = {
      {dot_tile_avx2<E, 1, 1>, dot_tile_avx2<E, 1, 2>, dot_tile_avx2<E, 1, 3>},
      {dot_tile_avx2<E, 2, 1>, dot_tile_avx2<E, 2, 2>, dot_tile_avx2<E, 2, 3>},
      {dot_tile_avx2<E, 3, 1>, dot_tile_avx2<E, 3, 2>, dot_tile_avx2<E, 3, 3>},
      {dot_tile_avx2<E, 4, 1>, dot_tile_avx2<E, 4, 2>, dot_tile_avx2<E, 4, 3>}};
  static constexpr DotTile<E> avx512[4][3] = {
      {dot_tile_avx512<E, 1, 1>, dot_tile_avx512<E, 1, 2>, dot_tile_avx512<E, 1, 3>},
      {dot_tile_avx512<E, 2, 1>, dot_tile_avx512<E, 2, 2>, dot_tile_avx512<E, 2, 3>},
      {dot_tile_avx512<E, 3, 1>, dot_tile_avx512<E, 3, 2>, dot_tile_avx512<E, 3, 3>},
      {dot_tile_avx512<E, 4, 1>, dot_tile_avx512<E, 4, 2>, dot_tile_avx512<E, 4, 3>}};
  if (isa == Isa::avx2) return avx2[mt - 1][nr - 1];
  if (uses_avx512(isa)) return avx512[mt - 1][nr - 1];
#endif
  (void)isa;
  return scalar[mt - 1][nr - 1];
}

/// out[:, n0:n1] += in · W[n0:n1, :]ᵀ for one thread's rows.
template <class E>
void linear_rows(Isa isa, MatrixView out, ConstMatrixView in, const WeightMatrix& weight, std::int64_t n0,
                 std::int64_t n1) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1);
  const E* w = static_cast<const E*>(weight.data);
  const DotTile<E> full = dot_tile<E>(isa, kTileTokens, kTileRows);
  // One token tile (decode): x stays in L2 whatever K is, so each weight row is
  // streamed whole, which keeps the hardware prefetchers on sequential reads.
  const std::int64_t k_block = T <= kTileTokens ? K : kKc;
  for (std::int64_t k0 = 0; k0 < K; k0 += k_block) {
    const std::int64_t kc = std::min(k_block, K - k0);
    for (std::int64_t nb = n0; nb < n1; nb += kNb) {
      const std::int64_t nb_end = std::min(nb + kNb, n1);
      for (std::int64_t t0 = 0; t0 < T; t0 += kTileTokens) {
        const int mt = static_cast<int>(std::min<std::int64_t>(kTileTokens, T - t0));
        const float* x = in.data() + t0 * in.stride(0) + k0;
        float* o = out.data() + t0 * out.stride(0);
        for (std::int64_t r = nb; r < nb_end; r += kTileRows) {
          const int nr = static_cast<int>(std::min<std::int64_t>(kTileRows, nb_end - r));
          const DotTile<E> tile = (mt == kTileTokens && nr == kTileRows) ? full : dot_tile<E>(isa, mt, nr);
          // Whole rows come from memory once each (decode): ask for the tile
          // kPrefetchTiles ahead in this thread's rows (itself when there is none).
          const std::int64_t next = r + kPrefetchTiles * kTileRows;
          const E* ahead = w + (k_block == K && next + kTileRows <= n1 ? next : r) * K + k0;
          tile(x, in.stride(0), w + r * K + k0, K, ahead, kc, o + r, out.stride(0));
        }
      }
    }
  }
}

/// Floats of per-thread scratch the bf16 pair path needs for T tokens: a
/// packed block of weight pairs, then the block's activation pairs.
constexpr std::size_t bf16_pair_scratch(std::int64_t T) noexcept {
  return static_cast<std::size_t>(kPackRows * kPackK / 2 + T * kPackK / 2);
}

/// Size in floats of the per-thread scratch `linear_panel_range` needs for T
/// tokens of a `dtype` weight on `isa` (none for decode).
constexpr std::size_t linear_scratch(Isa isa, DType dtype, std::int64_t T) noexcept {
  if (!uses_avx2(isa) || T <= kTileTokens) return 0;
  if (isa == Isa::avx512_bf16 && dtype == DType::bf16) return bf16_pair_scratch(T);
  return static_cast<std::size_t>(kPackK * kPackRows);
}

/// out[:, n0:n1] = in · W[n0:n1, :]ᵀ + bias[n0:n1] on `isa`: one thread's share
/// of `run_linear`. `scratch` holds `linear_scratch(isa, weight.dtype, T)` floats.
inline void linear_panel_range(Isa isa, MatrixView out, ConstMatrixView in, const WeightMatrix& weight,
                               std::span<const float> bias, std::int64_t n0, std::int64_t n1,
                               std::span<float> scratch) noexcept {
  const std::int64_t T = in.extent(0);
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t n = n0; n < n1; ++n) out(t, n) = bias.empty() ? 0.0f : bias[static_cast<std::size_t>(n)];
#if SC2_HAVE_X86_SIMD
  SC2_ASSERT(scratch.size() >= linear_scratch(isa, weight.dtype, T));
  if (isa == Isa::avx512_bf16 && weight.dtype == DType::bf16 && T > kTileTokens) {
    linear_rows_bf16_pairs(out, in, static_cast<const bf16*>(weight.data), n0, n1, scratch.data());
    return;
  }
  if (uses_avx2(isa) && T > kTileTokens) {
    float* pack = scratch.data();
    switch (weight.dtype) {
      case DType::f32: linear_rows_packed(isa, out, in, static_cast<const float*>(weight.data), n0, n1, pack); break;
      case DType::bf16: linear_rows_packed(isa, out, in, static_cast<const bf16*>(weight.data), n0, n1, pack); break;
      case DType::f16: linear_rows_packed(isa, out, in, static_cast<const f16*>(weight.data), n0, n1, pack); break;
    }
    return;
  }
#endif
  (void)scratch;
  switch (weight.dtype) {
    case DType::f32: linear_rows<float>(isa, out, in, weight, n0, n1); break;
    case DType::bf16: linear_rows<bf16>(isa, out, in, weight, n0, n1); break;
    case DType::f16: linear_rows<f16>(isa, out, in, weight, n0, n1); break;
  }
}

}  // namespace detail

/// CPU implementation of `ops::linear`.
inline void run_linear(Context& ctx, MatrixView out, ConstMatrixView in, const WeightMatrix& weight,
                       std::span<const float> bias) {
  const std::size_t scratch_size = detail::linear_scratch(ctx.isa(), weight.dtype, in.extent(0));
  // Rows are split in whole panels, one contiguous range per thread.
  ctx.pool().parallel_for(weight.rows, detail::kPanelRows, [&](std::int64_t n0, std::int64_t n1, int thread) {
    const std::span<float> scratch = scratch_size ? ctx.scratch(thread, scratch_size) : std::span<float>();
    detail::linear_panel_range(ctx.isa(), out, in, weight, bias, n0, n1, scratch);
  });
}

}  // namespace sc2::cpu
