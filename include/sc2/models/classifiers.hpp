#pragma once
/// \file
/// Classification heads (Hugging Face `Starcoder2ForTokenClassification` and
/// `Starcoder2ForSequenceClassification`) over the same backbone.
///
///     token:     logits[t]  = score(norm(h)[t])          score (L, D) with bias; every token
///     sequence:  logits     = score(norm(h)[t*])         score (L, D) without bias
///                t* = the largest t with ids[t] != pad_token_id
///
/// L = num_labels, names from config.json's id2label. A batch is given as
/// equal-length rows (B, T) of ids with an optional attention mask (B, T):
/// 1 for a token, 0 for padding, the ones of a row contiguous (left or right
/// padding). As in transformers, a row's tokens keep their positions in the
/// padded row, and masked positions are neither keys nor outputs (their
/// token logits are 0). Without a mask every position is a token, padding
/// included, as transformers computes it without an attention mask. With no
/// pad_token_id, a batch of one row pools its last token and a larger batch
/// is an error. Dropout before the score layer is the identity at inference.
///
///     auto tagger = sc2::Starcoder2ForTokenClassification::load("tagger");
///     std::vector<float> logits(T * tagger.num_labels());
///     tagger.forward(ctx, ids, sc2::MatrixView(logits.data(), {T, tagger.num_labels()}));

#include <sc2/core/tensor.hpp>
#include <sc2/models/starcoder2.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace sc2 {

namespace detail {

/// The run of tokens of one row: [begin, end) of its mask's ones, or the whole row.
inline std::pair<std::int64_t, std::int64_t> token_run(TensorView<const std::int32_t, 2> mask, std::int64_t row,
                                                       std::int64_t length) {
  if (mask.data() == nullptr) return {0, length};
  std::int64_t begin = length, end = 0;
  for (std::int64_t t = 0; t < length; ++t) {
    const std::int32_t m = mask(row, t);
    SC2_CHECK(m == 0 || m == 1, "attention_mask[{}][{}] is {}; it must be 0 or 1", row, t, m);
    if (m) begin = std::min(begin, t), end = t + 1;
  }
  SC2_CHECK(begin < end, "row {} of the batch has no token (its attention mask is all 0)", row);
  for (std::int64_t t = begin; t < end; ++t)
    SC2_CHECK(mask(row, t) == 1, "row {}: the attention mask's ones must be contiguous (left or right padding)", row);
  return {begin, end};
}

/// Runs `ids[begin, end)` of a row at positions begin..end−1, calling `on_chunk(offset, hidden)`.
template <class Backbone, class OnChunk>
void run_row(Backbone& backbone, typename Backbone::Context& ctx, std::span<const std::int32_t> row_ids,
             std::int64_t begin, std::int64_t end, OnChunk&& on_chunk) {
  KvCache cache = backbone.make_cache(std::max<std::int64_t>(end, 1));
  cache.start_at(begin);
  backbone.forward_chunks(ctx, row_ids.subspan(static_cast<std::size_t>(begin), static_cast<std::size_t>(end - begin)),
                          cache, on_chunk);
}

}  // namespace detail

/// Per-token labels: the score layer (with bias) on every token's hidden state.
template <class Backbone>
class TokenClassifier {
public:
  using Context = typename Backbone::Context;

