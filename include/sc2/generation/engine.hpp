#pragma once
/// \file
/// Generation as requests and steps: many sequences advanced together by one model.
///
///     add(request)  -> waiting
///     step():
///       admit waiting requests while the pool can promise them their pages   (FIFO)
///       batch = one decode row per running request that has a token to feed,
///               then prefill chunks of the others, up to the token budget      (continuous batching)
///       logits = model.forward(batch)           rows of the decode rows and of finished prompts only
///       ids = sample(logits, each row's sampler and history)   where the logits are
///       per row: stream its text; stop rules
///       retire finished requests: pages back to the pool (or kept as a prefix)
///
/// A request carries its prompt, its sampling settings and seed, stop rules and
/// an optional text callback; its state holds the produced ids, the text and
/// the stop reason. A request may start from the cached keys and values of
/// another request's first tokens (`Request::prefix_of`), so that only the rest
/// of its prompt is computed: an editor's successive completions of one file
/// share nearly all of their prompt.
///
/// What a request produces does not depend on what runs beside it: the
/// model's forward pass gives each sequence the same bits in any batch and
/// any chunking (see `Starcoder2`), and each request samples with its own
/// seeded generator. So greedy and seeded runs give the same tokens alone and
/// batched.
///
/// Memory: one KV pool and one workspace, planned when the engine is made. A
/// request is admitted only when the pool can hold every page it may need
/// (the window bounds that), so a step never runs out of pages; a request
/// that could never fit is refused when it is added. In steady state a step
/// allocates nothing: batches, rows, scores and per-request buffers are
/// planned when a request is admitted.
///
///     sc2::Engine engine(lm, tokenizer, {.max_batch_tokens = 256, .max_running = 8});
///     auto a = engine.add({.prompt = tokenizer.encode("def f():"), .config = config});
///     while (engine.step(ctx)) for (auto id : engine.finished()) use(engine.result(id));

#include <sc2/core/error.hpp>
#include <sc2/generation/sampler.hpp>
#include <sc2/tokenizer/tokenizer.hpp>
#include <sc2/models/batch.hpp>
#include <sc2/models/kv_pool.hpp>
#include <sc2/ops/sample.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
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
  cancelled,       ///< the caller cancelled the request
};

/// A readable name of a stop reason.
constexpr std::string_view stop_reason_name(StopReason r) noexcept {
  switch (r) {
    case StopReason::eos: return "eos";
    case StopReason::stop_string: return "stop_string";
    case StopReason::max_new_tokens: return "max_new_tokens";
    case StopReason::context_limit: return "context_limit";
    case StopReason::cancelled: return "cancelled";
  }
  return "?";
}

/// What to generate and when to stop.
struct GenerationConfig {
  std::int64_t max_new_tokens = 128;        ///< > 0
  SamplingConfig sampling;                  ///< greedy unless sampling.do_sample
  std::vector<std::int32_t> eos_token_ids;  ///< empty: the model's config.json eos ids
  std::vector<std::string> stop_strings;    ///< stop when the generated text contains one
  std::int64_t prefill_chunk = 0;           ///< `Generator`: prompt tokens per step; 0: the model's maximum
  std::int64_t max_context = 0;             ///< `Generator`: context limit; 0: max_position_embeddings
};

/// Where the time went.
struct GenerationTimings {
  std::int64_t prompt_tokens = 0;     ///< tokens of the prompt
  std::int64_t cached_tokens = 0;     ///< of them, taken from another request's cache
  double prompt_seconds = 0.0;        ///< from admission until the prompt's last chunk ran
  std::int64_t generated_tokens = 0;  ///< tokens produced
  double generate_seconds = 0.0;      ///< time from the first token to the last
  double time_to_first_token = 0.0;   ///< from `add` to the first generated token
  double queued_seconds = 0.0;        ///< from `add` to admission

  /// Prefill throughput (tokens computed, not those taken from a cache).
  double prompt_tokens_per_second() const noexcept {
    return prompt_seconds > 0.0 ? static_cast<double>(prompt_tokens - cached_tokens) / prompt_seconds : 0.0;
  }
  /// Decode throughput (tokens after the first, over the time they took).
  double generated_tokens_per_second() const noexcept {
    return generate_seconds > 0.0 && generated_tokens > 1 ? static_cast<double>(generated_tokens - 1) / generate_seconds
                                                          : 0.0;
  }
};

