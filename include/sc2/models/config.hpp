#pragma once
/// \file
/// Model configuration: compile-time presets and the runtime config.json.
///
/// Both kinds expose the same member names as config.json (`hidden_size`,
/// `num_key_value_heads`, `sliding_window`, ...), so model code reads
/// `cfg.hidden_size` whichever it holds: in a preset the member is a
/// `static constexpr` constant (kernels can specialise on it), in
/// `ModelConfig` it is a value parsed from config.json. Both also name the
/// four policies the model is composed of (see policies.hpp).
///
///     struct Tiny : sc2::Config3B { static constexpr int num_hidden_layers = 2; };   // a variant
///     sc2::ModelConfig cfg = sc2::ModelConfig::from_file("ckpt/config.json");       // any checkpoint

#include <sc2/core/error.hpp>
#include <sc2/io/detail/json_depth.hpp>
#include <sc2/io/mapped_file.hpp>
#include <sc2/models/policies.hpp>

#include <nlohmann/json.hpp>

#include <cmath>
#include <concepts>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace sc2 {

/// The policies of the released StarCoder2 models; configs inherit them.
struct Starcoder2Policies {
  using Norm = policy::LayerNorm;              ///< LayerNorm with bias
  using Mlp = policy::GeluTanhMlp;             ///< c_proj(gelu_tanh(c_fc(x)))
  using Positional = policy::RotaryEmbedding;  ///< RoPE, rotate_half
  using Mask = policy::SlidingWindow;          ///< causal, sliding window
};

/// Every value sc2 reads from a Hugging Face StarCoder2 config.json.
struct ModelConfig : Starcoder2Policies {
  int vocab_size = 0;                  ///< V
  int hidden_size = 0;                 ///< D
  int intermediate_size = 0;           ///< F
  int num_hidden_layers = 0;           ///< layers
  int num_attention_heads = 0;         ///< H
  int num_key_value_heads = 0;         ///< Hkv
  int head_dim = 0;                    ///< Dh (config.json's, or D / H)
  std::int64_t max_position_embeddings = 4096;  ///< context limit
  std::optional<int> sliding_window;   ///< W; none: plain causal attention
  double rope_theta = 10000.0;         ///< RoPE base (kept as a double)
  double partial_rotary_factor = 1.0;  ///< read and kept; transformers' StarCoder2 does not use it
  double norm_epsilon = 1e-5;          ///< LayerNorm eps
  bool use_bias = true;                ///< biases on q/k/v/o and MLP linears
  bool tie_word_embeddings = true;     ///< lm_head shares embed_tokens
  std::string hidden_act = "gelu_pytorch_tanh";  ///< MLP activation
  std::optional<int> bos_token_id;     ///< beginning of sequence
  std::vector<int> eos_token_ids;      ///< end of sequence (one or several)
  std::optional<int> pad_token_id;     ///< padding, needed by batched sequence classification
  int num_labels = 2;                  ///< classification heads (at most kMaxLabels)
  std::vector<std::string> id2label;   ///< label names by id (num_labels of them)

  /// Most labels a config.json may declare.
  static constexpr int kMaxLabels = 1 << 16;

  /// Parses and validates config.json text; `source` names it in errors.
  static ModelConfig from_json(std::string_view text, const std::string& source = "config.json");
  /// Reads and validates a config.json file.
  static ModelConfig from_file(const std::filesystem::path& path) {
    return from_json(read_text_file(path), path.string());
  }
};

/// What a configuration must offer: config.json's dimensions and the four policies.
template <class C>
concept Starcoder2Config = requires(const C& c) {
  { c.vocab_size } -> std::convertible_to<std::int64_t>;
  { c.hidden_size } -> std::convertible_to<std::int64_t>;
  { c.intermediate_size } -> std::convertible_to<std::int64_t>;
  { c.num_hidden_layers } -> std::convertible_to<std::int64_t>;
  { c.num_attention_heads } -> std::convertible_to<std::int64_t>;
  { c.num_key_value_heads } -> std::convertible_to<std::int64_t>;
  { c.head_dim } -> std::convertible_to<std::int64_t>;
  { c.max_position_embeddings } -> std::convertible_to<std::int64_t>;
  { c.sliding_window } -> std::convertible_to<std::optional<int>>;
  { c.rope_theta } -> std::convertible_to<double>;
  { c.norm_epsilon } -> std::convertible_to<double>;
  { c.use_bias } -> std::convertible_to<bool>;
  typename C::Norm;
  typename C::Mlp;
  typename C::Positional;
  typename C::Mask;
};

