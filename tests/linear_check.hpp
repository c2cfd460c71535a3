#pragma once
// The CPU linear kernels of one instruction-set path against the plain
// reference: shared by the native suite and the emulated AVX-512 build, which
// includes it after replacing the intrinsics.

#include <catch2/catch.hpp>
#include <sc2/backends/cpu/linear.hpp>
#include <sc2/core/buffer.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
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
          sc2::WeightMatrix w{dtype, sc2::WeightLayout::row_major, full.data(), N, K, std::nullopt};
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

namespace sc2::test {

/// Runs `linear_panel_range` on `isa` over weights in every GGML block format
/// and a grid of shapes, as two threads' shares. The float paths must give
/// exactly the bits of the same path on the dequantized float weights (and
/// be near the plain reference); the integer path (`avx512vnni`) must match
/// the plain reference over its int8 activations, which its vector
/// quantization must make byte for byte as the scalar one does.
inline void check_block_linear_panel_range(sc2::cpu::Isa isa) {
  using sc2::quant::Format;
  namespace d = sc2::cpu::detail;
  std::mt19937 rng(11);
  sc2::cpu::Context ctx(1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (const Format format : {Format::q8_0, Format::q4_0, Format::q4_k, Format::q5_k, Format::q6_k}) {
    const std::int64_t B = sc2::quant::block_elements(format);
    // K: one block, a K block of 256 and a tail, several K blocks; T: the tails of the
    // fused and integer tiles, read directly and through decoded blocks.
    std::vector<std::int64_t> ks{256, 768};
    if (B == 32) ks.insert(ks.end(), {32, 96, 288});
    for (const std::int64_t T : {1, 3, 5, 9, 13, 25, 30}) {
      for (const std::int64_t N : {1, 16, 17, 47, 161}) {
        for (const std::int64_t K : ks) {
          std::vector<float> x(static_cast<std::size_t>(T * K)), full(static_cast<std::size_t>(N * K)), bias(N);
          for (auto& v : x) v = normal(rng);
          for (auto& v : full) v = 0.5f * normal(rng);
          for (auto& v : bias) v = normal(rng);
          const sc2::WeightMatrix source{sc2::DType::f32, sc2::WeightLayout::row_major, full.data(), N, K, std::nullopt};
          const sc2::OwnedWeight<sc2::Host> blocks = sc2::cpu::pack_blocks(ctx, source, format);
          // The dequantized weights, as the reference dequantizer gives them.
          std::vector<float> dequantized(full.size());
          std::vector<std::byte> row(sc2::quant::row_bytes(format, K));
          for (std::int64_t r = 0; r < N; ++r) {
            sc2::quant::quantize(format, full.data() + r * K, row.data(), K);
            sc2::quant::dequantize(format, row.data(), dequantized.data() + r * K, K);
          }
          const sc2::WeightMatrix plain{sc2::DType::f32, sc2::WeightLayout::row_major, dequantized.data(), N, K,
                                        std::nullopt};
          const sc2::OwnedWeight<sc2::Host> floats = sc2::cpu::pack_weight(ctx, plain, sc2::DType::f32);
          const auto run = [&](const sc2::WeightMatrix& w) {
            sc2::Buffer<float> scratch(std::max<std::size_t>(1, d::linear_scratch(isa, w, T, K)));
            std::vector<float> got(static_cast<std::size_t>(T * N), NAN);
            const sc2::MatrixView out(got.data(), {T, N});
            const sc2::ConstMatrixView in(x.data(), {T, K});
            const std::int64_t split = std::min<std::int64_t>(N, 16);
            d::linear_panel_range(isa, out, in, w, std::span<const float>(bias), 0, split, scratch.span());
            d::linear_panel_range(isa, out, in, w, std::span<const float>(bias), split, N, scratch.span());
            return got;
          };
          const std::vector<float> got = run(blocks.view);
          INFO(sc2::cpu::isa_name(isa) << " " << sc2::quant::format_name(format) << " T=" << T << " N=" << N
                                       << " K=" << K);
          // Each row alone gets the bits it gets among T (decode tiles against prefill's
          // decoded blocks, or the integer path's AMX tiles).
          for (const std::int64_t t : {std::int64_t{0}, T - 1}) {
            sc2::Buffer<float> scratch(std::max<std::size_t>(1, d::linear_scratch(isa, blocks.view, 1, K)));
            std::vector<float> alone(static_cast<std::size_t>(N));
            d::linear_panel_range(isa, sc2::MatrixView(alone.data(), {1, N}), sc2::ConstMatrixView(x.data() + t * K, {1, K}),
                                  blocks.view, std::span<const float>(bias), 0, N, scratch.span());
            CHECK(std::memcmp(alone.data(), got.data() + t * N, alone.size() * sizeof(float)) == 0);
          }
          // The plain reference, over the activations the path multiplies.
          std::vector<float> x_used = x;
          if (isa == sc2::cpu::Isa::avx512_vnni) {
            std::vector<std::byte> bytes(d::ActivationBlocks::bytes(T, K)), simd(bytes.size());
            const auto a = d::ActivationBlocks::at(bytes.data(), T, K);
            d::quantize_activations(sc2::ConstMatrixView(x.data(), {T, K}), a, 0, T);
#if SC2_HAVE_X86_SIMD
            d::quantize_activations_avx512(sc2::ConstMatrixView(x.data(), {T, K}),
                                           d::ActivationBlocks::at(simd.data(), T, K), 0, T);
            CHECK(bytes == simd);
#endif
            for (std::int64_t t = 0; t < T; ++t)
              for (std::int64_t k = 0; k < K; ++k)
                x_used[static_cast<std::size_t>(t * K + k)] = a.scale[t * (K / 32) + k / 32] * a.q[t * K + k];
          } else {
            CHECK(got == run(floats.view));  // bit for bit the dequantized float weights' result
          }
          std::vector<float> want(static_cast<std::size_t>(T * N));
          sc2::ops::reference::linear(sc2::MatrixView(want.data(), {T, N}), sc2::ConstMatrixView(x_used.data(), {T, K}),
                                      plain, std::span<const float>(bias));
          double worst = 0.0;
          for (std::size_t i = 0; i < got.size(); ++i)
            worst = std::max(worst, std::isnan(got[i]) ? INFINITY : std::abs(static_cast<double>(got[i]) - want[i]));
          CHECK(worst <= 1e-5 * std::sqrt(static_cast<double>(K)) * 4);
        }
      }
    }
  }
}

}  // namespace sc2::test