/// What a request produced.
struct GenerationResult {
  std::vector<std::int32_t> ids;                        ///< generated ids (not the prompt)
  std::string text;                                     ///< generated text, cut before a stop string
  StopReason stop_reason = StopReason::max_new_tokens;  ///< why it ended (once finished)
  GenerationTimings timings;                            ///< speed
};

/// Receives streamed text pieces: complete UTF-8, in order.
using StreamCallback = std::function<void(std::string_view piece)>;

/// A request's handle in an `Engine`.
using RequestId = std::int64_t;

/// One generation request.
struct Request {
  std::vector<std::int32_t> prompt;  ///< token ids, at least one
  GenerationConfig config;           ///< budget, sampling, stop rules
  StreamCallback on_text;            ///< called with each piece of text as it is safe to show
  /// Start from the cached keys and values of this request's first `prefix_tokens`
  /// tokens, which must equal this prompt's first tokens. When the request no
  /// longer holds them at admission (it finished without `keep_cache`, or its
  /// window moved past them), or does not hold them yet, they are computed.
  std::optional<RequestId> prefix_of;
  std::int64_t prefix_tokens = 0;  ///< with `prefix_of`: how many tokens to take
  /// Keep the prompt's cached keys and values when the request finishes, so later
  /// requests can start from any prefix of it; `release` lets them go. They are
  /// kept as they were when the prompt was fed (a second sequence shares its
  /// pages then), so the sliding window moving on as it generates loses nothing.
  /// While it runs, later requests may also start from its generated tokens.
  bool keep_cache = false;
};

/// Where a request is.
enum class RequestStatus {
  waiting,   ///< added, not yet admitted
  running,   ///< admitted: prefilling or decoding
  finished,  ///< done; its result is final
};

/// How an engine is sized.
struct EngineOptions {
  std::int64_t max_batch_tokens = 512;  ///< rows of one step: decode rows first, prefill chunks fill the rest
  std::int64_t max_running = 16;        ///< requests in flight at once
  std::int64_t page_size = 32;          ///< positions per KV page
  /// KV pool pages; 0: from `kv_bytes`, or when that is 0 too, enough for
  /// `max_running` sequences at the window (or the context).
  std::int64_t kv_pages = 0;
  std::size_t kv_bytes = 0;      ///< KV pool budget in bytes when `kv_pages` is 0
  std::int64_t max_context = 0;  ///< context limit of a sequence; 0: max_position_embeddings
};

namespace detail {

/// Collects generated text, finds stop strings, and streams what is safe to show.
class TextSink {
public:
  /// A sink for `stops`, streaming to `on_text` (both must outlive it).
  TextSink(const std::vector<std::string>& stops, const StreamCallback& on_text) : stops_(&stops), on_text_(&on_text) {}

  /// Room for `bytes` bytes of text without allocating.
  void reserve(std::size_t bytes) { text_.reserve(bytes); }
  /// Appends a piece; true when a stop string was reached (the text is cut before it).
  bool add(std::string_view piece) {
    const std::size_t old = text_.size();
    text_.append(piece);
    std::size_t cut = std::string::npos;
    for (const auto& s : *stops_) {
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
    for (const auto& s : *stops_)
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
    if (upto > emitted_ && *on_text_) (*on_text_)(std::string_view(text_).substr(emitted_, upto - emitted_));
    emitted_ = std::max(emitted_, upto);
  }

  const std::vector<std::string>* stops_;
  const StreamCallback* on_text_;
  std::string text_;
  std::size_t emitted_ = 0;
};

}  // namespace detail

/// Advances many requests through one model, step by step; see the file comment.
template <class LM>
class Engine {
public:
  using Backend = typename LM::Backend;  ///< the backend the model runs on
  using Context = typename LM::Context;  ///< the execution context `step` takes
  using Pool = KvPool<Backend>;          ///< the KV pool of its requests

