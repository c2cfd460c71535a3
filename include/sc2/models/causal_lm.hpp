#pragma once
/// \file
/// The causal language-model head (Hugging Face `Starcoder2ForCausalLM`).
///
///     logits = norm(h)[rows] · lm_headᵀ           (R, V); lm_head (V, D), no bias
///
/// Logits are computed only for the rows a batch asks for (R of its T rows),
/// so a prefill chunk costs no lm_head product for its inner tokens. lm_head
/// is `embed_tokens` when config.json says `tie_word_embeddings` (default
/// true), otherwise the checkpoint's `lm_head.weight`, which must then exist.
/// Loading names every tensor of the checkpoint that neither the backbone nor
/// the head uses.
///
///     auto lm = sc2::CausalLM<sc2::Starcoder2<sc2::Config3B>>::load("starcoder2-3b");
///     sc2::CpuContext ctx;
///     // one sequence:
///     sc2::KvCache cache = lm.make_cache();
///     std::span<const float> next = lm.forward_last(ctx, prompt_ids, cache);   // (V)
///     // many: one pool, one workspace, one batch of chunks per call
///     auto pool = lm.make_kv_pool({.pages = 1024});
///     auto ws = lm.make_workspace({.max_tokens = 512}, pool);
///     sc2::Batch batch;  batch.add(pool.add(), a);  batch.add(pool.add(), b);
///     auto logits = lm.forward(ctx, ws, pool, batch);   // (2, V): the last row of each

#include <sc2/core/error.hpp>
#include <sc2/models/kv_cache.hpp>
#include <sc2/models/starcoder2.hpp>

#include <filesystem>
#include <span>

namespace sc2 {

/// A backbone with a tied or untied lm_head; see the file comment.
template <class Backbone>
class CausalLM {
public:
  using Backend = typename Backbone::BackendType;  ///< the backend it runs on
  using Context = typename Backbone::Context;      ///< the execution context its calls take
  using Space = typename Backbone::Space;          ///< where its weights live
  using Pool = KvPool<Backend>;                    ///< the KV pool its batches continue
  using Work = Workspace<Backend>;                 ///< the workspace its calls write

  /// Loads a checkpoint directory (config.json, then safetensors) onto the backend of `ctx`.
  static CausalLM load(Context& ctx, const std::filesystem::path& dir, const LoadOptions& options = {}) {
    const Checkpoint checkpoint = Checkpoint::open(dir, Backbone::config_schema);
    auto store = std::make_shared<WeightStore<Space>>();
    typename Backbone::Loader loader(ctx, checkpoint.tensors, *store, options.weight_dtype, options.weight_quant);
    if (options.progress) loader.on_progress(options.progress);
    Backbone backbone(checkpoint.config, loader, store, checkpoint.config_path());
    const ModelConfig& cfg = checkpoint.config;
    WeightView<Space> lm_head = backbone.weights().embed_tokens;
    if (!cfg.tie_word_embeddings) {
      SC2_CHECK(loader.contains("lm_head.weight"),
                "{}: tie_word_embeddings is false but the checkpoint holds no lm_head.weight", checkpoint.config_path());
      lm_head = loader.matrix("lm_head.weight", cfg.vocab_size, cfg.hidden_size);
    }
    Backbone::check_all_used(
        loader, checkpoint, [&](const std::string& name) { return cfg.tie_word_embeddings && name == "lm_head.weight"; },
        "causal LM");
    return CausalLM(std::move(backbone), lm_head, options);
  }
  /// Loads with a context of the backend's default construction (the CPU: every core).
  static CausalLM load(const std::filesystem::path& dir, const LoadOptions& options = {})
    requires std::default_initializable<Context>
  {
    Context ctx;
    return load(ctx, dir, options);
  }

  /// A head over `backbone` with the (V, D) matrix `lm_head`.
  CausalLM(Backbone backbone, WeightView<Space> lm_head, const LoadOptions& options = {})
      : backbone_(std::move(backbone)), lm_head_(lm_head), max_chunk_(options.max_chunk_tokens) {
    SC2_CHECK(lm_head.cols == backbone_.config().hidden_size, "lm_head has {} columns, hidden size is {}",
              lm_head.cols, backbone_.config().hidden_size);
    SC2_CHECK(max_chunk_ > 0, "max_chunk_tokens must be positive, got {}", max_chunk_);
  }

  /// The backbone.
  const Backbone& backbone() const noexcept { return backbone_; }
  /// The values of config.json.
  const ModelConfig& config() const noexcept { return backbone_.config(); }
  /// The (V, D) output projection.
  const WeightView<Space>& lm_head() const noexcept { return lm_head_; }
  /// Vocabulary size V.
  std::int64_t vocab_size() const noexcept { return lm_head_.rows; }
  /// Bytes of the weights in the backend's memory.
  std::size_t weight_bytes() const noexcept { return backbone_.weight_bytes(); }
  /// The most tokens one forward call of a `KvCache` runs (`LoadOptions::max_chunk_tokens`).
  std::int64_t max_chunk_tokens() const noexcept { return max_chunk_; }

