// GGML's block formats against llama.cpp: quantization bytes from its library, dequantization from
// gguf.quants (tools/reference/make_quant_fixtures.py).

#include "support.hpp"

#include <sc2/io/safetensors.hpp>
#include <sc2/quant/blocks.hpp>

#include <bit>
#include <cstring>
#include <vector>

namespace {

using sc2::quant::Format;

constexpr Format kFormats[] = {Format::q8_0, Format::q4_0, Format::q4_k, Format::q5_k, Format::q6_k};

std::vector<std::byte> raw(const sc2::SafetensorsFile& file, const std::string& name) {
  const sc2::TensorInfo* t = file.find(name);
  REQUIRE(t != nullptr);
  REQUIRE(t->dtype_name == "U8");
  return {t->bytes.begin(), t->bytes.end()};
}

// Bits equal, NaN or not (a float compare would call -0 and 0 equal).
bool same_bits(float a, float b) { return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b); }

}  // namespace

TEST_CASE("GGML block sizes and names are llama.cpp's", "[quant]") {
  CHECK(sc2::quant::block_bytes(Format::q8_0) == 34);
  CHECK(sc2::quant::block_bytes(Format::q4_0) == 18);
  CHECK(sc2::quant::block_bytes(Format::q4_k) == 144);
  CHECK(sc2::quant::block_bytes(Format::q5_k) == 176);
  CHECK(sc2::quant::block_bytes(Format::q6_k) == 210);
  CHECK(sc2::quant::row_bytes(Format::q4_k, 3072) == 12 * 144);
  for (const Format f : kFormats) CHECK(sc2::quant::parse_format(sc2::quant::format_name(f)) == f);
  CHECK(sc2::quant::parse_format("Q4_K") == Format::q4_k);
  CHECK_THROWS_WITH(sc2::quant::parse_format("q3_k"), Catch::Matchers::Contains("unknown quantized format 'q3_k'"));
}

TEST_CASE("dequantization gives gguf.quants' bits for every format", "[quant]") {
  const auto file = sc2::SafetensorsFile::open(sc2::test::fixture("quant/blocks.safetensors"));
  for (const Format f : kFormats) {
    const std::string name(sc2::quant::format_name(f));
    DYNAMIC_SECTION(name) {
      for (const char* kind : {"", "random_"}) {
        const auto blocks = raw(file, name + "." + kind + (std::string(kind).empty() ? "quantized" : "blocks"));
        const auto want = sc2::test::read_reference(file, name + "." + kind + "dequantized").values;
        std::vector<float> got(want.size());
        sc2::quant::dequantize(f, blocks.data(), got.data(), static_cast<std::int64_t>(got.size()));
        std::size_t differ = 0;
        for (std::size_t i = 0; i < got.size(); ++i) differ += !same_bits(got[i], want[i]);
        INFO(kind << " blocks: " << differ << " of " << got.size() << " values differ");
        CHECK(differ == 0);
      }
    }
  }
}

TEST_CASE("quantization gives llama.cpp's bytes for every format", "[quant]") {
  const auto file = sc2::SafetensorsFile::open(sc2::test::fixture("quant/blocks.safetensors"));
  const auto rows = sc2::test::read_reference(file, "rows");
  const std::int64_t R = rows.shape[0], K = rows.shape[1];
  for (const Format f : kFormats) {
    const std::string name(sc2::quant::format_name(f));
    DYNAMIC_SECTION(name) {
      const auto want = raw(file, name + ".quantized");
      const std::size_t bytes = sc2::quant::row_bytes(f, K);
      REQUIRE(want.size() == static_cast<std::size_t>(R) * bytes);
      std::vector<std::byte> got(want.size());
      for (std::int64_t r = 0; r < R; ++r)
        sc2::quant::quantize(f, rows.values.data() + r * K, got.data() + static_cast<std::size_t>(r) * bytes, K);
      std::size_t differ = 0;
      const std::size_t block = sc2::quant::block_bytes(f);
      for (std::size_t b = 0; b < got.size(); b += block)
        differ += std::memcmp(got.data() + b, want.data() + b, block) != 0;
      INFO(differ << " of " << got.size() / block << " blocks differ");
      CHECK(differ == 0);
    }
  }
}
