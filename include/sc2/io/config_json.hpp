#pragma once
/// \file
/// Hugging Face config.json: the fields a decoder-only model's shape is read
/// from, under the names and defaults of one transformers config class.
///
///     values = parse_config_json<ModelConfig>(text, "ckpt/config.json", schema)
///
/// A `ConfigSchema` says which file it reads: the `model_type` it expects,
/// the keys whose names differ between families (StarCoder2's `norm_epsilon`
/// is Mistral's `rms_norm_eps`), and the value transformers' config class
/// gives every field a file leaves out. Every value is checked (type, range,
/// head counts that divide), and errors name the file, the field and what was
/// found. The result is any struct with config.json's member names
/// (`sc2::ModelConfig`, or a variant's own).

#include <sc2/core/error.hpp>
#include <sc2/io/detail/json_depth.hpp>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdint>
#include <exception>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sc2 {

/// One model family's config.json: its `model_type`, the keys that differ
/// between families, and transformers' default for every field left out.
/// The member initialisers are transformers' `Starcoder2Config`.
struct ConfigSchema {
  std::string_view model_type = "starcoder2";  ///< the file's `model_type` must be this (when present)
  int vocab_size = 49152;                      ///< V
  int hidden_size = 3072;                      ///< D
  int intermediate_size = 12288;               ///< F
  int num_hidden_layers = 30;                  ///< layers
  int num_attention_heads = 24;                ///< H
  /// Hkv when the key is left out; none: one kv head per attention head (Llama).
  std::optional<int> num_key_value_heads = 2;
  /// What an explicit `"num_key_value_heads": null` means: true, one kv head
  /// per attention head (Mistral, Llama); false, the default above.
  bool null_key_value_heads_is_attention_heads = false;
  std::int64_t max_position_embeddings = 4096;  ///< context limit
  std::optional<int> sliding_window = std::nullopt;  ///< W; none: plain causal attention
  double rope_theta = 10000.0;                  ///< RoPE base
  std::string_view norm_epsilon_key = "norm_epsilon";  ///< the key of the norm's eps
  double norm_epsilon = 1e-5;                          ///< its default
  std::string_view use_bias_key = "use_bias";  ///< the key saying the linears have biases; empty: never read
  bool use_bias = true;                        ///< its default (the value when the key is empty)
  /// The key saying the MLP's linears have biases (Llama's `mlp_bias`); empty:
  /// they follow `use_bias`, as StarCoder2's do.
  std::string_view mlp_bias_key = "";
  bool mlp_bias = false;  ///< its default, when the key is not empty
  bool tie_word_embeddings = true;             ///< lm_head shares embed_tokens
  std::string_view hidden_act = "gelu_pytorch_tanh";  ///< the MLP's activation
  std::optional<int> bos_token_id = 50256;            ///< beginning of sequence
  std::optional<int> eos_token_id = 50256;            ///< end of sequence
};

/// Reads config.json fields with errors that name the file, the field, and what was found.
class ConfigJson {
public:
  /// A reader of `json`, which `source` names in errors.
  ConfigJson(const nlohmann::json& json, const std::string& source) : json_(json), source_(source) {}

  /// The parsed document.
  const nlohmann::json& json() const noexcept { return json_; }
  /// True when the document has `field`, null or not.
  bool has(std::string_view field) const { return json_.contains(field); }

  /// An optional integer in [`min`, 2^30] (null counts as absent).
  std::optional<int> optional_integer(std::string_view field, int min = 1) const {
    if (!json_.contains(field) || json_[std::string(field)].is_null()) return std::nullopt;
    return checked_integer(field, json_[std::string(field)], min);
  }
  /// An optional positive finite number `v` (null counts as absent).
  std::optional<double> optional_number(const nlohmann::json& v, std::string_view field) const {
    if (v.is_null()) return std::nullopt;
    SC2_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0.0,
              "{}: '{}' must be a positive number, found {}", source_, field, v.dump());
    return v.get<double>();
  }
  /// An optional positive number field.
  std::optional<double> optional_number(std::string_view field) const {
    return json_.contains(field) ? optional_number(json_[std::string(field)], field) : std::nullopt;
  }
  /// An optional boolean field.
  std::optional<bool> optional_bool(std::string_view field) const {
    if (!json_.contains(field) || json_[std::string(field)].is_null()) return std::nullopt;
    const auto& v = json_[std::string(field)];
    SC2_CHECK(v.is_boolean(), "{}: '{}' must be true or false, found {}", source_, field, v.dump());
    return v.get<bool>();
  }
  /// An optional string field.
  std::optional<std::string> optional_string(std::string_view field) const {
    if (!json_.contains(field) || json_[std::string(field)].is_null()) return std::nullopt;
    const auto& v = json_[std::string(field)];
    SC2_CHECK(v.is_string(), "{}: '{}' must be a string, found {}", source_, field, v.dump());
    return v.get<std::string>();
  }
  /// One integer id >= 0 or a list of them (eos_token_id); null is empty.
  std::vector<int> id_list(std::string_view field) const {
    std::vector<int> ids;
    if (!json_.contains(field) || json_[std::string(field)].is_null()) return ids;
    const auto& v = json_[std::string(field)];
    if (v.is_array()) {
      for (const auto& e : v) ids.push_back(checked_integer(field, e, 0));
    } else {
      ids.push_back(checked_integer(field, v, 0));
    }
    return ids;
  }

