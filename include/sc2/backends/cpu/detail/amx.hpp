#pragma once
/// \file
/// CPU linear layer on AMX tiles, for bf16 weights:
///
///     out (T, N) = bias + in (T, K) · Wᵀ,   W (N, K) bf16 in 16-row panels
///
/// AMX multiplies bf16 by bf16 into float32 tiles: `tdpbf16ps` adds, into each
/// element of a 16 × 16 float tile C, the 32 products of a 16 × 32 bf16 tile A
/// (16 tokens, 32 k) and a 32 × 16 bf16 tile B (stored as 16 rows of k pairs).
/// A product of two bf16 numbers is exact in float32, so the arithmetic is
/// float32 accumulation of exact products once the activations are bf16.
///
/// Activations are float. The `amx` path splits each into three bf16 parts,
///
///     x = x₀ + x₁ + x₂,   x₀ = bf16(x), x₁ = bf16(x − x₀), x₂ = x − x₀ − x₁
///
/// each rounded to nearest, so that 8 + 8 + 8 bits hold the 24 of a float
/// exactly (x₂ is exact: two roundings leave at most 8 significant bits), and
/// runs three tile products: every product x·w is computed exactly, and only
/// the float32 accumulation rounds, as in the FMA kernels. (bf16 has float's
/// exponent range, so the parts stay normal unless x is below ~1e-33, where
/// AMX reads x₂ as zero.) The `amx_bf16` path keeps x₀ alone: the activations
/// rounded to bf16, as engines that run bf16 models in bf16 do, three times
/// fewer tile products.
///
/// Layout. A: the parts of the activations, each (T padded to 16) × (K padded
/// to 32) bf16, row-major, zeros in the padding. B: 32 k of one panel, rows of
/// pairs (W[n, 2i], W[n, 2i + 1]) for its 16 rows n, interleaved from the
/// panel's steps on the fly into a 1 KiB tile buffer (one permute per row).
/// C: tiles summed from zero over one K block of 1024 k, stored to a staging
/// tile and added into `out`.
///
/// Batch invariance: every element is
///
///     out[t, n] = bias[n];  for each K block [k0, k0 + 1024):  out[t, n] += C[t, n],
///     C = 0;  for each 32-k step in order:  for each part:  C += tdpbf16ps(A, B)
///
/// whatever T, the token's row in its tile, and the thread; this path serves
/// every T (decode too, where its arithmetic runs far below the memory bound),
/// so a sequence gets the same bits alone, in any batch, and in chunks of any
/// size. (Summing per block, as the FMA kernels do, keeps the error of
/// K = 12288 below theirs: 1.1e-6 RMS against 1.7e-6 on unit activations.)

#include <sc2/backends/cpu/detail/cpu_features.hpp>
#include <sc2/backends/cpu/detail/simd.hpp>
#include <sc2/core/dtype.hpp>
#include <sc2/core/tensor.hpp>

#include <algorithm>
#include <cstdint>

namespace sc2::cpu::detail {

/// Rows of every tile: tokens of an A or C tile, k pairs of a B tile, the 16 rows of a panel.
inline constexpr int kTileRows = 16;
/// k of one tile step: 16 pairs of bf16, 64 bytes per A row.
inline constexpr std::int64_t kTileK = 32;
/// Tile steps per K block: 32 steps, 1024 k. Each block's products are summed
/// in tiles from zero and then added into `out`, as the FMA kernels add their K
/// blocks. Measured on the 3B shapes (one Xeon core), blocks of 128, 256 and
/// 1024 k ran prefill at 290, 340 and 460 GFLOP/s: storing and adding the
/// tiles, and restarting the tile pipeline, is what a block costs.
inline constexpr std::int64_t kAmxBlockSteps = 32;
/// Panels whose B tiles for one K block are paired together (1 MiB, kept in
/// L2): every pair of token tiles passes over all of them.
inline constexpr std::int64_t kAmxBlockPanels = 32;
/// Tile steps of B paired at a time when decode streams a panel pair (8 KiB in L1).
inline constexpr std::int64_t kAmxChunkSteps = 4;

/// bf16 parts each activation is split into on `isa`: 3 (exact products) on
/// `amx`, 1 (activations rounded to bf16) on `amx_bf16`.
constexpr int amx_parts(Isa isa) noexcept { return isa == Isa::amx_bf16 ? 1 : 3; }

/// `value` rounded up to a multiple of `multiple`.
constexpr std::int64_t round_up(std::int64_t value, std::int64_t multiple) noexcept {
  return (value + multiple - 1) / multiple * multiple;
}

/// The activations of one linear call as AMX reads them: `parts` bf16 parts,
/// each `rows` (T padded to 16) × `stride` (K padded to 32), stored as A
/// tiles: for each part, token tile and k step in that order, the 16 × 32
/// tile's 1 KiB contiguous, so that a tile load reads one run of memory.
struct SplitActivations {
  bf16* data = nullptr;    ///< part 0, then part 1, ...
  int parts = 1;           ///< bf16 parts per activation (1 or 3)
  std::int64_t rows = 0;   ///< tokens, padded to 16
  std::int64_t stride = 0; ///< k per row, padded to 32

