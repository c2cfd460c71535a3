#pragma once
/// \file
/// The CPU linear layer's register tiles over float, bf16 and f16 panels
/// (see linear.hpp for the layout, the blocking and the batch invariance):
/// out[t, j] += Σ_k x[t, k] · panel[k, j] for a few tokens × 16 or more rows,
/// on the scalar path, AVX2 and AVX-512, and the table that picks one.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/core/tensor.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <utility>

namespace sc2::cpu::detail {

inline constexpr int kPanelTokens = 6;          ///< MT: 12 accumulators + 2 weights + 1 broadcast on AVX2
inline constexpr std::int64_t kPackK = 256;     ///< K block: every path adds its sum into out per block
inline constexpr std::int64_t kPackRows = 128;  ///< rows per widened block: 256 × 128 floats, 128 KiB
/// Up to this many tokens (decode, or decode rows of a few sequences) the tiles
/// read W straight from memory, each panel streamed once over all K; more
/// tokens (prefill) widen each block once and share it. With 8 decode rows the
/// blocked order read each 256-step piece of a panel 98 KB from the last, and
/// a step of the 3B shape took 3× what the streamed order takes.
inline constexpr int kDirectTokens = 24;
/// Decode tiles ask for the panel data this many bytes ahead of what they read
/// (the panels of a thread are contiguous, so this runs into the next ones).
inline constexpr std::int64_t kPrefetchBytes = 1024;

/// The widening of one panel step: 16 weights of type E as floats.
template <class E> inline float widen(E w) noexcept { return to_float(w); }

/// Scalar micro-kernel: out[t, j] += Σ_k x[t, k] · panel[k, j] for MT tokens ×
/// 16 rows of one panel (its steps 16 elements apart); `cols` (<= 16) are stored.
/// Each step is an explicit fused multiply-add, so the compiler cannot round
/// one tile size's products differently from another's.
template <class E, int MT>
void panel_tile_scalar(const float* x, std::int64_t x_stride, const E* panel, std::int64_t /*panel_stride*/,
                       std::int64_t kc, float* out, std::int64_t out_stride, int cols) noexcept {
  float acc[MT][kPanelRows] = {};
  for (std::int64_t k = 0; k < kc; ++k) {
    float w[kPanelRows];
    for (int j = 0; j < kPanelRows; ++j) w[j] = widen(panel[k * kPanelRows + j]);
    for (int t = 0; t < MT; ++t) {
      const float xv = x[t * x_stride + k];
      for (int j = 0; j < kPanelRows; ++j) acc[t][j] = std::fma(xv, w[j], acc[t][j]);
    }
  }
  for (int t = 0; t < MT; ++t)
    for (int j = 0; j < cols; ++j) out[t * out_stride + j] += acc[t][j];
}

#if SC2_HAVE_X86_SIMD
/// Asks for the cache line at `p`.
SC2_TARGET_AVX2 inline void prefetch_line(const void* p) noexcept {
  _mm_prefetch(static_cast<const char*>(p), _MM_HINT_T0);
}

/// out[t, j] += acc[t][j / 8][j % 8] for MT tokens and the first `cols` of 16 columns.
template <int MT>
SC2_TARGET_AVX2 inline void add_tile_avx2(const __m256 (&acc)[MT][2], float* out, std::int64_t out_stride,
                                          int cols) noexcept {
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

/// AVX2 micro-kernel: out[t, j] += Σ_k x[t, k] · panel[k, j] for MT tokens × the
/// 16 rows of one panel, in 2 × MT vector accumulators. Each step loads the
/// 16 weights of step k (widening bf16/f16) and broadcasts one x[t, k] per
/// token. With `Ahead`, it asks for the panel data kPrefetchBytes ahead.
template <class E, int MT, bool Ahead>
SC2_TARGET_AVX2 void panel_tile_avx2(const float* x, std::int64_t x_stride, const E* panel,
                                     std::int64_t /*panel_stride*/, std::int64_t kc, float* out,
                                     std::int64_t out_stride, int cols) noexcept {
  constexpr std::int64_t step_bytes = kPanelRows * static_cast<std::int64_t>(sizeof(E));
  __m256 acc[MT][2];
  SC2_UNROLL for (int t = 0; t < MT; ++t) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
  for (std::int64_t k = 0; k < kc; ++k) {
    if constexpr (Ahead)
      if ((k * step_bytes) % 64 == 0)
        prefetch_line(reinterpret_cast<const char*>(panel + k * kPanelRows) + kPrefetchBytes);
    const __m256 w0 = load8(panel + k * kPanelRows), w1 = load8(panel + k * kPanelRows + 8);
    SC2_UNROLL for (int t = 0; t < MT; ++t) {
      const __m256 xv = _mm256_broadcast_ss(x + t * x_stride + k);
      acc[t][0] = _mm256_fmadd_ps(xv, w0, acc[t][0]);
      acc[t][1] = _mm256_fmadd_ps(xv, w1, acc[t][1]);
    }
  }
  add_tile_avx2<MT>(acc, out, out_stride, cols);
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

/// AVX-512 micro-kernel: the outer product over MT tokens × NP panels of 16
/// rows (panel p starts `panel_stride` elements after panel p − 1), one
/// 16-lane vector per panel step, so NP = 2 gives the 12 accumulators of the
/// AVX2 kernel with twice the rows; `cols` (<= 16 · NP) of the results are stored.
template <class E, int MT, int NP, bool Ahead>
SC2_TARGET_AVX512 void panel_tile_avx512(const float* x, std::int64_t x_stride, const E* panel,
                                         std::int64_t panel_stride, std::int64_t kc, float* out,
                                         std::int64_t out_stride, int cols) noexcept {
  constexpr std::int64_t step_bytes = kPanelRows * static_cast<std::int64_t>(sizeof(E));
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t k = 0; k < kc; ++k) {
    if constexpr (Ahead)
      if ((k * step_bytes) % 64 == 0)
        SC2_UNROLL for (int p = 0; p < NP; ++p)
            prefetch_line(reinterpret_cast<const char*>(panel + p * panel_stride + k * kPanelRows) + kPrefetchBytes);
    __m512 wv[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) wv[p] = load16(panel + p * panel_stride + k * kPanelRows);
    SC2_UNROLL for (int t = 0; t < MT; ++t) {
      const __m512 xv = _mm512_set1_ps(x[t * x_stride + k]);
      SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_fmadd_ps(xv, wv[p], acc[t][p]);
    }
  }
  add_tile_avx512<MT, NP>(acc, out, out_stride, cols);
}
SC2_AVX512_END
#endif

/// Signature of the panel micro-kernels: x (MT rows, x_stride apart, from
/// step k0), the first panel at step k0, the distance between panels, kc
/// steps, the output tile and how many of its columns are real.
template <class E>
using PanelTile = void (*)(const float*, std::int64_t, const E*, std::int64_t, std::int64_t, float*, std::int64_t,
                           int) noexcept;

/// Panels one register tile covers on `isa`: 2 on AVX-512, else 1.
constexpr int tile_panels(Isa isa) noexcept { return uses_avx512(isa) ? 2 : 1; }

/// Panels of one whole prefill register tile on AVX-512: 6 tokens × 4 panels
/// load 4 weight vectors and broadcast 6 activations per k for 24 FMAs (0.42
/// loads per FMA, against 0.67 for 6 × 2). Measured on the 3B shapes (2
/// threads, one layer): 70–76% of the FMA peak against 63–70% for 6 × 2. Each
/// output lane is the same chain of FMAs in k order, so the bits are those of
/// the narrower tiles.
inline constexpr int kPrefillPanels512 = 4;

/// Most tokens of one register tile that streams W (decode rows): 12 on
/// AVX-512 (24 of its 32 vector registers accumulate), 6 on AVX2 and the
/// scalar path (12 of 16). Eight decode rows then widen each weight once,
/// not in a tile of 6 and another of 2. Prefill keeps tiles of 6 over its
/// widened blocks: with 12 it was slower (50 against 59 tokens/s, 3B shape).
inline constexpr int kPanelTokens512 = 12;
/// Most tokens of one register tile on `isa`.
constexpr int tile_tokens(Isa isa) noexcept { return uses_avx512(isa) ? kPanelTokens512 : kPanelTokens; }

/// The table of one kernel family's instantiations for MT = 1 .. sizeof...(I).
template <class E, template <class, int> class Kernel, int... I>
constexpr std::array<PanelTile<E>, sizeof...(I)> tile_table(std::integer_sequence<int, I...>) noexcept {
  return {Kernel<E, I + 1>::get()...};
}

/// Names the kernels of each family as `Kernel<E, MT>::get()` for `tile_table`.
template <class E, int MT> struct ScalarTile {
  static constexpr PanelTile<E> get() noexcept { return panel_tile_scalar<E, MT>; }
};
#if SC2_HAVE_X86_SIMD
template <bool Ahead> struct Avx2Tiles {
  template <class E, int MT> struct At {
    static constexpr PanelTile<E> get() noexcept { return panel_tile_avx2<E, MT, Ahead>; }
  };
};
template <int NP, bool Ahead> struct Avx512Tiles {
  template <class E, int MT> struct At {
    static constexpr PanelTile<E> get() noexcept { return panel_tile_avx512<E, MT, NP, Ahead>; }
  };
};
#endif

/// The micro-kernel for `mt` tokens (1 <= mt <= tile_tokens(isa)) over
/// `panels` panels (1, or 2 on AVX-512) on `isa`; `ahead` asks for the panel
/// data ahead (decode).
template <class E> PanelTile<E> panel_tile(Isa isa, int mt, int panels, bool ahead) noexcept {
  static constexpr auto scalar = tile_table<E, ScalarTile>(std::make_integer_sequence<int, kPanelTokens>{});
#if SC2_HAVE_X86_SIMD
  using Six = std::make_integer_sequence<int, kPanelTokens>;
  using Twelve = std::make_integer_sequence<int, kPanelTokens512>;
  static constexpr std::array<std::array<PanelTile<E>, kPanelTokens>, 2> avx2 = {
      tile_table<E, Avx2Tiles<false>::template At>(Six{}), tile_table<E, Avx2Tiles<true>::template At>(Six{})};
  static constexpr std::array<std::array<std::array<PanelTile<E>, kPanelTokens512>, 2>, 2> avx512 = {
      {{tile_table<E, Avx512Tiles<1, false>::template At>(Twelve{}),
        tile_table<E, Avx512Tiles<2, false>::template At>(Twelve{})},
       {tile_table<E, Avx512Tiles<1, true>::template At>(Twelve{}),
        tile_table<E, Avx512Tiles<2, true>::template At>(Twelve{})}}};
  if (uses_avx512(isa)) return avx512[ahead ? 1 : 0][static_cast<std::size_t>(panels - 1)][static_cast<std::size_t>(mt - 1)];
  if (uses_avx2(isa)) return avx2[ahead ? 1 : 0][static_cast<std::size_t>(mt - 1)];
#endif
  (void)isa, (void)panels, (void)ahead;
  return scalar[static_cast<std::size_t>(mt - 1)];
}

}  // namespace sc2::cpu::detail
