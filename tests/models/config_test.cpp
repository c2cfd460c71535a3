// config.json parsing, presets, and the checks between them.

#include "support.hpp"

#include <sc2/backends/cpu.hpp>
#include <sc2/models/causal_lm.hpp>
#include <sc2/models/config.hpp>

namespace {

std::string base_config(const std::string& extra = "") {
  return R"({"model_type": "starcoder2", "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
             "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2)" +
         extra + "}";
}

}  // namespace

TEST_CASE("presets carry the released models' values", "[config]") {
  static_assert(sc2::StaticConfig<sc2::Config3B> && !sc2::StaticConfig<sc2::ModelConfig>);
  static_assert(sc2::Config3B::hidden_size == 3072 && sc2::Config3B::num_key_value_heads == 2);
  static_assert(sc2::Config7B::hidden_size == 4608 && sc2::Config7B::num_attention_heads == 36);
  static_assert(sc2::Config15B::num_hidden_layers == 40 && sc2::Config15B::rope_theta == 100000.0);
  static_assert(*sc2::Config15B::sliding_window == 4096 && sc2::Config7B::head_dim == 128);
  CHECK(sc2::Config3B::rope_theta == 999999.4420358813);  // not truncated to an integer
}

TEST_CASE("config.json: optional fields, both rope_theta places, null window", "[config]") {
  auto c = sc2::ModelConfig::from_json(base_config());
  CHECK(c.head_dim == 16);
  CHECK(!c.sliding_window);
  CHECK(c.rope_theta == 10000.0);
  CHECK(c.use_bias);
  CHECK(c.tie_word_embeddings);
  CHECK(c.num_labels == 2);

  c = sc2::ModelConfig::from_json(base_config(R"(, "rope_theta": 999999.4420358813, "sliding_window": 4096,
      "head_dim": 32, "use_bias": false, "tie_word_embeddings": false, "eos_token_id": [0, 7], "pad_token_id": 3)"));
  CHECK(c.rope_theta == 999999.4420358813);
  CHECK(c.sliding_window == 4096);
  CHECK(c.head_dim == 32);
  CHECK(!c.use_bias);
  CHECK(!c.tie_word_embeddings);
  CHECK(c.eos_token_ids == std::vector<int>{0, 7});
  CHECK(c.pad_token_id == 3);

  c = sc2::ModelConfig::from_json(base_config(R"(, "rope_parameters": {"rope_theta": 123.5, "rope_type": "default",
      "partial_rotary_factor": 0.5}, "sliding_window": null, "id2label": {"1": "B", "0": "A"})"));
  CHECK(c.rope_theta == 123.5);
  CHECK(c.partial_rotary_factor == 0.5);
  CHECK(c.id2label == std::vector<std::string>{"A", "B"});
  CHECK(c.num_labels == 2);
}

TEST_CASE("malformed config.json files give errors naming the field", "[config][malformed]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json("{", "x.json"), Contains("x.json: not valid JSON"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json("[]"), Contains("not a JSON object"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(R"({"hidden_size": 100})"),
                    Contains("hidden_size 100 is not a multiple of num_attention_heads 24"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "hidden_size": "64")")), Contains("'hidden_size' must be an integer"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "num_hidden_layers": 0)")), Contains("'num_hidden_layers' must be an integer in [1"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "vocab_size": -5)")), Contains("'vocab_size'"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "num_attention_heads": 6)")), Contains("hidden_size 64 is not a multiple of num_attention_heads 6"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "num_key_value_heads": 3)")), Contains("not a multiple of num_key_value_heads 3"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "sliding_window": 0)")), Contains("'sliding_window' must be an integer in [1"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "rope_theta": -1)")), Contains("'rope_theta' must be a positive number"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "use_bias": "yes")")), Contains("'use_bias' must be true or false"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "model_type": "llama")")), Contains("model_type is 'llama'"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "rope_parameters": {"rope_type": "yarn"})")), Contains("rope_type \"yarn\" is not supported"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "rope_scaling": {"type": "linear"})")), Contains("rope_scaling"));
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(R"(, "id2label": {"0": "A", "2": "C"})")), Contains("id2label has no label 1"));
}

namespace {
// A compile-time preset for the tiny fixture model: what a researcher would write.
struct TinyPreset : sc2::Config3B {
  static constexpr int vocab_size = 256;
  static constexpr int hidden_size = 64;
  static constexpr int intermediate_size = 128;
  static constexpr int num_hidden_layers = 2;
  static constexpr int num_attention_heads = 4;
  static constexpr int num_key_value_heads = 4;
  static constexpr int head_dim = 16;
  static constexpr std::int64_t max_position_embeddings = 1024;
  static constexpr std::optional<int> sliding_window = 8;
  static constexpr double rope_theta = 10000.0;
};
}  // namespace

