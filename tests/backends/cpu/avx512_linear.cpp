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
#define SC2_TARGET_AVX512_BF16
#define SC2_TARGET_AVX512_VNNI
#define SC2_HAVE_AMX 0  // tile instructions have no emulation

#include "linear_check.hpp"

TEST_CASE("the AVX-512 linear kernels match the reference under emulation", "[ops][linear][avx512]") {
  sc2::test::check_linear_panel_range(sc2::cpu::Isa::avx512);
}

TEST_CASE("the AVX-512 BF16 prefill kernel matches the reference on bf16 activations under emulation",
          "[ops][linear][avx512]") {
  sc2::test::check_linear_panel_range(sc2::cpu::Isa::avx512_bf16);
}

TEST_CASE("the AVX-512 kernels on GGML blocks give the dequantized weights' bits under emulation",
          "[quant][linear][avx512]") {
  sc2::test::check_block_linear_panel_range(sc2::cpu::Isa::avx2);
  sc2::test::check_block_linear_panel_range(sc2::cpu::Isa::avx512);
}

TEST_CASE("the AVX-512 VNNI integer kernels match their int8 reference under emulation", "[quant][linear][avx512]") {
  sc2::test::check_block_linear_panel_range(sc2::cpu::Isa::avx512_vnni);
}
