#pragma once
/// \file
/// A checkpoint opened for loading: a Hugging Face directory (config.json
/// first, then the safetensors files, mapped and checked once), or a GGUF
/// file of llama.cpp's (its metadata, then its tensors under their Hugging
/// Face names).
///
///     sc2::Checkpoint ckpt = sc2::Checkpoint::open("starcoder2-3b");        // or "starcoder2-3b-Q8_0.gguf"
///     int layers = ckpt.config.num_hidden_layers;
///
/// A GGUF file's hyperparameters come from its `starcoder2.*` keys, its ids
/// from `tokenizer.ggml.*`, biases and a tied head from which tensors it
/// holds. llama.cpp's converter writes no sliding window for StarCoder2; sc2
/// then takes the architecture's, 4096, which `GgufOptions` may replace.

#include <sc2/io/gguf.hpp>
#include <sc2/io/tensor_index.hpp>
#include <sc2/models/config.hpp>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>

namespace sc2 {

/// How a GGUF file becomes a checkpoint.
struct GgufOptions {
  /// The sliding window when the file has no `starcoder2.attention.sliding_window`
  /// (llama.cpp's converter writes none): StarCoder2's 4096; none means plain causal attention.
  std::optional<int> default_sliding_window = 4096;
};

namespace detail {

/// llama.cpp's StarCoder2 tensor names and Hugging Face's: whole-model prefixes,
/// then the prefixes inside a layer (`blk.N.` / `model.layers.N.`).
inline constexpr std::pair<std::string_view, std::string_view> kGgufModelNames[] = {
    {"token_embd.", "model.embed_tokens."}, {"output_norm.", "model.norm."}, {"output.", "lm_head."}};
inline constexpr std::pair<std::string_view, std::string_view> kGgufLayerNames[] = {
    {"attn_norm.", "input_layernorm."},       {"attn_q.", "self_attn.q_proj."}, {"attn_k.", "self_attn.k_proj."},
    {"attn_v.", "self_attn.v_proj."},         {"attn_output.", "self_attn.o_proj."},
    {"ffn_norm.", "post_attention_layernorm."}, {"ffn_up.", "mlp.c_fc."},     {"ffn_down.", "mlp.c_proj."}};

// Renames `name` by the tables: `from` picks the pair's side names are read in (0 GGUF, 1 Hugging Face).
inline std::string rename_starcoder2_tensor(std::string_view name, int from) {
  const auto side = [from](const auto& pair, bool source) { return (from == 0) == source ? pair.first : pair.second; };
  for (const auto& pair : kGgufModelNames)
    if (name.starts_with(side(pair, true))) return std::string(side(pair, false)) + std::string(name.substr(side(pair, true).size()));
  const std::string_view layers = from == 0 ? "blk." : "model.layers.";
  if (!name.starts_with(layers)) return std::string(name);
  const std::size_t dot = name.find('.', layers.size());
  if (dot == std::string_view::npos || dot == layers.size()) return std::string(name);
  const std::string_view layer = name.substr(layers.size(), dot - layers.size()), rest = name.substr(dot + 1);
  if (layer.find_first_not_of("0123456789") != std::string_view::npos) return std::string(name);
  for (const auto& pair : kGgufLayerNames)
    if (rest.starts_with(side(pair, true)))
      return fmt::format("{}{}.{}{}", from == 0 ? "model.layers." : "blk.", layer, side(pair, false),
                         rest.substr(side(pair, true).size()));
  return std::string(name);
}

}  // namespace detail

/// The Hugging Face name of a tensor of a StarCoder2 GGUF file (llama.cpp's
/// names: token_embd, blk.N.attn_q, ffn_up, output_norm, ...); a name it does
/// not know stays as it is, so that loading names it as unused.
inline std::string starcoder2_name_from_gguf(std::string_view name) { return detail::rename_starcoder2_tensor(name, 0); }

/// The GGUF name (llama.cpp's) of a StarCoder2 tensor's Hugging Face name; the
/// inverse of `starcoder2_name_from_gguf`. A name it does not know stays as it is.
inline std::string starcoder2_name_to_gguf(std::string_view name) { return detail::rename_starcoder2_tensor(name, 1); }

/// The values of config.json for a StarCoder2 GGUF file: shapes from its
/// `starcoder2.*` keys, ids from `tokenizer.ggml.*`, biases and a tied head
/// from its tensors. An `sc2::Error` naming the key when one is missing or wrong.
inline ModelConfig starcoder2_config_from_gguf(const Gguf& g, const GgufOptions& options = {}) {
  const auto arch = g.optional_string("general.architecture");
  SC2_CHECK(arch.has_value(), "'{}' has no general.architecture", g.describe());
  SC2_CHECK(*arch == "starcoder2", "'{}' holds a '{}' model; sc2 reads StarCoder2 GGUF files ('starcoder2')",
            g.describe(), *arch);
  const auto integer = [&](std::string_view key, std::uint64_t min) {
    const std::uint64_t v = g.unsigned_integer(key);
    SC2_CHECK(v >= min && v <= (std::uint64_t{1} << 30), "'{}': {} is {}, expected an integer in [{}, 2^30]",
              g.describe(), key, v, min);
    return static_cast<int>(v);
  };
  ModelConfig c;
  const GgufTensor& embed = g.tensor("token_embd.weight");
  c.vocab_size = static_cast<int>(embed.shape[0]);
  c.hidden_size = integer("starcoder2.embedding_length", 1);
  c.intermediate_size = integer("starcoder2.feed_forward_length", 1);
  c.num_hidden_layers = integer("starcoder2.block_count", 1);
  c.num_attention_heads = integer("starcoder2.attention.head_count", 1);
  c.num_key_value_heads = g.find("starcoder2.attention.head_count_kv")
                              ? integer("starcoder2.attention.head_count_kv", 1)
                              : c.num_attention_heads;
  SC2_CHECK(c.num_attention_heads % c.num_key_value_heads == 0,
            "'{}': head_count {} is not a multiple of head_count_kv {}", g.describe(), c.num_attention_heads,
            c.num_key_value_heads);
  SC2_CHECK(c.hidden_size % c.num_attention_heads == 0, "'{}': embedding_length {} is not a multiple of head_count {}",
            g.describe(), c.hidden_size, c.num_attention_heads);
  c.head_dim = g.find("starcoder2.attention.key_length") ? integer("starcoder2.attention.key_length", 2)
                                                         : c.hidden_size / c.num_attention_heads;
  SC2_CHECK(c.head_dim % 2 == 0, "'{}': the head dimension {} must be even for rotary embeddings", g.describe(),
            c.head_dim);
  c.max_position_embeddings = integer("starcoder2.context_length", 1);
  c.sliding_window = g.find("starcoder2.attention.sliding_window")
                         ? std::optional<int>(integer("starcoder2.attention.sliding_window", 1))
                         : options.default_sliding_window;
  const auto number = [&](std::string_view key, double fallback) {
    const double v = g.optional_number(key).value_or(fallback);
    SC2_CHECK(std::isfinite(v) && v > 0.0, "'{}': {} is {}, expected a positive number", g.describe(), key, v);
    return v;
  };
  c.rope_theta = number("starcoder2.rope.freq_base", 10000.0);
  c.norm_epsilon = number("starcoder2.attention.layer_norm_epsilon", 1e-5);
  c.use_bias = g.find_tensor("blk.0.attn_q.bias") != nullptr;
  c.mlp_bias = c.use_bias;
  c.tie_word_embeddings = g.find_tensor("output.weight") == nullptr;
  c.hidden_act = "gelu_pytorch_tanh";
  const auto id = [&](std::string_view key) -> std::optional<int> {
    if (!g.find(key)) return std::nullopt;
    const std::uint64_t v = g.unsigned_integer(key);
    SC2_CHECK(v < static_cast<std::uint64_t>(c.vocab_size), "'{}': {} is {}, outside the vocabulary of {}",
              g.describe(), key, v, c.vocab_size);
    return static_cast<int>(v);
  };
  c.bos_token_id = id("tokenizer.ggml.bos_token_id");
  if (const auto eos = id("tokenizer.ggml.eos_token_id")) c.eos_token_ids = {*eos};
  c.pad_token_id = id("tokenizer.ggml.padding_token_id");
  for (int i = 0; i < c.num_labels; ++i) c.id2label.push_back(fmt::format("LABEL_{}", i));
  return c;
}

/// A checkpoint: config.json's values (or a GGUF file's) and the mapped tensors.
struct Checkpoint {
  std::filesystem::path dir;  ///< the directory (or the GGUF file)
  ModelConfig config;         ///< config.json's values
  TensorIndex tensors;        ///< the tensors, by Hugging Face name
  bool gguf = false;          ///< read from a GGUF file

  /// Opens a Hugging Face directory (`dir`/config.json of `schema`'s family,
  /// then its safetensors files) or, for a path ending in ".gguf", a StarCoder2 GGUF file.
  static Checkpoint open(const std::filesystem::path& path, const ConfigSchema& schema = {},
                         const GgufOptions& gguf_options = {}) {
    if (path.extension() == ".gguf") {
      SC2_CHECK(schema.model_type == "starcoder2", "'{}': GGUF files are read for StarCoder2 only, not for '{}'",
                path.string(), schema.model_type);
      Gguf g = Gguf::open(path);
      ModelConfig config = starcoder2_config_from_gguf(g, gguf_options);
      return Checkpoint{path, std::move(config), TensorIndex::of(std::move(g), starcoder2_name_from_gguf), true};
    }
    ModelConfig config = ModelConfig::from_file(path / "config.json", schema);
    return Checkpoint{path, std::move(config), TensorIndex::of(Safetensors::open(path)), false};
  }
  /// The path of config.json (or of the GGUF file), for messages.
  std::string config_path() const { return gguf ? dir.string() : (dir / "config.json").string(); }
};

}  // namespace sc2