  /// A KV pool for this model (see `KvPool`), for sequences of at most `max_context` tokens.
  Pool make_kv_pool(const KvPoolOptions& options, std::int64_t max_context = 0) const {
    return backbone_.make_kv_pool(options, max_context);
  }
  /// A workspace for batches within `options`, reading pages of `pool`.
  Work make_workspace(const WorkspaceOptions& options, const Pool& pool) const {
    return backbone_.make_workspace(options, pool, vocab_size());
  }

  /// Runs `batch` and returns the logits (R, V) of the rows it asks for, in
  /// chunk order, held in `ws` until its next call.
  Matrix<const float, Space> forward(Context& ctx, Work& ws, Pool& pool, const Batch& batch,
                                     const Taps* taps = nullptr) const {
    const Matrix<float, Space> out = ws.logits(batch.logit_rows());
    forward(ctx, ws, pool, batch, out, taps);
    return out;
  }
  /// Runs `batch` and writes the logits of the rows it asks for into `out` (R, V).
  void forward(Context& ctx, Work& ws, Pool& pool, const Batch& batch, Matrix<float, Space> out,
               const Taps* taps = nullptr) const {
    const std::int64_t R = batch.logit_rows();
    SC2_CHECK(out.extent(0) == R && out.extent(1) == vocab_size(), "logits output is ({}, {}), expected ({}, {})",
              out.extent(0), out.extent(1), R, vocab_size());
    backbone_.forward(ctx, ws, pool, batch, taps);
    if (R > 0) ops::linear(ctx, out, ws.selected(R), lm_head_);
  }

  /// One sequence of at most `max_context` tokens (0: max_position_embeddings)
  /// starting at `first_position`: a pool with its pages, and a workspace for
  /// chunks of max_chunk_tokens.
  KvCache<Backend> make_cache(std::int64_t max_context = 0, std::int64_t first_position = 0) const {
    const KvShape shape = backbone_.kv_shape(max_context);
    const std::int64_t chunk = std::min(max_chunk_, shape.max_context);
    // A pool exactly as large as one sequence may need: its window and a chunk.
    Pool pool(shape, {.page_size = kCachePageSize, .pages = Pool::pages_per_sequence(shape, kCachePageSize, chunk)});
    Work ws = backbone_.make_workspace(
        {.max_tokens = chunk, .max_sequences = 1, .max_logit_rows = chunk, .stored_logit_rows = 1}, pool,
        vocab_size());
    return KvCache<Backend>(std::move(pool), std::move(ws), first_position);
  }

  /// Runs `ids` (any length) through the cache in chunks; returns the logits
  /// (V) of the last token, valid until the next call.
  std::span<const float> forward_last(Context& ctx, std::span<const std::int32_t> ids, KvCache<Backend>& cache,
                                      const Taps* taps = nullptr) const
    requires HostSpace<Space>
  {
    SC2_CHECK(!ids.empty(), "forward needs at least one token");
    cache.check_room(static_cast<std::int64_t>(ids.size()));
    Matrix<const float, Space> logits;
    for_each_chunk(ids, cache, [&](std::span<const std::int32_t> chunk, std::size_t, bool last) {
      Batch& batch = cache.batch();
      batch.clear();
      batch.add(cache.sequence(), chunk, last ? LogitRows::last : LogitRows::none);
      logits = forward(ctx, cache.workspace(), cache.pool(), batch, taps);
    });
    return logits.row(0);
  }

  /// Runs `ids` through the cache in chunks and writes every token's logits into `out` (T, V).
  void forward_all(Context& ctx, std::span<const std::int32_t> ids, KvCache<Backend>& cache, Matrix<float, Space> out,
                   const Taps* taps = nullptr) const {
    SC2_CHECK(out.extent(0) == static_cast<std::int64_t>(ids.size()) && out.extent(1) == vocab_size(),
              "forward_all: output is ({}, {}), expected ({}, {})", out.extent(0), out.extent(1), ids.size(),
              vocab_size());
    SC2_CHECK(!ids.empty(), "forward needs at least one token");
    cache.check_room(static_cast<std::int64_t>(ids.size()));
    for_each_chunk(ids, cache, [&](std::span<const std::int32_t> chunk, std::size_t offset, bool) {
      Batch& batch = cache.batch();
      batch.clear();
      batch.add(cache.sequence(), chunk, LogitRows::all);
      forward(ctx, cache.workspace(), cache.pool(), batch,
              out.slice(static_cast<std::int64_t>(offset), static_cast<std::int64_t>(chunk.size())), taps);
    });
  }

private:
  /// Positions per page of the pool of a `KvCache`.
  static constexpr std::int64_t kCachePageSize = 32;

  template <class F> static void for_each_chunk(std::span<const std::int32_t> ids, KvCache<Backend>& cache, F&& f) {
    const auto chunk = static_cast<std::size_t>(cache.max_chunk_tokens());
    for (std::size_t offset = 0; offset < ids.size(); offset += chunk) {
      const std::size_t n = std::min(chunk, ids.size() - offset);
      f(ids.subspan(offset, n), offset, offset + n == ids.size());
    }
  }

  Backbone backbone_;
  WeightView<Space> lm_head_;  // (V, D)
  std::int64_t max_chunk_;
};

/// A causal LM over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForCausalLM = CausalLM<Starcoder2<ModelConfig>>;

}  // namespace sc2
