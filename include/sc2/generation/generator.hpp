#pragma once
/// \file
/// Text generation: chunked prefill, a decode loop, stop rules and streaming.
///
///     prompt ids --prefill (chunks of prefill_chunk tokens)--> logits of the last token
///     repeat: id = sampler(logits, prompt + generated)
///             stop if id is an EOS id, the text reaches a stop string,
///                  max_new_tokens were generated, or the context is full
///             stream the text id completes; logits = forward(id)
///
/// Streaming goes through `DecodeStream`, so a callback never receives part of a
/// UTF-8 character, and text that could be the beginning of a stop string is
/// held back until it is known not to be. The result's text stops before the
/// stop string (the ids keep the token that completed it, as transformers
/// does); EOS ids end generation and are kept in the ids, not in the text.
///
///     sc2::Generator gen(lm, tokenizer);
///     sc2::GenerationConfig config;  config.max_new_tokens = 64;
///     auto result = gen.generate(ctx, "def fib(n):", config,
///                                [](std::string_view piece) { std::cout << piece << std::flush; });

#include <sc2/core/error.hpp>
#include <sc2/generation/sampler.hpp>
#include <sc2/io/tokenizer.hpp>
#include <sc2/models/kv_cache.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sc2 {

/// Why generation ended.
enum class StopReason {
  eos,             ///< the model produced an end-of-sequence id
  stop_string,     ///< the text reached one of the stop strings
  max_new_tokens,  ///< the budget of new tokens is spent
  context_limit,   ///< the sequence filled the model's context
};

/// A readable name of a stop reason.
constexpr std::string_view stop_reason_name(StopReason r) noexcept {
  switch (r) {
    case StopReason::eos: return "eos";
    case StopReason::stop_string: return "stop_string";
    case StopReason::max_new_tokens: return "max_new_tokens";
    case StopReason::context_limit: return "context_limit";
  }
  return "?";
}

/// What to generate and when to stop.
struct GenerationConfig {
  std::int64_t max_new_tokens = 128;       ///< > 0
  SamplingConfig sampling;                 ///< greedy unless sampling.do_sample
  std::vector<std::int32_t> eos_token_ids;  ///< empty: the model's config.json eos ids
  std::vector<std::string> stop_strings;   ///< stop when the generated text contains one
  std::int64_t prefill_chunk = 0;          ///< prompt tokens per forward; 0: the model's maximum
  std::int64_t max_context = 0;            ///< context limit; 0: max_position_embeddings
};

/// Where the time went.
struct GenerationTimings {
  std::int64_t prompt_tokens = 0;     ///< tokens of the prompt
  double prompt_seconds = 0.0;        ///< prefill time
  std::int64_t generated_tokens = 0;  ///< tokens produced
  double generate_seconds = 0.0;      ///< time from the first token to the last
  double time_to_first_token = 0.0;   ///< from the call to the first generated token

  /// Prefill throughput.
  double prompt_tokens_per_second() const noexcept {
    return prompt_seconds > 0.0 ? static_cast<double>(prompt_tokens) / prompt_seconds : 0.0;
  }
  /// Decode throughput (tokens after the first, over the time they took).
  double generated_tokens_per_second() const noexcept {
    return generate_seconds > 0.0 && generated_tokens > 1 ? static_cast<double>(generated_tokens - 1) / generate_seconds
                                                          : 0.0;
  }
};

/// The outcome of one `generate` call.
struct GenerationResult {
  std::vector<std::int32_t> ids;  ///< generated ids (not the prompt)
  std::string text;               ///< generated text, cut before a stop string
  StopReason stop_reason = StopReason::max_new_tokens;  ///< why it ended
  GenerationTimings timings;      ///< speed
};

/// Receives streamed text pieces: complete UTF-8, in order.
using StreamCallback = std::function<void(std::string_view piece)>;

/// Generates from a causal LM (`CausalLM<...>` or anything with its interface).
template <class LM>
class Generator {
public:
  using Context = typename LM::Context;

  /// A generator over `lm` and `tokenizer`; both must outlive it.
  Generator(LM& lm, const Tokenizer& tokenizer) : lm_(lm), tokenizer_(tokenizer) {}

  /// The model generated from.
  LM& model() noexcept { return lm_; }

  /// Encodes `prompt` and generates from it.
  GenerationResult generate(Context& ctx, std::string_view prompt, const GenerationConfig& config,
                            const StreamCallback& on_text = {}) {
    const std::vector<std::int32_t> ids = tokenizer_.encode(prompt);
    return generate(ctx, std::span<const std::int32_t>(ids), config, on_text);
  }

