// Safetensors: round trip, sharded checkpoints, and every malformed file giving an
// sc2::Error that names the file and the tensor.

#include "support.hpp"

#include <sc2/io/safetensors.hpp>
#include <sc2/backends/cpu.hpp>
#include <sc2/models/causal_lm.hpp>

#include <filesystem>
#include <fstream>

namespace {

namespace fs = std::filesystem;

// A fresh, empty directory under the system temp dir for one test.
fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("sc2-test-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes 8-byte length + header text + `data_bytes` zero bytes; `declared` overrides the length.
fs::path raw_file(const fs::path& path, const std::string& header, std::size_t data_bytes,
                  std::optional<std::uint64_t> declared = std::nullopt) {
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t n = declared.value_or(header.size());
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header;
  out << std::string(data_bytes, '\0');
  return path;
}

void check_open_fails(const fs::path& path, const std::vector<std::string>& needles) {
  try {
    sc2::SafetensorsFile::open(path);
    FAIL("opening " << path << " succeeded");
  } catch (const sc2::Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find(path.string()) != std::string::npos);
    for (const auto& needle : needles) CHECK(what.find(needle) != std::string::npos);
  }
}

}  // namespace

TEST_CASE("a written safetensors file reads back with names, dtypes, shapes and bytes", "[safetensors]") {
  const fs::path dir = scratch_dir("roundtrip");
  std::vector<float> a{1, 2, 3, 4, 5, 6};
  std::vector<std::uint16_t> b{0x3f80, 0x4000};
  sc2::write_safetensors(dir / "x.safetensors",
                         {{"a", "F32", {2, 3}, std::as_bytes(std::span(a))}, {"b", "BF16", {2}, std::as_bytes(std::span(b))}},
                         {{"format", "pt"}});
  const auto f = sc2::SafetensorsFile::open(dir / "x.safetensors");
  REQUIRE(f.tensors().size() == 2);
  const auto* ta = f.find("a");
  REQUIRE(ta);
  CHECK(ta->dtype == sc2::DType::f32);
  CHECK(ta->shape == std::vector<std::int64_t>{2, 3});
  CHECK(std::memcmp(ta->bytes.data(), a.data(), 24) == 0);
  CHECK(f.find("b")->dtype == sc2::DType::bf16);
  CHECK(f.metadata().at("format") == "pt");
  CHECK(f.find("c") == nullptr);
  // Data starts 8-byte aligned, so tensors can be used in place.
  CHECK(reinterpret_cast<std::uintptr_t>(ta->bytes.data()) % 8 == 0);
}

TEST_CASE("malformed safetensors files give errors naming the file and the tensor", "[safetensors][malformed]") {
  const fs::path dir = scratch_dir("malformed");
  SECTION("shorter than the length field") {
    std::ofstream(dir / "short.safetensors") << "abc";
    check_open_fails(dir / "short.safetensors", {"too short"});
  }
  SECTION("header length beyond the file") {
    check_open_fails(raw_file(dir / "long.safetensors", "{}", 0, 4096), {"header length 4096 exceeds"});
  }
  SECTION("absurd header length") {
    check_open_fails(raw_file(dir / "huge.safetensors", "{}", 0, std::uint64_t{1} << 62), {"exceeds the 100000000 byte limit"});
  }
  SECTION("header not JSON") {
    check_open_fails(raw_file(dir / "text.safetensors", "{not json", 0), {"not valid JSON"});
  }
  SECTION("header not an object") {
    check_open_fails(raw_file(dir / "array.safetensors", "[1, 2]", 0), {"not an object"});
  }
  SECTION("unknown dtype") {
    check_open_fails(raw_file(dir / "dtype.safetensors", R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", 4),
                     {"'w'", "unknown dtype 'F17'"});
  }
  SECTION("byte size disagrees with the offsets") {
    check_open_fails(raw_file(dir / "size.safetensors", R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16),
                     {"'w'", "needs 16 bytes but its offsets span 12"});
  }
  SECTION("offsets past the data section") {
    check_open_fails(raw_file(dir / "range.safetensors", R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 12),
                     {"'w'", "past the data section"});
  }
  SECTION("offsets reversed") {
    check_open_fails(raw_file(dir / "reversed.safetensors", R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", 12),
                     {"'w'", "invalid data_offsets"});
  }
  SECTION("overlapping tensors") {
    check_open_fails(raw_file(dir / "overlap.safetensors",
                              R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                              12),
                     {"'a' and 'b' overlap"});
  }
  SECTION("unaligned offsets") {
    check_open_fails(raw_file(dir / "unaligned.safetensors", R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}})", 8),
                     {"'w'", "not a multiple of its 4-byte elements"});
  }
  SECTION("duplicate names") {
    check_open_fails(raw_file(dir / "dup.safetensors",
                              R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                              8),
                     {"'w' appears twice"});
  }
  SECTION("a shape entry that is not a non-negative integer") {
    check_open_fails(raw_file(dir / "shape.safetensors", R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4),
                     {"'w'", "shape entry"});
  }
  SECTION("a shape whose size overflows") {
    check_open_fails(raw_file(dir / "overflow.safetensors",
                              R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,4],"data_offsets":[0,4]}})", 4),
                     {"'w'", "needs more bytes than the data section"});
  }
  SECTION("a truncated file") {
    std::vector<float> a(64, 1.0f);
    sc2::write_safetensors(dir / "full.safetensors", {{"w", "F32", {64}, std::as_bytes(std::span(a))}});
    fs::resize_file(dir / "full.safetensors", fs::file_size(dir / "full.safetensors") - 10);
    check_open_fails(dir / "full.safetensors", {"'w'", "data section"});
  }
}

