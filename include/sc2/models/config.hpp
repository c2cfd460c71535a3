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
#include <sc2/io/config_json.hpp>
#include <sc2/io/mapped_file.hpp>
#include <sc2/models/policies.hpp>

#include <concepts>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

namespace sc2 {

/// The policies of the released StarCoder2 models, and the config.json they
/// read (transformers' `Starcoder2Config`); configs inherit them.
struct Starcoder2Policies {
  using Norm = policy::LayerNorm;              ///< LayerNorm with bias
  using Mlp = policy::GeluTanhMlp;             ///< c_proj(gelu_tanh(c_fc(x)))
  using Positional = policy::RotaryEmbedding;  ///< RoPE, rotate_half
  using Mask = policy::SlidingWindow;          ///< causal, sliding window
  /// config.json's model_type, key names and defaults.
  static constexpr ConfigSchema config_schema{};
};

/// Every value sc2 reads from a Hugging Face config.json (StarCoder2's, or a
/// variant's through its `config_schema`).
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
  bool use_bias = true;                ///< biases on q/k/v/o (and the MLP's, unless the schema reads `mlp_bias`)
  bool mlp_bias = true;                ///< biases on the MLP's linears (StarCoder2: use_bias)
  bool tie_word_embeddings = true;     ///< lm_head shares embed_tokens
  std::string hidden_act = "gelu_pytorch_tanh";  ///< MLP activation
  std::optional<int> bos_token_id;     ///< beginning of sequence
  std::vector<int> eos_token_ids;      ///< end of sequence (one or several)
  std::optional<int> pad_token_id;     ///< padding, needed by batched sequence classification
  int num_labels = 2;                  ///< classification heads (at most kMaxLabels)
  std::vector<std::string> id2label;   ///< label names by id (num_labels of them)

  /// Most labels a config.json may declare.
  static constexpr int kMaxLabels = kMaxConfigLabels;

  /// Parses and validates config.json text of `schema`'s family; `source` names it in errors.
  static ModelConfig from_json(std::string_view text, const std::string& source = "config.json",
                               const ConfigSchema& schema = {}) {
    return parse_config_json<ModelConfig>(text, source, schema);
  }
  /// Reads and validates a config.json file of `schema`'s family.
  static ModelConfig from_file(const std::filesystem::path& path, const ConfigSchema& schema = {}) {
    return from_json(read_text_file(path), path.string(), schema);
  }
};

/// What a configuration must offer: config.json's dimensions, the four
/// policies, and the schema its config.json is read with.
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
  { C::config_schema } -> std::convertible_to<ConfigSchema>;
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
  static constexpr int vocab_size = 49152;                        ///< V
  static constexpr int hidden_size = 3072;                        ///< D
  static constexpr int intermediate_size = 12288;                 ///< F
  static constexpr int num_hidden_layers = 30;                    ///< layers
  static constexpr int num_attention_heads = 24;                  ///< H
  static constexpr int num_key_value_heads = 2;                   ///< Hkv
  static constexpr int head_dim = 128;                            ///< Dh
  static constexpr std::int64_t max_position_embeddings = 16384;  ///< context limit
  static constexpr std::optional<int> sliding_window = 4096;      ///< W
  static constexpr double rope_theta = 999999.4420358813;         ///< RoPE base
  static constexpr double norm_epsilon = 1e-5;                    ///< LayerNorm eps
  static constexpr bool use_bias = true;                          ///< biases on every linear
};
static_assert(valid_static_config<Config3B>());

/// StarCoder2-7B.
struct Config7B : Config3B {
  static constexpr int hidden_size = 4608;         ///< D
  static constexpr int intermediate_size = 18432;  ///< F
  static constexpr int num_hidden_layers = 32;     ///< layers
  static constexpr int num_attention_heads = 36;   ///< H
  static constexpr int num_key_value_heads = 4;    ///< Hkv
  static constexpr double rope_theta = 1000000.0;  ///< RoPE base
};
static_assert(valid_static_config<Config7B>());

/// StarCoder2-15B.
struct Config15B : Config3B {
  static constexpr int hidden_size = 6144;         ///< D
  static constexpr int intermediate_size = 24576;  ///< F
  static constexpr int num_hidden_layers = 40;     ///< layers
  static constexpr int num_attention_heads = 48;   ///< H
  static constexpr int num_key_value_heads = 4;    ///< Hkv
  static constexpr double rope_theta = 100000.0;   ///< RoPE base
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

}  // namespace sc2