TEST_CASE("a compile-time preset loads a matching checkpoint and names every mismatch", "[config]") {
  const auto dir = sc2::test::fixture("models/gqa1_tied_window8_f32");
  auto lm = sc2::CausalLM<sc2::Starcoder2<TinyPreset>>::load(dir);
  static_assert(std::remove_cvref_t<decltype(lm.backbone().static_config())>::hidden_size == 64);
  sc2::CpuContext ctx(1);
  sc2::KvCache cache = lm.make_cache();
  const std::vector<std::int32_t> ids{1, 2, 3};
  CHECK(lm.forward_last(ctx, ids, cache).size() == 256);

  try {
    sc2::CausalLM<sc2::Starcoder2<sc2::Config3B>>::load(dir);
    FAIL("a 3B preset accepted a tiny checkpoint");
  } catch (const sc2::Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("hidden_size: preset 3072, config.json 64") != std::string::npos);
    CHECK(what.find("num_hidden_layers: preset 30, config.json 2") != std::string::npos);
    CHECK(what.find("sliding_window: preset 4096, config.json 8") != std::string::npos);
    CHECK(what.find("rope_theta: preset 999999.4420358813, config.json 10000") != std::string::npos);
  }
}

TEST_CASE("prompts longer than the context are refused", "[config]") {
  const auto dir = sc2::test::fixture("models/gqa1_tied_window8_f32");
  auto lm = sc2::Starcoder2ForCausalLM::load(dir);
  sc2::CpuContext ctx(1);
  sc2::KvCache cache = lm.make_cache(4);
  const std::vector<std::int32_t> ids{1, 2, 3, 4, 5};
  CHECK_THROWS_WITH(lm.forward_last(ctx, ids, cache), Catch::Contains("exceed the context limit of 4 tokens"));
  CHECK_THROWS_WITH(lm.forward_last(ctx, std::span<const std::int32_t>(), cache), Catch::Contains("at least one token"));
}

TEST_CASE("a config.json that leaves out a field gets transformers' default for it", "[config]") {
  // The defaults are transformers' Starcoder2Config's, recorded by tools/reference/make_config_defaults.py.
  const auto fixture = nlohmann::json::parse(
      sc2::read_text_file(std::filesystem::path(SC2_FIXTURES_DIR) / "config" / "starcoder2_defaults.json"));
  const nlohmann::json& want = fixture.at("defaults");
  // Every field present, none at its default (head_dim 16 = 64 / 4).
  const nlohmann::json full = {{"model_type", "starcoder2"}, {"vocab_size", 100},        {"hidden_size", 64},
                               {"intermediate_size", 128},   {"num_hidden_layers", 2},  {"num_attention_heads", 4},
                               {"num_key_value_heads", 4},   {"max_position_embeddings", 512},
                               {"sliding_window", 8},        {"norm_epsilon", 1e-6},    {"use_bias", false},
                               {"tie_word_embeddings", false}, {"hidden_act", "gelu_pytorch_tanh"},
                               {"bos_token_id", 1},          {"eos_token_id", 2},       {"pad_token_id", 3},
                               {"rope_theta", 500.0}};
  REQUIRE(want.size() == full.size() - 1);  // every field sc2 reads but model_type
  for (const auto& [field, value] : want.items()) {
    DYNAMIC_SECTION(field) {
      nlohmann::json j = full;
      j.erase(field);
      // A shape field left out takes the 3B-style default; the others keep dividing it.
      if (field == "num_attention_heads") j["hidden_size"] = 96, j["num_key_value_heads"] = 2;
      if (field == "hidden_size") j["num_attention_heads"] = 24, j["num_key_value_heads"] = 2;
      if (field == "num_key_value_heads") j["num_attention_heads"] = 8;
      const sc2::ModelConfig c = sc2::ModelConfig::from_json(j.dump());
      if (field == "vocab_size") CHECK(c.vocab_size == value.get<int>());
      else if (field == "hidden_size") CHECK(c.hidden_size == value.get<int>());
      else if (field == "intermediate_size") CHECK(c.intermediate_size == value.get<int>());
      else if (field == "num_hidden_layers") CHECK(c.num_hidden_layers == value.get<int>());
      else if (field == "num_attention_heads") CHECK(c.num_attention_heads == value.get<int>());
      else if (field == "num_key_value_heads") CHECK(c.num_key_value_heads == value.get<int>());
      else if (field == "max_position_embeddings") CHECK(c.max_position_embeddings == value.get<std::int64_t>());
      else if (field == "sliding_window") CHECK((value.is_null() ? !c.sliding_window : c.sliding_window == value.get<int>()));
      else if (field == "norm_epsilon") CHECK(c.norm_epsilon == value.get<double>());
      else if (field == "use_bias") CHECK(c.use_bias == value.get<bool>());
      else if (field == "tie_word_embeddings") CHECK(c.tie_word_embeddings == value.get<bool>());
      else if (field == "hidden_act") CHECK(c.hidden_act == value.get<std::string>());
      else if (field == "bos_token_id") CHECK(c.bos_token_id == std::optional<int>(value.get<int>()));
      else if (field == "eos_token_id") CHECK(c.eos_token_ids == std::vector<int>{value.get<int>()});
      else if (field == "pad_token_id") CHECK((value.is_null() ? !c.pad_token_id : c.pad_token_id == value.get<int>()));
      else if (field == "rope_theta") CHECK(c.rope_theta == value.get<double>());
      else FAIL("no check for the default of " << field);
    }
  }
  // An explicit null eos or bos means none, not the default.
  nlohmann::json j = full;
  j["eos_token_id"] = nullptr;
  j["bos_token_id"] = nullptr;
  const sc2::ModelConfig c = sc2::ModelConfig::from_json(j.dump());
  CHECK(c.eos_token_ids.empty());
  CHECK(!c.bos_token_id);
}

