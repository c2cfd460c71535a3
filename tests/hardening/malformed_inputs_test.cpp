// Hostile and malformed inputs that other tests do not cover: each gives an
// sc2::Error that says what is wrong, never a crash, a hang or an absurd
// allocation. docs/malformed-inputs.md lists these with the rest.

#include "support.hpp"

#include <sc2/core/arena.hpp>
#include <sc2/core/buffer.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/generation/sampler.hpp>
#include <sc2/io/safetensors.hpp>
#include <sc2/tokenizer/tokenizer.hpp>
#include <sc2/backends/cpu.hpp>
#include <sc2/models/causal_lm.hpp>
#include <sc2/models/config.hpp>
#include <sc2/models/kv_cache.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <span>
#include <string>
#include <vector>

// AddressSanitizer reports a refused allocation itself instead of throwing std::bad_alloc.
#if defined(__SANITIZE_ADDRESS__)
#define SC2_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SC2_TEST_ASAN 1
#endif
#endif

namespace {

namespace fs = std::filesystem;
using Catch::Contains;
using nlohmann::json;

// A fresh, empty directory under the system temp dir for one test.
fs::path scratch_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("sc2-hardening-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

// Writes a safetensors file from its header text and `data_bytes` zero bytes.
fs::path safetensors_file(const fs::path& path, const std::string& header, std::size_t data_bytes = 0) {
  std::ofstream out(path, std::ios::binary);
  const std::uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out.put(static_cast<char>((n >> (8 * i)) & 0xff));
  out << header << std::string(data_bytes, '\0');
  return path;
}

// A copy of a fixture checkpoint whose config.json gets the JSON merge patch `patch`.
fs::path patched_checkpoint(const std::string& fixture, const std::string& name, const json& patch) {
  const fs::path source = sc2::test::fixture("models/" + fixture);
  const fs::path dir = scratch_dir(name);
  fs::copy(source / "model.safetensors", dir / "model.safetensors");
  json config = json::parse(sc2::read_text_file(source / "config.json"));
  config.merge_patch(patch);
  std::ofstream(dir / "config.json") << config.dump(2);
  return dir;
}

const sc2::Tokenizer& tiny_tokenizer() {
  static const sc2::Tokenizer tok =
      sc2::Tokenizer::from_file(fs::path(SC2_SOURCE_DIR) / "models/sc2-tiny/tokenizer.json");
  return tok;
}

std::string minimal_tokenizer(const json& patch = json::object()) {
  json document = json::parse(R"({
    "added_tokens": [], "normalizer": null,
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false},
    "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}})");
  document.merge_patch(patch);
  return document.dump();
}

std::string nested(std::size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST_CASE("deeply nested JSON is refused before it can overflow the stack", "[hardening][malformed]") {
  // 100000 levels took printing the value in an error message (recursive) past the stack.
  const std::string deep = nested(100000);
  const fs::path dir = scratch_dir("deep-json");
  const fs::path file =
      safetensors_file(dir / "deep.safetensors", R"({"w":{"dtype":"F32","shape":)" + deep + R"(,"data_offsets":[0,0]}})");
  CHECK_THROWS_WITH(sc2::SafetensorsFile::open(file), Contains("the header nests JSON deeper than 128 levels"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(R"({"vocab_size": )" + deep + "}"),
                    Contains("config.json: JSON nested deeper than 128 levels"));
  CHECK_THROWS_WITH(sc2::Tokenizer::from_json(R"({"version": )" + deep + "}"),
                    Contains("tokenizer.json: malformed JSON: nested deeper than 128 levels"));
  // Brackets inside strings do not count, and ordinary nesting is fine.
  CHECK_FALSE(sc2::detail::json_nested_deeper_than("[\"" + std::string(1000, '[') + "\"]"));
  CHECK_FALSE(sc2::detail::json_nested_deeper_than(nested(128)));
  CHECK(sc2::detail::json_nested_deeper_than(nested(129)));
}

TEST_CASE("a number too large for a double in tokenizer.json is malformed JSON", "[hardening][malformed]") {
  // The parser reports it as out_of_range, not parse_error; it used to escape as such.
  CHECK_THROWS_WITH(sc2::Tokenizer::from_json(R"({"truncation": 1e309})"),
                    Contains("malformed JSON") && Contains("number overflow parsing '1e309'"));
}

TEST_CASE("a huge token id in tokenizer.json is refused before it sizes a table", "[hardening][malformed]") {
  // The id used to size a table of 2^31 entries (over 100 GB).
  const std::string huge = minimal_tokenizer(json::parse(R"({"model": {"vocab": {"b": 2147483647}}})"));
  CHECK_THROWS_WITH(sc2::Tokenizer::from_json(huge),
                    Contains("model.vocab: id 2147483647 of 'b' is out of range") &&
                        Contains("3 vocab entries and 0 added tokens number ids below 3"));
  // Ids must number the entries: a gap leaves an id past the count.
  const std::string gap = minimal_tokenizer(json::parse(R"({"model": {"vocab": {"c": 4}}})"));
  CHECK_THROWS_WITH(sc2::Tokenizer::from_json(gap), Contains("id 4 of 'c' is out of range"));
}

TEST_CASE("a pre_tokenizer with too many steps is refused at load", "[hardening][malformed]") {
  // encode recursed once per step: 100000 Digits steps overflowed the stack.
  json steps = json::array();
  for (int i = 0; i < 100000; ++i) steps.push_back({{"type", "Digits"}, {"individual_digits", false}});
  steps.push_back({{"type", "ByteLevel"}, {"add_prefix_space", false}});
  json patch;
  patch["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", steps}};
  CHECK_THROWS_WITH(sc2::Tokenizer::from_json(minimal_tokenizer(patch)),
                    Contains("pre_tokenizer has 100001 steps; sc2 accepts at most 64"));
}

TEST_CASE("config.json: a null rope_theta keeps the default, absurd label counts are refused", "[hardening][malformed]") {
  const std::string base = R"({"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                               "num_attention_heads": 4)";
  // rope_parameters.rope_theta null used to throw std::bad_optional_access.
  CHECK(sc2::ModelConfig::from_json(base + R"(, "rope_parameters": {"rope_theta": null}})").rope_theta == 10000.0);
  // Each label gets a name: 2^30 of them would be tens of gigabytes.
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base + R"(, "num_labels": 1073741824})"),
                    Contains("num_labels 1073741824 is more than the 65536 sc2 accepts"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base + R"(, "head_dim": 15})"), Contains("head_dim 15 must be even"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base + R"(, "max_position_embeddings": 0})"),
                    Contains("'max_position_embeddings' must be an integer in [1, 2^30], found 0"));
}

