#pragma once
/// \file
/// GGML's quantized block formats (llama.cpp, GGUF files), byte for byte, with
/// their dequantization and reference quantization.
///
/// A row of K weights is K / B blocks of B weights; each block stores its
/// scale(s) as f16 and its weights as small integers:
///
///     format  B    bytes  weight i of the block
///     Q8_0    32   34     d · q[i]                       q int8
///     Q4_0    32   18     d · (q[i] − 8)                 q 4 bits
///     Q4_K    256  144    d·sc[j] · q[i] − dmin·m[j]     q 4 bits; j = i / 32; sc, m 6 bits
///     Q5_K    256  176    d·sc[j] · q[i] − dmin·m[j]     q 5 bits; as Q4_K
///     Q6_K    256  210    d·sc[j] · (q[i] − 32)          q 6 bits; j = i / 16; sc int8
///
/// `dequantize` gives the bits of `gguf.quants.dequantize` (llama.cpp's Python
/// package). `quantize` is ggml's reference quantizer (`quantize_row_*_ref`,
/// what llama-quantize runs without an importance matrix), evaluated as ISO C
/// does: every product that meets an add is rounded on its own (`product`),
/// never fused with it, whatever `-ffp-contract` the program is built with.

#include <sc2/core/dtype.hpp>
#include <sc2/core/error.hpp>
#include <sc2/quant/format.hpp>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace sc2::quant {

/// Scale and min j (0..7) of a Q4_K / Q5_K block's 12 packed bytes:
///
///     j < 4:  sc = s[j] & 63,                          m = s[j+4] & 63
///     j ≥ 4:  sc = (s[j+4] & 15) | (s[j−4] >> 6) << 4,  m = (s[j+4] >> 4) | (s[j] >> 6) << 4
constexpr std::array<std::uint8_t, 2> scale_min(int j, const std::uint8_t* s) noexcept {
  if (j < 4) return {static_cast<std::uint8_t>(s[j] & 63), static_cast<std::uint8_t>(s[j + 4] & 63)};
  return {static_cast<std::uint8_t>((s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4)),
          static_cast<std::uint8_t>((s[j + 4] >> 4) | ((s[j] >> 6) << 4))};
}