/// True for configs whose dimensions are compile-time constants (presets).
template <class C>
concept StaticConfig = Starcoder2Config<C> && std::is_pointer_v<decltype(&C::hidden_size)>;

/// Compile-time checks of a preset: positive sizes and whole head groups.
template <StaticConfig C> consteval bool valid_static_config() {
  return C::vocab_size > 0 && C::hidden_size > 0 && C::intermediate_size > 0 && C::num_hidden_layers > 0 &&
         C::num_attention_heads > 0 && C::num_key_value_heads > 0 &&
         C::num_attention_heads % C::num_key_value_heads == 0 && C::head_dim > 0 && C::head_dim % 2 == 0 &&
         C::max_position_embeddings > 0 && (!C::sliding_window || *C::sliding_window > 0) && C::rope_theta > 0.0 &&
         C::norm_epsilon > 0.0;
}

/// StarCoder2-3B.
struct Config3B : Starcoder2Policies {
  static constexpr int vocab_size = 49152;
  static constexpr int hidden_size = 3072;
  static constexpr int intermediate_size = 12288;
  static constexpr int num_hidden_layers = 30;
  static constexpr int num_attention_heads = 24;
  static constexpr int num_key_value_heads = 2;
  static constexpr int head_dim = 128;
  static constexpr std::int64_t max_position_embeddings = 16384;
  static constexpr std::optional<int> sliding_window = 4096;
  static constexpr double rope_theta = 999999.4420358813;
  static constexpr double norm_epsilon = 1e-5;
  static constexpr bool use_bias = true;
};
static_assert(valid_static_config<Config3B>());

/// StarCoder2-7B.
struct Config7B : Config3B {
  static constexpr int hidden_size = 4608;
  static constexpr int intermediate_size = 18432;
  static constexpr int num_hidden_layers = 32;
  static constexpr int num_attention_heads = 36;
  static constexpr int num_key_value_heads = 4;
  static constexpr double rope_theta = 1000000.0;
};
static_assert(valid_static_config<Config7B>());

/// StarCoder2-15B.
struct Config15B : Config3B {
  static constexpr int hidden_size = 6144;
  static constexpr int intermediate_size = 24576;
  static constexpr int num_hidden_layers = 40;
  static constexpr int num_attention_heads = 48;
  static constexpr int num_key_value_heads = 4;
  static constexpr double rope_theta = 100000.0;
};
static_assert(valid_static_config<Config15B>());

/// Throws an `sc2::Error` listing every field where `preset` and the loaded
/// config.json differ, with both values. A runtime config always matches.
template <Starcoder2Config C> void check_config_matches(const C& preset, const ModelConfig& loaded,
                                                        const std::string& source) {
  if constexpr (!std::is_same_v<C, ModelConfig>) {
    std::string mismatches;
    auto compare = [&](std::string_view field, const auto& want, const auto& have) {
      if (want != have) mismatches += fmt::format("\n  {}: preset {}, config.json {}", field, want, have);
    };
    auto window = [](const std::optional<int>& w) { return w ? std::to_string(*w) : std::string("null"); };
    compare("vocab_size", preset.vocab_size, loaded.vocab_size);
    compare("hidden_size", preset.hidden_size, loaded.hidden_size);
    compare("intermediate_size", preset.intermediate_size, loaded.intermediate_size);
    compare("num_hidden_layers", preset.num_hidden_layers, loaded.num_hidden_layers);
    compare("num_attention_heads", preset.num_attention_heads, loaded.num_attention_heads);
    compare("num_key_value_heads", preset.num_key_value_heads, loaded.num_key_value_heads);
    compare("head_dim", preset.head_dim, loaded.head_dim);
    compare("max_position_embeddings", preset.max_position_embeddings, loaded.max_position_embeddings);
    compare("sliding_window", window(preset.sliding_window), window(loaded.sliding_window));
    compare("rope_theta", preset.rope_theta, loaded.rope_theta);
    compare("norm_epsilon", preset.norm_epsilon, loaded.norm_epsilon);
    compare("use_bias", preset.use_bias, loaded.use_bias);
    SC2_CHECK(mismatches.empty(), "{} does not match the compile-time configuration:{}", source, mismatches);
  } else {
    (void)preset, (void)loaded, (void)source;
  }
}

namespace detail {

/// Reads config.json fields with errors that name the file, the field, and what was found.
class ConfigReader {
public:
  ConfigReader(const nlohmann::json& json, const std::string& source) : json_(json), source_(source) {}

