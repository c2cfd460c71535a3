// sc2-tag and sc2-langid end to end: a known file with planted secrets in, the expected spans out.

#include "support.hpp"

#include <sc2/sc2.hpp>

#include <nlohmann/json.hpp>

#include <fstream>

#if defined(SC2_TAG) && defined(SC2_LANGID)
namespace {

using sc2::test::run_program;

const std::string kPlanted = sc2::test::fixture("tagger/planted.py").string();

struct Planted {
  std::string label, text;
};

// The secrets planted in tests/fixtures/tagger/planted.py, in order.
const std::vector<Planted> kSecrets = {
    {"EMAIL", "ada.moreau@example.org"},
    {"IP_ADDRESS", "10.20.30.40"},
    {"PASSWORD", "Winter2023!"},
    {"KEY", "AKIAQ5R2PX7TLM3KWZ9B"},
    {"IP_ADDRESS", "192.168.1.25"},
    {"KEY", "ghp_x7Kq2LmN9pR4sT6vW8yZ1aB3cD5eF7gH9jK0"},
    {"EMAIL", "alerts@company.co.uk"},
    {"PASSWORD", "hunter2pass"},
    {"IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"},
};

}  // namespace

TEST_CASE("sc2-tag finds each planted secret with its label and byte offsets", "[tagger][examples][bundled]") {
  const std::string source = sc2::read_text_file(kPlanted);
  const auto o = run_program(SC2_TAG, "--json --threads 2 " + kPlanted);
  INFO(o.out << "\n" << o.err);
  REQUIRE(o.status == 0);
  const auto json = nlohmann::json::parse(o.out);
  const auto& spans = json["spans"];
  REQUIRE(spans.size() == kSecrets.size());
  std::size_t from = 0;
  for (std::size_t i = 0; i < kSecrets.size(); ++i) {
    const std::size_t begin = source.find(kSecrets[i].text, from);
    REQUIRE(begin != std::string::npos);
    from = begin + kSecrets[i].text.size();
    INFO("planted " << kSecrets[i].label << " " << kSecrets[i].text);
    CHECK(spans[i]["label"] == kSecrets[i].label);
    CHECK(spans[i]["begin"].get<std::size_t>() == begin);
    CHECK(spans[i]["end"].get<std::size_t>() == begin + kSecrets[i].text.size());
    CHECK(spans[i]["text"] == kSecrets[i].text);
    CHECK(spans[i]["score"].get<double>() > 0.5);
    CHECK(spans[i]["score"].get<double>() <= 1.0);
  }
  CHECK(json["file"] == kPlanted);
  CHECK(json["tokens"].get<std::size_t>() > 300);
}

TEST_CASE("sc2-tag redacts with the placeholders and marks spans in plain text", "[tagger][examples][bundled]") {
  const std::string source = sc2::read_text_file(kPlanted);
  auto o = run_program(SC2_TAG, "--redact --threads 2 " + kPlanted);
  INFO(o.out << "\n" << o.err);
  REQUIRE(o.status == 0);
  for (const auto& secret : kSecrets) CHECK(o.out.find(secret.text) == std::string::npos);
  CHECK(o.out.find("# Maintainer: Ada Moreau <<EMAIL>>\n") != std::string::npos);
  CHECK(o.out.find("DATABASE_PASSWORD = \"<PASSWORD>\"\n") != std::string::npos);
  CHECK(o.out.find("API_KEY = \"<KEY>\"\n") != std::string::npos);
  CHECK(o.out.find("ALLOWED_HOSTS = [\"localhost\", \"<IP_ADDRESS>\"]\n") != std::string::npos);
  CHECK(o.out.find("\"https://deploy:<PASSWORD>@backup.example.com/reports\"") != std::string::npos);
  // Everything else is the source, byte for byte.
  std::string expected = source;
  for (auto it = kSecrets.rbegin(); it != kSecrets.rend(); ++it) {
    const auto at = expected.rfind(it->text);
    REQUIRE(at != std::string::npos);
    expected.replace(at, it->text.size(), "<" + it->label + ">");
  }
  CHECK(o.out == expected);

  // Not a terminal: [[LABEL:text]] marks, no escape codes; --color always forces them.
  o = run_program(SC2_TAG, "--threads 2 " + kPlanted);
  REQUIRE(o.status == 0);
  CHECK(o.out.find("DATABASE_HOST = \"[[IP_ADDRESS:10.20.30.40]]\"") != std::string::npos);
  CHECK(o.out.find("\033[") == std::string::npos);
  o = run_program(SC2_TAG, "--threads 2 --color always " + kPlanted);
  REQUIRE(o.status == 0);
  CHECK(o.out.find("\033[1;36m10.20.30.40\033[0m") != std::string::npos);
  CHECK(o.out.find("[[") == std::string::npos);
}

