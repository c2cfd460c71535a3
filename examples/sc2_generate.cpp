// sc2-generate: complete code, or fill a hole in it, with a StarCoder2 checkpoint.
//
//   sc2-generate --prompt "def quicksort(arr):"                 # the bundled model
//   sc2-generate --model starcoder2-3b --file prompt.py --max-new-tokens 200
//   sc2-generate --fim-prefix "def add(a, b):\n    " --fim-suffix "\n\nprint(add(1, 2))\n"
//   sc2-generate --fim-file hole.py                              # fills <FILL_HERE>
//   echo "import os" | sc2-generate --sample --temperature 0.8 --seed 1
//   sc2-generate --batch-file requests.jsonl > results.jsonl     # many requests, run together
//   sc2-generate --device cuda --model starcoder2-3b --prompt "def f():"  # on the GPU
//
// The completion streams to stdout as it is produced; statistics go to stderr.
//
// --batch-file reads one JSON object a line: "prompt", or "fim_prefix" and
// "fim_suffix"; optional "max_new_tokens", "do_sample", "temperature", "top_k",
// "top_p", "min_p", "repetition_penalty", "seed", "stop" (a string or a list).
// Settings a line leaves out come from the command line; a line that sets
// temperature, top_k, top_p or min_p samples unless it says "do_sample": false.
// All requests run together in one engine (continuous batching), and one JSON
// line per request is written in input order: "text", "ids", "stop_reason" and
// "timings". Each gets the tokens it would get alone.

#include <sc2/generation/fim.hpp>
#include <sc2/generation/generator.hpp>
#include <sc2/sc2.hpp>
#ifdef SC2_WITH_CUDA
#include <sc2/backends/cuda.hpp>
#endif

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>
#include <unistd.h>