  /// Loads a `Starcoder2ForTokenClassification` checkpoint (score.weight and score.bias).
  static TokenClassifier load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
    auto [backbone, score] = Backbone::load_with_head(
        dir, options,
        [](WeightLoader& loader, const Backbone& b) {
          return loader.linear("score", b.config().num_labels, b.config().hidden_size, /*bias=*/true);
        },
        [](const std::string&) { return false; }, "token classifier");
    return TokenClassifier(std::move(backbone), score);
  }

  /// A head over `backbone` with `score` (L, D) + bias (L).
  TokenClassifier(Backbone backbone, LinearWeights score) : backbone_(std::move(backbone)), score_(score) {}

  /// The backbone.
  Backbone& backbone() noexcept { return backbone_; }
  /// The backbone, read-only.
  const Backbone& backbone() const noexcept { return backbone_; }
  /// config.json's values (labels in id2label).
  const ModelConfig& config() const noexcept { return backbone_.config(); }
  /// L.
  std::int64_t num_labels() const noexcept { return score_.weight.rows; }
  /// Name of label `id`.
  const std::string& label(std::int64_t id) const { return config().id2label.at(static_cast<std::size_t>(id)); }

  /// Logits (T, L) of every token of one sequence.
  void forward(Context& ctx, std::span<const std::int32_t> ids, MatrixView out) {
    SC2_CHECK(out.extent(0) == static_cast<std::int64_t>(ids.size()) && out.extent(1) == num_labels(),
              "token classifier output is ({}, {}), expected ({}, {})", out.extent(0), out.extent(1), ids.size(),
              num_labels());
    detail::run_row(backbone_, ctx, ids, 0, static_cast<std::int64_t>(ids.size()),
                    [&](std::int64_t offset, ConstMatrixView hidden) {
                      ops::linear(ctx, out.slice(offset, hidden.extent(0)), hidden, score_.weight, score_.bias);
                    });
  }

  /// Logits (B, T, L) of a padded batch `ids` (B, T) with an optional `mask` (B, T).
  void forward_batch(Context& ctx, TensorView<const std::int32_t, 2> ids, TensorView<float, 3> out,
                     TensorView<const std::int32_t, 2> mask = {}) {
    const std::int64_t B = ids.extent(0), T = ids.extent(1), L = num_labels();
    SC2_CHECK(out.extent(0) == B && out.extent(1) == T && out.extent(2) == L && out.is_contiguous() && ids.is_contiguous(),
              "token classifier batch output is ({}, {}, {}), expected contiguous ({}, {}, {})", out.extent(0),
              out.extent(1), out.extent(2), B, T, L);
    SC2_CHECK(mask.data() == nullptr || (mask.extents() == ids.extents() && mask.is_contiguous()),
              "attention mask must have the shape of the ids ({}, {})", B, T);
    for (std::int64_t b = 0; b < B; ++b) {
      const auto run = detail::token_run(mask, b, T);
      const std::int64_t begin = run.first, end = run.second;  // plain names: lambdas capture them
      MatrixView row_out(out.data() + b * T * L, {T, L});
      for (std::int64_t t = 0; t < T; ++t)
        for (std::int64_t l = 0; l < L; ++l) row_out(t, l) = 0.0f;
      const std::span<const std::int32_t> row(ids.data() + b * T, static_cast<std::size_t>(T));
      detail::run_row(backbone_, ctx, row, begin, end, [&](std::int64_t offset, ConstMatrixView hidden) {
        ops::linear(ctx, row_out.slice(begin + offset, hidden.extent(0)), hidden, score_.weight, score_.bias);
      });
    }
  }

private:
  Backbone backbone_;
  LinearWeights score_;  // (L, D) + (L)
};

/// Per-sequence labels: the score layer (no bias) on the last non-pad token.
template <class Backbone>
class SequenceClassifier {
public:
  using Context = typename Backbone::Context;

  /// Loads a `Starcoder2ForSequenceClassification` checkpoint (score.weight).
  static SequenceClassifier load(const std::filesystem::path& dir, const LoadOptions& options = {}) {
    auto [backbone, score] = Backbone::load_with_head(
        dir, options,
        [](WeightLoader& loader, const Backbone& b) {
          return loader.linear("score", b.config().num_labels, b.config().hidden_size, /*bias=*/false);
        },
        [](const std::string&) { return false; }, "sequence classifier");
    return SequenceClassifier(std::move(backbone), score);
  }

