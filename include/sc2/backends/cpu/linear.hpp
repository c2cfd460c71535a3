#pragma once
/// \file
/// CPU linear layer: out (T, N) = in (T, K) · Wᵀ (+ bias), W in f32, bf16 or f16
/// or in GGML blocks (detail/quant.hpp), and the packing of W into the layout
/// its kernels read.
///
/// W is packed once, when the model is loaded, into panels of 16 rows, each
/// stored column by column (`WeightLayout::panels16`): one step k of a panel
/// is the 16 weights W[16p .. 16p + 15, k], contiguous, in the stored dtype.
/// One kernel shape then serves every T: an outer product over a register
/// tile of up to 6 tokens × 16 rows (AVX2, scalar), or on AVX-512 12 tokens
/// × 32 rows (decode) and 6 tokens × 64 rows (prefill), which broadcasts
/// x[t, k] against the 16 weights of step k, so each accumulator lane is one
/// output element and no horizontal sums are needed.
///
/// - Few tokens (T <= 24, decode): the tile reads the panels straight from
///   memory, widening bf16/f16 in registers; each thread streams its own
///   contiguous run of panels once, asking for the data ahead as it goes.
///   This is the memory-bandwidth bound of decode.
/// - More tokens (prefill): W is cut into blocks of 128 rows × 256 k, each
///   widened once into float panels while it sits in L2, and every token tile
///   passes over it (about 80% of the FMA peak on AVX2 on a Zen 3, 73% on
///   AVX-512 on an Intel Xeon with 6 × 4 tiles).
///
/// Batch invariance: every path computes each output element the same way,
/// whatever T and whatever the element's row in the batch:
///
///     out[t, n] = bias[n];  for each K block [k0, k0 + 256):  out[t, n] += Σ_k x[t, k] · W[n, k]
///
/// where the inner sum is one multiply-add chain in k order from zero. So a
/// sequence gets the same bits alone, in any batch, and in chunks of any size.
/// (Before the panels, decode dotted each row along k in 8 lanes and prefill
/// ran the outer product; the two orders differed in the last bits.)
///
/// The opt-in AVX-512 BF16 path (`Isa::avx512_bf16`) multiplies bf16 weights
/// without widening them: per K block the activations are rounded to bf16
/// pairs and the panels are paired as (W[r, k], W[r, k + 1]) words, and
/// `vdpbf16ps` adds both products of a pair into a float accumulator. It
/// rounds the activations, so it is not float32 arithmetic; it is used for
/// every T, so it too gives a sequence the same bits in any batch.
///
/// The AMX paths (`Isa::amx`, `Isa::amx_bf16`, both opt-in) run bf16 weights
/// on the tile engine for every T (`detail/amx.hpp`): `amx` splits each
/// activation exactly into three bf16 parts, so its products are exact and it
/// stays float32-class (about 2.5× the FMA kernels' prefill, but a decode
/// step 1.5× as long); `amx_bf16` rounds activations to bf16 like `avx512_bf16`.

#include <sc2/backends/cpu/context.hpp>
#include <sc2/backends/cpu/detail/amx.hpp>
#include <sc2/backends/cpu/detail/panel_tiles.hpp>
#include <sc2/backends/cpu/detail/quant.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/ops/linear.hpp>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <utility>

namespace sc2::cpu {
namespace detail {

/// out[:, 16·p0 : 16·p1] += in · W[16·p0 : 16·p1, :]ᵀ for a few tokens
/// (T <= kDirectTokens): each tile of panels streams its panels from memory,
/// K block by K block; every token tile passes over a block while it is in L1
/// (the first asks for the data ahead).
template <class E>
void linear_panels_direct(Isa isa, MatrixView out, ConstMatrixView in, const E* w, std::int64_t N, std::int64_t p0,
                          std::int64_t p1) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1), panel_stride = K * kPanelRows;
  const int np = tile_panels(isa);
  for (std::int64_t p = p0; p < p1; p += np) {
    const int panels = static_cast<int>(std::min<std::int64_t>(np, p1 - p));
    const int cols = static_cast<int>(std::min<std::int64_t>(panels * kPanelRows, N - p * kPanelRows));
    for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
      const std::int64_t kc = std::min(kPackK, K - k0);
      for (std::int64_t t0 = 0; t0 < T; t0 += tile_tokens(isa)) {
        const int mt = static_cast<int>(std::min<std::int64_t>(tile_tokens(isa), T - t0));
        panel_tile<E>(isa, mt, panels, /*ahead=*/t0 == 0)(in.data() + t0 * in.stride(0) + k0, in.stride(0),
                                                           w + p * panel_stride + k0 * kPanelRows, panel_stride, kc,
                                                           out.data() + t0 * out.stride(0) + p * kPanelRows,
                                                           out.stride(0), cols);
      }
    }
  }
}

