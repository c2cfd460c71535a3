#pragma once
/// \file
/// From a token classifier's logits to labelled byte spans of the text it read.
///
///     best_labels       logits (T, L) -> per token: argmax label and its softmax probability
///     token_byte_offsets ids -> offsets (T + 1): token i is text[offsets[i], offsets[i+1])
///     label_spans       runs of consecutive tokens with the same label other than O,
///                       as byte ranges trimmed of white space, scored by their mean probability
///     repair_spans      grows spans over the bytes their label admits and joins the pieces
///     tag_tokens        a causal tagger over a sequence of any length, in overlapping windows,
///                       with an optional label delay
///
/// Label delay: a causal model sees only the tokens before a token. A tagger
/// trained with a delay of d reads the label of token i at position i + d
/// (d tokens of right context); the input is the tokens followed by d
/// `end_token`s. d = 0 is the plain per-token reading of transformers.
///
/// Windows: positions [s, s + window) run as one sequence at positions
/// 0..window-1 (as the tagger was trained). The first window labels its
/// positions from the start; each later window starts `context` positions
/// before the previous one ended and labels only the positions after that end,
/// so every position is labelled once, with at least `context` positions of
/// left context in its window (or everything from the start).
///
///     auto tagger = sc2::Starcoder2ForTokenClassification::load("models/sc2-tagger");
///     auto tok = sc2::Tokenizer::from_file("models/sc2-tagger/tokenizer.json");
///     auto ids = tok.encode(text);
///     auto tags = sc2::tag_tokens(tagger, ctx, ids, {.label_delay = 8});
///     auto spans = sc2::label_spans(tags, sc2::token_byte_offsets(tok, ids), text);

#include <sc2/core/error.hpp>
#include <sc2/core/tensor.hpp>
#include <sc2/tokenizer/tokenizer.hpp>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2 {

/// A token's most likely label and its softmax probability.
struct TokenTag {
  std::int32_t label = 0;     ///< the argmax label
  float probability = 0.0f;   ///< its softmax probability
};

/// A labelled range of bytes of a text: [begin, end), over tokens [first_token, end_token).
struct TextSpan {
  std::size_t begin = 0;        ///< first byte
  std::size_t end = 0;          ///< one past the last byte
  std::int32_t label = 0;       ///< the entity's label
  float score = 0.0f;           ///< mean probability of its tokens' label
  std::size_t first_token = 0;  ///< first token
  std::size_t end_token = 0;    ///< one past the last token
};

/// The argmax of each row of `logits` (T, L) (the first on ties) and its softmax probability.
inline std::vector<TokenTag> best_labels(ConstMatrixView logits) {
  const std::int64_t T = logits.extent(0), L = logits.extent(1);
  SC2_CHECK(L > 0, "best_labels needs at least one label");
  std::vector<TokenTag> out(static_cast<std::size_t>(T));
  for (std::int64_t t = 0; t < T; ++t) {
    std::int64_t best = 0;
    for (std::int64_t l = 1; l < L; ++l)
      if (logits(t, l) > logits(t, best)) best = l;
    double sum = 0.0;
    for (std::int64_t l = 0; l < L; ++l) sum += std::exp(static_cast<double>(logits(t, l)) - logits(t, best));
    out[static_cast<std::size_t>(t)] = {static_cast<std::int32_t>(best), static_cast<float>(1.0 / sum)};
  }
  return out;
}

/// Byte offsets of the tokens of `ids` in the text they encode: (T + 1) values, the last the text's length.
inline std::vector<std::size_t> token_byte_offsets(const Tokenizer& tokenizer, std::span<const std::int32_t> ids) {
  std::vector<std::size_t> offsets(ids.size() + 1, 0);
  for (std::size_t i = 0; i < ids.size(); ++i) offsets[i + 1] = offsets[i] + tokenizer.token_bytes(ids[i]).size();
  return offsets;
}

namespace detail {
inline bool is_space_byte(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}
}  // namespace detail

/// Maximal runs of consecutive tokens with the same label other than `outside`, as byte spans of `text`
/// with leading and trailing white space trimmed (runs of white space alone are dropped).
inline std::vector<TextSpan> label_spans(std::span<const TokenTag> tags, std::span<const std::size_t> offsets,
                                         std::string_view text, std::int32_t outside = 0) {
  SC2_CHECK(offsets.size() == tags.size() + 1, "label_spans: {} offsets for {} tokens (need one more)", offsets.size(),
            tags.size());
  SC2_CHECK(offsets.back() <= text.size(), "label_spans: the tokens cover {} bytes, the text has {}", offsets.back(),
            text.size());
  std::vector<TextSpan> spans;
  for (std::size_t t = 0; t < tags.size();) {
    if (tags[t].label == outside) {
      ++t;
      continue;
    }
    std::size_t u = t;
    double sum = 0.0;
    while (u < tags.size() && tags[u].label == tags[t].label) sum += tags[u++].probability;
    std::size_t begin = offsets[t], end = offsets[u];
    while (begin < end && detail::is_space_byte(text[begin])) ++begin;
    while (end > begin && detail::is_space_byte(text[end - 1])) --end;
    if (begin < end)
      spans.push_back({begin, end, tags[t].label, static_cast<float>(sum / static_cast<double>(u - t)), t, u});
    t = u;
  }
  return spans;
}

