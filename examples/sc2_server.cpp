// sc2-server: fill-in-the-middle and completions over HTTP, for editors and tools.
//
//   sc2-server --model starcoder2-3b --port 8012 [--device cuda] [--api-key KEY]
//
// Speaks llama.cpp's /infill (llama.vim, llama.vscode) and OpenAI's
// /v1/completions with `suffix` (Continue and other OpenAI clients), plus
// /tokenize, /detokenize, /health, /v1/models and /metrics (Prometheus).
// docs/server.md has the API, the limits and the editor set-up.
//
// Threads. HTTP requests are parsed, checked and tokenized on the HTTP
// library's worker threads; one engine thread owns the model and runs
// `sc2::Engine::step` for every client at once (continuous batching). A job
// links the two: the engine thread appends streamed text and the final result
// to it, the worker waits on it and writes to its client. A client that goes
// away marks its job cancelled and the engine thread cancels the request at
// its next step, freeing its pages.
//
// Prefix reuse. Finished requests keep their KV pages (up to --cache-entries,
// least recently used first out, and sooner when a waiting request needs the
// pages); a new request starts from the longest common prefix of its prompt
// with any cached or running request, so the next keystroke's completion
// computes only what changed.

#include <sc2/generation/engine.hpp>
#include <sc2/generation/fim.hpp>
#include <sc2/sc2.hpp>
#ifdef SC2_WITH_CUDA
#include <sc2/backends/cuda.hpp>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <httplib.h>  // after sc2 and Eigen: its <resolv.h> defines `_res`, a name Eigen uses
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <deque>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <pthread.h>

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

/// What the server was started with.
struct Options {
  std::string model = SC2_BUNDLED_MODEL;
  std::string weight_type = "stored";  // --weight-dtype (sc2::set_weight_type)
  std::string host = "127.0.0.1";
  int port = 8012;
  std::string api_key;
  std::string device = "cpu";
  int threads = 0;
  std::int64_t max_running = 16;         ///< requests decoded together
  std::int64_t max_queue = 64;           ///< requests waiting beyond those
  std::int64_t batch_tokens = 256;       ///< rows of one engine step
  std::int64_t max_prompt_tokens = 0;    ///< 0: the context less one
  std::int64_t max_predict = 1024;       ///< the most tokens one request may ask for
  std::int64_t default_predict = 128;    ///< /infill's n_predict when absent or -1
  std::size_t max_body_bytes = 4 << 20;  ///< larger bodies get 413
  std::int64_t timeout_ms = 120000;      ///< a request's time limit
  std::int64_t cache_entries = 16;       ///< finished requests whose pages stay for reuse
  std::int64_t shutdown_ms = 10000;      ///< how long running requests may finish on SIGINT/SIGTERM
  std::int64_t kv_pages = 0;             ///< 0: enough for max_running sequences at the window
  std::string name;                      ///< the model's name in responses (default: the folder's)
};

/// An error a handler answers with: HTTP status and message.
struct HttpError {
  int status;
  std::string message;
};

/// One HTTP request's link to the engine.
struct Job {
  sc2::Request request;
  bool cache = true;                      ///< keep the pages for later prefixes
  std::int64_t deadline_ms = 0;           ///< time limit from submission
  Clock::time_point submitted = Clock::now();

  std::mutex mutex;
  std::condition_variable changed;
  std::string pending;                    ///< streamed text not yet written
  bool done = false;
  bool timed_out = false;
  std::optional<HttpError> error;         ///< set when the engine refused the request
  sc2::GenerationResult result;           ///< final once `done`
  std::atomic<bool> cancelled{false};     ///< the client went away
};

/// Counters for /metrics.
struct Metrics {
  std::atomic<std::int64_t> requests{0}, prompt_tokens{0}, cached_tokens{0}, generated_tokens{0}, prefix_hits{0};
  std::atomic<std::int64_t> cancelled{0}, rejected{0}, errors{0};
  std::atomic<std::int64_t> running{0}, waiting{0}, pages_used{0}, pages_free{0}, cache_entries{0};
};

/// The engine thread and its queue; the model type is erased behind it.
class Scheduler {
public:
  virtual ~Scheduler() = default;
  /// Hands `job` to the engine; an error when the queue is full or the server is stopping.
  virtual std::optional<HttpError> submit(const std::shared_ptr<Job>& job) = 0;
  /// Stops taking jobs, lets running ones finish for `grace`, cancels the rest, joins.
  virtual void shutdown(std::chrono::milliseconds grace) = 0;
  virtual const sc2::Tokenizer& tokenizer() const = 0;
  virtual const sc2::ModelConfig& config() const = 0;
  virtual std::int64_t context() const = 0;
  virtual std::string describe() const = 0;
};

/// How the model's weights are loaded: `--weight-dtype`.
inline sc2::LoadOptions load_options(const Options& options) {
  sc2::LoadOptions load;
  sc2::set_weight_type(load, options.weight_type);
  return load;
}

