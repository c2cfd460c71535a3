// sc2-tokenizer-bench: encode throughput of sc2::Tokenizer on one thread.
//
//   sc2-tokenizer-bench --tokenizer models/sc2-tiny/tokenizer.json --text corpus.txt [--repeat 5] [--json]
//
// Encodes the whole file with one `encode` call per repetition and reports the
// median and best MB/s (1 MB = 10^6 bytes of input), the number of ids and a
// checksum of them (FNV-1a over the ids as little-endian 32-bit integers) so
// that tools/evaluation/bench_tokenizer.py can check that both tokenizers gave the same ids.

#include <sc2/tokenizer/tokenizer.hpp>

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace {

std::uint64_t fnv1a(const std::vector<std::int32_t>& ids) {
  std::uint64_t h = 0xCBF29CE484222325ull;
  for (std::int32_t id : ids) {
    const auto v = static_cast<std::uint32_t>(id);
    for (int k = 0; k < 4; ++k) {
      h ^= (v >> (8 * k)) & 0xFFu;
      h *= 0x100000001B3ull;
    }
  }
  return h;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Times sc2::Tokenizer::encode on one thread"};
  std::string tokenizer_path = "models/sc2-tiny/tokenizer.json";
  std::string text_path;
  int repeat = 5;
  bool json = false;
  app.add_option("--tokenizer", tokenizer_path, "tokenizer.json");
  app.add_option("--text", text_path, "UTF-8 text file to encode (1 MB or more for a stable figure)")->required();
  app.add_option("--repeat", repeat, "timed repetitions")->check(CLI::Range(1, 1000));
  app.add_flag("--json", json, "print one JSON object");
  CLI11_PARSE(app, argc, argv);

  try {
    const sc2::Tokenizer tokenizer = sc2::Tokenizer::from_file(tokenizer_path);
    std::ifstream file(text_path, std::ios::binary);
    if (!file) throw sc2::Error(fmt::format("{}: cannot open", text_path));
    const std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());

    std::vector<double> seconds;
    std::vector<std::int32_t> ids;
    for (int r = 0; r < repeat; ++r) {
      const auto start = std::chrono::steady_clock::now();
      ids = tokenizer.encode(text);
      seconds.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    const double best = seconds.front();
    const double megabytes = static_cast<double>(text.size()) / 1e6;
    if (json) {
      fmt::print(
          "{{\"bytes\": {}, \"ids\": {}, \"checksum\": \"{:016x}\", \"median_s\": {:.6f}, \"best_s\": {:.6f}, "
          "\"median_mb_per_s\": {:.2f}, \"best_mb_per_s\": {:.2f}}}\n",
          text.size(), ids.size(), fnv1a(ids), median, best, megabytes / median, megabytes / best);
    } else {
      fmt::print(
          "sc2::Tokenizer: {} bytes -> {} ids (checksum {:016x}); median {:.1f} ms = {:.1f} MB/s, best {:.1f} "
          "MB/s over {} runs\n",
          text.size(), ids.size(), fnv1a(ids), median * 1e3, megabytes / median, megabytes / best, repeat);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "sc2-tokenizer-bench: {}\n", e.what());
    return 1;
  }
  return 0;
}
