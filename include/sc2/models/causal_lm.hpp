#pragma once
/// \file
/// The causal language-model head (Hugging Face `Starcoder2ForCausalLM`).
///
///     logits = norm(h) · lm_headᵀ           (T, V); lm_head (V, D), no bias
///
/// lm_head is `embed_tokens` when config.json says `tie_word_embeddings`
/// (default true), otherwise the checkpoint's `lm_head.weight`, which must
/// then exist. Loading names every tensor of the checkpoint that neither the
/// backbone nor the head uses.
///
///     auto lm = sc2::CausalLM<sc2::Starcoder2<sc2::Config3B>>::load("starcoder2-3b");
///     sc2::CpuContext ctx;
///     sc2::KvCache cache = lm.make_cache();
///     std::span<const float> next = lm.forward_last(ctx, prompt_ids, cache);   // (V)

#include <sc2/core/buffer.hpp>
#include <sc2/models/starcoder2.hpp>

#include <fmt/ranges.h>

#include <filesystem>
#include <memory>
#include <span>

namespace sc2 {

/// A backbone with a tied or untied lm_head; see the file comment.
template <class Backbone>
class CausalLM {
public:
  using Context = typename Backbone::Context;

  /// Loads a checkpoint directory (config.json + safetensors).
  static CausalLM load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
    bool tied = true;
    auto [backbone, lm_head] = Backbone::load_with_head(
        dir, options,
        [&](WeightLoader& loader, const Backbone& b) {
          const ModelConfig& cfg = b.config();
          tied = cfg.tie_word_embeddings;
          if (tied) return b.weights().embed_tokens;
          SC2_CHECK(loader.contains("lm_head.weight"), "{}: tie_word_embeddings is false but the checkpoint holds no lm_head.weight",
                    (dir / "config.json").string());
          return loader.matrix("lm_head.weight", cfg.vocab_size, cfg.hidden_size);
        },
        [&](const std::string& name) { return tied && name == "lm_head.weight"; }, "causal LM");
    return CausalLM(std::move(backbone), lm_head);
  }

  /// A head over `backbone` with the (V, D) matrix `lm_head`.
  CausalLM(Backbone backbone, WeightMatrix lm_head)
      : backbone_(std::move(backbone)), lm_head_(lm_head), last_logits_(static_cast<std::size_t>(lm_head.rows)) {
    SC2_CHECK(lm_head.cols == backbone_.config().hidden_size, "lm_head has {} columns, hidden size is {}",
              lm_head.cols, backbone_.config().hidden_size);
  }

  /// The backbone.
  Backbone& backbone() noexcept { return backbone_; }
  /// The backbone, read-only.
  const Backbone& backbone() const noexcept { return backbone_; }
  /// The values of config.json.
  const ModelConfig& config() const noexcept { return backbone_.config(); }
  /// The (V, D) output projection.
  const WeightMatrix& lm_head() const noexcept { return lm_head_; }
  /// Vocabulary size V.
  std::int64_t vocab_size() const noexcept { return lm_head_.rows; }
  /// A cache for one sequence (see `Starcoder2::make_cache`).
  KvCache make_cache(std::int64_t max_context = 0) const { return backbone_.make_cache(max_context); }

  /// Runs `ids` (any length) through the cache; returns the logits (V) of the
  /// last token, valid until the next call.
  std::span<const float> forward_last(Context& ctx, std::span<const std::int32_t> ids, KvCache& cache,
                                      const Taps* taps = nullptr) {
    backbone_.forward_chunks(
        ctx, ids, cache,
        [&](std::int64_t offset, ConstMatrixView hidden) {
          if (offset + hidden.extent(0) < static_cast<std::int64_t>(ids.size())) return;
          MatrixView logits(last_logits_.data(), {1, vocab_size()});
          ops::linear(ctx, logits, hidden.slice(hidden.extent(0) - 1, 1), lm_head_);
        },
        taps);
    return last_logits_.span();
  }

  /// Runs `ids` through the cache and writes every token's logits into `out` (T, V).
  void forward_all(Context& ctx, std::span<const std::int32_t> ids, KvCache& cache, MatrixView out,
                   const Taps* taps = nullptr) {
    SC2_CHECK(out.extent(0) == static_cast<std::int64_t>(ids.size()) && out.extent(1) == vocab_size(),
              "forward_all: output is ({}, {}), expected ({}, {})", out.extent(0), out.extent(1), ids.size(),
              vocab_size());
    backbone_.forward_chunks(
        ctx, ids, cache,
        [&](std::int64_t offset, ConstMatrixView hidden) {
          ops::linear(ctx, out.slice(offset, hidden.extent(0)), hidden, lm_head_);
        },
        taps);
  }

private:
  Backbone backbone_;
  WeightMatrix lm_head_;      // (V, D)
  Buffer<float> last_logits_;  // (V)
};

/// A causal LM over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForCausalLM = CausalLM<Starcoder2<ModelConfig>>;

}  // namespace sc2