#if SC2_HAVE_X86_SIMD
/// Widens `n` (a multiple of 8) elements to float, 8 at a time.
template <class E> SC2_TARGET_AVX2 void widen_avx2(const E* src, std::int64_t n, float* dst) noexcept {
  for (std::int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(dst + i, load8(src + i));
}
#endif

/// Widens kc steps of one panel (16 · kc elements) into float, in order.
template <class E> void widen_panel(Isa isa, const E* src, std::int64_t kc, float* dst) noexcept {
#if SC2_HAVE_X86_SIMD
  if (uses_avx2(isa)) {
    widen_avx2(src, kc * kPanelRows, dst);
    return;
  }
#endif
  (void)isa;
  for (std::int64_t i = 0; i < kc * kPanelRows; ++i) dst[i] = to_float(src[i]);
}

/// out[:, 16·p0 : 16·p1] += in · W[16·p0 : 16·p1, :]ᵀ for many tokens
/// (prefill), K block by K block: `float_block(pb, pe, k0, kc)` gives panels
/// [pb, pe) of the block's steps [k0, k0 + kc) as float panels (first panel,
/// distance between panels), widened once, and every token tile passes over
/// them while they sit in L2.
template <class FloatBlock>
void linear_panels_blocked(Isa isa, MatrixView out, ConstMatrixView in, std::int64_t N, std::int64_t p0,
                           std::int64_t p1, FloatBlock&& float_block) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1);
  const int np = tile_panels(isa);
  constexpr std::int64_t block_panels = kPackRows / kPanelRows;
  for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
    const std::int64_t kc = std::min(kPackK, K - k0);
    for (std::int64_t pb = p0; pb < p1; pb += block_panels) {
      const std::int64_t pe = std::min(p1, pb + block_panels);
      const auto [block, stride] = float_block(pb, pe, k0, kc);
      for (std::int64_t t0 = 0; t0 < T; t0 += kPanelTokens) {
        const int mt = static_cast<int>(std::min<std::int64_t>(kPanelTokens, T - t0));
        std::int64_t p = pb;
#if SC2_HAVE_X86_SIMD
        // Whole tiles on AVX-512: 6 tokens × 4 panels, 24 of the 32 registers accumulating.
        if (uses_avx512(isa) && mt == kPanelTokens)
          for (; p + kPrefillPanels512 <= pe && (p + kPrefillPanels512) * kPanelRows <= N; p += kPrefillPanels512)
            panel_tile_avx512<float, kPanelTokens, kPrefillPanels512, true>(
                in.data() + t0 * in.stride(0) + k0, in.stride(0), block + (p - pb) * stride, stride, kc,
                out.data() + t0 * out.stride(0) + p * kPanelRows, out.stride(0), kPrefillPanels512 * kPanelRows);
#endif
        for (; p < pe; p += np) {
          const int panels = static_cast<int>(std::min<std::int64_t>(np, pe - p));
          const int cols = static_cast<int>(std::min<std::int64_t>(panels * kPanelRows, N - p * kPanelRows));
          panel_tile<float>(isa, mt, panels, /*ahead=*/false)(in.data() + t0 * in.stride(0) + k0, in.stride(0),
                                                              block + (p - pb) * stride, stride, kc,
                                                              out.data() + t0 * out.stride(0) + p * kPanelRows,
                                                              out.stride(0), cols);
        }
      }
    }
  }
}

/// out[:, 16·p0 : 16·p1] += in · W[16·p0 : 16·p1, :]ᵀ for many tokens
/// (prefill): each block of kPackRows rows is widened once into float panels
/// in `pack` (f32 weights are read in place).
template <class E>
void linear_panels_packed(Isa isa, MatrixView out, ConstMatrixView in, const E* w, std::int64_t N, std::int64_t p0,
                          std::int64_t p1, float* pack) noexcept {
  const std::int64_t panel_stride = in.extent(1) * kPanelRows;
  linear_panels_blocked(isa, out, in, N, p0, p1, [&](std::int64_t pb, std::int64_t pe, std::int64_t k0, std::int64_t kc) {
    if constexpr (std::is_same_v<E, float>) {
      return std::pair<const float*, std::int64_t>(w + pb * panel_stride + k0 * kPanelRows, panel_stride);
    } else {
      for (std::int64_t p = pb; p < pe; ++p)
        widen_panel(isa, w + p * panel_stride + k0 * kPanelRows, kc, pack + (p - pb) * kc * kPanelRows);
      return std::pair<const float*, std::int64_t>(pack, kc * kPanelRows);
    }
  });
}

