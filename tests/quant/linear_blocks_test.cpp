// The CPU kernels on weights in GGML blocks: the panel layout, every float
// path bit for bit against the dequantized float weights, the opt-in integer
// path against its int8 reference, and embeddings of block tables.

#include "linear_check.hpp"
#include "support.hpp"

#include <sc2/backends/cpu.hpp>
#include <sc2/quant/panels.hpp>

#include <catch2/catch.hpp>

#include <random>
#include <vector>

namespace {

using sc2::quant::Format;
constexpr Format kFormats[] = {Format::q8_0, Format::q4_0, Format::q4_k, Format::q5_k, Format::q6_k};

std::vector<float> random_matrix(std::int64_t rows, std::int64_t cols, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.5f);
  std::vector<float> m(static_cast<std::size_t>(rows * cols));
  for (auto& v : m) v = normal(rng);
  return m;
}

}  // namespace

TEST_CASE("panels of blocks hold every weight where the layout says", "[quant][linear]") {
  std::mt19937 rng(3);
  sc2::CpuContext ctx(2);
  for (const Format format : kFormats) {
    const std::int64_t N = 37, K = 512;
    const std::vector<float> full = random_matrix(N, K, rng);
    // The rows quantized by the reference quantizer: what a GGUF file would hold.
    std::vector<std::byte> rows(sc2::quant::row_bytes(format, K) * N);
    std::vector<float> want(full.size());
    for (std::int64_t r = 0; r < N; ++r) {
      std::byte* row = rows.data() + static_cast<std::size_t>(r) * sc2::quant::row_bytes(format, K);
      sc2::quant::quantize(format, full.data() + r * K, row, K);
      sc2::quant::dequantize(format, row, want.data() + r * K, K);
    }
    const sc2::WeightMatrix file{sc2::DType::f32, sc2::WeightLayout::row_major, rows.data(), N, K, format};
    const sc2::WeightMatrix floats{sc2::DType::f32, sc2::WeightLayout::row_major, full.data(), N, K, std::nullopt};
    const auto moved = sc2::cpu::pack_blocks(ctx, file, format);       // the file's blocks, moved
    const auto quantized = sc2::cpu::pack_blocks(ctx, floats, format);  // quantized at load
    INFO(sc2::quant::format_name(format));
    CHECK(moved.view.bytes() == 48 * sc2::quant::row_bytes(format, K));  // 37 rows padded to 3 panels
    CHECK(std::memcmp(moved.storage.data(), quantized.storage.data(), moved.view.bytes()) == 0);
    std::vector<float> got(static_cast<std::size_t>(K));
    for (std::int64_t r = 0; r < N; ++r) {
      file.row_to_float(r, got.data());
      CHECK(std::memcmp(got.data(), want.data() + r * K, got.size() * sizeof(float)) == 0);
      moved.view.row_to_float(r, got.data());
      CHECK(std::memcmp(got.data(), want.data() + r * K, got.size() * sizeof(float)) == 0);
      for (const std::int64_t c : {std::int64_t{0}, std::int64_t{33}, K - 1}) CHECK(moved.view.at(r, c) == want[r * K + c]);
    }
    // Blocks of another format are requantized from their dequantized weights.
    const Format other = format == Format::q8_0 ? Format::q4_k : Format::q8_0;
    const auto requantized = sc2::cpu::pack_blocks(ctx, file, other);
    const sc2::WeightMatrix dequantized{sc2::DType::f32, sc2::WeightLayout::row_major, want.data(), N, K, std::nullopt};
    const auto direct = sc2::cpu::pack_blocks(ctx, dequantized, other);
    CHECK(std::memcmp(requantized.storage.data(), direct.storage.data(), direct.view.bytes()) == 0);
  }
  // Rows that are not whole blocks are refused by name.
  std::vector<float> small(2 * 48);
  const sc2::WeightMatrix odd{sc2::DType::f32, sc2::WeightLayout::row_major, small.data(), 2, 48, std::nullopt};
  CHECK_THROWS_WITH(sc2::cpu::pack_blocks(ctx, odd, Format::q4_k), Catch::Contains("not whole q4_k blocks of 256"));
}

TEST_CASE("linear on blocks gives the dequantized weights' bits on every float path", "[quant][linear]") {
  for (const sc2::cpu::Isa isa : sc2::test::supported_isas()) sc2::test::check_block_linear_panel_range(isa);
}

TEST_CASE("the opt-in integer path matches the reference on its int8 activations", "[quant][linear]") {
  if (!sc2::cpu::isa_supported(sc2::cpu::Isa::avx512_vnni))
    SC2_SKIP_TEST("this processor has no AVX-512 VNNI: the path runs only under emulation (sc2-avx512-emulated-tests)");
  sc2::test::check_block_linear_panel_range(sc2::cpu::Isa::avx512_vnni);
}

TEST_CASE("an embedding table in blocks gives its dequantized rows", "[quant][embedding]") {
  std::mt19937 rng(5);
  sc2::CpuContext ctx(2);
  const std::int64_t V = 21, D = 256;
  const std::vector<float> table = random_matrix(V, D, rng);
  const sc2::WeightMatrix floats{sc2::DType::f32, sc2::WeightLayout::row_major, table.data(), V, D, std::nullopt};
  for (const Format format : kFormats) {
    const auto packed = sc2::cpu::pack_blocks(ctx, floats, format);
    const std::vector<std::int32_t> ids{20, 0, 17, 17, 3};
    std::vector<float> out(ids.size() * D), want(D);
    sc2::ops::embedding(ctx, sc2::MatrixView(out.data(), {5, D}), packed.view, std::span<const std::int32_t>(ids));
    std::vector<std::byte> row(sc2::quant::row_bytes(format, D));
    for (std::size_t i = 0; i < ids.size(); ++i) {
      sc2::quant::quantize(format, table.data() + ids[i] * D, row.data(), D);
      sc2::quant::dequantize(format, row.data(), want.data(), D);
      INFO(sc2::quant::format_name(format) << " id " << ids[i]);
      CHECK(std::memcmp(out.data() + i * D, want.data(), D * sizeof(float)) == 0);
    }
  }
}
