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
/// The rows of a batch run as sequences of one ragged batch: each forward
/// call packs chunks of several rows (up to a token budget), so the weights
/// are read once per call, not once per row, and padding costs nothing.
///
///     auto tagger = sc2::Starcoder2ForTokenClassification::load("tagger");
///     std::vector<float> logits(T * tagger.num_labels());
///     tagger.forward(ctx, ids, sc2::MatrixView(logits.data(), {T, tagger.num_labels()}));

#include <sc2/core/tensor.hpp>
#include <sc2/models/batch.hpp>
#include <sc2/models/checkpoint.hpp>
#include <sc2/models/starcoder2.hpp>

#include <algorithm>
#include <deque>

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

/// One row a classifier runs: its tokens and the position of the first.
struct ClassifierRow {
  std::span<const std::int32_t> ids;  ///< the tokens
  std::int64_t first_position = 0;    ///< position of ids[0] (a left-padded row starts past 0)
};

/// Runs `rows` through `backbone` as sequences of ragged batches of at most
/// `budget` tokens, then `score` (L, D) + `bias` on the final hidden state of
/// every token (`every_token`) or of each row's last token, calling
/// `on_logits(row, offset, logits (n, L))` for the rows' tokens offset .. offset + n − 1
/// (the last token only: offset = its index, n = 1).
template <class Backbone, class OnLogits>
void run_classifier_rows(const Backbone& backbone, typename Backbone::Context& ctx, std::span<const ClassifierRow> rows,
                         const LinearWeights<typename Backbone::Space>& score, bool every_token, std::int64_t budget,
                         OnLogits&& on_logits) {
  using Backend = typename Backbone::BackendType;
  std::int64_t longest = 1, total = 0;
  for (const auto& r : rows) {
    longest = std::max<std::int64_t>(longest, r.first_position + static_cast<std::int64_t>(r.ids.size()));
    total += static_cast<std::int64_t>(r.ids.size());
  }
  budget = std::min(budget, std::max<std::int64_t>(1, total));  // no larger than the rows need
  // Rows in flight at once: enough to fill a batch, each with the pages of its window and a chunk.
  const std::int64_t in_flight = std::min<std::int64_t>(static_cast<std::int64_t>(rows.size()), 16);
  const KvShape shape = backbone.kv_shape(longest);
  constexpr std::int64_t page_size = 32;
  KvPool<Backend> pool(shape, {.page_size = page_size,
                               .pages = in_flight * KvPool<Backend>::pages_per_sequence(shape, page_size, budget)});
  const std::int64_t L = score.weight.rows;
  Workspace<Backend> ws = backbone.make_workspace(
      {.max_tokens = budget, .max_sequences = in_flight, .max_logit_rows = budget, .stored_logit_rows = budget}, pool, L);

  struct Active {
    std::size_t row;
    SequenceId sequence;
    std::int64_t done;
  };
  struct Piece {
    std::size_t row;
    std::int64_t offset, count;
  };
  std::deque<Active> active;
  std::vector<Piece> pieces;
  std::size_t next = 0;
  Batch batch;
  while (next < rows.size() || !active.empty()) {
    while (static_cast<std::int64_t>(active.size()) < in_flight && next < rows.size()) {
      active.push_back({next, pool.add(rows[next].first_position), 0});
      ++next;
    }
    batch.clear();
    pieces.clear();
    std::int64_t used = 0;
    for (Active& a : active) {
      if (used == budget) break;
      const auto ids = rows[a.row].ids;
      const std::int64_t n = std::min(static_cast<std::int64_t>(ids.size()) - a.done, budget - used);
      const bool finishes = a.done + n == static_cast<std::int64_t>(ids.size());
      const LogitRows want = every_token ? LogitRows::all : finishes ? LogitRows::last : LogitRows::none;
      batch.add(a.sequence, ids.subspan(static_cast<std::size_t>(a.done), static_cast<std::size_t>(n)), want);
      if (want != LogitRows::none) pieces.push_back({a.row, every_token ? a.done : a.done + n - 1, every_token ? n : 1});
      a.done += n;
      used += n;
    }
    backbone.forward(ctx, ws, pool, batch);
    const std::int64_t R = batch.logit_rows();
    const Matrix<float, typename Backbone::Space> logits = ws.logits(R);
    ops::linear(ctx, logits, ws.selected(R), score.weight, score.bias);
    std::int64_t at = 0;
    for (const Piece& p : pieces) {
      on_logits(p.row, p.offset, Matrix<const float, typename Backbone::Space>(logits.slice(at, p.count)));
      at += p.count;
    }
    for (auto it = active.begin(); it != active.end();) {
      if (it->done == static_cast<std::int64_t>(rows[it->row].ids.size())) {
        pool.release(it->sequence);
        it = active.erase(it);
      } else {
        ++it;
      }
    }
  }
}

