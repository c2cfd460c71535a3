// The GGUF reader: files written by llama.cpp's own Python writer (tools/reference/make_gguf_fixtures.py)
// read back exactly, and every malformed file of docs/malformed-inputs.md is refused with its error.

#include "support.hpp"

#include <sc2/io/gguf.hpp>
#include <sc2/quant/blocks.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

#include <unistd.h>

namespace {

using Catch::Matchers::Contains;

// Builds GGUF bytes piece by piece, so that each test can break one piece.
struct GgufBuilder {
  std::uint32_t version = 3;
  std::string kv, infos, data;
  std::uint64_t kv_count = 0, tensor_count = 0;
  std::uint64_t alignment = 32;

  template <class T> static void put(std::string& s, T v) { s.append(reinterpret_cast<const char*>(&v), sizeof v); }
  static void put_string(std::string& s, std::string_view text) {
    put<std::uint64_t>(s, text.size());
    s.append(text);
  }
  GgufBuilder& key_u32(std::string_view key, std::uint32_t v) {
    put_string(kv, key), put<std::uint32_t>(kv, 4), put(kv, v), ++kv_count;
    return *this;
  }
  GgufBuilder& key_string(std::string_view key, std::string_view v) {
    put_string(kv, key), put<std::uint32_t>(kv, 8), put_string(kv, v), ++kv_count;
    return *this;
  }
  // A tensor of `ne` (innermost first) and GGML type `type`, its bytes appended to the data section.
  GgufBuilder& tensor(std::string_view name, std::vector<std::uint64_t> ne, std::uint32_t type, std::size_t bytes,
                      std::optional<std::uint64_t> offset = std::nullopt) {
    const std::uint64_t at = offset.value_or((data.size() + alignment - 1) / alignment * alignment);
    put_string(infos, name), put<std::uint32_t>(infos, static_cast<std::uint32_t>(ne.size()));
    for (auto e : ne) put(infos, e);
    put(infos, type), put(infos, at), ++tensor_count;
    if (data.size() < at + bytes) data.resize(at + bytes, '\x01');
    return *this;
  }
  std::string bytes() const {
    std::string s = "GGUF";
    put(s, version), put(s, tensor_count), put(s, kv_count);
    s += kv + infos;
    s.resize((s.size() + alignment - 1) / alignment * alignment, '\0');
    return s + data;
  }
};

std::filesystem::path write_temp(const std::string& bytes, const std::string& name = "") {
  static int calls = 0;
  const auto dir = std::filesystem::temp_directory_path() / ("sc2-gguf-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / (name.empty() ? std::to_string(++calls) + ".gguf" : name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

std::string open_error(const std::string& bytes) {
  try {
    (void)sc2::GgufFile::open(write_temp(bytes));
  } catch (const sc2::Error& e) {
    return e.what();
  }
  return "(opened)";
}

// A valid file: one 64 × 2 F32 tensor.
GgufBuilder valid() {
  GgufBuilder b;
  b.key_string("general.architecture", "starcoder2").tensor("w", {64, 2}, 0, 64 * 2 * 4);
  return b;
}

std::vector<float> widen(const sc2::GgufTensor& t) {
  const auto n = static_cast<std::size_t>(t.numel());
  std::vector<float> out(n);
  switch (t.type.type) {
    case sc2::GgmlType::f32: std::memcpy(out.data(), t.bytes.data(), n * 4); break;
    case sc2::GgmlType::f16:
    case sc2::GgmlType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t b;
        std::memcpy(&b, t.bytes.data() + 2 * i, 2);
        out[i] = t.type.type == sc2::GgmlType::f16 ? sc2::f16::from_bits(b).to_float() : sc2::bf16::from_bits(b).to_float();
      }
      break;
    case sc2::GgmlType::q8_0: sc2::quant::dequantize(sc2::quant::Format::q8_0, t.bytes.data(), out.data(), t.numel()); break;
    case sc2::GgmlType::q4_k: sc2::quant::dequantize(sc2::quant::Format::q4_k, t.bytes.data(), out.data(), t.numel()); break;
    default: FAIL("no widening for " << t.type.name);
  }
  return out;
}

}  // namespace

TEST_CASE("a GGUF file written by gguf.GGUFWriter reads back: every value type, tensor types and alignment", "[gguf]") {
  const auto expected = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("gguf/expected.json")));
  const sc2::Gguf g = sc2::Gguf::open(sc2::test::fixture("gguf/assorted.gguf"));
  REQUIRE(g.files().size() == 1);
  CHECK(g.files()[0].version() == 3);
  CHECK(g.files()[0].alignment() == 64);
  CHECK(g.unsigned_integer("test.u8") == 200);
  CHECK(g.unsigned_integer("test.u16") == 60000);
  CHECK(g.unsigned_integer("test.u32") == 4000000000u);
  CHECK(g.unsigned_integer("test.u64") == (std::uint64_t{1} << 40) + 3);
  CHECK_THROWS_WITH(g.unsigned_integer("test.i8"), Contains("key 'test.i8' is -100, expected a non-negative integer"));
  CHECK(g.optional_number("test.f32") == 0.25);
  CHECK(g.optional_number("test.f64") == 1e-300);
  CHECK(g.find("test.bool")->raw[0] == std::byte{1});
  CHECK(g.optional_string("test.string") == "h\xc3\xa9llo");
  CHECK(g.integers("test.ints") == std::vector<std::int64_t>{1, 2, 3});
  const auto strings = g.strings("test.strings");
  REQUIRE(strings.size() == 3);
  CHECK((strings[0] == "a" && strings[1].empty() && strings[2] == "\xc4\xa0Hello"));
  CHECK(g.find("test.nested")->element == sc2::GgufValueType::array);
  CHECK(!g.optional_unsigned("test.absent"));
  CHECK_THROWS_WITH(g.strings("test.ints"), Contains("key 'test.ints' is not an array of strings"));

  for (const auto& [name, want] : expected.at("assorted.gguf").at("tensors").items()) {
    INFO(name);
    const sc2::GgufTensor& t = g.tensor(name);
    CHECK(t.type.name == want.at("type").get<std::string>());
    CHECK(t.shape == want.at("shape").get<std::vector<std::int64_t>>());
    CHECK((t.bytes.data() - g.files()[0].bytes().data()) % 64 == 0);
    CHECK(widen(t) == want.at("values").get<std::vector<float>>());
  }
  CHECK_THROWS_WITH(g.tensor("absent"), Contains("tensor 'absent' is missing from"));
}

