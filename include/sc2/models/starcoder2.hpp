#pragma once
/// \file
/// The StarCoder2 backbone (Hugging Face `Starcoder2Model`), over a ragged batch.
///
///     h = embed_tokens[ids]                                    (T, D)
///     for each layer:
///         a = input_layernorm(h)
///         q, k, v = q_proj(a), k_proj(a), v_proj(a)            (T, H·Dh), (T, Hkv·Dh) × 2
///         q, k = rope(q, positions), rope(k, positions)
///         kv_append(pages, k, v)                               each row into its sequence's pages
///         h = h + o_proj(attention(q, pages, mask))
///         h = h + mlp(post_attention_layernorm(h))
///     return norm(h)                                           (T, D)
///
/// T counts the rows of every chunk of the batch: each linear layer is one
/// matrix product over all of them, while attention reads each row's own
/// sequence's pages with its own positions.
///
/// `Starcoder2<Config, Backend>` composes the policies its `Config` names
/// (norm, MLP, positional encoding, mask) with grouped-query attention, and
/// runs them through the ops of `Backend` (the CPU by default; the umbrella
/// header `sc2/sc2.hpp` brings its definition). `Config` is a compile-time
/// preset (`Config3B`, ...) or the runtime `ModelConfig`; the code is the same.
///
/// A model is immutable once loaded: its weights live in a shared
/// `WeightStore`, and copies share them. Everything a forward call writes is
/// in the caller's `Workspace` (activations, the batch plan) and `KvPool`
/// (keys and values), so any number of executors can run one model, each
/// with its own context, workspace and pool. Named taps expose intermediate
/// tensors to tests.
///
///     auto model = sc2::Starcoder2<sc2::Config3B>::load(ctx, "starcoder2-3b");
///     auto pool = model.make_kv_pool({.page_size = 32, .pages = 512});
///     auto ws = model.make_workspace({.max_tokens = 512});
///     sc2::Batch batch;  batch.add(pool.add(), ids);
///     auto hidden = model.forward(ctx, ws, pool, batch);        // (T, D)

#include <sc2/core/context.hpp>
#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/models/batch.hpp>
#include <sc2/models/checkpoint.hpp>
#include <sc2/models/config.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/models/weights.hpp>
#include <sc2/models/workspace.hpp>
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

namespace cpu {
struct Backend;  // the default backend, defined in <sc2/backends/cpu.hpp>
}  // namespace cpu

/// How a checkpoint is loaded.
struct LoadOptions {
  /// Keep every weight matrix in this dtype; none keeps the stored dtype (the
  /// CPU backend; a GPU backend picks its own).
  std::optional<DType> weight_dtype;
  /// Quantize every weight matrix to this GGML block format at load (ggml's
  /// reference quantizer; a GGUF file's blocks of that format are kept as
  /// they are, others requantized). Matrices whose rows are not whole blocks
  /// keep their stored type. Backends that compute on blocks only (the CPU).
  std::optional<quant::Format> weight_quant;
  /// The most tokens one forward call of a `KvCache` runs; longer inputs are split into chunks.
  std::int64_t max_chunk_tokens = 512;
  /// Called with (bytes read, bytes in all) of the checkpoint as tensors are taken.
  std::function<void(std::size_t, std::size_t)> progress;
};

/// Sets how `options` keeps the weight matrices from a name: "f32", "bf16" or
/// "f16" (`weight_dtype`), a GGML block format "q8_0", "q4_0", "q4_k", "q5_k"
/// or "q6_k" (`weight_quant`), or "stored" (neither). The `--weight-dtype` of
/// the examples.
inline void set_weight_type(LoadOptions& options, std::string_view name) {
  options.weight_dtype.reset(), options.weight_quant.reset();
  if (name == "stored") return;
  if (name == "f32") options.weight_dtype = DType::f32;
  else if (name == "bf16") options.weight_dtype = DType::bf16;
  else if (name == "f16") options.weight_dtype = DType::f16;
  else options.weight_quant = quant::parse_format(name);
}

/// Receives named intermediate tensors of one chunk: name, absolute position
/// of its row 0, value (T, ·). Host backends only.
///
/// Names: "embed_tokens", "layers.{i}.input_layernorm", "layers.{i}.self_attn" (after o_proj),
/// "layers.{i}.post_attention_layernorm", "layers.{i}.mlp", "layers.{i}" (the layer's output), "norm".
using Taps = std::function<void(std::string_view name, std::int64_t first_position, ConstMatrixView value)>;