  /// Generates from prompt ids.
  GenerationResult generate(Context& ctx, std::span<const std::int32_t> prompt, const GenerationConfig& config,
                            const StreamCallback& on_text = {}) {
    using Clock = std::chrono::steady_clock;
    const auto start = Clock::now();
    SC2_CHECK(!prompt.empty(), "the prompt is empty: generation needs at least one token");
    SC2_CHECK(config.max_new_tokens > 0, "max_new_tokens must be positive, got {}", config.max_new_tokens);
    for (const auto& s : config.stop_strings) SC2_CHECK(!s.empty(), "stop strings must not be empty");
    const std::int64_t vocab = lm_.vocab_size();
    for (std::size_t i = 0; i < prompt.size(); ++i)
      SC2_CHECK(prompt[i] >= 0 && prompt[i] < vocab, "prompt token id {} at position {} is outside the vocabulary [0, {})",
                prompt[i], i, vocab);
    KvCache cache = lm_.make_cache(config.max_context);
    SC2_CHECK(static_cast<std::int64_t>(prompt.size()) < cache.max_context(),
              "the prompt has {} tokens; the context holds {}, so nothing could be generated", prompt.size(),
              cache.max_context());

    const std::vector<std::int32_t>& eos = config.eos_token_ids.empty() ? lm_.config().eos_token_ids : config.eos_token_ids;
    Sampler sampler(config.sampling);
    GenerationResult result;
    result.timings.prompt_tokens = static_cast<std::int64_t>(prompt.size());
    std::vector<std::int32_t> history(prompt.begin(), prompt.end());
    std::vector<float> scores(static_cast<std::size_t>(vocab));

    // Prefill in chunks.
    const std::int64_t chunk = config.prefill_chunk > 0 ? config.prefill_chunk : static_cast<std::int64_t>(prompt.size());
    std::span<const float> logits;
    for (std::size_t offset = 0; offset < prompt.size(); offset += static_cast<std::size_t>(chunk)) {
      const std::size_t n = std::min(prompt.size() - offset, static_cast<std::size_t>(chunk));
      logits = lm_.forward_last(ctx, prompt.subspan(offset, n), cache);
    }
    const auto prefilled = Clock::now();
    result.timings.prompt_seconds = std::chrono::duration<double>(prefilled - start).count();

    DecodeStream stream(tokenizer_, DecodeOptions{.skip_special_tokens = true});
    TextSink sink(config.stop_strings, on_text);
    Clock::time_point first_token{};
    for (;;) {
      std::copy(logits.begin(), logits.end(), scores.begin());
      const std::int32_t id = sampler.sample(scores, history);
      if (result.ids.empty()) {
        first_token = Clock::now();
        result.timings.time_to_first_token = std::chrono::duration<double>(first_token - start).count();
      }
      result.ids.push_back(id);
      history.push_back(id);
      if (std::find(eos.begin(), eos.end(), id) != eos.end()) {
        result.stop_reason = StopReason::eos;
        break;
      }
      if (sink.add(stream.step(id))) {
        result.stop_reason = StopReason::stop_string;
        break;
      }
      if (static_cast<std::int64_t>(result.ids.size()) >= config.max_new_tokens) {
        result.stop_reason = StopReason::max_new_tokens;
        break;
      }
      if (cache.length() >= cache.max_context()) {
        result.stop_reason = StopReason::context_limit;
        break;
      }
      logits = lm_.forward_last(ctx, std::span<const std::int32_t>(&history.back(), 1), cache);
    }
    if (result.stop_reason != StopReason::stop_string && !sink.add(stream.flush())) sink.finish();
    result.text = sink.text();
    result.timings.generated_tokens = static_cast<std::int64_t>(result.ids.size());
    result.timings.generate_seconds = std::chrono::duration<double>(Clock::now() - first_token).count();
    return result;
  }

private:
  /// Collects generated text, finds stop strings, and streams what is safe to show.
  class TextSink {
  public:
    TextSink(const std::vector<std::string>& stops, const StreamCallback& on_text) : stops_(stops), on_text_(on_text) {}

    /// Appends a piece; true when a stop string was reached (the text is cut before it).
    bool add(std::string_view piece) {
      const std::size_t old = text_.size();
      text_.append(piece);
      std::size_t cut = std::string::npos;
      for (const auto& s : stops_) {
        // A stop string completed by this piece starts at most s.size() - 1 bytes before it.
        const std::size_t from = old >= s.size() - 1 ? old - (s.size() - 1) : 0;
        cut = std::min(cut, text_.find(s, from));
      }
      if (cut != std::string::npos) {
        text_.resize(cut);
        emit(text_.size());
        return true;
      }
      emit(text_.size() - held_back());
      return false;
    }
    /// Streams whatever is left.
    void finish() { emit(text_.size()); }
    /// All the text so far.
    const std::string& text() const noexcept { return text_; }

  private:
    // Bytes at the end of the text that are a proper prefix of a stop string.
    std::size_t held_back() const {
      std::size_t hold = 0;
      for (const auto& s : stops_)
        for (std::size_t n = std::min(s.size() - 1, text_.size()); n > hold; --n)
          if (std::string_view(text_).substr(text_.size() - n) == std::string_view(s).substr(0, n)) {
            hold = n;
            break;
          }
      return hold;
    }
    void emit(std::size_t upto) {
      // Never split a UTF-8 character when holding bytes back.
      while (upto > emitted_ && upto < text_.size() && (static_cast<unsigned char>(text_[upto]) & 0xC0) == 0x80) --upto;
      if (upto > emitted_ && on_text_) on_text_(std::string_view(text_).substr(emitted_, upto - emitted_));
      emitted_ = std::max(emitted_, upto);
    }

    const std::vector<std::string>& stops_;
    const StreamCallback& on_text_;
    std::string text_;
    std::size_t emitted_ = 0;
  };

  LM& lm_;
  const Tokenizer& tokenizer_;
};

}  // namespace sc2