template <class LM, class Context>
class EngineScheduler final : public Scheduler {
public:
  EngineScheduler(std::unique_ptr<Context> ctx, const Options& options, Metrics& metrics)
      : options_(options), metrics_(metrics), ctx_(std::move(ctx)), lm_(LM::load(*ctx_, options.model, load_options(options))),
        tokenizer_(sc2::load_tokenizer(options.model)),
        engine_(lm_, tokenizer_,
                {.max_batch_tokens = options.batch_tokens, .max_running = options.max_running, .kv_pages = options.kv_pages}) {
    thread_ = std::thread([this] { run(); });
  }
  ~EngineScheduler() override { shutdown(std::chrono::milliseconds(0)); }

  std::optional<HttpError> submit(const std::shared_ptr<Job>& job) override {
    std::lock_guard lock(mutex_);
    if (stopping_) return HttpError{503, "the server is shutting down"};
    if (outstanding_ >= options_.max_running + options_.max_queue)
      return HttpError{503, fmt::format("the server is busy: {} requests are running or waiting; try again shortly",
                                        outstanding_.load())};
    ++outstanding_;
    incoming_.push_back(job);
    wake_.notify_one();
    return std::nullopt;
  }

  void shutdown(std::chrono::milliseconds grace) override {
    {
      std::lock_guard lock(mutex_);
      if (!thread_.joinable()) return;
      stopping_ = true;
      stop_by_ = Clock::now() + grace;
      wake_.notify_one();
    }
    thread_.join();
  }

  const sc2::Tokenizer& tokenizer() const override { return tokenizer_; }
  const sc2::ModelConfig& config() const override { return lm_.config(); }
  std::int64_t context() const override { return engine_.pool().max_context(); }
  std::string describe() const override {
    return fmt::format("{} layers, hidden {}, {} KV pages of {} positions", lm_.config().num_hidden_layers,
                       lm_.config().hidden_size, engine_.pool().pages(), engine_.pool().page_size());
  }

private:
  struct Cached {
    sc2::RequestId id;
    std::vector<std::int32_t> tokens;  // those whose keys and values the pages hold
  };
  struct Live {
    std::shared_ptr<Job> job;
    Clock::time_point deadline;
  };

  // The engine thread: take new jobs, cancel the abandoned and the late, step, hand out results.
  void run() {
    for (;;) {
      std::vector<std::shared_ptr<Job>> fresh;
      {
        std::unique_lock lock(mutex_);
        if (engine_.running() == 0 && engine_.waiting() == 0 && incoming_.empty() && !stopping_)
          wake_.wait_for(lock, std::chrono::milliseconds(200));
        fresh.swap(incoming_);
        if (stopping_ && live_.empty() && fresh.empty()) break;
        if (stopping_ && Clock::now() >= stop_by_)
          for (auto& [id, l] : live_) l.job->cancelled = true;
      }
      for (auto& job : fresh) admit(job);
      for (auto& [id, l] : live_)
        if (l.job->cancelled || Clock::now() >= l.deadline) {
          if (!l.job->cancelled) l.job->timed_out = true;
          engine_.cancel(id);
        }
      collect();  // the cancelled ones: before the step forgets them
      evict_for_waiting();
      if (engine_.running() > 0 || engine_.waiting() > 0) {
        try {
          engine_.step(*ctx_);
        } catch (const std::exception& e) {
          fail_all(e.what());
        }
      }
      collect();
      publish();
    }
    for (const Cached& c : cache_) engine_.release(c.id);
    cache_.clear();
  }

  void admit(const std::shared_ptr<Job>& job) {
    sc2::Request& r = job->request;
    // The longest prefix of the prompt some cached or running request holds.
    std::int64_t best = 0;
    std::optional<sc2::RequestId> source;
    auto consider = [&](sc2::RequestId id, std::span<const std::int32_t> tokens) {
      const std::size_t n = std::min(tokens.size(), r.prompt.size());
      std::size_t k = 0;
      while (k < n && tokens[k] == r.prompt[k]) ++k;
      if (static_cast<std::int64_t>(k) > best) best = static_cast<std::int64_t>(k), source = id;
    };
    for (const Cached& c : cache_) consider(c.id, c.tokens);
    for (const auto& [id, l] : live_) consider(id, engine_.tokens(id).empty() ? std::span<const std::int32_t>(l.job->request.prompt) : engine_.tokens(id));
    if (source && best >= 16) {
      r.prefix_of = *source;
      r.prefix_tokens = best;
      // The source is now the most recently used entry.
      for (auto it = cache_.begin(); it != cache_.end(); ++it)
        if (it->id == *source) {
          cache_.splice(cache_.end(), cache_, it);
          break;
        }
    }
    r.keep_cache = job->cache;
    const auto on_text = [weak = std::weak_ptr<Job>(job)](std::string_view piece) {
      if (const auto j = weak.lock()) {
        std::lock_guard lock(j->mutex);
        j->pending.append(piece);
        j->changed.notify_all();
      }
    };
    r.on_text = on_text;
    try {
      const sc2::RequestId id = engine_.add(r);
      live_.emplace(id, Live{job, job->submitted + std::chrono::milliseconds(job->deadline_ms)});
      metrics_.requests++;
    } catch (const sc2::Error& e) {
      --outstanding_;  // before the client hears: its next request must find the slot free
      std::lock_guard lock(job->mutex);
      job->error = HttpError{400, e.what()};
      job->done = true;
      job->changed.notify_all();
      metrics_.errors++;
    }
  }

