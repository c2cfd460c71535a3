// sc2-generate end to end: the bundled model completes and fills in Python.

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include <unistd.h>

#ifdef SC2_GENERATE
namespace {

using Output = sc2::test::ProgramOutput;

// Runs sc2-generate with `arguments`, capturing stdout and stderr.
Output run_generate(const std::string& arguments, const std::string& stdin_text = "") {
  return sc2::test::run_program(SC2_GENERATE, arguments, stdin_text);
}

}  // namespace

TEST_CASE("sc2-generate completes a Python prompt with the bundled model", "[examples][bundled]") {
  const auto o = run_generate("--prompt 'def add(a, b):\\n' --max-new-tokens 24 --threads 2");
  INFO(o.out << "\n" << o.err);
  CHECK(o.status == 0);
  CHECK(o.out.rfind("def add(a, b):\n", 0) == 0);     // the prompt, then the completion
  CHECK(o.out.size() > std::string("def add(a, b):\n").size() + 8);
  CHECK(o.err.find("generated") != std::string::npos);  // statistics go to stderr
  CHECK(o.out.find("tokens/s") == std::string::npos);

  // The same greedy run through the library gives the same text.
  const auto dir = std::filesystem::path(SC2_SOURCE_DIR) / "models/sc2-tiny";
  auto lm = sc2::Starcoder2ForCausalLM::load(dir);
  const auto tok = sc2::Tokenizer::from_file(dir / "tokenizer.json");
  sc2::Generator gen(lm, tok);
  sc2::CpuContext ctx(2);
  sc2::GenerationConfig config;
  config.max_new_tokens = 24;
  const auto result = gen.generate(ctx, "def add(a, b):\n", config);
  CHECK(o.out == "def add(a, b):\n" + result.text + "\n");
}

TEST_CASE("sc2-generate reads standard input and fills a hole in a file", "[examples][bundled]") {
  auto o = run_generate("--max-new-tokens 8 --quiet", "import os\n");
  CHECK(o.status == 0);
  CHECK(o.out.rfind("import os\n", 0) == 0);
  CHECK(o.err.empty());

  const auto hole = std::filesystem::temp_directory_path() / "sc2-generate-hole.py";
  std::ofstream(hole) << "def square(x):\n    <FILL_HERE>\n\nprint(square(3))\n";
  o = run_generate("--fim-file " + hole.string() + " --max-new-tokens 16");
  INFO(o.out << "\n" << o.err);
  CHECK(o.status == 0);
  CHECK(o.out.rfind("def square(x):\n    ", 0) == 0);
  CHECK(o.out.find("\n\nprint(square(3))\n") != std::string::npos);
}

TEST_CASE("sc2-generate --batch-file runs requests together, each as it runs alone", "[examples][bundled][batch]") {
  const auto file = std::filesystem::temp_directory_path() / ("sc2-batch-" + std::to_string(::getpid()) + ".jsonl");
  std::ofstream(file) << R"({"prompt": "def fibonacci(n):\n", "max_new_tokens": 20})" "\n"
                      << R"({"prompt": "import os\n", "max_new_tokens": 12, "temperature": 0.9, "top_p": 0.95, "seed": 7})" "\n"
                      << "\n"
                      << R"({"fim_prefix": "def square(x):\n    ", "fim_suffix": "\n\nprint(square(3))\n", "max_new_tokens": 16})" "\n"
                      << R"({"prompt": "class Point:\n", "max_new_tokens": 30, "stop": ["\n\n"]})" "\n";
  const auto together = run_generate("--batch-file " + file.string() + " --max-running 4 --batch-tokens 16");
  const auto one_by_one = run_generate("--batch-file " + file.string() + " --max-running 1 --quiet");
  INFO(together.out << "\n" << together.err);
  REQUIRE(together.status == 0);
  REQUIRE(one_by_one.status == 0);
  CHECK(together.err.find("4 requests, at most 4 at once") != std::string::npos);
  std::vector<nlohmann::json> a, b;
  std::istringstream ia(together.out), ib(one_by_one.out);
  for (std::string line; std::getline(ia, line);) a.push_back(nlohmann::json::parse(line));
  for (std::string line; std::getline(ib, line);) b.push_back(nlohmann::json::parse(line));
  REQUIRE(a.size() == 4);
  REQUIRE(b.size() == 4);
  for (std::size_t i = 0; i < a.size(); ++i) {
    INFO("request " << i);
    CHECK(a[i]["ids"] == b[i]["ids"]);
    CHECK(a[i]["text"] == b[i]["text"]);
    CHECK(a[i]["stop_reason"] == b[i]["stop_reason"]);
    CHECK(a[i]["timings"]["generated_tokens"].get<std::int64_t>() == static_cast<std::int64_t>(a[i]["ids"].size()));
  }
  CHECK(a[0]["stop_reason"] == "max_new_tokens");
  CHECK(a[3]["text"].get<std::string>().find("\n\n") == std::string::npos);
  // The first line is what a single greedy run prints.
  const auto single = run_generate("--prompt 'def fibonacci(n):\\n' --max-new-tokens 20 --quiet");
  CHECK(single.out == "def fibonacci(n):\n" + a[0]["text"].get<std::string>() + "\n");
  // A bad line is named.
  std::ofstream(file) << R"({"prompt": "x", "max_tokens": 3})" "\n";
  const auto bad = run_generate("--batch-file " + file.string());
  CHECK(bad.status != 0);
  CHECK(bad.err.find("line 1: unknown field 'max_tokens'") != std::string::npos);
  std::filesystem::remove(file);
}

TEST_CASE("sc2-generate reports bad requests on stderr with a non-zero status", "[examples]") {
  auto o = run_generate("--model /nonexistent/model --prompt x");
  CHECK(o.status != 0);
  CHECK(o.err.find("/nonexistent/model") != std::string::npos);
  o = run_generate("--prompt x --max-new-tokens 0");
  CHECK(o.status != 0);
  const auto hole = std::filesystem::temp_directory_path() / "sc2-generate-nohole.py";
  std::ofstream(hole) << "x = 1\n";
  o = run_generate("--fim-file " + hole.string());
  CHECK(o.status != 0);
  CHECK(o.err.find("no hole marker") != std::string::npos);
}
#endif
