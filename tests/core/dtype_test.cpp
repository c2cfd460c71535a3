// float32 <-> bfloat16 / float16 conversions: exact widening, round to nearest even.

#include <sc2/core/dtype.hpp>

#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>

namespace {

// Checks that `rounded` is the nearest representable value to x, ties to the even bit pattern.
template <class H> void check_nearest(float x, H rounded) {
  const double value = rounded.to_float();
  INFO("x = " << x << " rounded to " << value << " bits " << rounded.bits);
  if (std::isinf(value)) {
    CHECK(std::abs(x) >= (std::is_same_v<H, sc2::f16> ? 65520.0 : 3.3961775292304e38));
    return;
  }
  for (int step : {-1, 1}) {
    const std::uint16_t neighbour_bits = static_cast<std::uint16_t>(rounded.bits + step);
    const double neighbour = H::from_bits(neighbour_bits).to_float();
    if (std::isnan(neighbour) || std::isinf(neighbour)) continue;
    const double here = std::abs(static_cast<double>(x) - value), there = std::abs(static_cast<double>(x) - neighbour);
    CHECK(here <= there);
    if (here == there) CHECK((rounded.bits & 1) == 0);
  }
}

}  // namespace

TEST_CASE("every bfloat16 and float16 widens exactly and rounds back to itself", "[dtype]") {
  for (std::uint32_t b = 0; b < 65536; ++b) {
    const auto bits = static_cast<std::uint16_t>(b);
    const float wide_bf = sc2::bf16::from_bits(bits).to_float();
    const float wide_h = sc2::f16::from_bits(bits).to_float();
    if (!std::isnan(wide_bf)) REQUIRE(sc2::bf16::round(wide_bf).bits == bits);
    else REQUIRE(std::isnan(sc2::bf16::round(wide_bf).to_float()));
    if (!std::isnan(wide_h)) REQUIRE(sc2::f16::round(wide_h).bits == bits);
    else REQUIRE(std::isnan(sc2::f16::round(wide_h).to_float()));
  }
  CHECK(sc2::f16::from_bits(0x3c00).to_float() == 1.0f);
  CHECK(sc2::f16::from_bits(0x0001).to_float() == std::ldexp(1.0f, -24));
  CHECK(sc2::bf16::from_bits(0x3f80).to_float() == 1.0f);
}

TEST_CASE("rounding picks the nearest value, ties to even", "[dtype]") {
  std::mt19937 rng(7);
  std::uniform_int_distribution<std::uint32_t> any;
  for (int i = 0; i < 200000; ++i) {
    float x = std::bit_cast<float>(any(rng));
    if (std::isnan(x)) continue;
    check_nearest(x, sc2::bf16::round(x));
    // Float16's range is small: scale into it most of the time, and test overflow and subnormals too.
    int exponent = 0;
    const float y = std::ldexp(std::frexp(x, &exponent), static_cast<int>(rng() % 44) - 26);
    check_nearest(y, sc2::f16::round(y));
  }
  // Exact ties.
  CHECK(sc2::bf16::round(std::bit_cast<float>(0x3f808000u)).bits == 0x3f80);  // 1 + 2^-8: tie, down to even
  CHECK(sc2::bf16::round(std::bit_cast<float>(0x3f818000u)).bits == 0x3f82);  // tie, up to even
  CHECK(sc2::f16::round(1.0f + std::ldexp(1.0f, -11)).bits == 0x3c00);        // tie, down to even
  CHECK(sc2::f16::round(65519.0f).bits == 0x7bff);                             // below the rounding edge: max
  CHECK(sc2::f16::round(65520.0f).bits == 0x7c00);                             // at the edge: infinity
  CHECK(sc2::f16::round(std::ldexp(1.0f, -25)).bits == 0x0000);               // tie with 0: even
  CHECK(sc2::f16::round(std::ldexp(1.5f, -25)).bits == 0x0001);
  CHECK(std::isnan(sc2::f16::round(std::numeric_limits<float>::quiet_NaN()).to_float()));
  CHECK(std::isnan(sc2::bf16::round(std::numeric_limits<float>::quiet_NaN()).to_float()));
}