  /// An engine over `lm` and `tokenizer` (both must outlive it), sized by `options`.
  Engine(const LM& lm, const Tokenizer& tokenizer, const EngineOptions& options = {})
      : lm_(lm), tokenizer_(tokenizer), options_(options), pool_(make_pool(lm, options)),
        workspace_(lm.make_workspace({.max_tokens = options.max_batch_tokens,
                                      .max_sequences = options.max_running,
                                      .max_logit_rows = options.max_running,
                                      .stored_logit_rows = options.max_running},
                                     pool_)) {
    SC2_CHECK(options.max_running > 0 && options.max_batch_tokens > 0,
              "engine: max_running {} and max_batch_tokens {} must be positive", options.max_running,
              options.max_batch_tokens);
    running_.reserve(static_cast<std::size_t>(options.max_running));
    finished_.reserve(static_cast<std::size_t>(options.max_running));
    batch_.reserve(static_cast<std::size_t>(options.max_running));
    rows_.reserve(static_cast<std::size_t>(options.max_running));
    sample_rows_.reserve(static_cast<std::size_t>(options.max_running));
    ids_.reserve(static_cast<std::size_t>(options.max_running));
  }

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// The KV pool.
  const Pool& pool() const noexcept { return pool_; }
  /// The sizing.
  const EngineOptions& options() const noexcept { return options_; }

  /// Queues `request`; an `sc2::Error` for a request that is malformed or could never fit.
  RequestId add(Request request) {
    const auto now = Clock::now();
    const GenerationConfig& config = request.config;
    SC2_CHECK(!request.prompt.empty(), "the prompt is empty: generation needs at least one token");
    SC2_CHECK(config.max_new_tokens > 0, "max_new_tokens must be positive, got {}", config.max_new_tokens);
    for (const auto& s : config.stop_strings) SC2_CHECK(!s.empty(), "stop strings must not be empty");
    config.sampling.validate();
    const std::int64_t vocab = lm_.vocab_size();
    for (std::size_t i = 0; i < request.prompt.size(); ++i)
      SC2_CHECK(request.prompt[i] >= 0 && request.prompt[i] < vocab,
                "prompt token id {} at position {} is outside the vocabulary [0, {})", request.prompt[i], i, vocab);
    SC2_CHECK(static_cast<std::int64_t>(request.prompt.size()) < pool_.max_context(),
              "the prompt has {} tokens; the context holds {}, so nothing could be generated", request.prompt.size(),
              pool_.max_context());
    if (request.prefix_of) {
      // The source's tokens as far as they are known (its prompt until it is admitted).
      const State& source = at(*request.prefix_of);
      const std::vector<std::int32_t>& known = source.history.empty() ? source.request.prompt : source.history;
      SC2_CHECK(request.prefix_tokens >= 0 && static_cast<std::size_t>(request.prefix_tokens) <= known.size() &&
                    static_cast<std::size_t>(request.prefix_tokens) <= request.prompt.size() &&
                    std::equal(request.prompt.begin(), request.prompt.begin() + request.prefix_tokens, known.begin()),
                "the first {} tokens of the prompt are not the first tokens of request {}", request.prefix_tokens,
                *request.prefix_of);
    }
    const std::int64_t need = pages_needed(request);
    SC2_CHECK(need <= pool_.pages(), "a request of {} prompt and {} new tokens may need {} KV pages; the pool holds {}",
              request.prompt.size(), config.max_new_tokens, need, pool_.pages());

    auto state = std::make_unique<State>(std::move(request));
    State& s = *state;
    s.id = next_id_++;
    s.added = now;
    s.pages = need;
    s.eos = s.request.config.eos_token_ids.empty() ? lm_.config().eos_token_ids : s.request.config.eos_token_ids;
    s.result.timings.prompt_tokens = static_cast<std::int64_t>(s.request.prompt.size());
    states_.emplace(s.id, std::move(state));
    waiting_.push_back(s.id);
    return s.id;
  }

  /// Stops `id` now: a waiting request never runs, a running one gives its pages back;
  /// its result keeps what it produced, with stop reason `cancelled`.
  void cancel(RequestId id) {
    State& s = at(id);
    if (s.status == RequestStatus::finished) return;
    if (s.status == RequestStatus::waiting) {
      waiting_.erase(std::find(waiting_.begin(), waiting_.end(), id));
      s.status = RequestStatus::finished;
      s.result.stop_reason = StopReason::cancelled;
      s.result.text = s.sink.text();
      finished_.push_back(id);
      return;
    }
    finish(s, StopReason::cancelled);
    running_.erase(std::find(running_.begin(), running_.end(), &s));
  }