private:
  int checked_integer(std::string_view field, const nlohmann::json& v, int min) const {
    SC2_CHECK(v.is_number_integer() && v.get<std::int64_t>() >= min && v.get<std::int64_t>() <= (1 << 30),
              "{}: '{}' must be an integer in [{}, 2^30], found {}", source_, field, min, v.dump());
    return static_cast<int>(v.get<std::int64_t>());
  }

  const nlohmann::json& json_;
  const std::string& source_;
};

/// Most labels a config.json may declare.
inline constexpr int kMaxConfigLabels = 1 << 16;

/// Parses and validates config.json `text` (named `source` in errors) into a
/// `Values` (config.json's member names: vocab_size ... id2label), taking
/// `schema`'s default for each field left out, as transformers' loading does.
template <class Values>
Values parse_config_json(std::string_view text, const std::string& source, const ConfigSchema& schema = {}) {
  // Deep nesting would overflow the stack when an error message prints a value.
  SC2_CHECK(!detail::json_nested_deeper_than(text), "{}: JSON nested deeper than {} levels", source,
            detail::kMaxJsonDepth);
  const nlohmann::json json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  SC2_CHECK(!json.is_discarded(), "{}: not valid JSON", source);
  SC2_CHECK(json.is_object(), "{}: the top level is not a JSON object", source);
  const ConfigJson read(json, source);
  if (auto type = read.optional_string("model_type"))
    SC2_CHECK(*type == schema.model_type, "{}: model_type is '{}', expected '{}'", source, *type, schema.model_type);

  Values c{};
  c.vocab_size = read.optional_integer("vocab_size").value_or(schema.vocab_size);
  c.hidden_size = read.optional_integer("hidden_size").value_or(schema.hidden_size);
  c.intermediate_size = read.optional_integer("intermediate_size").value_or(schema.intermediate_size);
  c.num_hidden_layers = read.optional_integer("num_hidden_layers").value_or(schema.num_hidden_layers);
  c.num_attention_heads = read.optional_integer("num_attention_heads").value_or(schema.num_attention_heads);
  // Left out, Hkv is the schema's default; null, that or one per attention head.
  const bool kv_null = read.has("num_key_value_heads") && json["num_key_value_heads"].is_null();
  int kv_default = c.num_attention_heads;
  if (schema.num_key_value_heads && !(kv_null && schema.null_key_value_heads_is_attention_heads))
    kv_default = *schema.num_key_value_heads;
  c.num_key_value_heads = read.optional_integer("num_key_value_heads").value_or(kv_default);
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
  c.max_position_embeddings = read.optional_integer("max_position_embeddings").value_or(
      static_cast<int>(schema.max_position_embeddings));
  // Left out, the window is the schema's; an explicit null means none.
  c.sliding_window = read.has("sliding_window") ? read.optional_integer("sliding_window") : schema.sliding_window;

  // rope_theta: newer files nest it in rope_parameters, older ones keep it at the top level.
  c.rope_theta = schema.rope_theta;
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

  c.norm_epsilon = read.optional_number(schema.norm_epsilon_key).value_or(schema.norm_epsilon);
  c.use_bias = schema.use_bias_key.empty() ? schema.use_bias
                                           : read.optional_bool(schema.use_bias_key).value_or(schema.use_bias);
  c.mlp_bias = schema.mlp_bias_key.empty() ? c.use_bias
                                           : read.optional_bool(schema.mlp_bias_key).value_or(schema.mlp_bias);
  c.tie_word_embeddings = read.optional_bool("tie_word_embeddings").value_or(schema.tie_word_embeddings);
  c.hidden_act = read.optional_string("hidden_act").value_or(std::string(schema.hidden_act));
  // Left out, bos and eos are the schema's; an explicit null means none.
  const auto bos = read.has("bos_token_id") ? read.id_list("bos_token_id") : std::vector<int>{};
  SC2_CHECK(bos.size() <= 1, "{}: bos_token_id must be a single id", source);
  c.bos_token_id = read.has("bos_token_id") ? (bos.empty() ? std::nullopt : std::optional<int>(bos[0]))
                                            : schema.bos_token_id;
  c.eos_token_ids = read.has("eos_token_id") ? read.id_list("eos_token_id")
                    : schema.eos_token_id    ? std::vector<int>{*schema.eos_token_id}
                                             : std::vector<int>{};
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
      by_id[id] = name.template get<std::string>();
    }
    SC2_CHECK(by_id.size() <= static_cast<std::size_t>(kMaxConfigLabels),
              "{}: id2label has {} labels, more than the {} sc2 accepts", source, by_id.size(), kMaxConfigLabels);
    for (int i = 0; i < static_cast<int>(by_id.size()); ++i)
      SC2_CHECK(by_id.contains(i), "{}: id2label has no label {} (ids must be 0..{})", source, i, by_id.size() - 1);
    for (auto& [id, name] : by_id) c.id2label.push_back(name);
    c.num_labels = static_cast<int>(c.id2label.size());
  }
  if (auto n = read.optional_integer("num_labels")) {
    // Each label gets a name below, so an absurd count would be an absurd allocation.
    SC2_CHECK(*n <= kMaxConfigLabels, "{}: num_labels {} is more than the {} sc2 accepts", source, *n,
              kMaxConfigLabels);
    SC2_CHECK(c.id2label.empty() || *n == c.num_labels, "{}: num_labels {} disagrees with id2label's {} labels",
              source, *n, c.num_labels);
    c.num_labels = *n;
  }
  if (c.id2label.empty())
    for (int i = 0; i < c.num_labels; ++i) c.id2label.push_back(fmt::format("LABEL_{}", i));
  return c;
}

}  // namespace sc2