  /// The tile of part s, tokens [t, t + 16) (t a multiple of 16), k step `step`.
  bf16* tile(int s, std::int64_t t, std::int64_t step) const noexcept {
    return data + ((s * (rows / kTileRows) + t / kTileRows) * (stride / kTileK) + step) * kTileRows * kTileK;
  }
  /// Where element (t, k) of part s lives.
  bf16* at(int s, std::int64_t t, std::int64_t k) const noexcept {
    return tile(s, t - t % kTileRows, k / kTileK) + t % kTileRows * kTileK + k % kTileK;
  }
};

/// Tokens whose rows the split must fill for T tokens: the real ones where the
/// kernel configures its tiles to exactly T rows (T <= 32, decode), every
/// padded row (zeros past T) where it runs whole 16-row tiles.
constexpr std::int64_t split_rows(std::int64_t T) noexcept {
  return T <= 2 * kTileRows ? T : round_up(T, kTileRows);
}

/// bf16 elements the split activations of T tokens of K take with `parts` parts.
constexpr std::size_t split_elements(std::int64_t T, std::int64_t K, int parts) noexcept {
  return static_cast<std::size_t>(parts * round_up(T, kTileRows) * round_up(K, kTileK));
}

/// Floats of per-thread scratch the AMX kernel needs besides the split
/// activations: the B tiles of `kAmxBlockPanels` panels for one K block, and
/// the four C tiles of each of their panel pairs, staged between runs.
inline constexpr std::size_t kAmxTileScratch = static_cast<std::size_t>(
    kAmxBlockPanels * kAmxBlockSteps * kTileRows * kTileK / 2 + kAmxBlockPanels / 2 * 4 * kTileRows * kTileRows);

/// Tile steps a pair of token tiles runs over one panel pair before the next
/// pair, in prefill: the A tiles of those steps (32 KiB with one part, 24 KiB
/// with three) stay in L1 while every panel pair of the group passes over
/// them, and each pair's C tiles wait in scratch between runs. Measured on the
/// 3B c_fc shape at 2048 tokens (2 threads): 16 steps ran 7% faster than the
/// whole 32-step block on `amx_bf16`, 4 steps 10% faster on `amx` (8: slower).
constexpr std::int64_t amx_inner_steps(int parts) noexcept { return parts == 1 ? 16 : 4; }

#if SC2_HAVE_AMX
/// The tile configuration of every kernel here: eight tiles of 16 rows × 64 bytes
/// (tiles 0–3 accumulate C, 4–5 hold A, 6–7 hold B).
struct alignas(64) AmxTileConfig {
  std::uint8_t palette = 1;            ///< palette 1: eight 1 KiB tiles
  std::uint8_t start_row = 0;          ///< restart row after an interrupted load or store
  std::uint8_t reserved[14] = {};      ///< zero
  std::uint16_t bytes_per_row[16] = {64, 64, 64, 64, 64, 64, 64, 64};  ///< tile widths
  std::uint8_t rows[16] = {16, 16, 16, 16, 16, 16, 16, 16};            ///< tile heights
};

SC2_AVX512_BEGIN
/// Splits rows [t0, t1) of the padded activations `a`: row t of part s is
/// the s-th bf16 part of in[t, :] (see the file comment), zeros past K and
/// for t >= T. `vcvtneps2bf16` rounds to nearest even.
SC2_TARGET_AMX inline void split_activation_rows(ConstMatrixView in, const SplitActivations& a, std::int64_t t0,
                                                 std::int64_t t1) noexcept {
  const std::int64_t T = in.extent(0), K = in.extent(1);
  for (std::int64_t t = t0; t < t1; ++t) {
    const float* x = in.data() + t * in.stride(0);
    for (std::int64_t k = 0; k < a.stride; k += 16) {
      const __mmask16 valid = t >= T ? __mmask16(0)
                              : k + 16 <= K ? __mmask16(0xFFFF)
                              : k < K ? __mmask16((1u << (K - k)) - 1)
                                      : __mmask16(0);
      __m512 rest = _mm512_maskz_loadu_ps(valid, x + k);
      for (int s = 0; s < a.parts; ++s) {
        const __m256bh part = _mm512_cvtneps_pbh(rest);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(a.at(s, t, k)), (__m256i)part);
        rest = _mm512_sub_ps(rest, _mm512_cvtpbh_ps(part));
      }
    }
  }
}

