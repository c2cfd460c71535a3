#pragma once
/// \file
/// Text generation for one prompt: an `Engine` with a single request.
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
/// The engine does the work; running the same request in a larger engine,
/// beside others, gives the same tokens.
///
///     sc2::Generator gen(lm, tokenizer);
///     sc2::GenerationConfig config;  config.max_new_tokens = 64;
///     auto result = gen.generate(ctx, "def fib(n):", config,
///                                [](std::string_view piece) { std::cout << piece << std::flush; });

#include <sc2/core/error.hpp>
#include <sc2/generation/engine.hpp>
#include <sc2/tokenizer/tokenizer.hpp>

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace sc2 {

/// Generates from a causal LM (`CausalLM<...>` or anything with its batched interface).
template <class LM>
class Generator {
public:
  using Context = typename LM::Context;  ///< the execution context its calls take

  /// A generator over `lm` and `tokenizer`; both must outlive it.
  Generator(const LM& lm, const Tokenizer& tokenizer) : lm_(lm), tokenizer_(tokenizer) {}

  /// The model generated from.
  const LM& model() const noexcept { return lm_; }

  /// Encodes `prompt` and generates from it.
  GenerationResult generate(Context& ctx, std::string_view prompt, const GenerationConfig& config,
                            const StreamCallback& on_text = {}) {
    const std::vector<std::int32_t> ids = tokenizer_.encode(prompt);
    return generate(ctx, std::span<const std::int32_t>(ids), config, on_text);
  }

  /// Generates from prompt ids: one request in an engine sized for it (prefill
  /// in chunks of `config.prefill_chunk` tokens, or of the model's max_chunk_tokens).
  GenerationResult generate(Context& ctx, std::span<const std::int32_t> prompt, const GenerationConfig& config,
                            const StreamCallback& on_text = {}) {
    SC2_CHECK(!prompt.empty(), "the prompt is empty: generation needs at least one token");
    SC2_CHECK(config.max_new_tokens > 0, "max_new_tokens must be positive, got {}", config.max_new_tokens);
    EngineOptions options;
    options.max_running = 1;
    options.max_batch_tokens = config.prefill_chunk > 0 ? config.prefill_chunk : lm_.max_chunk_tokens();
    options.max_context = config.max_context;
    Engine<LM> engine(lm_, tokenizer_, options);
    Request request;
    request.prompt.assign(prompt.begin(), prompt.end());
    request.config = config;
    request.on_text = on_text;
    const RequestId id = engine.add(std::move(request));
    while (engine.step(ctx)) {
    }
    return engine.result(id);
  }

private:
  const LM& lm_;
  const Tokenizer& tokenizer_;
};

}  // namespace sc2