/// Tensor names the backbone never reads and that a loader may pass over.
inline bool is_ignorable_tensor(std::string_view name) { return name.ends_with(".rotary_emb.inv_freq"); }

/// The attention block's projections, in `Space`.
template <class Space>
struct AttentionWeights {
  LinearWeights<Space> q_proj;  ///< (H·Dh, D)
  LinearWeights<Space> k_proj;  ///< (Hkv·Dh, D)
  LinearWeights<Space> v_proj;  ///< (Hkv·Dh, D)
  LinearWeights<Space> o_proj;  ///< (D, H·Dh)
};

/// The StarCoder2 decoder stack; see the file comment.
template <Starcoder2Config Config = ModelConfig, class Backend = cpu::Backend>
class Starcoder2 {
public:
  using BackendType = Backend;                    ///< the backend it runs on
  using Context = typename Backend::Context;      ///< the execution context its calls take
  using Space = typename Backend::Space;          ///< where its weights and activations live
  using Act = typename Backend::Activation;       ///< the activations' element type
  using Norm = typename Config::Norm;              ///< the norm policy
  using Mlp = typename Config::Mlp;               ///< the MLP policy
  using Positional = typename Config::Positional;  ///< the positional-encoding policy
  using Mask = typename Config::Mask;              ///< the attention-mask policy
  using Loader = WeightLoader<Backend>;           ///< what takes its weights from a checkpoint
  using Pool = KvPool<Backend>;                   ///< the KV pool its batches continue
  using Work = Workspace<Backend>;                ///< the workspace its calls write
  /// How config.json is read: the config's model_type, key names and defaults.
  static constexpr ConfigSchema config_schema = Config::config_schema;

  /// One decoder layer, named as in the checkpoint (`model.layers.{i}.*`).
  struct LayerWeights {
    typename Norm::template Weights<Space> input_layernorm;           ///< the norm before attention
    AttentionWeights<Space> self_attn;                                ///< q, k, v and o projections
    typename Norm::template Weights<Space> post_attention_layernorm;  ///< the norm before the MLP
    typename Mlp::template Weights<Space> mlp;                        ///< the MLP
  };

  /// All backbone weights (`model.*`), as views of the weight store.
  struct Weights {
    WeightView<Space> embed_tokens;                 ///< (V, D)
    std::vector<LayerWeights> layers;               ///< num_hidden_layers
    typename Norm::template Weights<Space> norm;    ///< final norm
  };

  /// Loads `dir` (config.json, then the safetensors files); any tensor the
  /// backbone does not use, a head's (`lm_head.*`, `score.*`) aside, is an
  /// error that names it.
  static Starcoder2 load(Context& ctx, const std::filesystem::path& dir, const LoadOptions& options = {}) {
    const Checkpoint checkpoint = Checkpoint::open(dir, Config::config_schema);
    auto store = std::make_shared<WeightStore<Space>>();
    Loader loader(ctx, checkpoint.tensors, *store, options.weight_dtype, options.weight_quant);
    if (options.progress) loader.on_progress(options.progress);
    Starcoder2 model(checkpoint.config, loader, store, checkpoint.config_path());
    check_all_used(
        loader, checkpoint,
        [](const std::string& name) { return name.starts_with("lm_head.") || name.starts_with("score."); },
        "backbone");
    return model;
  }
  /// Loads `dir` with a context of the backend's default construction (the CPU: every core).
  static Starcoder2 load(const std::filesystem::path& dir, const LoadOptions& options = {})
    requires std::default_initializable<Context>
  {
    Context ctx;
    return load(ctx, dir, options);
  }

  /// Builds the model from `runtime` (config.json's values) and the tensors of
  /// `loader`, whose memory `store` keeps; `source` names config.json in errors.
  Starcoder2(const ModelConfig& runtime, Loader& loader, std::shared_ptr<WeightStore<Space>> store,
             const std::string& source = "config.json")
      : runtime_(runtime), cfg_(make_config(runtime)), store_(std::move(store)) {
    if constexpr (StaticConfig<Config>) static_assert(valid_static_config<Config>());
    check_config_matches(cfg_, runtime_, source);
    SC2_CHECK(runtime_.hidden_act == Mlp::hidden_act, "{}: hidden_act '{}' is not the '{}' this model's MLP computes",
              source, runtime_.hidden_act, Mlp::hidden_act);
    load_weights(loader);
    rope_ = Positional::make(cfg_);
    mask_ = Mask::make(cfg_);
  }