  // A waiting request the pool cannot take yet gets the pages of cached requests, oldest first.
  void evict_for_waiting() {
    while (!cache_.empty() && engine_.waiting_for_pages()) {
      engine_.release(cache_.front().id);
      cache_.pop_front();
    }
    while (static_cast<std::int64_t>(cache_.size()) > options_.cache_entries) {
      engine_.release(cache_.front().id);
      cache_.pop_front();
    }
  }

  void collect() {
    for (const sc2::RequestId id : std::vector<sc2::RequestId>(engine_.finished().begin(), engine_.finished().end())) {
      const auto it = live_.find(id);
      if (it == live_.end()) continue;
      const std::shared_ptr<Job> job = it->second.job;
      live_.erase(it);
      const sc2::GenerationResult& result = engine_.result(id);
      metrics_.prompt_tokens += result.timings.prompt_tokens;
      metrics_.cached_tokens += result.timings.cached_tokens;
      metrics_.generated_tokens += result.timings.generated_tokens;
      if (result.timings.cached_tokens > 0) metrics_.prefix_hits++;
      if (result.stop_reason == sc2::StopReason::cancelled && !job->timed_out) metrics_.cancelled++;
      --outstanding_;  // before the client hears: its next request must find the slot free
      {
        std::lock_guard lock(job->mutex);
        job->result = result;
        job->done = true;
        job->changed.notify_all();
      }
      if (job->cache && result.stop_reason != sc2::StopReason::cancelled) {
        // The pages hold every fed token: the prompt and all generated ids but the last.
        const auto tokens = engine_.tokens(id);
        cache_.push_back({id, std::vector<std::int32_t>(tokens.begin(), tokens.end() - (result.ids.empty() ? 0 : 1))});
      } else {
        engine_.release(id);
      }
    }
  }

  void fail_all(const std::string& message) {
    for (auto& [id, l] : live_) {
      engine_.cancel(id);
      --outstanding_;
      std::lock_guard lock(l.job->mutex);
      l.job->error = HttpError{500, message};
      l.job->done = true;
      l.job->changed.notify_all();
    }
    live_.clear();
    metrics_.errors++;
  }

  void publish() {
    metrics_.running = static_cast<std::int64_t>(engine_.running());
    metrics_.waiting = static_cast<std::int64_t>(engine_.waiting());
    metrics_.pages_free = engine_.pool().free_pages();
    metrics_.pages_used = engine_.pool().pages() - engine_.pool().free_pages();
    metrics_.cache_entries = static_cast<std::int64_t>(cache_.size());
  }

  const Options& options_;
  Metrics& metrics_;
  std::unique_ptr<Context> ctx_;
  LM lm_;
  sc2::Tokenizer tokenizer_;
  sc2::Engine<LM> engine_;
  std::map<sc2::RequestId, Live> live_;  // engine thread only
  std::list<Cached> cache_;              // engine thread only; least recently used first
  std::mutex mutex_;
  std::condition_variable wake_;
  std::vector<std::shared_ptr<Job>> incoming_;
  std::atomic<std::int64_t> outstanding_{0};  // submitted and not yet done
  bool stopping_ = false;
  Clock::time_point stop_by_;
  std::thread thread_;
};

// ---------------------------------------------------------------------------------------------
// Requests: JSON in, a Job out.

/// The body as a JSON object, or 400.
json parse_body(const httplib::Request& req) {
  json body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object()) throw HttpError{400, "the body must be a JSON object"};
  return body;
}

/// `body[key]` as T when present, else `fallback`; 400 naming the field when it has the wrong type.
template <class T> T field(const json& body, const char* key, T fallback) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return fallback;
  try {
    return it->get<T>();
  } catch (const json::exception&) {
    throw HttpError{400, fmt::format("field '{}' has the wrong type", key)};
  }
}

/// A string field's text, or 400.
std::string text_field(const json& body, const char* key) {
  const auto it = body.find(key);
  if (it == body.end() || it->is_null()) return {};
  if (!it->is_string()) throw HttpError{400, fmt::format("field '{}' must be a string", key)};
  return it->get<std::string>();
}