  /// Forgets a finished request, and lets go of the cache it kept.
  void release(RequestId id) {
    State& s = at(id);
    SC2_CHECK(s.status == RequestStatus::finished, "request {} is still {}", id,
              s.status == RequestStatus::waiting ? "waiting" : "running");
    drop_cache(s);
    states_.erase(id);
  }

  /// True when the next waiting request is held back only by KV pages promised
  /// to others (running requests, and finished ones that keep their cache): a
  /// caller that keeps caches for reuse releases some then.
  bool waiting_for_pages() const {
    if (waiting_.empty() || static_cast<std::int64_t>(running_.size()) >= options_.max_running) return false;
    return promised_ + at(waiting_.front()).pages > pool_.pages();
  }

  /// Where `id` is.
  RequestStatus status(RequestId id) const { return at(id).status; }
  /// What `id` produced so far (final once it finished).
  const GenerationResult& result(RequestId id) const { return at(id).result; }
  /// The prompt and generated ids of `id`.
  std::span<const std::int32_t> tokens(RequestId id) const { return at(id).history; }
  /// The requests that finished during the last step (or were cancelled since).
  std::span<const RequestId> finished() const noexcept { return finished_; }
  /// Requests waiting for admission.
  std::size_t waiting() const noexcept { return waiting_.size(); }
  /// Requests admitted and not finished.
  std::size_t running() const noexcept { return running_.size(); }

  /// Advances every running request by one step (see the file comment); true
  /// while requests remain waiting or running.
  bool step(Context& ctx) {
    finished_.clear();
    admit();
    if (running_.empty()) return !waiting_.empty();
    batch_.clear();
    rows_.clear();
    std::int64_t used = 0;
    const std::int64_t budget = options_.max_batch_tokens;
    // Decode rows first, taken in turn from where the last step stopped, so none waits forever.
    const std::size_t n = running_.size();
    for (std::size_t k = 0; k < n && used < budget; ++k) {
      State& s = *running_[(rotation_ + k) % n];
      if (s.fed < s.request.prompt.size()) continue;
      add_rows(s, 1, true);
      ++used;
    }
    rotation_ = n > 0 ? (rotation_ + 1) % n : 0;
    // Prefill chunks in the budget that is left, in admission order.
    for (State* s : running_) {
      if (used >= budget) break;
      if (s->fed >= s->request.prompt.size()) continue;
      const std::int64_t left = static_cast<std::int64_t>(s->request.prompt.size() - s->fed);
      const std::int64_t take = std::min(left, budget - used);
      add_rows(*s, take, take == left);
      used += take;
    }
    const auto logits = lm_.forward(ctx, workspace_, pool_, batch_);
    const auto ran = Clock::now();
    // Every row that wants a token is sampled where its logits are: one call for the batch.
    sample_rows_.clear();
    for (const Row& row : rows_)
      if (row.logits) sample_rows_.push_back({&row.state->sampler, row.state->history});
    ids_.resize(sample_rows_.size());
    ops::sample(ctx, logits, std::span<const ops::SampleRow>(sample_rows_), std::span<std::int32_t>(ids_));
    std::size_t r = 0;
    for (const Row& row : rows_) {
      State& s = *row.state;
      s.fed += static_cast<std::size_t>(row.count);
      if (!row.logits) continue;
      if (s.result.ids.empty()) {
        s.result.timings.prompt_seconds = seconds(s.admitted, ran);
        if (s.request.keep_cache) snapshot_prompt(s);
      }
      sampled(s, ids_[r++]);
    }
    std::erase_if(running_, [](const State* s) { return s->status == RequestStatus::finished; });
    return !running_.empty() || !waiting_.empty();
  }

private:
  using Clock = std::chrono::steady_clock;

