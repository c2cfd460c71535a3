// The AVX-512 linear kernels, run on any x86-64 or other processor through
// SIMDe's portable implementation of the AVX-512 intrinsics, against the plain
// reference. On a processor with AVX-512 the regular suite also runs them
// natively (every supported path); this executable checks them where there is none.
//
// Every intrinsic of this translation unit resolves to SIMDe: <immintrin.h> is
// read first, then SIMDe's aliases replace its names, and the target macros are
// emptied, so no instruction outside the baseline is emitted.

#include <immintrin.h>

#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#include <simde/x86/f16c.h>
#include <simde/x86/fma.h>

#include <cstdint>
#include <cstring>

// The three intrinsics the kernels use that SIMDe 0.7 does not provide, written
// from their definitions in Intel's intrinsics guide.
namespace emulated {
/// _mm512_cvtepu16_epi32: zero-extends 16 unsigned 16-bit integers to 32 bits.
inline simde__m512i cvtepu16_epi32(simde__m256i a) {
  std::uint16_t in[16];
  std::int32_t out[16];
  std::memcpy(in, &a, sizeof in);
  for (int i = 0; i < 16; ++i) out[i] = in[i];
  return simde_mm512_loadu_si512(out);
}
/// _mm512_cvtph_ps: 16 IEEE half-precision values to float, as two F16C halves.
inline simde__m512 cvtph_ps(simde__m256i a) {
  float out[16];
  simde_mm256_storeu_ps(out, simde_mm256_cvtph_ps(simde_mm256_castsi256_si128(a)));
  simde_mm256_storeu_ps(out + 8, simde_mm256_cvtph_ps(simde_mm256_extracti128_si256(a, 1)));
  return simde_mm512_loadu_ps(out);
}
/// _mm512_reduce_add_ps: the sum of the 16 lanes.
inline float reduce_add_ps(simde__m512 a) {
  float lanes[16];
  simde_mm512_storeu_ps(lanes, a);
  float sum = 0.0f;
  for (float lane : lanes) sum += lane;
  return sum;
}
}  // namespace emulated
#define _mm512_cvtepu16_epi32(a) emulated::cvtepu16_epi32(a)
#define _mm512_cvtph_ps(a) emulated::cvtph_ps(a)
#define _mm512_reduce_add_ps(a) emulated::reduce_add_ps(a)

#define SC2_TARGET_AVX2
#define SC2_TARGET_AVX512

#include <catch2/catch.hpp>
#include <sc2/backends/eigen/linear.hpp>
#include <sc2/core/buffer.hpp>

#include <cmath>
#include <random>
#include <vector>

TEST_CASE("the AVX-512 linear kernels match the reference under emulation", "[ops][linear][avx512]") {
  using sc2::cpu::Isa;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // The packing scratch as the context allocates it (aligned for vector stores).
  sc2::Buffer<float> scratch(sc2::cpu::detail::kLinearScratch);
  for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
    // Tokens: every tail of the 4-token decode tile and the 6-token packed tile.
    // Rows: the 3-row tile tails, one and two 16-row panels and their tails, the
    // 48-row and 128-row blocks. K: the 16-wide vector tail, the 256 and 512 K blocks.
    for (const std::int64_t T : {1, 3, 4, 5, 6, 7, 13}) {
      for (const std::int64_t N : {1, 5, 16, 17, 32, 47, 161}) {
        for (const std::int64_t K : {3, 16, 31, 260, 530}) {
          std::vector<float> x(static_cast<std::size_t>(T * K)), full(static_cast<std::size_t>(N * K)), bias(N);
          for (auto& v : x) v = normal(rng);
          for (auto& v : full) v = 0.5f * normal(rng);
          for (auto& v : bias) v = normal(rng);
          std::vector<std::uint16_t> half(full.size());
          sc2::WeightMatrix w{dtype, full.data(), N, K};
          if (dtype != sc2::DType::f32) {
            for (std::size_t i = 0; i < full.size(); ++i)
              half[i] = dtype == sc2::DType::bf16 ? sc2::bf16::round(full[i]).bits : sc2::f16::round(full[i]).bits;
            w.data = half.data();
          }
          const sc2::ConstMatrixView in(x.data(), {T, K});
          std::vector<float> want(static_cast<std::size_t>(T * N)), got(want.size(), NAN);
          sc2::ops::reference::linear(sc2::MatrixView(want.data(), {T, N}), in, w, bias);
          // Two threads' shares, split at a panel as `run_linear` splits them.
          const std::int64_t split = std::min<std::int64_t>(N, 16);
          const sc2::MatrixView out(got.data(), {T, N});
          sc2::cpu::detail::linear_panel_range(Isa::avx512, out, in, w, bias, 0, split, scratch.span());
          sc2::cpu::detail::linear_panel_range(Isa::avx512, out, in, w, bias, split, N, scratch.span());
          double worst = 0.0;
          for (std::size_t i = 0; i < got.size(); ++i)
            worst = std::max(worst, std::isnan(got[i]) ? INFINITY : std::abs(static_cast<double>(got[i]) - want[i]));
          INFO(sc2::dtype_name(dtype) << " T=" << T << " N=" << N << " K=" << K);
          CHECK(worst <= 1e-5 * std::sqrt(static_cast<double>(K)) * 4);
        }
      }
    }
  }
}