  /// An optional integer >= `min` (null counts as absent).
  std::optional<int> optional_integer(const char* field, int min = 1) const {
    if (!json_.contains(field) || json_[field].is_null()) return std::nullopt;
    return checked_integer(field, json_[field], min);
  }
  /// An optional positive finite number.
  std::optional<double> optional_number(const nlohmann::json& v, const char* field) const {
    if (v.is_null()) return std::nullopt;
    SC2_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0.0,
              "{}: '{}' must be a positive number, found {}", source_, field, v.dump());
    return v.get<double>();
  }
  /// An optional positive number field.
  std::optional<double> optional_number(const char* field) const {
    return json_.contains(field) ? optional_number(json_[field], field) : std::nullopt;
  }
  /// An optional boolean field.
  std::optional<bool> optional_bool(const char* field) const {
    if (!json_.contains(field) || json_[field].is_null()) return std::nullopt;
    SC2_CHECK(json_[field].is_boolean(), "{}: '{}' must be true or false, found {}", source_, field,
              json_[field].dump());
    return json_[field].get<bool>();
  }
  /// An optional string field.
  std::optional<std::string> optional_string(const char* field) const {
    if (!json_.contains(field) || json_[field].is_null()) return std::nullopt;
    SC2_CHECK(json_[field].is_string(), "{}: '{}' must be a string, found {}", source_, field, json_[field].dump());
    return json_[field].get<std::string>();
  }
  /// One integer id >= 0 or a list of them (eos_token_id); null is empty.
  std::vector<int> id_list(const char* field) const {
    std::vector<int> ids;
    if (!json_.contains(field) || json_[field].is_null()) return ids;
    const auto& v = json_[field];
    if (v.is_array()) {
      for (const auto& e : v) ids.push_back(checked_integer(field, e, 0));
    } else {
      ids.push_back(checked_integer(field, v, 0));
    }
    return ids;
  }

private:
  int checked_integer(const char* field, const nlohmann::json& v, int min) const {
    SC2_CHECK(v.is_number_integer() && v.get<std::int64_t>() >= min && v.get<std::int64_t>() <= (1 << 30),
              "{}: '{}' must be an integer in [{}, 2^30], found {}", source_, field, min, v.dump());
    return static_cast<int>(v.get<std::int64_t>());
  }

  const nlohmann::json& json_;
  const std::string& source_;
};

}  // namespace detail

