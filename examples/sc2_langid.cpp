// sc2-langid: the language of a source file (python, c, shell or other) with its probability.
//
//   sc2-langid script.sh                # shell 0.9993
//   cat main.c | sc2-langid --all       # every label, most likely first
//   sc2-langid --json setup.py          # {"label": ..., "probability": ..., "probabilities": {...}}
//
// The model is a sequence classifier (default: the bundled models/sc2-langid) that reads
// the first "max_tokens" tokens of the file (config.json; 256 for the bundled model).

#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <numeric>

namespace {

std::string read_input(const std::string& path) {
  if (path.empty() || path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  SC2_CHECK(in.good(), "cannot read '{}'", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::int64_t max_tokens(const std::filesystem::path& config_path) {
  const auto json = nlohmann::json::parse(sc2::read_text_file(config_path), nullptr, /*allow_exceptions=*/false);
  if (json.is_object() && json.contains("max_tokens") && json["max_tokens"].is_number_integer())
    return std::max<std::int64_t>(1, json["max_tokens"].get<std::int64_t>());
  return 256;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Identify the language of a source file"};
  std::string model = SC2_LANGID_MODEL, file;
  bool all = false, json = false;
  int threads = 0;
  app.add_option("file", file, "the source file ('-' or none: standard input)");
  app.add_option("--model", model, "sequence classifier directory (config.json, tokenizer.json, *.safetensors)")
      ->capture_default_str();
  app.add_flag("--all", all, "print every label with its probability, most likely first");
  app.add_flag("--json", json, "print the result as JSON");
  app.add_option("--threads", threads, "CPU threads (0: one per core)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const std::filesystem::path dir(model);
    SC2_CHECK(std::filesystem::is_directory(dir), "'{}' is not a model directory", model);
    auto classifier = sc2::Starcoder2ForSequenceClassification::load(dir);
    const auto tokenizer = sc2::Tokenizer::from_file(dir / "tokenizer.json");
    auto ids = tokenizer.encode(read_input(file));
    SC2_CHECK(!ids.empty(), "the input is empty");
    ids.resize(std::min(ids.size(), static_cast<std::size_t>(max_tokens(dir / "config.json"))));

    sc2::CpuContext ctx(threads);
    const auto logits = classifier.forward(ctx, ids);
    const float top = *std::max_element(logits.begin(), logits.end());
    std::vector<double> p(logits.size());
    double sum = 0.0;
    for (std::size_t i = 0; i < p.size(); ++i) sum += p[i] = std::exp(static_cast<double>(logits[i]) - top);
    for (double& x : p) x /= sum;
    std::vector<std::size_t> order(p.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return p[a] > p[b]; });

    if (json) {
      nlohmann::json out = {{"label", classifier.label(static_cast<std::int64_t>(order[0]))},
                            {"probability", p[order[0]]},
                            {"tokens", ids.size()}};
      for (std::size_t i : order) out["probabilities"][classifier.label(static_cast<std::int64_t>(i))] = p[i];
      fmt::print("{}\n", out.dump(1));
    } else {
      for (std::size_t k = 0; k < (all ? order.size() : 1); ++k)
        fmt::print("{} {:.4f}\n", classifier.label(static_cast<std::int64_t>(order[k])), p[order[k]]);
    }
  } catch (const std::exception& e) {
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