  struct State {
    explicit State(Request r)
        : request(std::move(r)), sampler(request.config.sampling), sink(request.config.stop_strings, request.on_text) {}
    Request request;
    RequestId id = 0;
    RequestStatus status = RequestStatus::waiting;
    Sampler sampler;
    detail::TextSink sink;
    std::optional<DecodeStream> stream;
    std::vector<std::int32_t> history;  // prompt, then generated ids
    std::vector<std::int32_t> eos;
    GenerationResult result;
    SequenceId sequence = -1;
    SequenceId snapshot = -1;         // keep_cache: the pool's view of the prompt alone, taken when it was fed
    std::int64_t snapshot_pages = 0;  // pages promised to the snapshot
    std::size_t fed = 0;     // tokens of `history` in the pool
    std::int64_t pages = 0;  // pages promised at admission
    Clock::time_point added, admitted, first_token;
  };
  struct Row {
    State* state;
    std::int64_t count;
    bool logits;
  };

  static Pool make_pool(const LM& lm, const EngineOptions& o) {
    SC2_CHECK(o.page_size > 0, "engine: page_size must be positive, got {}", o.page_size);
    KvPoolOptions kv{.page_size = o.page_size, .pages = o.kv_pages, .bytes = o.kv_bytes};
    if (kv.pages <= 0 && kv.bytes == 0) {
      const KvShape shape = lm.backbone().kv_shape(o.max_context);
      kv.pages = std::max<std::int64_t>(1, o.max_running) *
                 Pool::pages_per_sequence(shape, o.page_size, std::max<std::int64_t>(1, o.max_batch_tokens));
    }
    return lm.make_kv_pool(kv, o.max_context);
  }

  static double seconds(Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double>(to - from).count();
  }

  State& at(RequestId id) const {
    const auto it = states_.find(id);
    SC2_CHECK(it != states_.end(), "engine: no request {}", id);
    return *it->second;
  }

  // The most pages the request's sequence may hold: its window and a chunk, or all its tokens.
  std::int64_t pages_needed(const Request& r) const {
    const std::int64_t P = pool_.page_size();
    const std::int64_t total = std::min<std::int64_t>(
        static_cast<std::int64_t>(r.prompt.size()) + r.config.max_new_tokens, pool_.max_context());
    return std::min(Pool::pages_per_sequence(pool_.shape(), P, options_.max_batch_tokens), (total + P - 1) / P + 1);
  }

  void admit() {
    while (!waiting_.empty() && static_cast<std::int64_t>(running_.size()) < options_.max_running) {
      State& s = at(waiting_.front());
      if (promised_ + s.pages > pool_.pages()) break;  // waits until pages come back
      waiting_.pop_front();
      promised_ += s.pages;
      s.status = RequestStatus::running;
      s.admitted = Clock::now();
      s.result.timings.queued_seconds = seconds(s.added, s.admitted);
      s.history.reserve(s.request.prompt.size() + static_cast<std::size_t>(s.request.config.max_new_tokens));
      s.history.assign(s.request.prompt.begin(), s.request.prompt.end());
      s.result.ids.reserve(static_cast<std::size_t>(s.request.config.max_new_tokens));
      s.sink.reserve(static_cast<std::size_t>(s.request.config.max_new_tokens) * 16 + 64);
      s.stream.emplace(tokenizer_, DecodeOptions{.skip_special_tokens = true});
      // The prompt's last token is always computed: its logits give the first new token.
      const std::int64_t shared =
          std::min<std::int64_t>(s.request.prefix_tokens, static_cast<std::int64_t>(s.request.prompt.size()) - 1);
      s.sequence = -1;
      if (s.request.prefix_of && shared > 0) {
        const auto it = states_.find(*s.request.prefix_of);
        if (it != states_.end()) {
          const State& source = *it->second;
          // The source's own sequence while it still holds the prefix's window; else the
          // snapshot of its prompt, for as much of the prefix as the prompt covers.
          std::int64_t used = 0;
          if (source.sequence >= 0 && source.fed >= static_cast<std::size_t>(shared))
            s.sequence = try_fork(source.sequence, used = shared);
          if (s.sequence < 0 && source.snapshot >= 0)
            s.sequence = try_fork(
                source.snapshot, used = std::min<std::int64_t>(shared, static_cast<std::int64_t>(source.request.prompt.size())));
          if (s.sequence >= 0) {
            s.fed = static_cast<std::size_t>(used);
            s.result.timings.cached_tokens = used;
          }
        }
      }
      if (s.sequence < 0) {
        s.sequence = pool_.add();
        s.fed = 0;
      }
      running_.push_back(&s);
    }
  }