TEST_CASE("sc2-tag reads standard input, long files in windows, and reports errors", "[tagger][examples][bundled]") {
  auto o = run_program(SC2_TAG, "--redact --threads 2", "export AWS_SECRET_ACCESS_KEY=\"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\"\n");
  INFO(o.out << "\n" << o.err);
  CHECK(o.status == 0);
  CHECK(o.out == "export AWS_SECRET_ACCESS_KEY=\"<KEY>\"\n");

  // The planted file five times over: longer than a window, every copy tagged alike.
  const std::string source = sc2::read_text_file(kPlanted);
  std::string five;
  for (int i = 0; i < 5; ++i) five += source;
  o = run_program(SC2_TAG, "--json --threads 2 --window 256 --context 64", five);
  REQUIRE(o.status == 0);
  const auto json = nlohmann::json::parse(o.out);
  CHECK(json["tokens"].get<std::size_t>() > 1500);
  std::size_t found = 0;
  for (const auto& span : json["spans"])
    for (const auto& secret : kSecrets) found += span["text"] == secret.text && span["label"] == secret.label;
  CHECK(found >= 5 * kSecrets.size() - 2);

  o = run_program(SC2_TAG, "--json", "");
  CHECK(o.status == 0);
  CHECK(nlohmann::json::parse(o.out)["spans"].empty());
  o = run_program(SC2_TAG, "--model /nonexistent/tagger " + kPlanted);
  CHECK(o.status != 0);
  CHECK(o.err.find("/nonexistent/tagger") != std::string::npos);
  o = run_program(SC2_TAG, "/nonexistent/file.py");
  CHECK(o.status != 0);
  CHECK(o.err.find("/nonexistent/file.py") != std::string::npos);
  o = run_program(SC2_TAG, "--json --redact " + kPlanted);
  CHECK(o.status != 0);
}

TEST_CASE("sc2-langid names the language of a file", "[tagger][examples][bundled]") {
  auto o = run_program(SC2_LANGID, "--threads 2 " + kPlanted);
  INFO(o.out << "\n" << o.err);
  CHECK(o.status == 0);
  CHECK(o.out.rfind("python 0.", 0) == 0);
  o = run_program(SC2_LANGID, "--json --threads 2 " + sc2::test::fixture("langid/sample.c").string());
  CHECK(o.status == 0);
  const auto json = nlohmann::json::parse(o.out);
  CHECK(json["label"] == "c");
  CHECK(json["probabilities"].size() == 4);
  o = run_program(SC2_LANGID, "--all", "#!/bin/sh\nset -eu\nfor f in \"$@\"; do\n  if [ -f \"$f\" ]; then\n    echo \"$f\"\n  fi\ndone\n");
  CHECK(o.status == 0);
  CHECK(o.out.rfind("shell ", 0) == 0);
  CHECK(std::count(o.out.begin(), o.out.end(), '\n') == 4);
  o = run_program(SC2_LANGID, "", "");
  CHECK(o.status != 0);
}
#endif
