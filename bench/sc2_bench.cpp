// sc2-bench: times prompt processing (prefill) and generation (decode) on a checkpoint.
//
//   sc2-bench --model /tmp/sc2-3b-bf16 --threads 2 --prompt-tokens 512 --decode-tokens 128 [--json]
//
// Prefill runs the prompt through the KV cache in chunks of --chunk tokens; decode then
// feeds back the greedy token one at a time. Peak resident memory is read from the kernel
// (VmHWM) and compared with the weight and cache bytes.

#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <random>
#include <string>

namespace {

// Peak resident set size of this process in bytes (Linux: VmHWM in /proc/self/status).
std::uint64_t peak_rss_bytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  return 0;
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times prefill and decode of a StarCoder2 checkpoint on the CPU"};
  std::string model_dir;
  int threads = 0;
  std::int64_t prompt_tokens = 512, decode_tokens = 128, chunk = 512, context = 0;
  std::string isa;
  bool json = false;
  app.add_option("--model", model_dir, "checkpoint directory (config.json + safetensors)")->required();
  app.add_option("--threads", threads, "threads (0: all cores)");
  app.add_option("--prompt-tokens", prompt_tokens, "prompt length")->check(CLI::Range(1, 1 << 20));
  app.add_option("--decode-tokens", decode_tokens, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  app.add_option("--chunk", chunk, "prefill chunk (max tokens per forward)")->check(CLI::Range(1, 1 << 16));
  app.add_option("--context", context, "KV-cache context limit (0: prompt + decode)");
  app.add_option("--isa", isa, "force a SIMD path: scalar or avx2");
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);

  try {
    sc2::CpuContext ctx(threads);
    if (!isa.empty()) ctx.set_isa(sc2::cpu::parse_isa(isa));
    sc2::LoadOptions options;
    options.max_chunk_tokens = chunk;
    auto load_start = std::chrono::steady_clock::now();
    auto lm = sc2::Starcoder2ForCausalLM::load(model_dir, options);
    const double load_s = seconds_since(load_start);
    const sc2::ModelConfig& cfg = lm.config();
    const std::uint64_t weight_bytes = lm.backbone().checkpoint_bytes();
    if (context <= 0) context = std::max<std::int64_t>(prompt_tokens + decode_tokens, 1);
    sc2::KvCache cache = lm.make_cache(context);

    std::mt19937 rng(42);
    std::vector<std::int32_t> prompt(static_cast<std::size_t>(prompt_tokens));
    for (auto& id : prompt) id = static_cast<std::int32_t>(rng() % static_cast<unsigned>(cfg.vocab_size));

    auto start = std::chrono::steady_clock::now();
    auto logits = lm.forward_last(ctx, prompt, cache);
    const double prefill_s = seconds_since(start);

    start = std::chrono::steady_clock::now();
    for (std::int64_t i = 0; i < decode_tokens; ++i) {
      const auto next = static_cast<std::int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      logits = lm.forward_last(ctx, std::span(&next, 1), cache);
    }
    const double decode_s = seconds_since(start);
    const std::uint64_t rss = peak_rss_bytes();
    const double prefill_tps = static_cast<double>(prompt_tokens) / prefill_s;
    const double decode_tps = decode_tokens > 0 ? static_cast<double>(decode_tokens) / decode_s : 0.0;
    const double budget = static_cast<double>(weight_bytes + cache.bytes());

    if (json) {
      nlohmann::ordered_json out = {{"model", model_dir}, {"threads", ctx.threads()}, {"isa", sc2::cpu::isa_name(ctx.isa())},
                                    {"load_s", load_s}, {"prompt_tokens", prompt_tokens}, {"prefill_s", prefill_s},
                                    {"prefill_tokens_per_s", prefill_tps}, {"decode_tokens", decode_tokens},
                                    {"decode_s", decode_s}, {"decode_tokens_per_s", decode_tps},
                                    {"weight_bytes", weight_bytes}, {"cache_bytes", cache.bytes()},
                                    {"peak_rss_bytes", rss}, {"rss_over_weights_and_cache", static_cast<double>(rss) / budget}};
      fmt::print("{}\n", out.dump(2));
    } else {
      fmt::print("model    {} ({} layers, hidden {}), weights {:.2f} GB, {} threads, {} path, loaded in {:.2f} s\n",
                 model_dir, cfg.num_hidden_layers, cfg.hidden_size, static_cast<double>(weight_bytes) / 1e9,
                 ctx.threads(), sc2::cpu::isa_name(ctx.isa()), load_s);
      fmt::print("prefill  {} tokens in {:.2f} s: {:.2f} tokens/s\n", prompt_tokens, prefill_s, prefill_tps);
      fmt::print("decode   {} tokens in {:.2f} s: {:.2f} tokens/s\n", decode_tokens, decode_s, decode_tps);
      fmt::print("memory   peak RSS {:.3f} GB = {:.3f} × (weights {:.3f} GB + KV cache {:.3f} GB)\n",
                 static_cast<double>(rss) / 1e9, static_cast<double>(rss) / budget,
                 static_cast<double>(weight_bytes) / 1e9, static_cast<double>(cache.bytes()) / 1e9);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
