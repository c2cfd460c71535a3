#pragma once
/// \file
/// Rotary position embedding, non-interleaved ("rotate_half", NeoX style).
///
/// For a head vector x of head dim Dh and a rotary dim R (even, R <= Dh):
///
///     inv_freq[i] = 1 / theta^(2i / R)                 i in [0, R/2)
///     angle       = pos · inv_freq[i]
///     x'[i]       = x[i] · cos(angle) − x[i + R/2] · sin(angle)
///     x'[i + R/2] = x[i + R/2] · cos(angle) + x[i] · sin(angle)
///     x'[d]       = x[d]                               d in [R, Dh)
///
/// x (T, heads, Dh) in place; positions (T), absolute token indices (each
/// row of a batch has its own). As in
/// transformers, theta is rounded to float before the power, and inv_freq,
/// the angle, cos and sin are float values (cos and sin are the correctly
/// rounded float of the float angle). Precomputing inv_freq once per model is
/// the `RotaryTable`.

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>

#include <cmath>
#include <cstdint>
#include <span>
#include <vector>

namespace sc2::ops {

/// The inverse frequencies of a rotary embedding; built once per model.
class RotaryTable {
public:
  RotaryTable() = default;
  /// Frequencies for rotary dim `rotary_dim` (even, > 0) and base `theta`.
  RotaryTable(double theta, int rotary_dim) : rotary_dim_(rotary_dim) {
    SC2_CHECK(rotary_dim > 0 && rotary_dim % 2 == 0, "rotary dim {} must be even and positive", rotary_dim);
    SC2_CHECK(theta > 0.0 && std::isfinite(theta), "rope_theta {} must be a positive number", theta);
    const float base = static_cast<float>(theta);
    inv_freq_.resize(static_cast<std::size_t>(rotary_dim / 2));
    for (int i = 0; i < rotary_dim / 2; ++i) {
      const float exponent = static_cast<float>(2 * i) / static_cast<float>(rotary_dim);
      inv_freq_[static_cast<std::size_t>(i)] = 1.0f / std::pow(base, exponent);
    }
  }
  /// R: the number of leading dimensions of each head that rotate.
  int rotary_dim() const noexcept { return rotary_dim_; }
  /// inv_freq (R/2).
  std::span<const float> inv_freq() const noexcept { return inv_freq_; }

  /// cos and sin of the angle of frequency `i` at position `pos`, as float.
  void cos_sin(std::int64_t pos, std::size_t i, float& c, float& s) const noexcept {
    const float angle = static_cast<float>(pos) * inv_freq_[i];
    c = static_cast<float>(std::cos(static_cast<double>(angle)));
    s = static_cast<float>(std::sin(static_cast<double>(angle)));
  }

private:
  int rotary_dim_ = 0;
  std::vector<float> inv_freq_;  // (R/2)
};

/// Rotates every head of every token of `x` (T, heads, Dh) by its position (T).
template <ExecutionContext Ctx>
void rope(Ctx& ctx, TensorView<ActivationOf<Ctx>, 3, SpaceOf<Ctx>> x, Vector<const std::int32_t, SpaceOf<Ctx>> positions,
          const RotaryTable& table) {
  SC2_CHECK(x.extent(0) == positions.extent(0) && positions.stride(0) == 1, "rope: {} tokens but {} positions",
            x.extent(0), positions.extent(0));
  SC2_CHECK(table.rotary_dim() <= x.extent(2) && x.stride(2) == 1,
            "rope: rotary dim {} exceeds head dim {}", table.rotary_dim(), x.extent(2));
  run_rope(ctx, x, positions, table);
}

namespace reference {
/// Plain rotation of each head, the definition the backends are tested against.
inline void rope(TensorView<float, 3> x, std::span<const std::int32_t> positions, const RotaryTable& table) {
  const std::int64_t half = table.rotary_dim() / 2;
  for (std::int64_t t = 0; t < x.extent(0); ++t)
    for (std::int64_t i = 0; i < half; ++i) {
      float c, s;
      table.cos_sin(positions[static_cast<std::size_t>(t)], static_cast<std::size_t>(i), c, s);
      for (std::int64_t h = 0; h < x.extent(1); ++h) {
        const float x1 = x(t, h, i), x2 = x(t, h, i + half);
        x(t, h, i) = x1 * c - x2 * s;
        x(t, h, i + half) = x2 * c + x1 * s;
      }
    }
}
}  // namespace reference

}  // namespace sc2::ops