/// `linear_panels_packed` for W in GGML blocks: each block of kPackRows rows
/// is decoded once into float panels in `pack`.
inline void linear_blocks_packed(Isa isa, MatrixView out, ConstMatrixView in, const WeightMatrix& w, std::int64_t p0,
                                 std::int64_t p1, float* pack) noexcept {
  linear_panels_blocked(isa, out, in, w.rows, p0, p1, [&](std::int64_t pb, std::int64_t pe, std::int64_t k0, std::int64_t kc) {
    for (std::int64_t p = pb; p < pe; ++p) decode_panel_steps(isa, w, p, k0, kc, pack + (p - pb) * kc * kPanelRows);
    return std::pair<const float*, std::int64_t>(pack, kc * kPanelRows);
  });
}

/// The bf16 pair (a, b) as one 32-bit word, a in the low half (lane i of a
/// vector of pairs holds the products of steps 2i and 2i + 1).
inline std::uint32_t bf16_pair(bf16 a, bf16 b) noexcept {
  return static_cast<std::uint32_t>(a.bits) | static_cast<std::uint32_t>(b.bits) << 16;
}

/// Pairs kc steps of one bf16 panel: pairs[i · 16 + j] = (panel[2i, j],
/// panel[2i + 1, j]), the second zero past kc.
inline void pair_panel(const bf16* panel, std::int64_t kc, std::uint32_t* pairs) noexcept {
  for (std::int64_t i = 0; 2 * i < kc; ++i)
    for (int j = 0; j < kPanelRows; ++j)
      pairs[i * kPanelRows + j] =
          bf16_pair(panel[2 * i * kPanelRows + j], 2 * i + 1 < kc ? panel[(2 * i + 1) * kPanelRows + j] : bf16{});
}

/// Rounds x[:, k0 : k0 + kc] to bf16 pairs: xb[t · kc2 + i] holds
/// (x[t, k0 + 2i], x[t, k0 + 2i + 1]), the second zero past the block.
inline void round_bf16_pairs(ConstMatrixView in, std::int64_t k0, std::int64_t kc, std::uint32_t* xb) noexcept {
  const std::int64_t kc2 = (kc + 1) / 2;
  for (std::int64_t t = 0; t < in.extent(0); ++t) {
    const float* x = in.data() + t * in.stride(0) + k0;
    for (std::int64_t i = 0; i < kc2; ++i)
      xb[t * kc2 + i] = bf16_pair(bf16::round(x[2 * i]), 2 * i + 1 < kc ? bf16::round(x[2 * i + 1]) : bf16{});
  }
}