inline ModelConfig ModelConfig::from_json(std::string_view text, const std::string& source) {
  // Deep nesting would overflow the stack when an error message prints a value.
  SC2_CHECK(!detail::json_nested_deeper_than(text), "{}: JSON nested deeper than {} levels", source,
            detail::kMaxJsonDepth);
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  SC2_CHECK(!json.is_discarded(), "{}: not valid JSON", source);
  SC2_CHECK(json.is_object(), "{}: the top level is not a JSON object", source);
  const detail::ConfigReader read(json, source);
  if (auto type = read.optional_string("model_type"))
    SC2_CHECK(*type == "starcoder2", "{}: model_type is '{}', expected 'starcoder2'", source, *type);

  // A field left out takes transformers' Starcoder2Config default (its 7B-style shape),
  // field by field, as transformers' own loading does.
  ModelConfig c;
  c.vocab_size = read.optional_integer("vocab_size").value_or(49152);
  c.hidden_size = read.optional_integer("hidden_size").value_or(3072);
  c.intermediate_size = read.optional_integer("intermediate_size").value_or(12288);
  c.num_hidden_layers = read.optional_integer("num_hidden_layers").value_or(30);
  c.num_attention_heads = read.optional_integer("num_attention_heads").value_or(24);
  c.num_key_value_heads = read.optional_integer("num_key_value_heads").value_or(2);
  SC2_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
            "{}: num_attention_heads {} is not a multiple of num_key_value_heads {}", source, c.num_attention_heads,
            c.num_key_value_heads);
  if (auto head_dim = read.optional_integer("head_dim")) {
    c.head_dim = *head_dim;
  } else {
    SC2_CHECK(c.hidden_size % c.num_attention_heads == 0,
              "{}: hidden_size {} is not a multiple of num_attention_heads {} (and no head_dim is given)", source,
              c.hidden_size, c.num_attention_heads);
    c.head_dim = c.hidden_size / c.num_attention_heads;
  }
  SC2_CHECK(c.head_dim % 2 == 0, "{}: head_dim {} must be even for rotary embeddings", source, c.head_dim);
  c.max_position_embeddings = read.optional_integer("max_position_embeddings").value_or(4096);
  c.sliding_window = read.optional_integer("sliding_window");

  // rope_theta: newer files nest it in rope_parameters, older ones keep it at the top level.
  if (json.contains("rope_parameters") && !json["rope_parameters"].is_null()) {
    const auto& rope = json["rope_parameters"];
    SC2_CHECK(rope.is_object(), "{}: rope_parameters must be an object, found {}", source, rope.dump());
    if (rope.contains("rope_type"))
      SC2_CHECK(rope["rope_type"] == "default", "{}: rope_type {} is not supported (only \"default\")", source,
                rope["rope_type"].dump());
    // A null rope_theta keeps the default (value() would throw std::bad_optional_access).
    if (rope.contains("rope_theta"))
      c.rope_theta = read.optional_number(rope["rope_theta"], "rope_theta").value_or(c.rope_theta);
    if (rope.contains("partial_rotary_factor"))
      c.partial_rotary_factor =
          read.optional_number(rope["partial_rotary_factor"], "partial_rotary_factor").value_or(1.0);
  }
  if (auto theta = read.optional_number("rope_theta")) c.rope_theta = *theta;
  if (auto factor = read.optional_number("partial_rotary_factor")) c.partial_rotary_factor = *factor;
  SC2_CHECK(c.partial_rotary_factor <= 1.0, "{}: partial_rotary_factor {} must be in (0, 1]", source,
            c.partial_rotary_factor);
  if (json.contains("rope_scaling"))
    SC2_CHECK(json["rope_scaling"].is_null(), "{}: rope_scaling {} is not supported", source,
              json["rope_scaling"].dump());

  c.norm_epsilon = read.optional_number("norm_epsilon").value_or(1e-5);
  c.use_bias = read.optional_bool("use_bias").value_or(true);
  c.tie_word_embeddings = read.optional_bool("tie_word_embeddings").value_or(true);
  c.hidden_act = read.optional_string("hidden_act").value_or("gelu_pytorch_tanh");
  // Left out, bos and eos are transformers' 50256; an explicit null means none.
  const auto bos = json.contains("bos_token_id") ? read.id_list("bos_token_id") : std::vector<int>{50256};
  SC2_CHECK(bos.size() <= 1, "{}: bos_token_id must be a single id", source);
  if (!bos.empty()) c.bos_token_id = bos[0];
  c.eos_token_ids = json.contains("eos_token_id") ? read.id_list("eos_token_id") : std::vector<int>{50256};
  c.pad_token_id = read.optional_integer("pad_token_id", 0);

  if (json.contains("id2label") && !json["id2label"].is_null()) {
    const auto& labels = json["id2label"];
    SC2_CHECK(labels.is_object(), "{}: id2label must be an object", source);
    std::map<int, std::string> by_id;
    for (const auto& [key, name] : labels.items()) {
      int id = -1;
      try {
        std::size_t used = 0;
        id = std::stoi(key, &used);
        if (used != key.size()) id = -1;
      } catch (const std::exception&) {
      }
      SC2_CHECK(id >= 0 && name.is_string(), "{}: id2label entry \"{}\": {} is not id: name", source, key, name.dump());
      by_id[id] = name.get<std::string>();
    }
    SC2_CHECK(by_id.size() <= static_cast<std::size_t>(kMaxLabels),
              "{}: id2label has {} labels, more than the {} sc2 accepts", source, by_id.size(), kMaxLabels);
    for (int i = 0; i < static_cast<int>(by_id.size()); ++i)
      SC2_CHECK(by_id.contains(i), "{}: id2label has no label {} (ids must be 0..{})", source, i, by_id.size() - 1);
    for (auto& [id, name] : by_id) c.id2label.push_back(name);
    c.num_labels = static_cast<int>(c.id2label.size());
  }
  if (auto n = read.optional_integer("num_labels")) {
    // Each label gets a name below, so an absurd count would be an absurd allocation.
    SC2_CHECK(*n <= kMaxLabels, "{}: num_labels {} is more than the {} sc2 accepts", source, *n, kMaxLabels);
    SC2_CHECK(c.id2label.empty() || *n == c.num_labels, "{}: num_labels {} disagrees with id2label's {} labels",
              source, *n, c.num_labels);
    c.num_labels = *n;
  }
  if (c.id2label.empty())
    for (int i = 0; i < c.num_labels; ++i) c.id2label.push_back(fmt::format("LABEL_{}", i));
  return c;
}

}  // namespace sc2