/// Loads a backbone and a score layer (L, D) (+ bias when `bias`) from `dir`.
template <class Backbone>
std::pair<Backbone, LinearWeights<typename Backbone::Space>> load_classifier(typename Backbone::Context& ctx,
                                                                              const std::filesystem::path& dir,
                                                                              const LoadOptions& options, bool bias,
                                                                              std::string_view kind) {
  const Checkpoint checkpoint = Checkpoint::open(dir, Backbone::config_schema);
  auto store = std::make_shared<WeightStore<typename Backbone::Space>>();
  typename Backbone::Loader loader(ctx, checkpoint.tensors, *store, options.weight_dtype, options.weight_quant);
  if (options.progress) loader.on_progress(options.progress);
  Backbone backbone(checkpoint.config, loader, store, checkpoint.config_path());
  auto score = loader.linear("score", checkpoint.config.num_labels, checkpoint.config.hidden_size, bias);
  Backbone::check_all_used(loader, checkpoint, [](const std::string&) { return false; }, kind);
  return {std::move(backbone), score};
}

}  // namespace detail

/// Per-token labels: the score layer (with bias) on every token's hidden state.
template <class Backbone>
class TokenClassifier {
public:
  using Context = typename Backbone::Context;  ///< the execution context its calls take
  using Space = typename Backbone::Space;      ///< where its weights live

  /// Loads a `Starcoder2ForTokenClassification` checkpoint (score.weight and score.bias).
  static TokenClassifier load(Context& ctx, const std::filesystem::path& dir, const LoadOptions& options = {}) {
    auto [backbone, score] = detail::load_classifier<Backbone>(ctx, dir, options, /*bias=*/true, "token classifier");
    return TokenClassifier(std::move(backbone), score, options);
  }
  /// Loads with a context of the backend's default construction.
  static TokenClassifier load(const std::filesystem::path& dir, const LoadOptions& options = {})
    requires std::default_initializable<Context>
  {
    Context ctx;
    return load(ctx, dir, options);
  }

  /// A head over `backbone` with `score` (L, D) + bias (L).
  TokenClassifier(Backbone backbone, LinearWeights<Space> score, const LoadOptions& options = {})
      : backbone_(std::move(backbone)), score_(score), budget_(options.max_chunk_tokens) {}

  /// The backbone.
  const Backbone& backbone() const noexcept { return backbone_; }
  /// config.json's values (labels in id2label).
  const ModelConfig& config() const noexcept { return backbone_.config(); }
  /// L.
  std::int64_t num_labels() const noexcept { return score_.weight.rows; }
  /// Name of label `id`.
  const std::string& label(std::int64_t id) const { return config().id2label.at(static_cast<std::size_t>(id)); }

  /// Logits (T, L) of every token of one sequence.
  void forward(Context& ctx, std::span<const std::int32_t> ids, MatrixView out) const {
    SC2_CHECK(out.extent(0) == static_cast<std::int64_t>(ids.size()) && out.extent(1) == num_labels(),
              "token classifier output is ({}, {}), expected ({}, {})", out.extent(0), out.extent(1), ids.size(),
              num_labels());
    SC2_CHECK(!ids.empty(), "forward needs at least one token");
    const detail::ClassifierRow row{ids, 0};
    detail::run_classifier_rows(backbone_, ctx, std::span(&row, 1), score_, true, budget_,
                                [&](std::size_t, std::int64_t offset, ConstMatrixView logits) {
                                  copy_rows(out.slice(offset, logits.extent(0)), logits);
                                });
  }

  /// Logits (B, T, L) of a padded batch `ids` (B, T) with an optional `mask` (B, T).
  void forward_batch(Context& ctx, TensorView<const std::int32_t, 2> ids, TensorView<float, 3> out,
                     TensorView<const std::int32_t, 2> mask = {}) const {
    const std::int64_t B = ids.extent(0), T = ids.extent(1), L = num_labels();
    SC2_CHECK(out.extent(0) == B && out.extent(1) == T && out.extent(2) == L && out.is_contiguous() && ids.is_contiguous(),
              "token classifier batch output is ({}, {}, {}), expected contiguous ({}, {}, {})", out.extent(0),
              out.extent(1), out.extent(2), B, T, L);
    SC2_CHECK(mask.data() == nullptr || (mask.extents() == ids.extents() && mask.is_contiguous()),
              "attention mask must have the shape of the ids ({}, {})", B, T);
    std::vector<detail::ClassifierRow> rows;
    std::vector<std::int64_t> begins;
    for (std::int64_t b = 0; b < B; ++b) {
      const auto [begin, end] = detail::token_run(mask, b, T);
      rows.push_back({std::span(ids.data() + b * T + begin, static_cast<std::size_t>(end - begin)), begin});
      begins.push_back(begin);
    }
    std::fill(out.data(), out.data() + out.size(), 0.0f);
    detail::run_classifier_rows(backbone_, ctx, std::span<const detail::ClassifierRow>(rows), score_, true, budget_,
                                [&](std::size_t b, std::int64_t offset, ConstMatrixView logits) {
                                  const MatrixView row_out(out.data() + static_cast<std::int64_t>(b) * T * L, {T, L});
                                  copy_rows(row_out.slice(begins[b] + offset, logits.extent(0)), logits);
                                });
  }

private:
  static void copy_rows(MatrixView dst, ConstMatrixView src) {
    for (std::int64_t t = 0; t < src.extent(0); ++t)
      std::copy(src.row(t).begin(), src.row(t).end(), dst.row(t).begin());
  }