namespace detail {

/// `v`, hidden from the optimiser: a product that produced it cannot be fused
/// into an add that uses it, whatever -ffp-contract the program is built with.
inline float opaque(float v) noexcept {
#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
  __asm__("" : "+x"(v));
#elif defined(__GNUC__) && defined(__aarch64__)
  __asm__("" : "+w"(v));
#else
  volatile float kept = v;
  v = kept;
#endif
  return v;
}
/// a·b rounded to float on its own, as ISO C and numpy compute it.
inline float product(float a, float b) noexcept { return opaque(a * b); }

inline float half(std::uint16_t bits) noexcept { return f16::from_bits(bits).to_float(); }
inline std::uint16_t half_bits(float f) noexcept { return f16::round(f).bits; }

template <class Block> Block load_block(const std::byte* p) noexcept {
  Block b;
  std::memcpy(&b, p, sizeof b);
  return b;
}

/// ggml's nearest_int: round to nearest, ties to even, for |f| ≤ 2^22 − 1.
inline int nearest_int(float f) noexcept {
  const float shifted = opaque(f) + 12582912.f;
  std::int32_t i;
  std::memcpy(&i, &shifted, sizeof i);
  return (i & 0x007fffff) - 0x00400000;
}

/// ggml's make_qkx2_quants: the scale and min of n weights on levels 0..nmax
/// that minimise the weighted squared error, over a search of `nstep` scales.
inline float make_qkx2_quants(int n, int nmax, const float* x, const float* weights,
                                                       std::uint8_t* L, float* the_min, std::uint8_t* Laux,
                                                       float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = product(sum_w, x[0]);
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += product(w, x[i]);
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    const int l = nearest_int(iscale * (x[i] - min));
    L[i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    float diff = product(scale, L[i]) + min - x[i];
    diff = product(diff, diff);
    best_error += product(weights[i], diff);
  }
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + product(rdelta, static_cast<float>(is)) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<std::uint8_t>(l);
      const float w = weights[i];
      sum_l += product(w, static_cast<float>(l));
      sum_l2 += product(w * static_cast<float>(l), static_cast<float>(l));
      sum_xl += product(w * static_cast<float>(l), x[i]);
    }
    const float D = product(sum_w, sum_l2) - product(sum_l, sum_l);
    if (D > 0) {
      float this_scale = (product(sum_w, sum_xl) - product(sum_x, sum_l)) / D;
      float this_min = (product(sum_l2, sum_x) - product(sum_l, sum_xl)) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      float cur_error = 0;
      for (int i = 0; i < n; ++i) {
        float diff = product(this_scale, Laux[i]) + this_min - x[i];
        diff = product(diff, diff);
        cur_error += product(weights[i], diff);
      }
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

/// ggml's make_qx_quants with rmse_type 1 (weights x²) and no importance: the
/// scale of n weights on levels −nmax..nmax−1, L[i] stored with offset nmax.
inline float make_qx_quants(int n, int nmax, const float* x, std::int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < 1e-15f) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = nearest_int(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    L[i] = static_cast<std::int8_t>(l + nmax);
    const float w = x[i] * x[i];
    sumlx += product(w * x[i], static_cast<float>(l));
    suml2 += product(w * static_cast<float>(l), static_cast<float>(l));
  }
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + product(0.1f, static_cast<float>(is))) / max;
    sumlx = suml2 = 0;
    for (int i = 0; i < n; ++i) {
      int l = nearest_int(iscale * x[i]);
      l = std::max(-nmax, std::min(nmax - 1, l));
      const float w = x[i] * x[i];
      sumlx += product(w * x[i], static_cast<float>(l));
      suml2 += product(w * static_cast<float>(l), static_cast<float>(l));
    }
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      for (int i = 0; i < n; ++i) {
        const int l = nearest_int(iscale * x[i]);
        L[i] = static_cast<std::int8_t>(nmax + std::max(-nmax, std::min(nmax - 1, l)));
      }
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

/// The 8 scales and mins of a Q4_K / Q5_K super-block (`nmax` 15 or 31), packed into
/// `scales` (12 bytes), the super-scales into d and dmin, and the levels into L.
inline void quantize_k_scales(const float* x, int nmax, float rmin, int nstep,
                                                       std::uint8_t* L, std::uint8_t* scales, std::uint16_t& d,
                                                       std::uint16_t& dmin) {
  std::uint8_t Laux[32];
  float weights[32], mins[8], group_scales[8];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < 8; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += product(x[32 * j + l], x[32 * j + l]);
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    group_scales[j] = make_qkx2_quants(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep);
    if (group_scales[j] > max_scale) max_scale = group_scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(scales, 0, 12);
  for (int j = 0; j < 8; ++j) {
    // ggml stores nearest_int's result in a uint8_t before clamping: keep that wrap.
    std::uint8_t ls = static_cast<std::uint8_t>(nearest_int(inv_scale * group_scales[j]));
    std::uint8_t lm = static_cast<std::uint8_t>(nearest_int(inv_min * mins[j]));
    ls = std::min<std::uint8_t>(63, ls);
    lm = std::min<std::uint8_t>(63, lm);
    if (j < 4) {
      scales[j] = ls;
      scales[j + 4] = lm;
    } else {
      scales[j + 4] = static_cast<std::uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      scales[j - 4] = static_cast<std::uint8_t>(scales[j - 4] | ((ls >> 4) << 6));
      scales[j] = static_cast<std::uint8_t>(scales[j] | ((lm >> 4) << 6));
    }
  }
  d = half_bits(max_scale / 63.f);
  dmin = half_bits(max_min / 63.f);
  for (int j = 0; j < 8; ++j) {
    const auto [sc, m] = scale_min(j, scales);
    const float dj = half(d) * static_cast<float>(sc);
    if (dj == 0.0f) continue;
    const float dm = half(dmin) * static_cast<float>(m);
    for (int i = 0; i < 32; ++i) {
      const int l = nearest_int((x[32 * j + i] + dm) / dj);
      L[32 * j + i] = static_cast<std::uint8_t>(std::max(0, std::min(nmax, l)));
    }
  }
}

}  // namespace detail

