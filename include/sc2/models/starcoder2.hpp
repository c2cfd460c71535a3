#pragma once
/// \file
/// The StarCoder2 backbone (Hugging Face `Starcoder2Model`).
///
///     h = embed_tokens[ids]                                    (T, D)
///     for each layer:
///         a = input_layernorm(h)
///         q, k, v = q_proj(a), k_proj(a), v_proj(a)            (T, H·Dh), (T, Hkv·Dh) × 2
///         q, k = rope(q, positions), rope(k, positions)
///         h = h + o_proj(attention(q, k, v, cache, mask))
///         h = h + mlp(post_attention_layernorm(h))
///     return norm(h)                                           (T, D)
///
/// `Starcoder2<Config, Backend>` composes the policies its `Config` names
/// (norm, MLP, positional encoding, mask) with grouped-query attention, and
/// runs them through the ops of `Backend`. `Config` is a compile-time preset
/// (`Config3B`, ...) or the runtime `ModelConfig`; the code is the same. The
/// forward pass takes a chunk of token ids, the next positions of one
/// sequence and its `KvCache`; every activation comes from a scratch arena
/// sized at construction for the largest chunk, so a forward pass allocates
/// nothing. Named taps expose intermediate tensors to tests.
///
///     auto model = sc2::Starcoder2<sc2::Config3B>::load("starcoder2-3b");
///     sc2::CpuContext ctx;
///     sc2::KvCache cache = model.make_cache();
///     sc2::ConstMatrixView hidden = model.forward(ctx, ids, cache);   // (T, D)

#include <sc2/backends/eigen.hpp>
#include <sc2/core/arena.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/io/safetensors.hpp>
#include <sc2/models/config.hpp>
#include <sc2/models/kv_cache.hpp>
#include <sc2/models/weights.hpp>
#include <sc2/ops/attention.hpp>
#include <sc2/ops/elementwise.hpp>
#include <sc2/ops/embedding.hpp>
#include <sc2/ops/linear.hpp>

#include <fmt/ranges.h>

#include <cmath>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sc2 {

/// How a checkpoint is loaded.
struct LoadOptions {
  /// Convert every weight matrix to this dtype at load; none keeps the stored dtype (in place).
  std::optional<DType> weight_dtype;
  /// The most tokens one forward call processes; longer inputs are split into chunks.
  std::int64_t max_chunk_tokens = 512;
};

/// Receives named intermediate tensors: name, absolute position of row 0, value (T, ·).
///
/// Names: "embed_tokens", "layers.{i}.input_layernorm", "layers.{i}.self_attn" (after o_proj),
/// "layers.{i}.post_attention_layernorm", "layers.{i}.mlp", "layers.{i}" (the layer's output), "norm".
using Taps = std::function<void(std::string_view name, std::int64_t first_position, ConstMatrixView value)>;

/// Tensor names the backbone never reads and that a loader may pass over.
inline bool is_ignorable_tensor(std::string_view name) {
  return name.ends_with(".rotary_emb.inv_freq");
}

/// The attention block's projections.
struct AttentionWeights {
  LinearWeights q_proj;  ///< (H·Dh, D)
  LinearWeights k_proj;  ///< (Hkv·Dh, D)
  LinearWeights v_proj;  ///< (Hkv·Dh, D)
  LinearWeights o_proj;  ///< (D, H·Dh)
};

/// The StarCoder2 decoder stack; see the file comment.
template <Starcoder2Config Config = ModelConfig, class Backend = cpu::Backend>
class Starcoder2 {
public:
  using Context = typename Backend::Context;
  using Norm = typename Config::Norm;
  using Mlp = typename Config::Mlp;
  using Positional = typename Config::Positional;
  using Mask = typename Config::Mask;

  /// One decoder layer, named as in the checkpoint (`model.layers.{i}.*`).
  struct LayerWeights {
    typename Norm::Weights input_layernorm;
    AttentionWeights self_attn;
    typename Norm::Weights post_attention_layernorm;
    typename Mlp::Weights mlp;
  };

  /// All backbone weights (`model.*`).
  struct Weights {
    WeightMatrix embed_tokens;        ///< (V, D)
    std::vector<LayerWeights> layers;  ///< num_hidden_layers
    typename Norm::Weights norm;       ///< final norm
  };