  Backbone backbone_;
  LinearWeights<Space> score_;  // (L, D) + (L)
  std::int64_t budget_;
};

/// Per-sequence labels: the score layer (no bias) on the last non-pad token.
template <class Backbone>
class SequenceClassifier {
public:
  using Context = typename Backbone::Context;  ///< the execution context its calls take
  using Space = typename Backbone::Space;      ///< where its weights live

  /// Loads a `Starcoder2ForSequenceClassification` checkpoint (score.weight).
  static SequenceClassifier load(Context& ctx, const std::filesystem::path& dir, const LoadOptions& options = {}) {
    auto [backbone, score] = detail::load_classifier<Backbone>(ctx, dir, options, /*bias=*/false, "sequence classifier");
    return SequenceClassifier(std::move(backbone), score, options);
  }
  /// Loads with a context of the backend's default construction.
  static SequenceClassifier load(const std::filesystem::path& dir, const LoadOptions& options = {})
    requires std::default_initializable<Context>
  {
    Context ctx;
    return load(ctx, dir, options);
  }

  /// A head over `backbone` with `score` (L, D).
  SequenceClassifier(Backbone backbone, LinearWeights<Space> score, const LoadOptions& options = {})
      : backbone_(std::move(backbone)), score_(score), budget_(options.max_chunk_tokens) {}

  /// The backbone.
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
  std::vector<float> forward(Context& ctx, std::span<const std::int32_t> ids) const {
    std::vector<float> out(static_cast<std::size_t>(num_labels()));
    forward_batch(ctx, TensorView<const std::int32_t, 2>(ids.data(), {1, static_cast<std::int64_t>(ids.size())}),
                  MatrixView(out.data(), {1, num_labels()}));
    return out;
  }

  /// Logits (B, L) of a padded batch `ids` (B, T) with an optional `mask` (B, T).
  void forward_batch(Context& ctx, TensorView<const std::int32_t, 2> ids, MatrixView out,
                     TensorView<const std::int32_t, 2> mask = {}) const {
    const std::int64_t B = ids.extent(0), T = ids.extent(1);
    SC2_CHECK(out.extent(0) == B && out.extent(1) == num_labels(), "sequence classifier output is ({}, {}), expected ({}, {})",
              out.extent(0), out.extent(1), B, num_labels());
    SC2_CHECK(T > 0 && ids.is_contiguous(), "sequence classifier needs contiguous rows of at least one token");
    SC2_CHECK(mask.data() == nullptr || (mask.extents() == ids.extents() && mask.is_contiguous()),
              "attention mask must have the shape of the ids ({}, {})", B, T);
    std::vector<detail::ClassifierRow> rows;
    for (std::int64_t b = 0; b < B; ++b) {
      const std::int64_t pooled = pooled_index(ids, b);
      const auto [begin, end] = detail::token_run(mask, b, T);
      SC2_CHECK(pooled >= begin && pooled < end, "row {}: the pooled token {} is masked out", b, pooled);
      // Tokens after the pooled one cannot change it (causal attention): stop there.
      rows.push_back({std::span(ids.data() + b * T + begin, static_cast<std::size_t>(pooled + 1 - begin)), begin});
    }
    detail::run_classifier_rows(backbone_, ctx, std::span<const detail::ClassifierRow>(rows), score_, false, budget_,
                                [&](std::size_t b, std::int64_t, ConstMatrixView logits) {
                                  std::copy(logits.row(0).begin(), logits.row(0).end(),
                                            out.row(static_cast<std::int64_t>(b)).begin());
                                });
  }

private:
  Backbone backbone_;
  LinearWeights<Space> score_;  // (L, D)
  std::int64_t budget_;
};

/// Token classification over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForTokenClassification = TokenClassifier<Starcoder2<ModelConfig>>;
/// Sequence classification over any StarCoder2 checkpoint, configured from its config.json.
using Starcoder2ForSequenceClassification = SequenceClassifier<Starcoder2<ModelConfig>>;

}  // namespace sc2