/// Stop strings: a string or a list of strings.
std::vector<std::string> stop_field(const json& body) {
  const auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  std::vector<std::string> out;
  if (it->is_string()) out.push_back(it->get<std::string>());
  else if (it->is_array())
    for (const auto& s : *it) {
      if (!s.is_string()) throw HttpError{400, "field 'stop' must be a string or a list of strings"};
      out.push_back(s.get<std::string>());
    }
  else throw HttpError{400, "field 'stop' must be a string or a list of strings"};
  std::erase_if(out, [](const std::string& s) { return s.empty(); });
  return out;
}

/// Checks a job's sizes against the limits (400) and finishes its settings.
void check_limits(Job& job, const Options& options, std::int64_t context) {
  const auto n = static_cast<std::int64_t>(job.request.prompt.size());
  const std::int64_t limit = options.max_prompt_tokens > 0 ? options.max_prompt_tokens : context - 1;
  if (n == 0) throw HttpError{400, "the prompt is empty"};
  if (n > limit) throw HttpError{400, fmt::format("the prompt has {} tokens; this server takes at most {}", n, limit)};
  auto& config = job.request.config;
  if (config.max_new_tokens <= 0 || config.max_new_tokens > options.max_predict)
    throw HttpError{400, fmt::format("asked for {} tokens; give 1..{}", config.max_new_tokens, options.max_predict)};
  config.max_new_tokens = std::min(config.max_new_tokens, context - n);
  try {
    config.sampling.validate();
  } catch (const sc2::Error& e) {
    throw HttpError{400, e.what()};
  }
}

/// The ids of a fill-in-the-middle prompt, with llama.cpp's `input_extra` files
/// before it as StarCoder2's repository context, and `prompt` after <fim_middle>.
std::vector<std::int32_t> infill_prompt(const sc2::Tokenizer& tok, const std::string& prefix,
                                        const std::string& suffix, const std::vector<sc2::RepoFile>& extra,
                                        const std::string& middle) {
  std::vector<std::int32_t> ids;
  if (!extra.empty()) {
    ids = sc2::repository_prompt(tok, "sc2", extra);
    ids.push_back(sc2::FimTokens::from(tok).file_separator);
  }
  const auto fim = sc2::fim_prompt(tok, prefix, suffix);
  ids.insert(ids.end(), fim.begin(), fim.end());
  if (!middle.empty()) {
    const auto more = tok.encode(middle);
    ids.insert(ids.end(), more.begin(), more.end());
  }
  return ids;
}

/// A fill-in-the-middle request stops at <file_sep> and <|endoftext|> too.
void add_fim_stops(sc2::GenerationConfig& config, const sc2::Tokenizer& tok, const std::vector<int>& model_eos) {
  const sc2::FimTokens t = sc2::FimTokens::from(tok);
  config.eos_token_ids.assign(model_eos.begin(), model_eos.end());
  for (const std::int32_t id : {t.end_of_text, t.file_separator})
    if (std::find(config.eos_token_ids.begin(), config.eos_token_ids.end(), id) == config.eos_token_ids.end())
      config.eos_token_ids.push_back(id);
}

/// POST /infill, as llama.cpp's server takes it. Fields it does not know are ignored, as llama.cpp does.
std::shared_ptr<Job> infill_job(const json& body, const Scheduler& s, const Options& options) {
  auto job = std::make_shared<Job>();
  std::vector<sc2::RepoFile> extra;
  if (const auto it = body.find("input_extra"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) throw HttpError{400, "field 'input_extra' must be a list of {filename, text}"};
    for (const auto& chunk : *it) {
      if (!chunk.is_object()) throw HttpError{400, "field 'input_extra' must be a list of {filename, text}"};
      extra.push_back({text_field(chunk, "filename"), text_field(chunk, "text")});
    }
  }
  job->request.prompt = infill_prompt(s.tokenizer(), text_field(body, "input_prefix"), text_field(body, "input_suffix"),
                                      extra, text_field(body, "prompt"));
  auto& config = job->request.config;
  const auto n_predict = field<std::int64_t>(body, "n_predict", -1);
  config.max_new_tokens = n_predict < 0 ? options.default_predict : n_predict;
  const float temperature = field<float>(body, "temperature", 0.8f);  // llama.cpp's default
  config.sampling.do_sample = temperature > 0.0f;
  config.sampling.temperature = temperature > 0.0f ? temperature : 1.0f;
  config.sampling.top_k = field<int>(body, "top_k", 40);
  config.sampling.top_p = field<float>(body, "top_p", 0.95f);
  const float min_p = field<float>(body, "min_p", 0.05f);
  if (min_p > 0.0f) config.sampling.min_p = min_p;
  config.sampling.repetition_penalty = field<float>(body, "repeat_penalty", 1.0f);
  const auto seed = field<std::int64_t>(body, "seed", -1);
  config.sampling.seed = seed >= 0 ? static_cast<std::uint64_t>(seed) : std::random_device{}();
  config.stop_strings = stop_field(body);
  add_fim_stops(config, s.tokenizer(), s.config().eos_token_ids);
  job->cache = field<bool>(body, "cache_prompt", true);
  const auto t_max = field<std::int64_t>(body, "t_max_predict_ms", 0);
  job->deadline_ms = t_max > 0 ? std::min(t_max, options.timeout_ms) : options.timeout_ms;
  check_limits(*job, options, s.context());
  return job;
}