namespace {

// Where a run computes, for the statistics line.
std::string where(const sc2::CpuContext& ctx) { return fmt::format("{} threads", ctx.threads()); }
#ifdef SC2_WITH_CUDA
std::string where(const sc2::cuda::Context& ctx) { return fmt::format("{} (CUDA)", ctx.properties().name); }
#endif

std::string read_file(const std::string& path) {
  if (path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  SC2_CHECK(in.good(), "cannot read '{}'", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// "\n" and "\t" typed on a command line become the characters.
std::string unescape(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size() && (s[i + 1] == 'n' || s[i + 1] == 't' || s[i + 1] == '\\')) {
      out += s[i + 1] == 'n' ? '\n' : s[i + 1] == 't' ? '\t' : '\\';
      ++i;
    } else {
      out += s[i];
    }
  }
  return out;
}

void show_progress(std::size_t done, std::size_t total) {
  if (!isatty(STDERR_FILENO) || total < (std::size_t{256} << 20)) return;
  const int width = 40, filled = static_cast<int>(static_cast<double>(done) / static_cast<double>(total) * width);
  fmt::print(stderr, "\rloading [{:=<{}}{: <{}}] {:.1f}/{:.1f} GB", "", filled, "", width - filled,
             static_cast<double>(done) / 1e9, static_cast<double>(total) / 1e9);
  if (done == total) fmt::print(stderr, "\n");
}

// The requests of a --batch-file, as the engine takes them.
std::vector<sc2::Request> read_batch_file(const std::string& path, const sc2::GenerationConfig& base, bool base_sample,
                                          const sc2::Tokenizer& tokenizer, const std::vector<int>& model_eos) {
  std::istringstream in(read_file(path));
  std::vector<sc2::Request> requests;
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{} line {}", path, number);
    const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    SC2_CHECK(j.is_object(), "{}: not a JSON object", where);
    static const std::set<std::string> known{"prompt", "fim_prefix", "fim_suffix", "max_new_tokens", "do_sample",
                                              "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed",
                                              "stop"};
    for (const auto& [key, value] : j.items()) SC2_CHECK(known.contains(key), "{}: unknown field '{}'", where, key);
    sc2::GenerationConfig config = base;
    bool sample = base_sample;
    try {
      if (j.contains("max_new_tokens")) config.max_new_tokens = j["max_new_tokens"].get<std::int64_t>();
      for (const char* key : {"temperature", "top_k", "top_p", "min_p"})
        if (j.contains(key)) sample = true;
      if (j.contains("temperature")) config.sampling.temperature = j["temperature"].get<float>();
      if (j.contains("top_k")) config.sampling.top_k = j["top_k"].get<int>();
      if (j.contains("top_p")) config.sampling.top_p = j["top_p"].get<float>();
      if (j.contains("min_p")) config.sampling.min_p = j["min_p"].get<float>();
      if (j.contains("repetition_penalty")) config.sampling.repetition_penalty = j["repetition_penalty"].get<float>();
      if (j.contains("seed")) config.sampling.seed = j["seed"].get<std::uint64_t>();
      if (j.contains("do_sample")) sample = j["do_sample"].get<bool>();
      if (j.contains("stop")) {
        const auto& stop = j["stop"];
        config.stop_strings = stop.is_string() ? std::vector<std::string>{stop.get<std::string>()}
                                               : stop.get<std::vector<std::string>>();
      }
    } catch (const nlohmann::json::exception& e) {
      SC2_FAIL("{}: {}", where, e.what());
    }
    config.sampling.do_sample = sample;
    SC2_CHECK(config.max_new_tokens > 0 && config.max_new_tokens <= (1 << 30), "{}: max_new_tokens must be in 1..2^30",
              where);
    const bool fim = j.contains("fim_prefix") || j.contains("fim_suffix");
    SC2_CHECK(fim != j.contains("prompt"), "{}: give either \"prompt\" or \"fim_prefix\" and \"fim_suffix\"", where);
    const auto text = [&](const char* key) {
      SC2_CHECK(!j.contains(key) || j[key].is_string(), "{}: '{}' must be a string", where, key);
      return j.value(key, std::string());
    };
    if (fim) {
      requests.push_back(sc2::fim_request(tokenizer, text("fim_prefix"), text("fim_suffix"), config,
                                          std::vector<std::int32_t>(model_eos.begin(), model_eos.end())));
    } else {
      sc2::Request r;
      r.prompt = tokenizer.encode(text("prompt"));
      r.config = config;
      requests.push_back(std::move(r));
    }
  }
  SC2_CHECK(!requests.empty(), "{} holds no request", path);
  return requests;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Generate code with a StarCoder2 checkpoint on the CPU or a GPU"};
  std::string model = SC2_BUNDLED_MODEL, prompt, file, fim_prefix, fim_suffix, fim_file, hole = "<FILL_HERE>";
  bool fim_prefix_set = false;
  sc2::GenerationConfig config;
  config.max_new_tokens = 128;
  int threads = 0;
  std::string device = "cpu";
  std::string weight_type = "stored";
  bool middle_only = false, quiet = false;
  std::string batch_file;
  std::int64_t batch_tokens = 512, max_running = 16;
  app.add_option("--model", model, "checkpoint directory (config.json, tokenizer.json, *.safetensors) or a StarCoder2 .gguf file")
      ->capture_default_str();
  app.add_option("--prompt", prompt, "the text to continue (\\n and \\t are understood)");
  app.add_option("--file", file, "read the prompt from a file ('-' for standard input)");
  app.add_option("--fim-prefix", fim_prefix, "fill-in-the-middle: the code before the hole");
  app.add_option("--fim-suffix", fim_suffix, "fill-in-the-middle: the code after the hole");
  app.add_option("--fim-file", fim_file, "fill-in-the-middle: a file with one hole marker");
  app.add_option("--hole-marker", hole, "the marker of the hole in --fim-file")->capture_default_str();
  app.add_flag("--middle-only", middle_only, "fill-in-the-middle: print only the generated middle");
  app.add_option("--max-new-tokens", config.max_new_tokens, "most tokens to generate")->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 30));
  app.add_option("--stop", config.stop_strings, "stop when the text contains this (repeatable)");
  app.add_flag("--sample", config.sampling.do_sample, "sample instead of greedy decoding");
  app.add_option("--temperature", config.sampling.temperature, "sampling temperature")->capture_default_str();
  app.add_option("--top-k", config.sampling.top_k, "keep the k most likely tokens (0: all)")->capture_default_str();
  app.add_option("--top-p", config.sampling.top_p, "nucleus probability mass")->capture_default_str();
  app.add_option("--min-p", config.sampling.min_p, "drop tokens below min-p × the top probability");
  app.add_option("--repetition-penalty", config.sampling.repetition_penalty, "penalty for repeated tokens (1: none)")
      ->capture_default_str();
  app.add_option("--seed", config.sampling.seed, "random seed for sampling")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: one per core)")->capture_default_str();
  app.add_option("--weight-dtype", weight_type,
                 "keep the weight matrices as f32, bf16 or f16, or quantize them at load to q8_0, q4_0, q4_k, q5_k or "
                 "q6_k (CPU); stored: as the checkpoint has them")
      ->capture_default_str();
  app.add_option("--device", device, "where the model runs: cpu, or cuda (the first GPU, bf16 weights)")
      ->capture_default_str();
  app.add_option("--batch-file", batch_file,
                 "JSON lines of requests run together; one JSON line of results per request, in order")
      ->check(CLI::ExistingFile);
  app.add_option("--batch-tokens", batch_tokens, "with --batch-file: tokens per forward step")
      ->capture_default_str()->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 16));
  app.add_option("--max-running", max_running, "with --batch-file: requests in flight at once")
      ->capture_default_str()->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  app.add_flag("--quiet", quiet, "no statistics on stderr");
  CLI11_PARSE(app, argc, argv);
  fim_prefix_set = app.count("--fim-prefix") + app.count("--fim-suffix") > 0;

  try {
    // The whole run, on the backend of `ctx`.
    const auto run = [&](auto& ctx, auto backend) -> int {
      using LM = sc2::CausalLM<sc2::Starcoder2<sc2::ModelConfig, decltype(backend)>>;
      if (!batch_file.empty()) {
        const auto load_start = std::chrono::steady_clock::now();
        sc2::LoadOptions load_options;
        load_options.progress = show_progress;
        sc2::set_weight_type(load_options, weight_type);
        const auto lm = LM::load(ctx, model, load_options);
        const auto tokenizer = sc2::load_tokenizer(model);
        const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
        const auto requests = read_batch_file(batch_file, config, config.sampling.do_sample, tokenizer, lm.config().eos_token_ids);
        const std::int64_t running = std::min<std::int64_t>(max_running, static_cast<std::int64_t>(requests.size()));
        sc2::Engine<LM> engine(lm, tokenizer,
                                                       {.max_batch_tokens = batch_tokens, .max_running = running});
        std::vector<sc2::RequestId> ids;
        for (const auto& r : requests) ids.push_back(engine.add(r));
        const auto start = std::chrono::steady_clock::now();
        std::int64_t steps = 0;
        while (engine.step(ctx)) ++steps;
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        std::int64_t generated = 0;
        for (const auto id : ids) {
          const sc2::GenerationResult& r = engine.result(id);
          const auto& t = r.timings;
          generated += t.generated_tokens;
          const nlohmann::ordered_json out = {
              {"text", r.text},
              {"ids", r.ids},
              {"stop_reason", sc2::stop_reason_name(r.stop_reason)},
              {"timings",
               {{"prompt_tokens", t.prompt_tokens}, {"generated_tokens", t.generated_tokens},
                {"queued_s", t.queued_seconds}, {"prompt_s", t.prompt_seconds},
                {"time_to_first_token_s", t.time_to_first_token}, {"generate_s", t.generate_seconds}}}};
          // Invalid UTF-8 in a completion (a model may cut a character) is replaced, not an error.
          std::printf("%s\n", out.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
        }
        std::fflush(stdout);
        if (!quiet)
          fmt::print(stderr, "[{} loaded in {:.2f} s on {} | {} requests, at most {} at once | {} steps in {:.2f} s | "
                             "{} tokens generated, {:.1f} tokens/s in all]\n",
                     model, load_s, where(ctx), requests.size(), running, steps, seconds, generated,
                     seconds > 0 ? static_cast<double>(generated) / seconds : 0.0);
        return 0;
      }
      const bool fim = fim_prefix_set || !fim_file.empty();
      if (!fim_file.empty()) {
        const std::string text = read_file(fim_file);
        const auto at = text.find(hole);
        SC2_CHECK(at != std::string::npos, "'{}' has no hole marker '{}'", fim_file, hole);
        SC2_CHECK(text.find(hole, at + hole.size()) == std::string::npos, "'{}' has more than one '{}'", fim_file, hole);
        fim_prefix = text.substr(0, at);
        fim_suffix = text.substr(at + hole.size());
      } else if (fim) {
        fim_prefix = unescape(fim_prefix);
        fim_suffix = unescape(fim_suffix);
      } else if (!file.empty()) {
        prompt = read_file(file);
      } else if (!prompt.empty()) {
        prompt = unescape(prompt);
      } else if (!isatty(STDIN_FILENO)) {
        prompt = read_file("-");
      } else {
        SC2_FAIL("give a prompt: --prompt, --file, standard input, or --fim-prefix/--fim-suffix/--fim-file");
      }
      if (!config.sampling.do_sample && !quiet &&
          (app.count("--temperature") || app.count("--top-k") || app.count("--top-p") || app.count("--min-p")))
        fmt::print(stderr, "note: sampling options have no effect without --sample (greedy decoding)\n");

      const auto load_start = std::chrono::steady_clock::now();
      sc2::LoadOptions load_options;
      load_options.progress = show_progress;
      sc2::set_weight_type(load_options, weight_type);
      auto lm = LM::load(ctx, model, load_options);
      const auto tokenizer = sc2::load_tokenizer(model);
      const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - load_start).count();
      sc2::Generator generator(lm, tokenizer);
      auto print = [](std::string_view piece) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
      };

      sc2::GenerationResult result;
      if (fim) {
        if (!middle_only) print(fim_prefix);
        result = sc2::fill_in_the_middle(generator, ctx, tokenizer, fim_prefix, fim_suffix, config, print);
        if (!middle_only) print(fim_suffix);
      } else {
        print(prompt);
        result = generator.generate(ctx, prompt, config, print);
      }
      print("\n");
      if (!quiet) {
        const auto& t = result.timings;
        fmt::print(stderr,
                   "[{} loaded in {:.2f} s on {} | prompt {} tokens, {:.1f} tokens/s | generated {} tokens, "
                   "{:.1f} tokens/s | first token after {:.3f} s | stop: {}]\n",
                   model, load_s, where(ctx), t.prompt_tokens, t.prompt_tokens_per_second(), t.generated_tokens,
                   t.generated_tokens_per_second(), t.time_to_first_token, sc2::stop_reason_name(result.stop_reason));
      }
      return 0;
    };
    if (device == "cuda") {
#ifdef SC2_WITH_CUDA
      sc2::cuda::Context gpu;
      return run(gpu, sc2::cuda::Backend{});
#else
      SC2_FAIL("this sc2-generate was built without CUDA (configure with -DSC2_ENABLE_CUDA=ON)");
#endif
    }
    SC2_CHECK(device == "cpu", "--device must be cpu or cuda, not '{}'", device);
    sc2::CpuContext ctx(threads);
    return run(ctx, sc2::cpu::Backend{});
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