  /// Names every tensor of `checkpoint` neither the backbone nor `ignored` accepts, as an error.
  template <class Ignored>
  static void check_all_used(const Loader& loader, const Checkpoint& checkpoint, Ignored&& ignored,
                             std::string_view kind) {
    const auto unexpected =
        loader.unused([&](const std::string& name) { return is_ignorable_tensor(name) || ignored(name); });
    SC2_CHECK(unexpected.empty(), "{} holds tensors a {} does not use: {}", checkpoint.tensors.describe(), kind,
              fmt::join(unexpected, ", "));
  }

  /// The values of config.json.
  const ModelConfig& config() const noexcept { return runtime_; }
  /// The configuration the model is compiled with (a preset, or `config()`).
  const Config& static_config() const noexcept { return cfg_; }
  /// The weights, as views.
  const Weights& weights() const noexcept { return weights_; }
  /// The store that owns the weights' memory (shared by copies of the model).
  const std::shared_ptr<WeightStore<Space>>& weight_store() const noexcept { return store_; }
  /// Bytes of the weights in the backend's memory.
  std::size_t weight_bytes() const noexcept { return store_ ? store_->bytes() : 0; }

  /// The shape of the keys and values a KV pool for this model holds, for
  /// sequences of at most `max_context` tokens (0: max_position_embeddings).
  KvShape kv_shape(std::int64_t max_context = 0) const {
    return {static_cast<int>(cfg_.num_hidden_layers), static_cast<int>(cfg_.num_key_value_heads),
            static_cast<int>(cfg_.head_dim), Mask::window(cfg_),
            max_context > 0 ? max_context : std::int64_t{cfg_.max_position_embeddings}};
  }
  /// A KV pool for this model (see `KvPool`).
  Pool make_kv_pool(const KvPoolOptions& options, std::int64_t max_context = 0) const {
    return Pool(kv_shape(max_context), options);
  }
  /// A workspace for batches within `options`, reading pages of `pool`, with
  /// logits rows `logit_width` wide (0: the vocabulary).
  Work make_workspace(const WorkspaceOptions& options, const Pool& pool, std::int64_t logit_width = 0) const {
    check_workspace_options(options);  // before the MLP policy multiplies the token budget
    const std::int64_t D = cfg_.hidden_size, Dh = cfg_.head_dim;
    WorkspaceShape shape{D,
                         std::int64_t{cfg_.num_attention_heads} * Dh,
                         std::int64_t{cfg_.num_key_value_heads} * Dh,
                         Mlp::scratch_floats(cfg_, options.max_tokens),
                         logit_width > 0 ? logit_width : std::int64_t{cfg_.vocab_size},
                         std::min(options.stored_logit_rows, options.max_logit_rows),
                         pool.pages_per_sequence(options.max_tokens)};
    return Work(shape, options);
  }