#if SC2_HAVE_X86_SIMD
SC2_AVX512_BEGIN
/// AVX-512 BF16 micro-kernel: out[t, j] += Σ_i x2[t, i] · pairs[i, j] over MT
/// tokens × NP panels of 16 rows, each term a bf16 pair dot product (two
/// products added in float); the token's pair is broadcast as a 32-bit word.
template <int MT, int NP>
SC2_TARGET_AVX512_BF16 void pair_tile_avx512_bf16(const std::uint32_t* xb, std::int64_t xb_stride,
                                                  const std::uint32_t* pairs, std::int64_t kc2, float* out,
                                                  std::int64_t out_stride, int cols) noexcept {
  __m512 acc[MT][NP];
  SC2_UNROLL for (int t = 0; t < MT; ++t) SC2_UNROLL for (int p = 0; p < NP; ++p) acc[t][p] = _mm512_setzero_ps();
  for (std::int64_t i = 0; i < kc2; ++i) {
    __m512bh wv[NP];
    SC2_UNROLL for (int p = 0; p < NP; ++p) wv[p] = (__m512bh)_mm512_loadu_si512(pairs + (p * kc2 + i) * kPanelRows);
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

/// out[:, 16·p0 : 16·p1] += bf16(in) · W[16·p0 : 16·p1, :]ᵀ for bf16 W and any T,
/// by bf16 pair dot products (the opt-in `Isa::avx512_bf16` path). Blocked as
/// `linear_panels_packed`; `scratch` holds `bf16_pair_scratch(T)` floats.
inline void linear_panels_bf16_pairs(MatrixView out, ConstMatrixView in, const bf16* w, std::int64_t N,
                                     std::int64_t p0, std::int64_t p1, float* scratch) noexcept {
  static constexpr PairTile tiles[2][kPanelTokens] = {
      {pair_tile_avx512_bf16<1, 1>, pair_tile_avx512_bf16<2, 1>, pair_tile_avx512_bf16<3, 1>,
       pair_tile_avx512_bf16<4, 1>, pair_tile_avx512_bf16<5, 1>, pair_tile_avx512_bf16<6, 1>},
      {pair_tile_avx512_bf16<1, 2>, pair_tile_avx512_bf16<2, 2>, pair_tile_avx512_bf16<3, 2>,
       pair_tile_avx512_bf16<4, 2>, pair_tile_avx512_bf16<5, 2>, pair_tile_avx512_bf16<6, 2>}};
  const std::int64_t T = in.extent(0), K = in.extent(1), panel_stride = K * kPanelRows;
  constexpr std::int64_t block_panels = kPackRows / kPanelRows;
  std::uint32_t* pack = reinterpret_cast<std::uint32_t*>(scratch);
  std::uint32_t* xb = pack + kPackRows * kPackK / 2;
  for (std::int64_t k0 = 0; k0 < K; k0 += kPackK) {
    const std::int64_t kc = std::min(kPackK, K - k0), kc2 = (kc + 1) / 2;
    round_bf16_pairs(in, k0, kc, xb);
    for (std::int64_t pb = p0; pb < p1; pb += block_panels) {
      const std::int64_t pe = std::min(p1, pb + block_panels);
      for (std::int64_t p = pb; p < pe; ++p)
        pair_panel(w + p * panel_stride + k0 * kPanelRows, kc, pack + (p - pb) * kc2 * kPanelRows);
      for (std::int64_t t0 = 0; t0 < T; t0 += kPanelTokens) {
        const int mt = static_cast<int>(std::min<std::int64_t>(kPanelTokens, T - t0));
        for (std::int64_t p = pb; p < pe; p += 2) {
          const int panels = static_cast<int>(std::min<std::int64_t>(2, pe - p));
          const int cols = static_cast<int>(std::min<std::int64_t>(panels * kPanelRows, N - p * kPanelRows));
          tiles[panels - 1][mt - 1](xb + t0 * kc2, kc2, pack + (p - pb) * kc2 * kPanelRows, kc2,
                                    out.data() + t0 * out.stride(0) + p * kPanelRows, out.stride(0), cols);
        }
      }
    }
  }
}
#endif

/// Floats of per-thread scratch the bf16 pair path needs for T tokens: a
/// block of weight pairs, then the block's activation pairs.
constexpr std::size_t bf16_pair_scratch(std::int64_t T) noexcept {
  return static_cast<std::size_t>(kPackRows * kPackK / 2 + T * kPackK / 2);
}

/// Bytes of scratch the integer path's AMX tiles take per thread (none where they are not compiled).
inline constexpr std::size_t kVnniAmxScratch =
#if SC2_HAVE_AMX
    kAmxInt8Scratch;
#else
    0;
#endif

/// True when `isa` runs a `dtype` weight on AMX tiles.
constexpr bool runs_on_amx(Isa isa, DType dtype) noexcept { return SC2_HAVE_AMX && uses_amx(isa) && dtype == DType::bf16; }
/// True when `isa` runs `weight` on AMX tiles (bf16 elements, not blocks).
constexpr bool runs_on_amx(Isa isa, const WeightMatrix& weight) noexcept {
  return !weight.blocks && runs_on_amx(isa, weight.dtype);
}

/// Size in floats of the per-thread scratch `linear_panel_range` needs for T
/// tokens of K of a `dtype` weight on `isa` (none when it reads W directly).
/// On AMX it holds the split activations too; `run_linear` splits them once,
/// for all threads, and asks each for `kAmxTileScratch` only.
constexpr std::size_t linear_scratch(Isa isa, DType dtype, std::int64_t T, std::int64_t K) noexcept {
  if (runs_on_amx(isa, dtype)) return kAmxTileScratch + (split_elements(T, K, amx_parts(isa)) + 1) / 2;
  if (isa == Isa::avx512_bf16 && dtype == DType::bf16) return bf16_pair_scratch(T);
  if (T <= kDirectTokens || dtype == DType::f32) return 0;
  return static_cast<std::size_t>(kPackK * kPackRows);
}
/// `linear_scratch` for `weight`: blocks decode into the same float panels as bf16 and f16 widen into.
/// On the integer path it holds the int8 activations, which `run_linear` makes once for all threads.
constexpr std::size_t linear_scratch(Isa isa, const WeightMatrix& weight, std::int64_t T, std::int64_t K) noexcept {
  if (weight.blocks && isa == Isa::avx512_vnni) return (ActivationBlocks::bytes(T, K) + kVnniAmxScratch) / sizeof(float) + 1;
  if (weight.blocks) return T <= kDirectTokens ? 0 : static_cast<std::size_t>(kPackK * kPackRows);
  return linear_scratch(isa, weight.dtype, T, K);
}

/// out[:, n0:n1] = bias[n0:n1] (zeros without a bias), before the products are added.
inline void fill_bias(MatrixView out, Vector<const float, Host> bias, std::int64_t n0, std::int64_t n1) noexcept {
  for (std::int64_t t = 0; t < out.extent(0); ++t)
    for (std::int64_t n = n0; n < n1; ++n) out(t, n) = bias.empty() ? 0.0f : bias(n);
}

#if SC2_HAVE_AMX
/// The split of `in` that AMX reads on `isa`, stored at `data` (`split_elements` of it), not yet filled.
inline SplitActivations split_activations(Isa isa, ConstMatrixView in, bf16* data) noexcept {
  return {data, amx_parts(isa), round_up(in.extent(0), kTileRows), round_up(in.extent(1), kTileK)};
}

/// out[:, n0:n1] = A · W[n0:n1, :]ᵀ + bias[n0:n1] on AMX for a bf16 panel-packed
/// W and its split activations `a`, n0 a multiple of 16; `tiles` holds
/// `kAmxTileScratch` floats.
inline void amx_panel_range(MatrixView out, const SplitActivations& a, const WeightMatrix& weight,
                            Vector<const float, Host> bias, std::int64_t n0, std::int64_t n1, float* tiles) noexcept {
  if (n0 >= n1) return;
  fill_bias(out, bias, n0, n1);
  amx_linear_panels(out, a, static_cast<const bf16*>(weight.data), weight.cols, n0 / kPanelRows,
                    (n1 + kPanelRows - 1) / kPanelRows, tiles);
}
#endif

/// out[:, n0:n1] = in · W[n0:n1, :]ᵀ + bias[n0:n1] on `isa` for a panel-packed
/// W, n0 a multiple of 16: one thread's share of `run_linear`. `scratch`
/// holds `linear_scratch(isa, weight, T, K)` floats.
inline void linear_panel_range(Isa isa, MatrixView out, ConstMatrixView in, const WeightMatrix& weight,
                               Vector<const float, Host> bias, std::int64_t n0, std::int64_t n1,
                               std::span<float> scratch) noexcept {
  if (n0 >= n1) return;
  SC2_ASSERT(weight.layout == WeightLayout::panels16 && n0 % kPanelRows == 0);
  SC2_ASSERT(scratch.size() >= linear_scratch(isa, weight, in.extent(0), in.extent(1)));
  const std::int64_t T = in.extent(0), N = weight.rows;
#if SC2_HAVE_AMX
  if (runs_on_amx(isa, weight)) {
    const SplitActivations a = split_activations(isa, in, reinterpret_cast<bf16*>(scratch.data() + kAmxTileScratch));
    split_activation_rows(in, a, 0, split_rows(T));
    amx_panel_range(out, a, weight, bias, n0, n1, scratch.data());
    return;
  }
#endif
  fill_bias(out, bias, n0, n1);
  const std::int64_t p0 = n0 / kPanelRows, p1 = (n1 + kPanelRows - 1) / kPanelRows;
  if (weight.blocks) {
#if SC2_HAVE_X86_SIMD
    if (isa == Isa::avx512_vnni) {
      auto* bytes = reinterpret_cast<std::byte*>(scratch.data());
      const ActivationBlocks a = ActivationBlocks::at(bytes + kVnniAmxScratch, T, in.extent(1));
      quantize_activations_avx512(in, a, 0, T);
      linear_blocks_vnni(out, a, weight, p0, p1, kVnniAmxScratch ? bytes : nullptr);
      return;
    }
#endif
    if (T <= kDirectTokens) linear_blocks_direct(isa, out, in, weight, p0, p1);
    else linear_blocks_packed(isa, out, in, weight, p0, p1, scratch.data());
    return;
  }
#if SC2_HAVE_X86_SIMD
  if (isa == Isa::avx512_bf16 && weight.dtype == DType::bf16) {
    linear_panels_bf16_pairs(out, in, static_cast<const bf16*>(weight.data), N, p0, p1, scratch.data());
    return;
  }
#endif
  const auto run = [&]<class E>(const E* w) {
    if (T <= kDirectTokens) linear_panels_direct(isa, out, in, w, N, p0, p1);
    else linear_panels_packed(isa, out, in, w, N, p0, p1, scratch.data());
  };
  switch (weight.dtype) {
    case DType::f32: run(static_cast<const float*>(weight.data)); break;
    case DType::bf16: run(static_cast<const bf16*>(weight.data)); break;
    case DType::f16: run(static_cast<const f16*>(weight.data)); break;
  }
}

/// Packs rows [16·p0, 16·p1) of the row-major (N, K) matrix `src` into
/// panels of dtype `E` at `dst` (the whole packed matrix), converting
/// through float where the dtypes differ; rows past N are zero.
template <class E, class S>
void pack_panels(const S* src, std::int64_t N, std::int64_t K, std::int64_t p0, std::int64_t p1, E* dst) noexcept {
  constexpr std::int64_t kb = 64;  // columns per pass: 16 rows × 64 steps stay in L1
  for (std::int64_t p = p0; p < p1; ++p) {
    E* panel = dst + p * K * kPanelRows;
    for (std::int64_t k0 = 0; k0 < K; k0 += kb) {
      const std::int64_t k1 = std::min(K, k0 + kb);
      for (int j = 0; j < kPanelRows; ++j) {
        const std::int64_t r = p * kPanelRows + j;
        if (r >= N) {
          for (std::int64_t k = k0; k < k1; ++k) panel[k * kPanelRows + j] = E{};
          continue;
        }
        const S* row = src + r * K;
        for (std::int64_t k = k0; k < k1; ++k) {
          if constexpr (std::is_same_v<E, S>) panel[k * kPanelRows + j] = row[k];
          else panel[k * kPanelRows + j] = from_float<E>(to_float(row[k]));
        }
      }
    }
  }
}

#if SC2_HAVE_X86_SIMD
/// Stores 8 floats that are exactly representable in E as 8 elements of E.
SC2_TARGET_AVX2 inline void store8_exact(float* p, __m256 v) noexcept { _mm256_storeu_ps(p, v); }
/// bf16: the upper halves of the floats, packed to 16 bits.
SC2_TARGET_AVX2 inline void store8_exact(bf16* p, __m256 v) noexcept {
  const __m256i halves = _mm256_srli_epi32(_mm256_castps_si256(v), 16);
  const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(halves, halves), 0x08);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
}
/// f16: converted back (exact for values that came from f16).
SC2_TARGET_AVX2 inline void store8_exact(f16* p, __m256 v) noexcept {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
}

/// `pack_panels` for a matrix kept in its own dtype, 8 rows × 8 columns at a
/// time: widened (exactly), transposed in registers, stored back narrow.
template <class E>
SC2_TARGET_AVX2 void pack_panels_avx2(const E* src, std::int64_t N, std::int64_t K, std::int64_t p0, std::int64_t p1,
                                      E* dst) noexcept {
  const std::int64_t K8 = K / 8 * 8;
  for (std::int64_t p = p0; p < p1; ++p) {
    E* panel = dst + p * K * kPanelRows;
    for (int j0 = 0; j0 < kPanelRows; j0 += 8) {
      const std::int64_t first = p * kPanelRows + j0;
      const int valid = static_cast<int>(std::clamp<std::int64_t>(N - first, 0, 8));
      for (std::int64_t k = 0; k < K8; k += 8) {
        __m256 block[8];
        for (int i = 0; i < 8; ++i) block[i] = i < valid ? load8(src + (first + i) * K + k) : _mm256_setzero_ps();
        transpose8(block);
        for (int i = 0; i < 8; ++i) store8_exact(panel + (k + i) * kPanelRows + j0, block[i]);
      }
      for (std::int64_t k = K8; k < K; ++k)
        for (int i = 0; i < 8; ++i) panel[k * kPanelRows + j0 + i] = i < valid ? src[(first + i) * K + k] : E{};
    }
  }
}
#endif

}  // namespace detail