TEST_CASE("a config.json with 2^30 layers and a small checkpoint fails on the first missing layer", "[hardening][malformed]") {
  const fs::path dir = patched_checkpoint("gqa1_tied_window8_f32", "many-layers", {{"num_hidden_layers", 1 << 30}});
  CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                    Contains("tensor 'model.layers.2.input_layernorm.weight' is missing from"));
}

TEST_CASE("a KV cache beyond the machine's memory is refused before it is allocated", "[hardening][resources]") {
  // No window and a context of 2^30 tokens: 512 GiB of keys and values for this small model.
  const fs::path dir = patched_checkpoint("gqa2_untied_nobias_nowindow_f32", "huge-context",
                                          {{"max_position_embeddings", 1 << 30}});
  auto lm = sc2::Starcoder2ForCausalLM::load(dir);
  const double needed = 2.0 * 4 * (1 << 30) * 2 * 2 * 16;  // k and v, float, slots, layers, kv heads, head dim
  if (needed > static_cast<double>(sc2::physical_memory_bytes())) {
    CHECK_THROWS_WITH(lm.make_cache(), Contains("KvPool: 33554433 pages of 16384 bytes need 512 GiB") &&
                                           Contains("use fewer pages or a shorter context"));
    sc2::Generator<sc2::Starcoder2ForCausalLM> gen(lm, tiny_tokenizer());
    sc2::CpuContext ctx(1);
    const std::vector<std::int32_t> ids{1, 2};
    CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(ids), {}), Contains("KvPool"));
  }
  // A smaller context works.
  CHECK(lm.make_cache(16).max_context() == 16);
  // Sizes whose product overflows never reach the allocator.
  CHECK_THROWS_WITH(sc2::KvPool<sc2::cpu::Backend>({1 << 30, 1 << 20, 1 << 20, std::nullopt, 1}, {.page_size = 1 << 16, .pages = 1 << 30}),
                    Contains("KvPool: "));
}

