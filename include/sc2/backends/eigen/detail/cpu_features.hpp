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
    case Isa::avx2:
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
      return false;
#endif
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