TEST_CASE("a split GGUF set opens from its first file with every tensor", "[gguf]") {
  const auto expected = nlohmann::json::parse(sc2::read_text_file(sc2::test::fixture("gguf/expected.json")));
  const sc2::Gguf g = sc2::Gguf::open(sc2::test::fixture("gguf/split-00001-of-00002.gguf"));
  CHECK(g.files().size() == 2);
  std::vector<std::string> names;
  for (const sc2::GgufTensor* t : g.tensors()) names.push_back(t->name);
  std::sort(names.begin(), names.end());
  CHECK(names == expected.at("split").at("tensors").get<std::vector<std::string>>());

  // A set with a file missing, and a file whose name does not say its place.
  const auto first = sc2::read_text_file(sc2::test::fixture("gguf/split-00001-of-00002.gguf"));
  const auto alone = write_temp(first, "lonely-00001-of-00002.gguf");
  CHECK_THROWS_WITH(sc2::Gguf::open(alone), Contains("is one of 2 split files, but") && Contains("lonely-00002-of-00002.gguf' does not exist"));
  CHECK_THROWS_WITH(sc2::Gguf::open(write_temp(first, "renamed.gguf")),
                    Contains("says it is one of 2 split files, but its name is not <name>-NNNNN-of-NNNNN.gguf"));
  // The same tensor in two files of a set.
  write_temp(first, "twice-00001-of-00002.gguf");
  write_temp(first, "twice-00002-of-00002.gguf");
  CHECK_THROWS_WITH(sc2::Gguf::open(alone.parent_path() / "twice-00001-of-00002.gguf"),
                    Contains("tensor 'weights.f32' is in more than one file of"));
}