/// Packs the row-major host matrix `src` (f32, bf16 or f16) into the panels
/// the CPU kernels read, in dtype `to`, splitting the panels over the threads.
inline OwnedWeight<Host> pack_weight(Context& ctx, const WeightMatrix& src, DType to) {
  SC2_CHECK(src.layout == WeightLayout::row_major && !src.blocks, "pack_weight: the source must be row-major elements");
  OwnedWeight<Host> packed;
  packed.view = WeightMatrix{to, WeightLayout::panels16, nullptr, src.rows, src.cols, std::nullopt};
  packed.storage = Buffer<std::byte>(packed.view.bytes());
  packed.view.data = packed.storage.data();
  const std::int64_t panels = packed.view.stored_rows() / kPanelRows;
  const auto pack = [&]<class E>(E* dst) {
    ctx.pool().parallel_for(panels, 1, [&](std::int64_t p0, std::int64_t p1) {
#if SC2_HAVE_X86_SIMD
      if (uses_avx2(ctx.isa()) && src.dtype == to) {
        detail::pack_panels_avx2(static_cast<const E*>(src.data), src.rows, src.cols, p0, p1, dst);
        return;
      }
#endif
      switch (src.dtype) {
        case DType::f32: detail::pack_panels(static_cast<const float*>(src.data), src.rows, src.cols, p0, p1, dst); break;
        case DType::bf16: detail::pack_panels(static_cast<const bf16*>(src.data), src.rows, src.cols, p0, p1, dst); break;
        case DType::f16: detail::pack_panels(static_cast<const f16*>(src.data), src.rows, src.cols, p0, p1, dst); break;
      }
    });
  };
  switch (to) {
    case DType::f32: pack(reinterpret_cast<float*>(packed.storage.data())); break;
    case DType::bf16: pack(reinterpret_cast<bf16*>(packed.storage.data())); break;
    case DType::f16: pack(reinterpret_cast<f16*>(packed.storage.data())); break;
  }
  return packed;
}