  /// A head over `backbone` with `score` (L, D).
  SequenceClassifier(Backbone backbone, LinearWeights score) : backbone_(std::move(backbone)), score_(score) {}

  /// The backbone.
  Backbone& backbone() noexcept { return backbone_; }
  /// The backbone, read-only.
  const Backbone& backbone() const noexcept { return backbone_; }
  /// config.json's values (labels in id2label, pad_token_id).
  const ModelConfig& config() const noexcept { return backbone_.config(); }
  /// L.
  std::int64_t num_labels() const noexcept { return score_.weight.rows; }
  /// Name of label `id`.
  const std::string& label(std::int64_t id) const { return config().id2label.at(static_cast<std::size_t>(id)); }

  /// The index transformers pools for row `row`: the last t with ids[t] != pad_token_id.
  std::int64_t pooled_index(TensorView<const std::int32_t, 2> ids, std::int64_t row) const {
    const std::int64_t T = ids.extent(1);
    const auto pad = config().pad_token_id;
    if (!pad) {
      SC2_CHECK(ids.extent(0) == 1, "a batch of {} rows needs a pad_token_id in config.json to find each row's end",
                ids.extent(0));
      return T - 1;
    }
    std::int64_t last = 0;  // as transformers: a row of padding alone pools position 0
    for (std::int64_t t = 0; t < T; ++t)
      if (ids(row, t) != *pad) last = t;
    return last;
  }

  /// Logits (L) of one sequence.
  std::vector<float> forward(Context& ctx, std::span<const std::int32_t> ids) {
    std::vector<float> out(static_cast<std::size_t>(num_labels()));
    forward_batch(ctx, TensorView<const std::int32_t, 2>(ids.data(), {1, static_cast<std::int64_t>(ids.size())}),
                  MatrixView(out.data(), {1, num_labels()}));
    return out;
  }

  /// Logits (B, L) of a padded batch `ids` (B, T) with an optional `mask` (B, T).
  void forward_batch(Context& ctx, TensorView<const std::int32_t, 2> ids, MatrixView out,
                     TensorView<const std::int32_t, 2> mask = {}) {
    const std::int64_t B = ids.extent(0), T = ids.extent(1);
    SC2_CHECK(out.extent(0) == B && out.extent(1) == num_labels(), "sequence classifier output is ({}, {}), expected ({}, {})",
              out.extent(0), out.extent(1), B, num_labels());
    SC2_CHECK(T > 0 && ids.is_contiguous(), "sequence classifier needs contiguous rows of at least one token");
    SC2_CHECK(mask.data() == nullptr || (mask.extents() == ids.extents() && mask.is_contiguous()),
              "attention mask must have the shape of the ids ({}, {})", B, T);
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t pooled = pooled_index(ids, b);
      const auto run = detail::token_run(mask, b, T);
      const std::int64_t begin = run.first, end = run.second;  // plain names: lambdas capture them
      SC2_CHECK(pooled >= begin && pooled < end, "row {}: the pooled token {} is masked out", b, pooled);
      const std::span<const std::int32_t> row(ids.data() + b * T, static_cast<std::size_t>(T));
      // Tokens after the pooled one cannot change it (causal attention): stop there.
      detail::run_row(backbone_, ctx, row, begin, pooled + 1, [&](std::int64_t offset, ConstMatrixView hidden) {
        const std::int64_t local = pooled - begin - offset;
        if (local >= 0 && local < hidden.extent(0))
          ops::linear(ctx, out.slice(b, 1), hidden.slice(local, 1), score_.weight, score_.bias);
      });
    }
  }

private:
  Backbone backbone_;
  LinearWeights score_;  // (L, D)
};

/// Token classification over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForTokenClassification = TokenClassifier<Starcoder2<ModelConfig>>;
/// Sequence classification over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForSequenceClassification = SequenceClassifier<Starcoder2<ModelConfig>>;

}  // namespace sc2