/// Dequantizes `n` weights (a multiple of the block size) from `blocks` into
/// `out`, as `gguf.quants.dequantize` does.
inline void dequantize(Format format, const std::byte* blocks, float* out, std::int64_t n) {
  using detail::half;
  const std::int64_t B = block_elements(format), nb = n / B;
  const std::size_t bytes = block_bytes(format);
  for (std::int64_t b = 0; b < nb; ++b, out += B) {
    const std::byte* p = blocks + static_cast<std::size_t>(b) * bytes;
    switch (format) {
      case Format::q8_0: {
        const auto x = detail::load_block<BlockQ8_0>(p);
        const float d = half(x.d);
        for (int i = 0; i < 32; ++i) out[i] = static_cast<float>(x.qs[i]) * d;
        break;
      }
      case Format::q4_0: {
        const auto x = detail::load_block<BlockQ4_0>(p);
        const float d = half(x.d);
        for (int i = 0; i < 16; ++i) {
          out[i] = d * static_cast<float>((x.qs[i] & 0xF) - 8);
          out[i + 16] = d * static_cast<float>((x.qs[i] >> 4) - 8);
        }
        break;
      }
      case Format::q4_k: {
        const auto x = detail::load_block<BlockQ4_K>(p);
        const float d = half(x.d), dmin = half(x.dmin);
        for (int j = 0; j < 4; ++j) {  // 64 weights: 32 low nibbles, then 32 high
          const auto [sc1, m1] = scale_min(2 * j, x.scales);
          const auto [sc2, m2] = scale_min(2 * j + 1, x.scales);
          const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
          const float d2 = d * static_cast<float>(sc2), min2 = dmin * static_cast<float>(m2);
          const std::uint8_t* q = x.qs + 32 * j;
          for (int l = 0; l < 32; ++l) out[64 * j + l] = detail::product(d1, static_cast<float>(q[l] & 0xF)) - min1;
          for (int l = 0; l < 32; ++l) out[64 * j + 32 + l] = detail::product(d2, static_cast<float>(q[l] >> 4)) - min2;
        }
        break;
      }
      case Format::q5_k: {
        const auto x = detail::load_block<BlockQ5_K>(p);
        const float d = half(x.d), dmin = half(x.dmin);
        for (int j = 0; j < 4; ++j) {
          const auto [sc1, m1] = scale_min(2 * j, x.scales);
          const auto [sc2, m2] = scale_min(2 * j + 1, x.scales);
          const float d1 = d * static_cast<float>(sc1), min1 = dmin * static_cast<float>(m1);
          const float d2 = d * static_cast<float>(sc2), min2 = dmin * static_cast<float>(m2);
          const std::uint8_t* q = x.qs + 32 * j;
          for (int l = 0; l < 32; ++l) {
            const int hi = (x.qh[l] >> (2 * j)) & 1;
            out[64 * j + l] = detail::product(d1, static_cast<float>((q[l] & 0xF) | (hi << 4))) - min1;
          }
          for (int l = 0; l < 32; ++l) {
            const int hi = (x.qh[l] >> (2 * j + 1)) & 1;
            out[64 * j + 32 + l] = detail::product(d2, static_cast<float>((q[l] >> 4) | (hi << 4))) - min2;
          }
        }
        break;
      }
      case Format::q6_k: {
        const auto x = detail::load_block<BlockQ6_K>(p);
        const float d = half(x.d);
        for (int h = 0; h < 2; ++h) {  // 128 weights: ql[64·h ..], qh[32·h ..], scales[8·h ..]
          const std::uint8_t* ql = x.ql + 64 * h;
          const std::uint8_t* qh = x.qh + 32 * h;
          const std::int8_t* sc = x.scales + 8 * h;
          float* y = out + 128 * h;
          for (int l = 0; l < 32; ++l) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
            y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
            y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
            y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
          }
        }
        break;
      }
    }
  }
}