TEST_CASE("scratch sizes that overflow are refused", "[hardening][resources]") {
  auto lm = sc2::Starcoder2ForCausalLM::load(sc2::test::fixture("models/gqa1_tied_window8_f32"));
  auto pool = lm.make_kv_pool({.page_size = 4, .pages = 8});
  CHECK_THROWS_WITH(lm.make_workspace({.max_tokens = std::numeric_limits<std::int64_t>::max() / 2}, pool),
                    Contains("must be in 1..2^24"));
  sc2::ArenaPlan plan;
  CHECK_THROWS_WITH(plan.reserve<float>(std::numeric_limits<std::size_t>::max() / 2), Contains("overflows"));
  plan.reserve<float>(16);
  CHECK_THROWS_WITH(plan.reserve<std::byte>(std::numeric_limits<std::size_t>::max() - 64), Contains("overflow"));
  sc2::Arena<sc2::Host> arena(plan);
  CHECK_THROWS_WITH(arena.take<double>(std::numeric_limits<std::size_t>::max() / 4), Contains("overflows"));
  CHECK(arena.take_span<float>(16).size() == 16);
  CHECK_THROWS_WITH(arena.take<float>(1), Contains("scratch arena exhausted"));
}

#ifndef SC2_TEST_ASAN
TEST_CASE("an allocation the system refuses is an sc2::Error", "[hardening][resources]") {
  CHECK_THROWS_WITH(sc2::Buffer<float>(std::size_t{1} << 60), Contains("cannot allocate") &&
                                                                  Contains("out of memory"));
}
#endif

TEST_CASE("checkpoints that disagree with what the model needs are named", "[hardening][malformed]") {
  SECTION("no config.json") {
    const fs::path dir = scratch_dir("no-config");
    fs::copy(sc2::test::fixture("models/gqa1_tied_window8_f32/model.safetensors"), dir / "model.safetensors");
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir), Contains("config.json") && Contains("cannot open"));
  }
  SECTION("untied embeddings without lm_head.weight") {
    const fs::path dir = patched_checkpoint("gqa1_tied_window8_f32", "untied", {{"tie_word_embeddings", false}});
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                      Contains("tie_word_embeddings is false but") && Contains("holds no lm_head.weight"));
  }
  SECTION("an activation the model does not compute") {
    const fs::path dir = patched_checkpoint("gqa1_tied_window8_f32", "relu", {{"hidden_act", "relu"}});
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                      Contains("hidden_act 'relu' is not the 'gelu_pytorch_tanh' this model's MLP computes"));
  }
  SECTION("a weight stored as integers") {
    const auto source = sc2::test::fixture("models/gqa1_tied_window8_f32");
    const auto ckpt = sc2::Safetensors::open(source);
    std::vector<sc2::TensorToWrite> all;
    for (const auto& name : ckpt.names()) {
      const auto& t = ckpt.at(name);
      all.push_back({name, name == "model.norm.weight" ? "I32" : t.dtype_name, t.shape, t.bytes});
    }
    const fs::path dir = scratch_dir("int-weight");
    fs::copy(source / "config.json", dir / "config.json");
    sc2::write_safetensors(dir / "model.safetensors", all);
    CHECK_THROWS_WITH(sc2::Starcoder2ForCausalLM::load(dir),
                      Contains("tensor 'model.norm.weight'") && Contains("has dtype I32; weights must be F32, BF16 or F16"));
  }
}