TEST_CASE("a sharded checkpoint finds tensors across shards and names a missing shard", "[safetensors]") {
  const auto dir = sc2::test::fixture("models/sharded_window12_f32");
  const auto ckpt = sc2::Safetensors::open(dir);
  CHECK(ckpt.files().size() == 8);
  CHECK(ckpt.at("model.norm.weight").shape == std::vector<std::int64_t>{64});
  CHECK_THROWS_WITH(ckpt.at("model.nothing"), Catch::Contains("'model.nothing' is missing from the 8 shards"));

  const fs::path broken = scratch_dir("missing-shard");
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.path().filename() != "model-00003-of-00008.safetensors") fs::copy(entry.path(), broken / entry.path().filename());
  CHECK_THROWS_WITH(sc2::Safetensors::open(broken), Catch::Contains("model-00003-of-00008.safetensors") &&
                                                        Catch::Contains("does not exist"));
}

TEST_CASE("weights that disagree with config.json are named", "[safetensors][malformed]") {
  const auto source = sc2::test::fixture("models/gqa1_tied_window8_f32");
  const fs::path dir = scratch_dir("wrong-shape");
  fs::copy(source / "model.safetensors", dir / "model.safetensors");
  std::string config = sc2::read_text_file(source / "config.json");
  config.replace(config.find("\"intermediate_size\": 128"), 24, "\"intermediate_size\": 96");
  std::ofstream(dir / "config.json") << config;
  CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                    Catch::Contains("model.layers.0.mlp.c_fc.weight") && Catch::Contains("shape [128, 64], expected [96, 64]"));
}

TEST_CASE("missing and unexpected tensors are named", "[safetensors][malformed]") {
  const auto source = sc2::test::fixture("models/gqa1_tied_window8_f32");
  const auto ckpt = sc2::Safetensors::open(source);
  std::vector<sc2::TensorToWrite> all;
  for (const auto& name : ckpt.names()) {
    const auto& t = ckpt.at(name);
    all.push_back({name, t.dtype_name, t.shape, t.bytes});
  }
  SECTION("missing") {
    const fs::path dir = scratch_dir("missing-tensor");
    fs::copy(source / "config.json", dir / "config.json");
    std::vector<sc2::TensorToWrite> fewer;
    for (const auto& t : all)
      if (t.name != "model.layers.1.self_attn.v_proj.bias") fewer.push_back(t);
    sc2::write_safetensors(dir / "model.safetensors", fewer);
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                      Catch::Contains("tensor 'model.layers.1.self_attn.v_proj.bias' is missing"));
  }
  SECTION("unexpected") {
    const fs::path dir = scratch_dir("extra-tensor");
    fs::copy(source / "config.json", dir / "config.json");
    std::vector<float> extra(4);
    all.push_back({"model.layers.0.mystery", "F32", {4}, std::as_bytes(std::span(extra))});
    sc2::write_safetensors(dir / "model.safetensors", all);
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir), Catch::Contains("does not use: model.layers.0.mystery"));
  }
}