/// Interleaves 32 k of one panel, from `panel` (its step k0) with `steps`
/// steps left in it (fewer than 32 at the end of K: zeros past them), into a
/// B tile: row i holds the pairs (W[n, k0 + 2i], W[n, k0 + 2i + 1]), n = 0..15.
/// Steps 2i and 2i + 1 are 64 contiguous bytes of the panel; one permute pairs them.
SC2_TARGET_AMX inline void pair_tile(const bf16* panel, std::int64_t steps, bf16* tile) noexcept {
  const __m512i pairs = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                         21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  for (int i = 0; i < kTileRows; ++i) {
    const std::int64_t left = std::clamp<std::int64_t>((steps - 2 * i) * kTileRows, 0, 2 * kTileRows);
    const __m512i two_steps = left == 2 * kTileRows ? _mm512_loadu_si512(panel + 2 * i * kTileRows)
                                                    : _mm512_maskz_loadu_epi16(_cvtu32_mask32(left == 0 ? 0u : (1u << left) - 1u),
                                                                               panel + 2 * i * kTileRows);
    _mm512_storeu_si512(tile + i * 2 * kTileRows, _mm512_permutexvar_epi16(pairs, two_steps));
  }
}
SC2_AVX512_END

/// Tile products of MT token tiles × NT panels over `steps` tile steps:
/// C[m][n] (+)= Σ over the steps s and the parts of A[part][tokens t0 + 16m,
/// step k_step + s] · B[n][s]. `first` starts C from zero; else C goes on from
/// the tiles stored at `c_in` if given (a stored tile reloads to the same
/// bits), or from the tiles as they are. A non-null `c` stores C there after
/// (16 × 16 floats each, tile m·2 + n). `b` holds B[0][s] at s · 512 elements
/// and B[1][s] `panel_stride` elements after.
template <int MT, int NT, int Parts>
SC2_TARGET_AMX void amx_steps(const SplitActivations& a, std::int64_t t0, std::int64_t k_step, const bf16* b,
                              std::int64_t panel_stride, std::int64_t steps, bool first, float* c,
                              const float* c_in = nullptr) noexcept {
  constexpr std::int64_t tile_elements = kTileRows * kTileK, c_tile = kTileRows * kTileRows;
  constexpr std::int64_t c_stride = kTileRows * static_cast<std::int64_t>(sizeof(float));
  if (first) {
    _tile_zero(0);
    if constexpr (NT == 2) _tile_zero(1);
    if constexpr (MT == 2) _tile_zero(2);
    if constexpr (MT == 2 && NT == 2) _tile_zero(3);
  } else if (c_in) {
    _tile_loadd(0, c_in, c_stride);
    if constexpr (NT == 2) _tile_loadd(1, c_in + c_tile, c_stride);
    if constexpr (MT == 2) _tile_loadd(2, c_in + 2 * c_tile, c_stride);
    if constexpr (MT == 2 && NT == 2) _tile_loadd(3, c_in + 3 * c_tile, c_stride);
  }
  for (std::int64_t s = 0; s < steps; ++s) {
    _tile_loadd(6, b + s * tile_elements, 64);
    if constexpr (NT == 2) _tile_loadd(7, b + panel_stride + s * tile_elements, 64);
    SC2_UNROLL for (int part = 0; part < Parts; ++part) {
      _tile_loadd(4, a.tile(part, t0, k_step + s), 64);
      if constexpr (MT == 2) _tile_loadd(5, a.tile(part, t0 + kTileRows, k_step + s), 64);
      _tile_dpbf16ps(0, 4, 6);
      if constexpr (NT == 2) _tile_dpbf16ps(1, 4, 7);
      if constexpr (MT == 2) _tile_dpbf16ps(2, 5, 6);
      if constexpr (MT == 2 && NT == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  if (!c) return;
  _tile_stored(0, c, c_stride);
  if constexpr (NT == 2) _tile_stored(1, c + c_tile, c_stride);
  if constexpr (MT == 2) _tile_stored(2, c + 2 * c_tile, c_stride);
  if constexpr (MT == 2 && NT == 2) _tile_stored(3, c + 3 * c_tile, c_stride);
}

/// `amx_steps` for run-time MT, NT (1 or 2) and parts (1 or 3).
inline void amx_steps_dispatch(int mt, int nt, const SplitActivations& a, std::int64_t t0, std::int64_t k_step,
                               const bf16* b, std::int64_t panel_stride, std::int64_t steps, bool first,
                               float* c, const float* c_in = nullptr) noexcept {
  const auto run = [&]<int Parts>() {
    if (mt == 2 && nt == 2) amx_steps<2, 2, Parts>(a, t0, k_step, b, panel_stride, steps, first, c, c_in);
    else if (mt == 2) amx_steps<2, 1, Parts>(a, t0, k_step, b, panel_stride, steps, first, c, c_in);
    else if (nt == 2) amx_steps<1, 2, Parts>(a, t0, k_step, b, panel_stride, steps, first, c, c_in);
    else amx_steps<1, 1, Parts>(a, t0, k_step, b, panel_stride, steps, first, c, c_in);
  };
  if (a.parts == 1) run.template operator()<1>();
  else run.template operator()<3>();
}

SC2_AVX512_BEGIN
/// out[t0 + i, col + j] += tile[i, j] for the rows below T and columns below N.
SC2_TARGET_AMX inline void add_tile(MatrixView out, std::int64_t t0, std::int64_t col, const float* tile) noexcept {
  const std::int64_t rows = std::min<std::int64_t>(kTileRows, out.extent(0) - t0);
  const std::int64_t cols = std::min<std::int64_t>(kTileRows, out.extent(1) - col);
  const __mmask16 valid = cols == kTileRows ? __mmask16(0xFFFF) : __mmask16((1u << cols) - 1);
  for (std::int64_t i = 0; i < rows; ++i) {
    float* o = out.data() + (t0 + i) * out.stride(0) + col;
    _mm512_mask_storeu_ps(o, valid, _mm512_add_ps(_mm512_maskz_loadu_ps(valid, o), _mm512_loadu_ps(tile + i * kTileRows)));
  }
}
SC2_AVX512_END

/// out[:, 16·p0 : 16·p1] += A · W[16·p0 : 16·p1, :]ᵀ on AMX, for bf16 panels
/// `w` of N rows × K and the split activations `a` (out already holds the
/// bias). For each group of `kAmxBlockPanels` panels and each K block, the
/// group's B tiles are paired once into `scratch` (`kAmxTileScratch` floats);
/// then each pair of token tiles runs over the group two panels at a time,
/// `amx_inner_steps` steps per panel pair, and adds the block sums into `out`.
SC2_TARGET_AMX inline void amx_linear_panels(MatrixView out, const SplitActivations& a, const bf16* w, std::int64_t K,
                                             std::int64_t p0, std::int64_t p1, float* scratch) noexcept {
  const std::int64_t T = out.extent(0), total_steps = (K + kTileK - 1) / kTileK;
  constexpr std::int64_t tile_elements = kTileRows * kTileK;
  bf16* b = reinterpret_cast<bf16*>(scratch);
  float* sums = scratch + kAmxBlockPanels * kAmxBlockSteps * tile_elements / 2;
  AmxTileConfig config;
  if (T <= 2 * kTileRows) {
    // Decode rows: one pair of token tiles, so each pair of panels is streamed
    // from memory once, K block after K block, and within a block in chunks of
    // `kAmxChunkSteps` steps paired into L1 (the same sums in the same order:
    // the tiles carry C from chunk to chunk). The A and C tiles have exactly
    // the rows of the tokens: a product over fewer rows takes less time, and
    // rows past T are neither split nor read.
    const auto first = static_cast<std::uint8_t>(std::min<std::int64_t>(T, kTileRows));
    const auto second = static_cast<std::uint8_t>(T > kTileRows ? T - kTileRows : kTileRows);
    config.rows[0] = config.rows[1] = config.rows[4] = first;
    config.rows[2] = config.rows[3] = config.rows[5] = second;
    _tile_loadconfig(&config);
    const int mt = T > kTileRows ? 2 : 1;
    for (std::int64_t p = p0; p < p1; p += 2) {
      const int nt = static_cast<int>(std::min<std::int64_t>(2, p1 - p));
      for (std::int64_t k_step = 0; k_step < total_steps; k_step += kAmxBlockSteps) {
        const std::int64_t block_end = std::min(total_steps, k_step + kAmxBlockSteps);
        for (std::int64_t c0 = k_step; c0 < block_end; c0 += kAmxChunkSteps) {
          const std::int64_t steps = std::min(kAmxChunkSteps, block_end - c0);
          for (int n = 0; n < nt; ++n)
            for (std::int64_t s = 0; s < steps; ++s) {
              const std::int64_t k = (c0 + s) * kTileK;
              const bf16* panel = w + (p + n) * K * kTileRows + k * kTileRows;
              // Asks for the same step of the next chunk: one chunk ahead was the fastest
              // distance measured (none: half the bandwidth; four chunks: 20% less).
              for (std::int64_t line = 0; line < tile_elements * 2; line += 64)
                _mm_prefetch(reinterpret_cast<const char*>(panel + kAmxChunkSteps * tile_elements) + line, _MM_HINT_T0);
              pair_tile(panel, K - k, b + (n * steps + s) * tile_elements);
            }
          const bool last = c0 + steps == block_end;
          amx_steps_dispatch(mt, nt, a, 0, c0, b, steps * tile_elements, steps, c0 == k_step, last ? sums : nullptr);
        }
        for (int m = 0; m < mt; ++m)
          for (int n = 0; n < nt; ++n)
            add_tile(out, m * kTileRows, (p + n) * kTileRows, sums + (m * 2 + n) * kTileRows * kTileRows);
      }
    }
    _tile_release();
    return;
  }
  _tile_loadconfig(&config);
  for (std::int64_t g0 = p0; g0 < p1; g0 += kAmxBlockPanels) {
    const std::int64_t g1 = std::min(p1, g0 + kAmxBlockPanels);
    for (std::int64_t k_step = 0; k_step < total_steps; k_step += kAmxBlockSteps) {
      const std::int64_t steps = std::min(kAmxBlockSteps, total_steps - k_step);
      for (std::int64_t p = g0; p < g1; ++p)
        for (std::int64_t s = 0; s < steps; ++s) {
          const std::int64_t k = (k_step + s) * kTileK;
          pair_tile(w + p * K * kTileRows + k * kTileRows, K - k, b + ((p - g0) * steps + s) * tile_elements);
        }
      for (std::int64_t t0 = 0; t0 < T; t0 += 2 * kTileRows) {
        const int mt = T - t0 > kTileRows ? 2 : 1;
        const std::int64_t inner = amx_inner_steps(a.parts);
        for (std::int64_t h = 0; h < steps; h += inner) {
          const std::int64_t hs = std::min(inner, steps - h);
          for (std::int64_t p = g0; p < g1; p += 2) {
            const int nt = static_cast<int>(std::min<std::int64_t>(2, g1 - p));
            float* stage = sums + (p - g0) / 2 * 4 * kTileRows * kTileRows;
            amx_steps_dispatch(mt, nt, a, t0, k_step + h, b + ((p - g0) * steps + h) * tile_elements,
                               steps * tile_elements, hs, /*first=*/h == 0, stage, stage);
          }
        }
        for (std::int64_t p = g0; p < g1; p += 2) {
          const int nt = static_cast<int>(std::min<std::int64_t>(2, g1 - p));
          const float* stage = sums + (p - g0) / 2 * 4 * kTileRows * kTileRows;
          for (int m = 0; m < mt; ++m)
            for (int n = 0; n < nt; ++n)
              add_tile(out, t0 + m * kTileRows, (p + n) * kTileRows, stage + (m * 2 + n) * kTileRows * kTileRows);
        }
      }
    }
  }
  _tile_release();
}
#endif

}  // namespace sc2::cpu::detail