/// Packs the row-major host matrix `src` (f32, bf16 or f16 elements, or GGML
/// blocks) into panels of blocks of format `to` (quant/panels.hpp), splitting
/// the panels over the threads. Blocks already in `to` are moved, not
/// requantized; other rows are widened to float (blocks dequantized) and
/// quantized by ggml's reference quantizer. `src.cols` must be a whole number
/// of `to`'s blocks.
inline OwnedWeight<Host> pack_blocks(Context& ctx, const WeightMatrix& src, quant::Format to) {
  SC2_CHECK(src.layout == WeightLayout::row_major, "pack_blocks: the source must be row-major");
  const std::int64_t B = quant::block_elements(to), K = src.cols;
  SC2_CHECK(K % B == 0, "pack_blocks: rows of {} weights are not whole {} blocks of {}", K, quant::format_name(to), B);
  OwnedWeight<Host> packed;
  packed.view = WeightMatrix{DType::f32, WeightLayout::panels16, nullptr, src.rows, K, to};
  packed.storage = Buffer<std::byte>(packed.view.bytes());
  packed.view.data = packed.storage.data();
  const std::size_t row_bytes = packed.view.row_bytes(), block_bytes = quant::block_bytes(to);
  const std::size_t panel_block = quant::panel_block_bytes(to);
  const auto* source = static_cast<const std::byte*>(src.data);
  ctx.pool().parallel_for(packed.view.stored_rows() / kPanelRows, 1, [&](std::int64_t p0, std::int64_t p1) {
    Buffer<std::byte> requantized(src.blocks == to ? 0 : kPanelRows * row_bytes);
    Buffer<float> widened(src.blocks == to ? 0 : static_cast<std::size_t>(K));
    for (std::int64_t p = p0; p < p1; ++p) {
      const std::byte* rows[kPanelRows] = {};
      for (int j = 0; j < kPanelRows; ++j) {
        const std::int64_t r = p * kPanelRows + j;
        if (r >= src.rows) continue;  // padding: zero blocks
        if (src.blocks == to) {
          rows[j] = source + static_cast<std::size_t>(r) * row_bytes;
          continue;
        }
        src.row_to_float(r, widened.data());
        std::byte* row = requantized.data() + static_cast<std::size_t>(j) * row_bytes;
        quant::quantize(to, widened.data(), row, K);
        rows[j] = row;
      }
      std::byte* dst = packed.storage.data() + static_cast<std::size_t>(p) * kPanelRows * row_bytes;
      for (std::int64_t b = 0; b < K / B; ++b) {
        const std::byte* blocks[kPanelRows];
        for (int j = 0; j < kPanelRows; ++j) blocks[j] = rows[j] ? rows[j] + static_cast<std::size_t>(b) * block_bytes : nullptr;
        quant::interleave_blocks(to, blocks, dst + static_cast<std::size_t>(b) * panel_block);
      }
    }
  });
  return packed;
}

