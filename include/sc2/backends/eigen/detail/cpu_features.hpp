#pragma once
/// \file
/// Which SIMD instruction set the CPU kernels use.
///
/// Chosen once at run time from what the processor reports, and overridable:
/// the environment variable `SC2_CPU_ISA` (`scalar` or `avx2`) or
/// `cpu::Context::set_isa` forces a path, so tests can run every path the
/// machine supports. Asking for a path the machine lacks is an `sc2::Error`.

#include <sc2/core/error.hpp>

#include <cstdlib>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#include <string_view>

namespace sc2::cpu {

/// A family of SIMD kernels.
enum class Isa {
  scalar,  ///< portable C++, always present
  avx2,    ///< AVX2 + FMA + F16C (x86-64)
};

/// Readable name of an instruction-set path.
constexpr std::string_view isa_name(Isa isa) noexcept { return isa == Isa::avx2 ? "avx2" : "scalar"; }

/// True when this processor can run `isa`.
inline bool isa_supported(Isa isa) noexcept {
  switch (isa) {
    case Isa::scalar: return true;
    case Isa::avx2: {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      unsigned a = 0, b = 0, c = 0, d = 0;
      if (!__get_cpuid(1, &a, &b, &c, &d)) return false;
      const bool fma = c & (1u << 12), osxsave = c & (1u << 27), avx = c & (1u << 28), f16c = c & (1u << 29);
      if (!(fma && osxsave && avx && f16c)) return false;
      unsigned xcr0_low = 0, xcr0_high = 0;
      __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
      if ((xcr0_low & 0x6u) != 0x6u) return false;  // the OS saves SSE and AVX state
      if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
      return b & (1u << 5);  // AVX2
#else
      return false;
#endif
    }
  }
  return false;
}

/// Parses an instruction-set name ("scalar", "avx2").
inline Isa parse_isa(std::string_view name) {
  if (name == "scalar") return Isa::scalar;
  if (name == "avx2") return Isa::avx2;
  SC2_FAIL("unknown CPU instruction set '{}' (expected 'scalar' or 'avx2')", name);
}

/// The best path this processor supports, unless `SC2_CPU_ISA` names one.
inline Isa default_isa() {
  if (const char* forced = std::getenv("SC2_CPU_ISA"); forced && *forced) {
    const Isa isa = parse_isa(forced);
    SC2_CHECK(isa_supported(isa), "SC2_CPU_ISA={} but this processor does not support it", forced);
    return isa;
  }
  return isa_supported(Isa::avx2) ? Isa::avx2 : Isa::scalar;
}

}  // namespace sc2::cpu