/// Quantizes `n` weights (a multiple of the block size) of `x` into `blocks`
/// (row_bytes(format, n) bytes), as ggml's reference quantizer does.
inline void quantize(Format format, const float* x, std::byte* blocks, std::int64_t n) {
  using detail::half;
  using detail::half_bits;
  using detail::nearest_int;
  const std::int64_t B = block_elements(format), nb = n / B;
  const std::size_t bytes = block_bytes(format);
  for (std::int64_t b = 0; b < nb; ++b, x += B) {
    std::byte* p = blocks + static_cast<std::size_t>(b) * bytes;
    switch (format) {
      case Format::q8_0: {
        BlockQ8_0 y{};
        float amax = 0.0f;
        for (int i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y.d = half_bits(d);
        for (int i = 0; i < 32; ++i) y.qs[i] = static_cast<std::int8_t>(std::round(x[i] * id));
        std::memcpy(p, &y, sizeof y);
        break;
      }
      case Format::q4_0: {
        BlockQ4_0 y{};
        float amax = 0.0f, max = 0.0f;
        for (int i = 0; i < 32; ++i)
          if (amax < std::fabs(x[i])) {
            amax = std::fabs(x[i]);
            max = x[i];
          }
        const float d = max / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y.d = half_bits(d);
        for (int i = 0; i < 16; ++i) {
          const float x0 = detail::product(x[i], id), x1 = detail::product(x[i + 16], id);
          const auto q0 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>(x0 + 8.5f))));
          const auto q1 = static_cast<std::uint8_t>(std::min(15, static_cast<int>(static_cast<std::int8_t>(x1 + 8.5f))));
          y.qs[i] = static_cast<std::uint8_t>(q0 | (q1 << 4));
        }
        std::memcpy(p, &y, sizeof y);
        break;
      }
      case Format::q4_k: {
        BlockQ4_K y{};
        std::uint8_t L[kSuperBlock];
        detail::quantize_k_scales(x, 15, -1.f, 20, L, y.scales, y.d, y.dmin);
        for (int j = 0; j < 4; ++j)
          for (int l = 0; l < 32; ++l)
            y.qs[32 * j + l] = static_cast<std::uint8_t>(L[64 * j + l] | (L[64 * j + 32 + l] << 4));
        std::memcpy(p, &y, sizeof y);
        break;
      }
      case Format::q5_k: {
        BlockQ5_K y{};
        std::uint8_t L[kSuperBlock];
        detail::quantize_k_scales(x, 31, -0.5f, 15, L, y.scales, y.d, y.dmin);
        for (int j = 0; j < 4; ++j)
          for (int l = 0; l < 32; ++l) {
            int l1 = L[64 * j + l], l2 = L[64 * j + 32 + l];
            if (l1 > 15) l1 -= 16, y.qh[l] = static_cast<std::uint8_t>(y.qh[l] | (1 << (2 * j)));
            if (l2 > 15) l2 -= 16, y.qh[l] = static_cast<std::uint8_t>(y.qh[l] | (2 << (2 * j)));
            y.qs[32 * j + l] = static_cast<std::uint8_t>(l1 | (l2 << 4));
          }
        std::memcpy(p, &y, sizeof y);
        break;
      }
      case Format::q6_k: {
        BlockQ6_K y{};
        std::int8_t L[kSuperBlock];
        float group_scales[16];
        float max_scale = 0, max_abs_scale = 0;
        for (int g = 0; g < 16; ++g) {
          const float scale = detail::make_qx_quants(16, 32, x + 16 * g, L + 16 * g);
          group_scales[g] = scale;
          if (std::fabs(scale) > max_abs_scale) {
            max_abs_scale = std::fabs(scale);
            max_scale = scale;
          }
        }
        if (max_abs_scale < 1e-15f) {  // all zero: a zero block
          std::memcpy(p, &y, sizeof y);
          break;
        }
        const float iscale = -128.f / max_scale;
        y.d = half_bits(1 / iscale);
        for (int g = 0; g < 16; ++g)
          y.scales[g] = static_cast<std::int8_t>(std::min(127, nearest_int(iscale * group_scales[g])));
        for (int g = 0; g < 16; ++g) {
          const float dg = half(y.d) * static_cast<float>(y.scales[g]);
          if (dg == 0.0f) continue;
          for (int i = 0; i < 16; ++i) {
            const int l = nearest_int(x[16 * g + i] / dg);
            L[16 * g + i] = static_cast<std::int8_t>(std::max(-32, std::min(31, l)) + 32);
          }
        }
        for (int h = 0; h < 2; ++h) {
          std::uint8_t* ql = y.ql + 64 * h;
          std::uint8_t* qh = y.qh + 32 * h;
          const std::int8_t* Lh = L + 128 * h;
          for (int l = 0; l < 32; ++l) {
            const int q1 = Lh[l] & 0xF, q2 = Lh[l + 32] & 0xF, q3 = Lh[l + 64] & 0xF, q4 = Lh[l + 96] & 0xF;
            ql[l] = static_cast<std::uint8_t>(q1 | (q3 << 4));
            ql[l + 32] = static_cast<std::uint8_t>(q2 | (q4 << 4));
            qh[l] = static_cast<std::uint8_t>((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                                              ((Lh[l + 96] >> 4) << 6));
          }
        }
        std::memcpy(p, &y, sizeof y);
        break;
      }
    }
  }
}

}  // namespace sc2::quant