TEST_CASE("a sharded index that is not JSON or misplaces a tensor is refused", "[hardening][malformed]") {
  const fs::path source = sc2::test::fixture("models/sharded_window12_f32");
  const fs::path dir = scratch_dir("bad-index");
  for (const auto& entry : fs::directory_iterator(source)) fs::copy(entry.path(), dir / entry.path().filename());
  const fs::path index = dir / "model.safetensors.index.json";
  json document = json::parse(sc2::read_text_file(index));
  std::ofstream(index) << "{\"weight_map\": ";
  CHECK_THROWS_WITH(sc2::Safetensors::open(dir), Contains("model.safetensors.index.json' is not a JSON object"));
  const std::string name = document["weight_map"].begin().key();
  const std::string shard = document["weight_map"].begin().value().get<std::string>();
  document["weight_map"][name] = shard == "model-00001-of-00008.safetensors" ? "model-00002-of-00008.safetensors"
                                                                            : "model-00001-of-00008.safetensors";
  std::ofstream(index) << document.dump();
  CHECK_THROWS_WITH(sc2::Safetensors::open(dir), Contains("places tensor '" + name + "'") && Contains("which does not hold it"));
  document["weight_map"][name] = "../model.safetensors";
  std::ofstream(index) << document.dump();
  CHECK_THROWS_WITH(sc2::Safetensors::open(dir), Contains("which is not a file in the checkpoint directory"));
}

TEST_CASE("generation through a real model refuses bad requests with clear errors", "[hardening][generation]") {
  auto lm = sc2::Starcoder2ForCausalLM::load(sc2::test::fixture("models/gqa1_tied_window8_f32"));  // V = 256
  sc2::Generator<sc2::Starcoder2ForCausalLM> gen(lm, tiny_tokenizer());
  sc2::CpuContext ctx(1);
  sc2::GenerationConfig config;
  config.max_new_tokens = 2;
  const std::vector<std::int32_t> five{1, 2, 3, 4, 5};

  config.max_context = 4;
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(five), config),
                    Contains("the prompt has 5 tokens; the context holds 4, so nothing could be generated"));
  sc2::KvCache cache = lm.make_cache(4);
  CHECK_THROWS_WITH(lm.forward_last(ctx, five, cache),
                    Contains("sequence of 5 tokens would exceed the context limit of 4 tokens"));
  config.max_context = 0;

  const std::vector<std::int32_t> out_of_range{1, 256};
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(out_of_range), config),
                    Contains("prompt token id 256 at position 1 is outside the vocabulary [0, 256)"));
  const std::vector<std::int32_t> negative{-1};
  CHECK_THROWS_WITH(lm.forward_last(ctx, negative, cache),
                    Contains("token id -1 at position 0 is outside the vocabulary [0, 256)"));
  CHECK(cache.length() == 0);  // a refused chunk leaves the cache as it was

  CHECK_THROWS_WITH(gen.generate(ctx, std::string_view("def f():\xc3("), config),
                    Contains("not valid UTF-8: ill-formed sequence at byte offset 8 (byte 0xC3)"));
  CHECK_THROWS_WITH(gen.generate(ctx, std::string_view(""), config),
                    Contains("the prompt is empty: generation needs at least one token"));
  config.max_new_tokens = 0;
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(five), config),
                    Contains("max_new_tokens must be positive, got 0"));
  config.max_new_tokens = -3;
  CHECK_THROWS_WITH(gen.generate(ctx, std::span<const std::int32_t>(five), config),
                    Contains("max_new_tokens must be positive, got -3"));

  // A token the model may produce but the tokenizer lacks cannot be decoded.
  CHECK_THROWS_WITH(tiny_tokenizer().decode(std::vector<std::int32_t>{8230}), Contains("cannot decode token id 8230"));
}

TEST_CASE("NaN and infinite logits never make the sampler read out of bounds", "[hardening][sampler]") {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  const std::vector<std::vector<float>> cases{
      {nan, nan, nan, nan}, {1.0f, nan, 3.0f, nan, -2.0f}, {inf, 1.0f, inf, -inf}, {-inf, -inf, nan}, {nan}};
  for (int mode = 0; mode < 4; ++mode) {
    sc2::SamplingConfig s;
    s.do_sample = mode > 0;
    s.top_k = mode == 1 ? 2 : 0;
    s.top_p = mode == 2 ? 0.5f : 1.0f;
    if (mode == 3) s.min_p = 0.1f;
    s.repetition_penalty = 1.3f;
    for (const auto& logits : cases) {
      std::vector<float> scores = logits;
      const std::vector<std::int32_t> history{0, 1, 99};
      sc2::Sampler sampler(s);
      try {
        const std::int32_t id = sampler.sample(scores, history);
        CHECK((id >= 0 && id < static_cast<std::int32_t>(logits.size())));
      } catch (const sc2::Error&) {
        // Refusing a distribution with nothing left is fine too.
      }
    }
  }
}