TEST_CASE("a ConfigSchema reads another family's keys and defaults", "[config]") {
  // Mistral's, as examples/custom_variant.cpp declares them (values from transformers' MistralConfig).
  constexpr sc2::ConfigSchema mistral{.model_type = "mistral", .num_key_value_heads = 8,
                                      .null_key_value_heads_is_attention_heads = true, .sliding_window = 4096,
                                      .norm_epsilon_key = "rms_norm_eps", .norm_epsilon = 1e-6, .use_bias_key = "",
                                      .use_bias = false, .tie_word_embeddings = false, .hidden_act = "silu",
                                      .bos_token_id = 1, .eos_token_id = 2};
  const std::string shape = R"("vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                               "num_attention_heads": 8)";
  auto c = sc2::ModelConfig::from_json("{\"model_type\": \"mistral\", " + shape + "}", "m.json", mistral);
  CHECK(c.num_key_value_heads == 8);
  CHECK(c.sliding_window == 4096);
  CHECK(c.norm_epsilon == 1e-6);
  CHECK(!c.use_bias);
  CHECK(!c.mlp_bias);  // no MLP bias key: the MLP follows use_bias
  CHECK(!c.tie_word_embeddings);
  CHECK(c.hidden_act == "silu");
  CHECK(c.bos_token_id == 1);
  CHECK(c.eos_token_ids == std::vector<int>{2});
  // The family's own eps key is read, StarCoder2's ignored; a bias key the schema lacks is never read.
  c = sc2::ModelConfig::from_json("{" + shape + R"(, "rms_norm_eps": 1e-5, "norm_epsilon": 0.5, "use_bias": true,
                                  "num_key_value_heads": null, "sliding_window": null})", "m.json", mistral);
  CHECK(c.norm_epsilon == 1e-5);
  CHECK(!c.use_bias);
  CHECK(c.num_key_value_heads == 8);  // null: one kv head per attention head (8 here)
  CHECK(!c.sliding_window);
  c = sc2::ModelConfig::from_json("{" + shape + R"(, "num_attention_heads": 4, "num_key_value_heads": null})", "m.json",
                                  mistral);
  CHECK(c.num_key_value_heads == 4);
  // StarCoder2's schema keeps its default for a null kv head count.
  c = sc2::ModelConfig::from_json("{" + shape + R"(, "num_key_value_heads": null})");
  CHECK(c.num_key_value_heads == 2);
  CHECK_THROWS_WITH(sc2::ModelConfig::from_json(base_config(), "s.json", mistral),
                    Catch::Matchers::Contains("s.json: model_type is 'starcoder2', expected 'mistral'"));

  // Llama's: a kv head count left out means one per attention head, and the MLP's biases have their own key.
  constexpr sc2::ConfigSchema llama{.model_type = "llama", .num_key_value_heads = std::nullopt,
                                    .null_key_value_heads_is_attention_heads = true, .sliding_window = std::nullopt,
                                    .norm_epsilon_key = "rms_norm_eps", .norm_epsilon = 1e-6,
                                    .use_bias_key = "attention_bias", .use_bias = false, .mlp_bias_key = "mlp_bias",
                                    .mlp_bias = false};
  c = sc2::ModelConfig::from_json("{" + shape + R"(, "attention_bias": true})", "l.json", llama);
  CHECK(c.num_key_value_heads == 8);
  CHECK(!c.sliding_window);
  CHECK(c.use_bias);
  CHECK(!c.mlp_bias);
  c = sc2::ModelConfig::from_json("{" + shape + R"(, "num_key_value_heads": 2, "mlp_bias": true})", "l.json", llama);
  CHECK(c.num_key_value_heads == 2);
  CHECK(!c.use_bias);
  CHECK(c.mlp_bias);
  // StarCoder2's MLP follows use_bias.
  CHECK(!sc2::ModelConfig::from_json(base_config(R"(, "use_bias": false, "mlp_bias": true)")).mlp_bias);
  CHECK(sc2::ModelConfig::from_json(base_config()).mlp_bias);
}