/// POST /v1/completions (OpenAI). A field outside this list is refused by name.
std::shared_ptr<Job> completion_job(const json& body, const Scheduler& s, const Options& options) {
  static const std::set<std::string> known{"model", "prompt", "suffix", "max_tokens", "temperature", "top_p",
                                           "stop",  "seed",   "stream", "n",          "user",        "echo"};
  for (const auto& [key, value] : body.items())
    if (!known.contains(key)) throw HttpError{400, fmt::format("field '{}' is not supported by this server", key)};
  if (field<int>(body, "n", 1) != 1) throw HttpError{400, "field 'n': only n = 1 is supported"};
  if (field<bool>(body, "echo", false)) throw HttpError{400, "field 'echo': only echo = false is supported"};
  std::string prompt;
  if (const auto it = body.find("prompt"); it != body.end() && it->is_array()) {
    if (it->size() != 1 || !(*it)[0].is_string()) throw HttpError{400, "field 'prompt': one string is supported"};
    prompt = (*it)[0].get<std::string>();
  } else {
    prompt = text_field(body, "prompt");
  }
  auto job = std::make_shared<Job>();
  const auto suffix = body.find("suffix");
  auto& config = job->request.config;
  if (suffix != body.end() && !suffix->is_null()) {
      job->request.prompt = infill_prompt(s.tokenizer(), prompt, text_field(body, "suffix"), {}, {});
    add_fim_stops(config, s.tokenizer(), s.config().eos_token_ids);
  } else {
    job->request.prompt = s.tokenizer().encode(prompt);
  }
  config.max_new_tokens = field<std::int64_t>(body, "max_tokens", 16);  // OpenAI's default
  const float temperature = field<float>(body, "temperature", 1.0f);
  if (temperature < 0.0f || temperature > 2.0f) throw HttpError{400, "field 'temperature' must be in [0, 2]"};
  config.sampling.do_sample = temperature > 0.0f;
  config.sampling.temperature = temperature > 0.0f ? temperature : 1.0f;
  config.sampling.top_k = 0;
  config.sampling.top_p = field<float>(body, "top_p", 1.0f);
  const auto seed = field<std::int64_t>(body, "seed", -1);
  config.sampling.seed = seed >= 0 ? static_cast<std::uint64_t>(seed) : std::random_device{}();
  config.stop_strings = stop_field(body);
  job->deadline_ms = options.timeout_ms;
  check_limits(*job, options, s.context());
  return job;
}

// ---------------------------------------------------------------------------------------------
// Responses.

/// Waits until the job has new text or is done; returns the new text.
std::string wait_for_text(Job& job, bool& done, std::chrono::milliseconds patience) {
  std::unique_lock lock(job.mutex);
  job.changed.wait_for(lock, patience, [&] { return !job.pending.empty() || job.done; });
  std::string out;
  out.swap(job.pending);
  done = job.done;
  return out;
}

/// llama.cpp's stop_type of a result.
std::string stop_type(const Job& job) {
  if (job.timed_out) return "limit";
  switch (job.result.stop_reason) {
    case sc2::StopReason::eos: return "eos";
    case sc2::StopReason::stop_string: return "word";
    default: return "limit";
  }
}

json llama_timings(const Job& job) {
  const auto& t = job.result.timings;
  const std::int64_t evaluated = t.prompt_tokens - t.cached_tokens;
  const double prompt_ms = t.prompt_seconds * 1e3, predicted_ms = t.generate_seconds * 1e3;
  return {{"prompt_n", evaluated},
          {"prompt_ms", prompt_ms},
          {"prompt_per_token_ms", evaluated > 0 ? prompt_ms / static_cast<double>(evaluated) : 0.0},
          {"prompt_per_second", t.prompt_tokens_per_second()},
          {"predicted_n", t.generated_tokens},
          {"predicted_ms", predicted_ms},
          {"predicted_per_token_ms", t.generated_tokens > 1 ? predicted_ms / static_cast<double>(t.generated_tokens - 1) : 0.0},
          {"predicted_per_second", t.generated_tokens_per_second()}};
}

