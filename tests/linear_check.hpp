#pragma once
// The CPU linear kernels of one instruction-set path against the plain
// reference: shared by the native suite and the emulated AVX-512 build, which
// includes it after replacing the intrinsics.

#include <catch2/catch.hpp>
#include <sc2/backends/cpu/linear.hpp>
#include <sc2/core/buffer.hpp>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace sc2::test {

/// Runs `linear_panel_range` on `isa` over every dtype and a grid of shapes,
/// as two threads' shares, against the plain reference. On `avx512bf16` and
/// `amxbf16` the reference multiplies bf16 weights by the activations rounded
/// to bf16, as those paths do.
inline void check_linear_panel_range(sc2::cpu::Isa isa) {
  std::mt19937 rng(7);
  sc2::cpu::Context ctx(1);  // packs the weights
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const auto dtype : {sc2::DType::f32, sc2::DType::bf16, sc2::DType::f16}) {
    // Tokens: every tail of the 6-token tile, read directly and through widened blocks.
    // Rows: one and two 16-row panels and their tails, the 128-row blocks. K: odd
    // pairs, the 256-step K blocks and their tails.
    // AMX also: one whole 16-token tile, two tiles, and a pair of tiles with a tail.
    std::vector<std::int64_t> tokens{1, 3, 4, 5, 6, 7, 13};
    if (sc2::cpu::uses_amx(isa)) tokens.insert(tokens.end(), {16, 17, 40});
    for (const std::int64_t T : tokens) {
      for (const std::int64_t N : {1, 5, 16, 17, 32, 47, 161}) {
        for (const std::int64_t K : {3, 16, 31, 260, 530}) {
          // The packing scratch as the context allocates it (aligned for vector stores).
          sc2::Buffer<float> scratch(std::max<std::size_t>(1, sc2::cpu::detail::linear_scratch(isa, dtype, T, K)));
          std::vector<float> x(static_cast<std::size_t>(T * K)), full(static_cast<std::size_t>(N * K)), bias(N);
          for (auto& v : x) v = normal(rng);
          for (auto& v : full) v = 0.5f * normal(rng);
          for (auto& v : bias) v = normal(rng);
          std::vector<std::uint16_t> half(full.size());
          sc2::WeightMatrix w{dtype, sc2::WeightLayout::row_major, full.data(), N, K};
          if (dtype != sc2::DType::f32) {
            for (std::size_t i = 0; i < full.size(); ++i)
              half[i] = dtype == sc2::DType::bf16 ? sc2::bf16::round(full[i]).bits : sc2::f16::round(full[i]).bits;
            w.data = half.data();
          }
          const sc2::OwnedWeight<sc2::Host> packed = sc2::cpu::pack_weight(ctx, w, dtype);
          // What the path multiplies: bf16 activations where it rounds them.
          std::vector<float> x_used = x;
          if ((isa == sc2::cpu::Isa::avx512_bf16 || isa == sc2::cpu::Isa::amx_bf16) && dtype == sc2::DType::bf16)
            for (auto& v : x_used) v = sc2::bf16::round(v).to_float();
          std::vector<float> want(static_cast<std::size_t>(T * N)), got(want.size(), NAN);
          sc2::ops::reference::linear(sc2::MatrixView(want.data(), {T, N}), sc2::ConstMatrixView(x_used.data(), {T, K}),
                                      w, std::span<const float>(bias));
          // Two threads' shares, split at a panel as `run_linear` splits them.
          const std::int64_t split = std::min<std::int64_t>(N, 16);
          const sc2::MatrixView out(got.data(), {T, N});
          const sc2::ConstMatrixView in(x.data(), {T, K});
          const std::span<const float> b(bias);
          sc2::cpu::detail::linear_panel_range(isa, out, in, packed.view, b, 0, split, scratch.span());
          sc2::cpu::detail::linear_panel_range(isa, out, in, packed.view, b, split, N, scratch.span());
          double worst = 0.0;
          for (std::size_t i = 0; i < got.size(); ++i)
            worst = std::max(worst, std::isnan(got[i]) ? INFINITY : std::abs(static_cast<double>(got[i]) - want[i]));
          INFO(sc2::cpu::isa_name(isa) << " " << sc2::dtype_name(dtype) << " T=" << T << " N=" << N << " K=" << K);
          CHECK(worst <= 1e-5 * std::sqrt(static_cast<double>(K)) * 4);
        }
      }
    }
  }
}

}  // namespace sc2::test