/// Repairs spans cut at token boundaries the model got wrong:
///   1. each span grows over the adjacent bytes that `admits(span, byte, leftwards)` accepts;
///   2. spans for which `keeps(span)` is false are dropped (it may also narrow the span);
///   3. spans that overlap or touch are joined: the union takes the label whose tokens carry
///      the most probability in total, and the mean probability of all their tokens.
/// Both predicates see the span as grown so far (its bytes are text[begin, end)).
template <class Admits, class Keeps>
std::vector<TextSpan> repair_spans(std::vector<TextSpan> spans, std::string_view text, Admits&& admits, Keeps&& keeps) {
  std::vector<TextSpan> kept;
  for (TextSpan& s : spans) {
    while (s.begin > 0 && admits(std::as_const(s), text[s.begin - 1], true)) --s.begin;
    while (s.end < text.size() && admits(std::as_const(s), text[s.end], false)) ++s.end;
    if (keeps(s) && s.begin < s.end) kept.push_back(s);
  }
  spans.swap(kept);
  std::sort(spans.begin(), spans.end(), [](const TextSpan& a, const TextSpan& b) { return a.begin < b.begin; });
  std::vector<TextSpan> out;
  std::vector<std::pair<std::int32_t, double>> mass;  // per label of the span being built
  double tokens = 0.0;
  auto finish = [&] {
    TextSpan& s = out.back();
    double total = 0.0, best = -1.0;
    for (const auto& [label, m] : mass) {
      total += m;
      if (m > best) best = m, s.label = label;
    }
    s.score = static_cast<float>(total / tokens);
  };
  for (const TextSpan& s : spans) {
    const double n = static_cast<double>(s.end_token - s.first_token), m = s.score * n;
    if (!out.empty() && s.begin <= out.back().end) {
      TextSpan& last = out.back();
      last.end = std::max(last.end, s.end);
      last.first_token = std::min(last.first_token, s.first_token);
      last.end_token = std::max(last.end_token, s.end_token);
    } else {
      if (!out.empty()) finish();
      out.push_back(s);
      mass.clear();
      tokens = 0.0;
    }
    auto it = std::find_if(mass.begin(), mass.end(), [&](const auto& e) { return e.first == s.label; });
    if (it == mass.end())
      mass.emplace_back(s.label, m);
    else
      it->second += m;
    tokens += n;
  }
  if (!out.empty()) finish();
  return out;
}

/// How `tag_tokens` reads a sequence.
struct TaggingOptions {
  std::int64_t window = 512;       ///< positions per forward pass
  std::int64_t context = 128;      ///< positions a window repeats from the previous one, as left context
  std::int64_t label_delay = 0;    ///< the label of token i is read at position i + label_delay
  std::int32_t end_token = 0;      ///< appended label_delay times (<|endoftext|> for StarCoder2)
};

/// The label of every token of `ids` by a token classifier (`forward(ctx, ids, MatrixView (T, L))`,
/// `num_labels()`), read in windows and with the label delay of `options`.
template <class Classifier, class Context>
std::vector<TokenTag> tag_tokens(Classifier& model, Context& ctx, std::span<const std::int32_t> ids,
                                 const TaggingOptions& options = {}) {
  const std::int64_t W = options.window, C = options.context, d = options.label_delay;
  SC2_CHECK(W > 0 && C >= 0 && C < W && d >= 0 && d < W - C,
            "tag_tokens: need 0 <= context < window and 0 <= label_delay < window - context (window {}, context {}, "
            "delay {})",
            W, C, d);
  const std::int64_t T = static_cast<std::int64_t>(ids.size()), N = T + d, L = model.num_labels();
  std::vector<std::int32_t> stream(ids.begin(), ids.end());
  stream.insert(stream.end(), static_cast<std::size_t>(d), options.end_token);
  std::vector<TokenTag> tags(static_cast<std::size_t>(T));
  std::vector<float> logits;
  for (std::int64_t done = 0, start = 0; done < N; start = done - C) {
    const std::int64_t n = std::min(W, N - start);
    logits.assign(static_cast<std::size_t>(n * L), 0.0f);
    const MatrixView out(logits.data(), {n, L});
    model.forward(ctx, std::span<const std::int32_t>(stream).subspan(static_cast<std::size_t>(start),
                                                                     static_cast<std::size_t>(n)),
                  out);
    // Positions [done, start + n) are new; position p labels token p - d.
    const std::int64_t first = std::max(done, d);
    if (first < start + n) {
      const auto best = best_labels(ConstMatrixView(out).slice(first - start, start + n - first));
      std::copy(best.begin(), best.end(), tags.begin() + (first - d));
    }
    done = start + n;
  }
  return tags;
}

}  // namespace sc2