/// The final /infill object (`content` is what is left to send when streaming).
json infill_final(const Job& job, const std::string& content, const std::string& model) {
  const auto& t = job.result.timings;
  return {{"content", content},
          {"stop", true},
          {"model", model},
          {"tokens_predicted", t.generated_tokens},
          {"tokens_evaluated", t.prompt_tokens - t.cached_tokens},
          {"tokens_cached", t.cached_tokens},
          {"stop_type", stop_type(job)},
          {"stopping_word", ""},
          {"has_new_line", job.result.text.find('\n') != std::string::npos},
          {"truncated", false},
          {"timings", llama_timings(job)}};
}

std::string openai_finish(const Job& job) {
  return job.result.stop_reason == sc2::StopReason::max_new_tokens || job.timed_out ? "length" : "stop";
}

std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_content(dump(body), "application/json");
}

void send_error(httplib::Response& res, const HttpError& e) {
  send_json(res, e.status,
            {{"error", {{"code", e.status}, {"message", e.message},
                        {"type", e.status == 401 ? "authentication_error"
                                 : e.status >= 500 ? "server_error" : "invalid_request_error"}}}});
}

/// Answers `job` on `res`: one JSON object, or server-sent events as text arrives.
/// `finalize(job, rest)` gives the closing object; `piece(text)` an event's object.
template <class Final, class Piece>
void respond(httplib::Response& res, const std::shared_ptr<Job>& job, bool stream, bool done_marker, Final finalize,
             Piece piece) {
  if (!stream) {
    std::unique_lock lock(job->mutex);
    job->changed.wait(lock, [&] { return job->done; });
    if (job->error) return send_error(res, *job->error);
    job->pending.clear();
    send_json(res, 200, finalize(*job, job->result.text));
    return;
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream",
      [job, done_marker, finalize, piece](std::size_t, httplib::DataSink& sink) {
        const auto send = [&](const std::string& data) {
          const std::string event = "data: " + data + "\n\n";
          if (!sink.write(event.data(), event.size())) {
            job->cancelled = true;  // the client went away: the engine cancels at its next step
            return false;
          }
          return true;
        };
        bool done = false;
        const std::string text = wait_for_text(*job, done, std::chrono::milliseconds(100));
        if (!done) {
          if (!text.empty()) return send(dump(piece(text)));
          if (!sink.is_writable()) {
            job->cancelled = true;
            return false;
          }
          return true;  // nothing yet: called again
        }
        if (job->error) {
          send(dump({{"error", {{"code", job->error->status}, {"message", job->error->message}}}}));
        } else {
          if (!send(dump(finalize(*job, text)))) return false;
          if (done_marker) send("[DONE]");
        }
        sink.done();
        return true;
      },
      [job](bool) {
        if (!job->done) job->cancelled = true;
      });
}

// ---------------------------------------------------------------------------------------------

std::unique_ptr<Scheduler> make_scheduler(const Options& options, Metrics& metrics) {
  if (options.device == "cuda") {
#ifdef SC2_WITH_CUDA
    using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, sc2::cuda::Backend>>;
    return std::make_unique<EngineScheduler<LM, sc2::cuda::Context>>(std::make_unique<sc2::cuda::Context>(), options,
                                                                     metrics);
#else
    SC2_FAIL("this sc2-server was built without CUDA (configure with -DSC2_ENABLE_CUDA=ON)");
#endif
  }
  SC2_CHECK(options.device == "cpu", "--device must be cpu or cuda, not '{}'", options.device);
  using LM = sc2::Starcoder2ForCausalLM;
  return std::make_unique<EngineScheduler<LM, sc2::CpuContext>>(std::make_unique<sc2::CpuContext>(options.threads),
                                                               options, metrics);
}

std::string prometheus(const Metrics& m, const std::string& model) {
  std::string out;
  const auto metric = [&](const char* name, const char* type, const char* help, std::int64_t value) {
    out += fmt::format("# HELP sc2_{} {}\n# TYPE sc2_{} {}\nsc2_{}{{model=\"{}\"}} {}\n", name, help, name, type, name,
                       model, value);
  };
  metric("requests_total", "counter", "Requests handed to the engine.", m.requests);
  metric("requests_running", "gauge", "Requests being prefilled or decoded.", m.running);
  metric("requests_waiting", "gauge", "Requests waiting for room in the engine.", m.waiting);
  metric("requests_cancelled_total", "counter", "Requests cancelled because their client went away.", m.cancelled);
  metric("requests_rejected_total", "counter", "Requests refused (400, 401, 413, 503).", m.rejected);
  metric("requests_failed_total", "counter", "Requests the engine refused or failed (400, 500).", m.errors);
  metric("kv_pages_used", "gauge", "KV pages held by running and cached requests.", m.pages_used);
  metric("kv_pages_free", "gauge", "KV pages free.", m.pages_free);
  metric("prompt_tokens_total", "counter", "Prompt tokens of finished requests.", m.prompt_tokens);
  metric("prompt_tokens_cached_total", "counter", "Prompt tokens taken from the prefix cache.", m.cached_tokens);
  metric("generated_tokens_total", "counter", "Tokens generated.", m.generated_tokens);
  metric("prefix_cache_hits_total", "counter", "Requests that started from a cached prefix.", m.prefix_hits);
  metric("prefix_cache_entries", "gauge", "Finished requests whose pages are kept for reuse.", m.cache_entries);
  return out;
}