/// The CPU backend's hook for model loading: a checkpoint matrix, row-major
/// in host memory, becomes panels of dtype `to` (see `pack_weight`).
inline OwnedWeight<Host> upload_matrix(Context& ctx, const WeightMatrix& src, DType to) {
  return pack_weight(ctx, src, to);
}

/// The same for a matrix kept in GGML blocks of format `to` (see `pack_blocks`).
inline OwnedWeight<Host> upload_matrix(Context& ctx, const WeightMatrix& src, quant::Format to) {
  return pack_blocks(ctx, src, to);
}

/// CPU implementation of `ops::linear`.
inline void run_linear(Context& ctx, MatrixView out, ConstMatrixView in, const WeightMatrix& weight,
                       Vector<const float, Host> bias) {
  SC2_CHECK(weight.layout == WeightLayout::panels16,
            "linear: the CPU backend reads weights packed into panels (cpu::pack_weight); this one is row-major");
  const std::int64_t T = in.extent(0), K = in.extent(1);
  // Rows are split in whole register tiles of panels, one contiguous range per thread.
  const std::int64_t grain = kPanelRows * detail::tile_panels(ctx.isa());
#if SC2_HAVE_AMX
  if (detail::runs_on_amx(ctx.isa(), weight)) {
    // The activations are split into bf16 parts once, for every thread, then each runs its panels.
    const detail::SplitActivations a = detail::split_activations(
        ctx.isa(), in,
        reinterpret_cast<bf16*>(
            ctx.shared_scratch(detail::split_elements(T, K, detail::amx_parts(ctx.isa())) * sizeof(bf16)).data()));
    ctx.pool().parallel_for(detail::split_rows(T), 1, [&](std::int64_t t0, std::int64_t t1) { detail::split_activation_rows(in, a, t0, t1); });
    ctx.pool().parallel_for(weight.rows, grain, [&](std::int64_t n0, std::int64_t n1, int thread) {
      detail::amx_panel_range(out, a, weight, bias, n0, n1, ctx.scratch(thread, detail::kAmxTileScratch).data());
    });
    return;
  }
#endif
#if SC2_HAVE_X86_SIMD
  if (weight.blocks && ctx.isa() == Isa::avx512_vnni) {
    // The activations are quantized to int8 blocks once, for every thread, then each runs its panels.
    const detail::ActivationBlocks a =
        detail::ActivationBlocks::at(ctx.shared_scratch(detail::ActivationBlocks::bytes(T, K)).data(), T, K);
    ctx.pool().parallel_for(T, 1, [&](std::int64_t t0, std::int64_t t1) { detail::quantize_activations_avx512(in, a, t0, t1); });
    ctx.pool().parallel_for(weight.rows, grain, [&](std::int64_t n0, std::int64_t n1, int thread) {
      if (n0 >= n1) return;
      detail::fill_bias(out, bias, n0, n1);
      std::byte* amx = detail::kVnniAmxScratch
                           ? reinterpret_cast<std::byte*>(ctx.scratch(thread, detail::kVnniAmxScratch / sizeof(float)).data())
                           : nullptr;
      detail::linear_blocks_vnni(out, a, weight, n0 / kPanelRows, (n1 + kPanelRows - 1) / kPanelRows, amx);
    });
    return;
  }
#endif
  const std::size_t scratch_size = detail::linear_scratch(ctx.isa(), weight, T, K);
  ctx.pool().parallel_for(weight.rows, grain, [&](std::int64_t n0, std::int64_t n1, int thread) {
    const std::span<float> scratch = scratch_size ? ctx.scratch(thread, scratch_size) : std::span<float>();
    detail::linear_panel_range(ctx.isa(), out, in, weight, bias, n0, n1, scratch);
  });
}

}  // namespace sc2::cpu