TEST_CASE("malformed GGUF files give errors naming the file and the key or tensor", "[gguf]") {
  CHECK(open_error(valid().bytes()) == "(opened)");
  SECTION("shorter than the header") { CHECK_THAT(open_error("GGUF\x03"), Contains("is not a GGUF file: 5 bytes, too short for the 24-byte header")); }
  SECTION("wrong magic") {
    auto s = valid().bytes();
    s[0] = 'X';
    CHECK_THAT(open_error(s), Contains("is not a GGUF file: it does not start with \"GGUF\""));
  }
  SECTION("version 1") {
    auto b = valid();
    b.version = 1;
    CHECK_THAT(open_error(b.bytes()), Contains("GGUF version 1 is not supported (2 and 3 are)"));
  }
  SECTION("a metadata count the file cannot hold") {
    auto b = valid();
    b.kv_count = std::uint64_t{1} << 60;
    CHECK_THAT(open_error(b.bytes()), Contains("1152921504606846976 metadata entries cannot fit in the"));
  }
  SECTION("a tensor count the file cannot hold") {
    auto b = valid();
    b.tensor_count = std::uint64_t{1} << 40;
    CHECK_THAT(open_error(b.bytes()), Contains("1099511627776 tensors cannot fit in the"));
  }
  SECTION("a string longer than the file") {
    GgufBuilder b;
    GgufBuilder::put<std::uint64_t>(b.kv, 1000), b.kv += "abc", b.kv_count = 1;
    CHECK_THAT(open_error(b.bytes()), Contains("a metadata key needs 1000 bytes at offset 32, but the file has"));
  }
  SECTION("an unknown value type") {
    GgufBuilder b;
    GgufBuilder::put_string(b.kv, "k"), GgufBuilder::put<std::uint32_t>(b.kv, 13), b.kv_count = 1;
    CHECK_THAT(open_error(b.bytes()), Contains("key 'k' has unknown value type 13"));
  }
  SECTION("an array longer than the file") {
    GgufBuilder b;
    GgufBuilder::put_string(b.kv, "k"), GgufBuilder::put<std::uint32_t>(b.kv, 9), GgufBuilder::put<std::uint32_t>(b.kv, 5);
    GgufBuilder::put<std::uint64_t>(b.kv, std::uint64_t{1} << 61), b.kv_count = 1;
    CHECK_THAT(open_error(b.bytes()), Contains("key 'k' holds 2305843009213693952 elements of 4 bytes, more than the"));
  }
  SECTION("an array of strings longer than the file") {
    GgufBuilder b;
    GgufBuilder::put_string(b.kv, "k"), GgufBuilder::put<std::uint32_t>(b.kv, 9), GgufBuilder::put<std::uint32_t>(b.kv, 8);
    GgufBuilder::put<std::uint64_t>(b.kv, 1000000), b.kv_count = 1;
    CHECK_THAT(open_error(b.bytes()), Contains("key 'k' holds 1000000 strings, more than the"));
  }
  SECTION("arrays nested too deep") {
    GgufBuilder b;
    GgufBuilder::put_string(b.kv, "k"), GgufBuilder::put<std::uint32_t>(b.kv, 9);
    for (int i = 0; i < 6; ++i) GgufBuilder::put<std::uint32_t>(b.kv, 9), GgufBuilder::put<std::uint64_t>(b.kv, 1);
    b.kv_count = 1;
    CHECK_THAT(open_error(b.bytes() + std::string(64, '\0')), Contains("key 'k' nests arrays deeper than 4 levels"));
  }
  SECTION("a key twice") {
    auto b = valid();
    b.key_string("general.architecture", "again");
    CHECK_THAT(open_error(b.bytes()), Contains("key 'general.architecture' appears twice"));
  }
  SECTION("an alignment that is not a power of two") {
    auto b = valid();
    b.key_u32("general.alignment", 48);
    CHECK_THAT(open_error(b.bytes()), Contains("general.alignment 48 is not a power of two"));
  }
  SECTION("no dimensions, or more than four") {
    GgufBuilder b;
    b.tensor("w", {}, 0, 4);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' has 0 dimensions (1 to 4 allowed)"));
    GgufBuilder c;
    c.tensor("w", {1, 1, 1, 1, 1}, 0, 4);
    CHECK_THAT(open_error(c.bytes()), Contains("tensor 'w' has 5 dimensions (1 to 4 allowed)"));
  }
  SECTION("a zero extent") {
    GgufBuilder b;
    b.tensor("w", {4, 0}, 0, 16);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' of extents [4, 0] holds more elements than the file could"));
  }
  SECTION("extents whose product overflows") {
    GgufBuilder b;
    b.tensor("w", {std::uint64_t{1} << 32, std::uint64_t{1} << 32, 4}, 0, 16);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' of extents [4294967296, 4294967296, 4] holds more elements"));
  }
  SECTION("an unknown type") {
    GgufBuilder b;
    b.tensor("w", {4}, 99, 16);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' has unknown GGML type 99"));
  }
  SECTION("rows that are not whole blocks") {
    GgufBuilder b;
    b.tensor("w", {48, 2}, 12, 144 * 2);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' of type Q4_K has rows of 48 elements, not a whole number of 256-element blocks"));
  }
  SECTION("an unaligned offset") {
    GgufBuilder b;
    b.tensor("w", {4}, 0, 16, 8);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' starts at offset 8, not a multiple of the alignment 32"));
  }
  SECTION("a tensor past the data section") {
    auto s = valid().bytes();
    s.resize(s.size() - 4);
    CHECK_THAT(open_error(s), Contains("tensor 'w' (512 bytes at offset 0) ends past the data section's 508 bytes"));
  }
  SECTION("overlapping tensors") {
    GgufBuilder b;
    b.tensor("a", {16}, 0, 64, 0).tensor("b", {16}, 0, 64, 32);
    CHECK_THAT(open_error(b.bytes()), Contains("tensors 'a' and 'b' overlap in the data section"));
  }
  SECTION("a tensor name twice") {
    GgufBuilder b;
    b.tensor("w", {8}, 0, 32).tensor("w", {8}, 0, 32);
    CHECK_THAT(open_error(b.bytes()), Contains("tensor 'w' appears twice"));
  }
}