/// SIGINT and SIGTERM are taken by a thread of their own (blocked everywhere else).
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  return set;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Serve fill-in-the-middle and completions of a StarCoder2 checkpoint over HTTP"};
  Options o;
  app.add_option("--model", o.model, "checkpoint directory (config.json, tokenizer.json, *.safetensors) or a StarCoder2 .gguf file")->capture_default_str();
  app.add_option("--host", o.host, "address to listen on")->capture_default_str();
  app.add_option("--port", o.port, "port (0: any free port, printed at start)")->capture_default_str();
  app.add_option("--api-key", o.api_key, "require 'Authorization: Bearer KEY' (all endpoints but /health)");
  app.add_option("--device", o.device, "cpu or cuda")->capture_default_str();
  app.add_option("--threads", o.threads, "CPU threads for the model (0: one per core)")->capture_default_str();
  app.add_option("--weight-dtype", o.weight_type,
                 "keep the weight matrices as f32, bf16 or f16, or quantize them at load to q8_0, q4_0, q4_k, q5_k or "
                 "q6_k (CPU); stored: as the checkpoint has them")
      ->capture_default_str();
  app.add_option("--max-running", o.max_running, "requests decoded together")->capture_default_str()->check(CLI::Range(1, 4096));
  app.add_option("--max-queue", o.max_queue, "requests waiting beyond those; more get 503")->capture_default_str()->check(CLI::Range(0, 1 << 16));
  app.add_option("--batch-tokens", o.batch_tokens, "rows of one engine step")->capture_default_str()->check(CLI::Range(1, 1 << 16));
  app.add_option("--max-prompt-tokens", o.max_prompt_tokens, "longest prompt (0: the context less one)")->capture_default_str();
  app.add_option("--max-predict", o.max_predict, "most tokens one request may ask for")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  app.add_option("--default-predict", o.default_predict, "/infill's n_predict when it gives none")->capture_default_str();
  app.add_option("--max-body-bytes", o.max_body_bytes, "largest request body; larger get 413")->capture_default_str();
  app.add_option("--timeout-ms", o.timeout_ms, "time limit of a request")->capture_default_str()->check(CLI::Range(1, 1 << 30));
  app.add_option("--cache-entries", o.cache_entries, "finished requests whose KV pages stay for reuse")->capture_default_str();
  app.add_option("--kv-pages", o.kv_pages, "KV pool pages (0: max-running sequences at the window)")->capture_default_str();
  app.add_option("--shutdown-ms", o.shutdown_ms, "on SIGINT/SIGTERM, how long running requests may finish")->capture_default_str();
  app.add_option("--name", o.name, "model name in responses (default: the model folder's name)");
  CLI11_PARSE(app, argc, argv);
  if (o.name.empty()) o.name = std::filesystem::path(o.model).filename().string();

  // Block the stop signals before any thread starts, so that only the waiter below sees them.
  sigset_t signals = stop_signals();
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that went away is an error of its write, not the end of the server

  Metrics metrics;
  std::unique_ptr<Scheduler> scheduler;
  try {
    const auto start = Clock::now();
    scheduler = make_scheduler(o, metrics);
    fmt::print(stderr, "sc2-server: {} loaded in {:.2f} s ({})\n", o.model,
               std::chrono::duration<double>(Clock::now() - start).count(), scheduler->describe());
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  Scheduler& s = *scheduler;

  httplib::Server server;
  // Each streaming client holds a worker while it is served: enough for every request the engine may hold.
  const auto workers = static_cast<std::size_t>(o.max_running + o.max_queue + 8);
  server.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  server.set_payload_max_length(o.max_body_bytes);
  server.set_read_timeout(std::chrono::seconds(30));
  server.set_write_timeout(std::chrono::seconds(30));
  server.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
    if (o.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    if (req.get_header_value("Authorization") == "Bearer " + o.api_key) return httplib::Server::HandlerResponse::Unhandled;
    metrics.rejected++;
    send_error(res, {401, "missing or wrong API key: send 'Authorization: Bearer <key>'"});
    return httplib::Server::HandlerResponse::Handled;
  });
  server.set_error_handler([&](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty()) return;
    if (res.status == 413) metrics.rejected++;
    send_error(res, {res.status, res.status == 413   ? fmt::format("the body exceeds {} bytes", o.max_body_bytes)
                                 : res.status == 404 ? "no such endpoint"
                                                     : fmt::format("HTTP {}", res.status)});
  });
  server.set_exception_handler([&](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      send_error(res, {500, e.what()});
    } catch (...) {
      send_error(res, {500, "unknown error"});
    }
  });

  // Runs a generation handler: errors of the request become their status, the rest a job.
  const auto generation = [&](auto make_job, auto answer) {
    return [&, make_job, answer](const httplib::Request& req, httplib::Response& res) {
      try {
        const json body = parse_body(req);
        const std::shared_ptr<Job> job = make_job(body);
        if (const auto refused = s.submit(job)) throw *refused;
        answer(res, job, field<bool>(body, "stream", false));
      } catch (const HttpError& e) {
        metrics.rejected++;
        send_error(res, e);
      }
    };
  };
  server.Post("/infill", generation([&](const json& body) { return infill_job(body, s, o); },
                                    [&](httplib::Response& res, const std::shared_ptr<Job>& job, bool stream) {
                                      respond(
                                          res, job, stream, false,
                                          [&](const Job& j, const std::string& rest) { return infill_final(j, rest, o.name); },
                                          [](const std::string& text) { return json{{"content", text}, {"stop", false}}; });
                                    }));
  std::atomic<std::int64_t> completion_ids{0};
  server.Post("/v1/completions",
              generation([&](const json& body) { return completion_job(body, s, o); },
                         [&](httplib::Response& res, const std::shared_ptr<Job>& job, bool stream) {
                           const std::string id = fmt::format("cmpl-{}", ++completion_ids);
                           const auto created = std::chrono::duration_cast<std::chrono::seconds>(
                                                    std::chrono::system_clock::now().time_since_epoch())
                                                    .count();
                           const auto chunk = [id, created, name = o.name](const std::string& text, json finish) {
                             return json{{"id", id},           {"object", "text_completion"}, {"created", created},
                                         {"model", name},
                                         {"choices", json::array({{{"text", text}, {"index", 0}, {"logprobs", nullptr},
                                                                   {"finish_reason", finish}}})}};
                           };
                           respond(
                               res, job, stream, true,
                               [chunk](const Job& j, const std::string& rest) {
                                 json out = chunk(rest, openai_finish(j));
                                 const auto& t = j.result.timings;
                                 out["usage"] = {{"prompt_tokens", t.prompt_tokens},
                                                 {"completion_tokens", t.generated_tokens},
                                                 {"total_tokens", t.prompt_tokens + t.generated_tokens}};
                                 return out;
                               },
                               [chunk](const std::string& text) { return chunk(text, nullptr); });
                         }));
  server.Post("/tokenize", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      const json body = parse_body(req);
      send_json(res, 200, {{"tokens", s.tokenizer().encode(text_field(body, "content"))}});
    } catch (const HttpError& e) {
      send_error(res, e);
    }
  });
  server.Post("/detokenize", [&](const httplib::Request& req, httplib::Response& res) {
    try {
      const json body = parse_body(req);
      const auto ids = field<std::vector<std::int32_t>>(body, "tokens", {});
      for (const auto id : ids)
        if (id < 0 || static_cast<std::size_t>(id) >= s.tokenizer().id_limit())
          throw HttpError{400, fmt::format("token {} is outside the vocabulary", id)};
      send_json(res, 200, {{"content", s.tokenizer().decode(ids)}});
    } catch (const HttpError& e) {
      send_error(res, e);
    }
  });
  std::atomic<bool> stopping{false};
  server.Get("/health", [&](const httplib::Request&, httplib::Response& res) {
    if (stopping) return send_json(res, 503, {{"status", "shutting down"}});
    send_json(res, 200, {{"status", "ok"}});
  });
  server.Get("/v1/models", [&](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, {{"object", "list"},
                         {"data", json::array({{{"id", o.name}, {"object", "model"}, {"owned_by", "sc2"},
                                                {"context_length", s.context()}}})}});
  });
  server.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) {
    res.set_content(prometheus(metrics, o.name), "text/plain; version=0.0.4");
  });

  const int port = o.port == 0 ? server.bind_to_any_port(o.host) : (server.bind_to_port(o.host, o.port) ? o.port : -1);
  if (port < 0) {
    fmt::print(stderr, "error: cannot listen on {}:{}\n", o.host, o.port);
    return 1;
  }
  std::thread waiter([&] {
    int signal = 0;
    sigwait(&signals, &signal);
    fmt::print(stderr, "sc2-server: signal {}: finishing running requests (at most {} ms)\n", signal, o.shutdown_ms);
    stopping = true;
    s.shutdown(std::chrono::milliseconds(o.shutdown_ms));  // new requests get 503 from here on
    server.stop();
  });
  fmt::print("sc2-server: listening on http://{}:{}\n", o.host, port);
  std::fflush(stdout);
  server.listen_after_bind();
  waiter.join();
  fmt::print(stderr, "sc2-server: stopped\n");
  return 0;
}