  // A sequence holding the first `tokens` positions of `source`, or -1 when the
  // source no longer holds them (its window moved past them): they are computed then.
  SequenceId try_fork(SequenceId source, std::int64_t tokens) {
    try {
      return pool_.fork(source, tokens);
    } catch (const Error&) {
      return -1;
    }
  }

  // keep_cache: once the prompt is in the pool, a second sequence shares its
  // pages, so that later requests can start from the prompt even after this one's
  // window has moved on while generating. Its pages are promised like a request's;
  // without room for them there is no snapshot.
  void snapshot_prompt(State& s) {
    const SequenceId snapshot = pool_.share(s.sequence);  // every page it holds: its prompt, fed just now
    const std::int64_t held = pool_.held_pages(snapshot);
    if (promised_ + held > pool_.pages()) {
      pool_.release(snapshot);
      return;
    }
    s.snapshot = snapshot;
    s.snapshot_pages = held;
    promised_ += held;
  }

  void add_rows(State& s, std::int64_t count, bool logits) {
    batch_.add(s.sequence, std::span<const std::int32_t>(s.history).subspan(s.fed, static_cast<std::size_t>(count)),
               logits ? LogitRows::last : LogitRows::none);
    rows_.push_back({&s, count, logits});
  }

  void sampled(State& s, std::int32_t id) {
    const auto now = Clock::now();
    if (s.result.ids.empty()) {
      s.first_token = now;
      s.result.timings.time_to_first_token = seconds(s.added, now);
    }
    s.result.ids.push_back(id);
    s.history.push_back(id);
    if (std::find(s.eos.begin(), s.eos.end(), id) != s.eos.end()) return finish(s, StopReason::eos);
    piece_.clear();
    s.stream->step(id, piece_);
    if (s.sink.add(piece_)) return finish(s, StopReason::stop_string);
    if (static_cast<std::int64_t>(s.result.ids.size()) >= s.request.config.max_new_tokens)
      return finish(s, StopReason::max_new_tokens);
    if (static_cast<std::int64_t>(s.fed) >= pool_.max_context()) return finish(s, StopReason::context_limit);
  }

  void finish(State& s, StopReason reason) {
    if (reason != StopReason::stop_string && s.stream) {
      piece_.clear();
      s.stream->flush(piece_);
      if (!s.sink.add(piece_)) s.sink.finish();
    }
    s.result.stop_reason = reason;
    s.result.text = s.sink.text();
    s.result.timings.generated_tokens = static_cast<std::int64_t>(s.result.ids.size());
    if (!s.result.ids.empty()) s.result.timings.generate_seconds = seconds(s.first_token, Clock::now());
    s.status = RequestStatus::finished;
    if (!s.request.keep_cache || reason == StopReason::cancelled) {
      drop_cache(s);
    } else if (s.snapshot >= 0) {  // the snapshot keeps the prompt; the generated rest goes back
      pool_.release(s.sequence);
      s.sequence = -1;
      promised_ -= s.pages;
    }
    finished_.push_back(s.id);
  }

  void drop_cache(State& s) {
    if (s.snapshot >= 0) {
      pool_.release(s.snapshot);
      s.snapshot = -1;
      promised_ -= s.snapshot_pages;
      s.snapshot_pages = 0;
    }
    if (s.sequence < 0) return;
    pool_.release(s.sequence);
    s.sequence = -1;
    promised_ -= s.pages;
  }

  const LM& lm_;
  const Tokenizer& tokenizer_;
  EngineOptions options_;
  Pool pool_;
  typename LM::Work workspace_;
  std::vector<ops::SampleRow> sample_rows_;  // the rows of this step that want a token
  std::vector<std::int32_t> ids_;             // the tokens chosen for them
  std::map<RequestId, std::unique_ptr<State>> states_;
  std::deque<RequestId> waiting_;
  std::vector<State*> running_;  // admission order
  std::vector<RequestId> finished_;
  Batch batch_;
  std::vector<Row> rows_;
  std::string piece_;
  std::int64_t promised_ = 0;  // pages promised to admitted requests
  std::size_t rotation_ = 0;
  RequestId next_id_ = 1;
};

}  // namespace sc2