  /// Loads `dir` (config.json + safetensors); head tensors are passed over.
  static Starcoder2 load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
    auto storage = std::make_unique<WeightStorage>(WeightStorage{Safetensors::open(dir), {}});
    WeightLoader loader(*storage, options.weight_dtype);
    Starcoder2 model(ModelConfig::from_file(dir / "config.json"), loader, options, (dir / "config.json").string());
    model.storage_ = std::move(storage);
    return model;
  }

  /// Loads `dir` for a head: `load_head(loader, backbone)` reads the head's
  /// tensors and returns them; any tensor neither read nor accepted by
  /// `ignored(name)` is an error that names it (`head` names the model kind).
  template <class LoadHead, class Ignored>
  static auto load_with_head(const std::filesystem::path& dir, const LoadOptions& options, LoadHead&& load_head,
                             Ignored&& ignored, std::string_view head) {
    auto storage = std::make_unique<WeightStorage>(WeightStorage{Safetensors::open(dir), {}});
    WeightLoader loader(*storage, options.weight_dtype);
    Starcoder2 backbone(ModelConfig::from_file(dir / "config.json"), loader, options, (dir / "config.json").string());
    auto head_weights = load_head(loader, static_cast<const Starcoder2&>(backbone));
    const auto unexpected =
        loader.unused([&](const std::string& name) { return is_ignorable_tensor(name) || ignored(name); });
    SC2_CHECK(unexpected.empty(), "{} holds tensors a {} does not use: {}", storage->checkpoint.describe(), head,
              fmt::join(unexpected, ", "));
    backbone.storage_ = std::move(storage);
    return std::pair<Starcoder2, decltype(head_weights)>(std::move(backbone), std::move(head_weights));
  }

  /// Builds the model from `runtime` (config.json's values) and the tensors of `loader`.
  Starcoder2(const ModelConfig& runtime, WeightLoader& loader, const LoadOptions& options = {},
             const std::string& source = "config.json")
      : runtime_(runtime), cfg_(make_config(runtime)), max_chunk_(options.max_chunk_tokens) {
    if constexpr (StaticConfig<Config>) static_assert(valid_static_config<Config>());
    check_config_matches(cfg_, runtime_, source);
    SC2_CHECK(runtime_.hidden_act == Mlp::hidden_act, "{}: hidden_act '{}' is not the '{}' this model's MLP computes",
              source, runtime_.hidden_act, Mlp::hidden_act);
    SC2_CHECK(max_chunk_ > 0, "max_chunk_tokens must be positive, got {}", max_chunk_);
    load_weights(loader);
    rope_ = Positional::make(cfg_);
    mask_ = Mask::make(cfg_);
    plan_scratch();
  }

  /// The values of config.json.
  const ModelConfig& config() const noexcept { return runtime_; }
  /// The configuration the model is compiled with (a preset, or `config()`).
  const Config& static_config() const noexcept { return cfg_; }
  /// The weights, as views.
  const Weights& weights() const noexcept { return weights_; }
  /// Bytes of the checkpoint files the model maps (0 when built from a caller's loader).
  std::size_t checkpoint_bytes() const noexcept { return storage_ ? storage_->checkpoint.total_bytes() : 0; }
  /// Reads the mapped checkpoint into memory ahead of the first forward pass,
  /// reporting `progress(bytes_done, bytes_total)`; a no-op without a checkpoint.
  template <class Progress> void prefetch_weights(Progress&& progress) const {
    if (storage_) storage_->checkpoint.prefetch(progress);
  }
  /// The most tokens one `forward` call takes.
  std::int64_t max_chunk_tokens() const noexcept { return max_chunk_; }

  /// A cache for one sequence of at most `max_context` tokens (0: max_position_embeddings).
  KvCache make_cache(std::int64_t max_context = 0) const {
    if (max_context <= 0) max_context = cfg_.max_position_embeddings;
    return KvCache(static_cast<int>(cfg_.num_hidden_layers), Mask::cache_capacity(cfg_, max_context),
                   static_cast<int>(cfg_.num_key_value_heads), static_cast<int>(cfg_.head_dim), max_context);
  }

  /// Runs `ids` (1 <= T <= max_chunk_tokens) at positions cache.length() .. +T−1
  /// and returns the final hidden states (T, D), valid until the next call.
  ConstMatrixView forward(Context& ctx, std::span<const std::int32_t> ids, KvCache& cache,
                          const Taps* taps = nullptr) {
    const std::int64_t T = static_cast<std::int64_t>(ids.size());
    SC2_CHECK(T > 0, "forward needs at least one token");
    SC2_CHECK(T <= max_chunk_, "forward got {} tokens; at most max_chunk_tokens = {} per call", T, max_chunk_);
    cache.check_room(T);
    SC2_CHECK(cache.capacity() >= Mask::cache_capacity(cfg_, cache.max_context()),
              "KvCache of {} slots is too small for this model; use make_cache()", cache.capacity());
    const std::int64_t start = cache.length();
    const std::int64_t D = cfg_.hidden_size, Dh = cfg_.head_dim;
    const std::int64_t H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const ops::AttentionShape shape{static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(Dh),
                                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)))};

    std::span<std::int64_t> positions = positions_.first(static_cast<std::size_t>(T));
    for (std::int64_t t = 0; t < T; ++t) positions[static_cast<std::size_t>(t)] = start + t;
    MatrixView h = rows(hidden_, T, D);            // residual stream (T, D)
    MatrixView a = rows(normed_, T, D);            // normed input of a block (T, D)
    MatrixView o = rows(block_out_, T, D);         // output of a block (T, D)
    MatrixView q = rows(q_, T, H * Dh);            // (T, H·Dh)
    MatrixView k = rows(k_, T, Hkv * Dh);          // (T, Hkv·Dh)
    MatrixView v = rows(v_, T, Hkv * Dh);          // (T, Hkv·Dh)
    MatrixView attn = rows(attn_, T, H * Dh);      // (T, H·Dh)
    auto tap = [&](auto&& name, ConstMatrixView value) {
      if (taps && *taps) (*taps)(name, start, value);
    };

    ops::embedding(ctx, h, weights_.embed_tokens, ids);
    tap("embed_tokens", h);
    for (std::int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
      const int layer = static_cast<int>(l);

      Norm::forward(ctx, a, h, L.input_layernorm, cfg_);
      if (taps) tap(fmt::format("layers.{}.input_layernorm", l), a);
      ops::linear(ctx, q, a, L.self_attn.q_proj.weight, L.self_attn.q_proj.bias);
      ops::linear(ctx, k, a, L.self_attn.k_proj.weight, L.self_attn.k_proj.bias);
      ops::linear(ctx, v, a, L.self_attn.v_proj.weight, L.self_attn.v_proj.bias);
      Positional::apply(ctx, rope_, TensorView<float, 3>(q.data(), {T, H, Dh}),
                        TensorView<float, 3>(k.data(), {T, Hkv, Dh}), positions);
      ops::attention(ctx, attn, q, k, v, cache.ring(layer), start, shape, mask_);
      cache.store(layer, k, v);
      ops::linear(ctx, o, attn, L.self_attn.o_proj.weight, L.self_attn.o_proj.bias);
      if (taps) tap(fmt::format("layers.{}.self_attn", l), o);
      ops::add(ctx, h, o);

      Norm::forward(ctx, a, h, L.post_attention_layernorm, cfg_);
      if (taps) tap(fmt::format("layers.{}.post_attention_layernorm", l), a);
      Mlp::forward(ctx, o, a, L.mlp, mlp_scratch_);
      if (taps) tap(fmt::format("layers.{}.mlp", l), o);
      ops::add(ctx, h, o);
      if (taps) tap(fmt::format("layers.{}", l), h);
    }
    cache.advance(T);
    Norm::forward(ctx, a, h, weights_.norm, cfg_);
    tap("norm", a);
    return a;
  }

  /// Runs `ids` of any length through the cache in chunks of at most
  /// max_chunk_tokens, calling `on_chunk(offset, hidden (Tc, D))` for each.
  template <class OnChunk>
  void forward_chunks(Context& ctx, std::span<const std::int32_t> ids, KvCache& cache, OnChunk&& on_chunk,
                      const Taps* taps = nullptr) {
    SC2_CHECK(!ids.empty(), "forward needs at least one token");
    cache.check_room(static_cast<std::int64_t>(ids.size()));
    for (std::size_t offset = 0; offset < ids.size(); offset += static_cast<std::size_t>(max_chunk_)) {
      const std::size_t count = std::min(ids.size() - offset, static_cast<std::size_t>(max_chunk_));
      on_chunk(static_cast<std::int64_t>(offset), forward(ctx, ids.subspan(offset, count), cache, taps));
    }
  }