  /// Runs every chunk of `batch` through the model: each chunk continues its
  /// sequence in `pool` (pages are taken there, keys and values written), and
  /// the final hidden states (T, D) of all rows, in chunk order, are returned;
  /// they stay valid until the next call on `ws`. The rows that want logits
  /// are gathered into `ws.selected(batch.logit_rows())`.
  Matrix<const Act, Space> forward(Context& ctx, Work& ws, Pool& pool, const Batch& batch,
                                   const Taps* taps = nullptr) const {
    const ops::BatchView<Space> plan = make_plan(ctx, ws, pool, batch);
    const std::int64_t T = batch.tokens(), Dh = cfg_.head_dim;
    const std::int64_t H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const ops::AttentionShape shape{static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(Dh),
                                    static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh)))};
    const Matrix<Act, Space> h = ws.hidden(T), a = ws.normed(T), o = ws.block_out(T);
    const Matrix<Act, Space> q = ws.q(T), k = ws.k(T), v = ws.v(T), attn = ws.attn(T);
    const auto tap = [&](const auto& name, Matrix<const Act, Space> value) {
      if constexpr (HostSpace<Space>) {
        if (!taps || !*taps) return;
        const std::string n(name);
        for (std::int64_t b = 0, row = 0; b < static_cast<std::int64_t>(batch.chunks().size()); ++b) {
          const std::int64_t rows = static_cast<std::int64_t>(batch.chunks()[static_cast<std::size_t>(b)].ids.size());
          (*taps)(n, plan.positions(row), value.slice(row, rows));
          row += rows;
        }
      } else {
        (void)name, (void)value;
      }
    };

    ops::embedding(ctx, h, weights_.embed_tokens, ws.tokens(T));
    tap("embed_tokens", h);
    for (std::int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const LayerWeights& L = weights_.layers[static_cast<std::size_t>(l)];
      const auto kv = pool.layer(static_cast<int>(l));

      Norm::forward(ctx, a, h, L.input_layernorm, cfg_);
      if (taps) tap(fmt::format("layers.{}.input_layernorm", l), a);
      ops::linear(ctx, q, a, L.self_attn.q_proj.weight, L.self_attn.q_proj.bias);
      ops::linear(ctx, k, a, L.self_attn.k_proj.weight, L.self_attn.k_proj.bias);
      ops::linear(ctx, v, a, L.self_attn.v_proj.weight, L.self_attn.v_proj.bias);
      const TensorView<Act, 3, Space> q_heads(q.data(), {T, H, Dh}), k_heads(k.data(), {T, Hkv, Dh});
      if constexpr (requires { Positional::apply_and_append(ctx, rope_, q_heads, k_heads, v, kv, plan); }) {
        Positional::apply_and_append(ctx, rope_, q_heads, k_heads, v, kv, plan);  // rope and kv_append in one op
      } else {
        Positional::apply(ctx, rope_, q_heads, k_heads, plan.positions);
        ops::kv_append(ctx, kv, k, v, plan);
      }
      ops::attention(ctx, attn, q, kv, plan, shape, mask_);
      ops::linear(ctx, o, attn, L.self_attn.o_proj.weight, L.self_attn.o_proj.bias);
      if (taps) tap(fmt::format("layers.{}.self_attn", l), o);
      ops::add(ctx, h, o);

      Norm::forward(ctx, a, h, L.post_attention_layernorm, cfg_);
      if (taps) tap(fmt::format("layers.{}.post_attention_layernorm", l), a);
      Mlp::forward(ctx, o, a, L.mlp, ws.mlp_scratch());
      if (taps) tap(fmt::format("layers.{}.mlp", l), o);
      ops::add(ctx, h, o);
      if (taps) tap(fmt::format("layers.{}", l), h);
    }
    for (const BatchChunk& chunk : batch.chunks())
      pool.advance(chunk.sequence, static_cast<std::int64_t>(chunk.ids.size()));
    Norm::forward(ctx, a, h, weights_.norm, cfg_);
    tap("norm", a);
    if (batch.logit_rows() > 0)
      ops::gather_rows(ctx, ws.selected(batch.logit_rows()), a, ws.logit_rows(batch.logit_rows()));
    return a;
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

  // Builds the batch plan on the host: pages for every chunk (window pages
  // back, shared pages copied, new pages taken), then rows, entries, page
  // tables and logit rows; then copies it to the backend.
  ops::BatchView<Space> make_plan(Context& ctx, Work& ws, Pool& pool, const Batch& batch) const {
    const WorkspaceOptions& budget = ws.options();
    const std::int64_t T = batch.tokens(), B = static_cast<std::int64_t>(batch.chunks().size());
    const std::int64_t R = batch.logit_rows(), P = pool.page_size();
    SC2_CHECK(T > 0, "forward needs at least one token");
    SC2_CHECK(T <= budget.max_tokens && B <= budget.max_sequences && R <= budget.max_logit_rows,
              "a batch of {} tokens in {} chunks with {} logit rows exceeds the workspace's {} tokens, {} chunks and "
              "{} logit rows",
              T, B, R, budget.max_tokens, budget.max_sequences, budget.max_logit_rows);
    SC2_CHECK(pool.shape().layers == cfg_.num_hidden_layers && pool.shape().kv_heads == cfg_.num_key_value_heads &&
                  pool.shape().head_dim == cfg_.head_dim && pool.shape().window == Mask::window(cfg_),
              "the KV pool was made for another model shape; use make_kv_pool()");
    for (std::size_t b = 0; b < batch.chunks().size(); ++b) {
      const SequenceId s = batch.chunks()[b].sequence;
      for (std::size_t c = 0; c < b; ++c)
        SC2_CHECK(batch.chunks()[c].sequence != s, "a batch holds sequence {} twice", s);
      ops::check_token_ids(batch.chunks()[b].ids, cfg_.vocab_size);
    }
    auto& host = ws.host_plan();
    std::int64_t row = 0, table = 0, logit = 0;
    for (std::int64_t b = 0; b < B; ++b) {
      const BatchChunk& chunk = batch.chunks()[static_cast<std::size_t>(b)];
      const std::int64_t n = static_cast<std::int64_t>(chunk.ids.size());
      const std::int64_t start = pool.length(chunk.sequence), first = pool.first_position(chunk.sequence);
      pool.prepare(ctx, chunk.sequence, n);
      const std::int64_t lo = std::max(first, pool.lowest_needed(start));
      const std::int64_t first_page = lo / P, pages = (start + n - 1) / P - first_page + 1;
      SC2_CHECK(table + pages <= static_cast<std::int64_t>(host.page_table.size()),
                "workspace page table of {} entries is too small", host.page_table.size());
      pool.page_table(chunk.sequence, first_page, pages, host.page_table.data() + table);
      host.entries[static_cast<std::size_t>(b)] =
          ops::BatchEntry{static_cast<std::int32_t>(row),   static_cast<std::int32_t>(n),
                          static_cast<std::int32_t>(start), static_cast<std::int32_t>(first),
                          static_cast<std::int32_t>(table), static_cast<std::int32_t>(first_page),
                          static_cast<std::int32_t>(pages)};
      for (std::int64_t t = 0; t < n; ++t) {
        const auto r = static_cast<std::size_t>(row + t);
        host.tokens[r] = chunk.ids[static_cast<std::size_t>(t)];
        host.positions[r] = static_cast<std::int32_t>(start + t);
        host.row_entry[r] = static_cast<std::int32_t>(b);
      }
      if (chunk.logits == LogitRows::all)
        for (std::int64_t t = 0; t < n; ++t) host.logit_rows[static_cast<std::size_t>(logit++)] = static_cast<std::int32_t>(row + t);
      else if (chunk.logits == LogitRows::last)
        host.logit_rows[static_cast<std::size_t>(logit++)] = static_cast<std::int32_t>(row + n - 1);
      row += n;
      table += pages;
    }
    return ws.upload_plan(ctx, T, B, table, R, P);
  }

  void load_weights(Loader& loader) {
    const std::int64_t V = cfg_.vocab_size, D = cfg_.hidden_size, Dh = cfg_.head_dim;
    const std::int64_t H = cfg_.num_attention_heads, Hkv = cfg_.num_key_value_heads;
    const bool bias = cfg_.use_bias;
    weights_.embed_tokens = loader.matrix("model.embed_tokens.weight", V, D);
    for (std::int64_t l = 0; l < cfg_.num_hidden_layers; ++l) {
      const std::string p = fmt::format("model.layers.{}.", l);
      weights_.layers.push_back(LayerWeights{
          Norm::load(loader, p + "input_layernorm", cfg_),
          AttentionWeights<Space>{loader.linear(p + "self_attn.q_proj", H * Dh, D, bias),
                                  loader.linear(p + "self_attn.k_proj", Hkv * Dh, D, bias),
                                  loader.linear(p + "self_attn.v_proj", Hkv * Dh, D, bias),
                                  loader.linear(p + "self_attn.o_proj", D, H * Dh, bias)},
          Norm::load(loader, p + "post_attention_layernorm", cfg_), Mlp::load(loader, p + "mlp", cfg_)});
    }
    weights_.norm = Norm::load(loader, "model.norm", cfg_);
  }

  ModelConfig runtime_;
  Config cfg_;
  std::shared_ptr<WeightStore<Space>> store_;
  Weights weights_;
  typename Positional::State rope_;
  decltype(Mask::make(std::declval<const Config&>())) mask_{};
};

}  // namespace sc2