private:
  static Config make_config(const ModelConfig& runtime) {
    if constexpr (std::is_constructible_v<Config, const ModelConfig&>) return Config(runtime);
    else if constexpr (std::is_base_of_v<ModelConfig, Config>) {
      Config c{};
      static_cast<ModelConfig&>(c) = runtime;
      return c;
    } else {
      (void)runtime;
      return Config{};
    }
  }

  static MatrixView rows(std::span<float> storage, std::int64_t rows, std::int64_t cols) {
    return MatrixView(storage.data(), {rows, cols});
  }

  void load_weights(WeightLoader& loader) {
    const std::int64_t V = cfg_.vocab_size, D = cfg_.hidden_size, Dh = cfg_.head_dim;
    const std::int64_t H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const bool bias = cfg_.use_bias;
    weights_.embed_tokens = loader.matrix("model.embed_tokens.weight", V, D);
    for (std::int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      weights_.layers.push_back(LayerWeights{
          Norm::load(loader, p + "input_layernorm", cfg_),
          AttentionWeights{loader.linear(p + "self_attn.q_proj", H * Dh, D, bias),
                           loader.linear(p + "self_attn.k_proj", Hkv * Dh, D, bias),
                           loader.linear(p + "self_attn.v_proj", Hkv * Dh, D, bias),
                           loader.linear(p + "self_attn.o_proj", D, H * Dh, bias)},
          Norm::load(loader, p + "post_attention_layernorm", cfg_), Mlp::load(loader, p + "mlp", cfg_)});
    }
    weights_.norm = Norm::load(loader, "model.norm", cfg_);
  }

  void plan_scratch() {
    const std::int64_t T = max_chunk_, D = cfg_.hidden_size, Dh = cfg_.head_dim;
    const std::int64_t H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const auto n = [](std::int64_t count) { return static_cast<std::size_t>(count); };
    // T comes from the caller, the widths from config.json: check their products.
    for (const std::int64_t width : {D, H * Dh, std::int64_t{cfg_.intermediate_size}}) {
      std::int64_t product = 0;
      SC2_CHECK(!__builtin_mul_overflow(T, width, &product),
                "max_chunk_tokens {} times a row of {} floats overflows; use fewer tokens per chunk", T, width);
    }
    Arena::Planner plan;
    for (int i = 0; i < 3; ++i) plan.reserve<float>(n(T * D));
    for (int i = 0; i < 2; ++i) plan.reserve<float>(n(T * H * Dh));
    for (int i = 0; i < 2; ++i) plan.reserve<float>(n(T * Hkv * Dh));
    plan.reserve<float>(n(Mlp::scratch_floats(cfg_, T)));
    plan.reserve<std::int64_t>(n(T));
    arena_ = Arena(plan);
    hidden_ = arena_.take<float>(n(T * D));
    normed_ = arena_.take<float>(n(T * D));
    block_out_ = arena_.take<float>(n(T * D));
    q_ = arena_.take<float>(n(T * H * Dh));
    attn_ = arena_.take<float>(n(T * H * Dh));
    k_ = arena_.take<float>(n(T * Hkv * Dh));
    v_ = arena_.take<float>(n(T * Hkv * Dh));
    mlp_scratch_ = arena_.take<float>(n(Mlp::scratch_floats(cfg_, T)));
    positions_ = arena_.take<std::int64_t>(n(T));
  }

  ModelConfig runtime_;
  Config cfg_;
  std::int64_t max_chunk_;
  std::unique_ptr<WeightStorage> storage_;  // set when the model owns its checkpoint mapping
  Weights weights_;
  typename Positional::State rope_;
  decltype(Mask::make(std::declval<const Config&>())) mask_{};
  Arena arena_;
  std::span<float> hidden_, normed_, block_out_, q_, attn_, k_, v_, mlp_scratch_;
  std::span<std::int64_t> positions_;
};

}  // namespace sc2
