// sc2-tag: find emails, IP addresses, keys and passwords in source code, and redact them.
//
//   sc2-tag config.py                   # the source with each span marked
//   sc2-tag --json < deploy.sh          # {"spans": [{"begin", "end", "label", "score", "text"}, ...]}
//   sc2-tag --redact settings.py        # each span replaced by its placeholder (<EMAIL>, <KEY>, ...)
//
// Marks: on a terminal each span is coloured by its label; otherwise it is written
// [[LABEL:text]]. Offsets are bytes of the input.
//
// Spans: runs of tokens with the same label, trimmed of white space, then repaired
// (unless --raw): a span grows over the adjacent characters its kind admits (an email's
// letters, digits and ._%+-@; an IPv4's digits and dots, an IPv6's hex digits, colons and
// dots; a key's letters, digits and _-+/ and trailing =; a password's letters, digits and
// !#$%^&*+?_~.-), emails without an @ and addresses without a dot or colon are dropped, and
// spans that then overlap or touch are joined under the label with the most probability. The model is a token classifier
// (default: the bundled models/sc2-tagger) whose config.json may give "label_delay"
// (the label of token i is read at position i + label_delay) and
// "redaction_placeholders" (label -> text; default "<LABEL>").

#include <sc2/tagging/token_spans.hpp>
#include <sc2/sc2.hpp>

#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <unistd.h>

namespace {

std::string read_input(const std::string& path) {
  if (path.empty() || path == "-") return std::string(std::istreambuf_iterator<char>(std::cin), {});
  std::ifstream in(path, std::ios::binary);
  SC2_CHECK(in.good(), "cannot read '{}'", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// What sc2-tag reads from config.json beyond the model's shape.
struct TaggerSettings {
  std::int64_t label_delay = 0;
  std::map<std::string, std::string> placeholders;
};

TaggerSettings read_settings(const std::filesystem::path& config_path) {
  const auto json = nlohmann::json::parse(sc2::read_text_file(config_path), nullptr, /*allow_exceptions=*/false);
  SC2_CHECK(json.is_object(), "{}: not a JSON object", config_path.string());
  TaggerSettings s;
  if (json.contains("label_delay") && json["label_delay"].is_number_integer())
    s.label_delay = json["label_delay"].get<std::int64_t>();
  SC2_CHECK(s.label_delay >= 0 && s.label_delay < 64, "{}: label_delay {} is out of range", config_path.string(),
            s.label_delay);
  if (json.contains("redaction_placeholders") && json["redaction_placeholders"].is_object())
    for (const auto& [label, text] : json["redaction_placeholders"].items())
      if (text.is_string()) s.placeholders[label] = text.get<std::string>();
  return s;
}

// Which bytes a span of each secret kind may grow over (see sc2::repair_spans), and which spans
// are kept. Labels other than these four are left as the model tagged them.
struct SecretRules {
  std::string_view text;
  const std::vector<std::string>& labels;

  static bool alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
  static bool hex(char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; }
  std::string_view bytes(const sc2::TextSpan& s) const { return text.substr(s.begin, s.end - s.begin); }
  const std::string& name(const sc2::TextSpan& s) const { return labels.at(static_cast<std::size_t>(s.label)); }

  bool admits(const sc2::TextSpan& s, char c, bool leftwards) const {
    const std::string& label = name(s);
    if (label == "EMAIL") return alnum(c) || std::string_view("._%+-@").find(c) != std::string_view::npos;
    if (label == "IP_ADDRESS") {
      if (bytes(s).find(':') != std::string_view::npos) return hex(c) || c == ':' || c == '.';  // IPv6
      return std::isdigit(static_cast<unsigned char>(c)) || c == '.';
    }
    if (label == "KEY") return alnum(c) || c == '_' || c == '-' || c == '+' || c == '/' || (!leftwards && c == '=');
    if (label == "PASSWORD") return alnum(c) || std::string_view("!#$%^&*+?_~.-").find(c) != std::string_view::npos;
    return false;
  }

  bool keeps(sc2::TextSpan& s) const {
    while (s.end > s.begin + 1 && text[s.end - 1] == '.') --s.end;  // a sentence's full stop
    const std::string& label = name(s);
    if (label == "EMAIL") return bytes(s).find('@') != std::string_view::npos;
    if (label == "IP_ADDRESS") return bytes(s).find_first_of(".:") != std::string_view::npos;
    return true;
  }
};

// ANSI colours by label id: yellow, cyan, red, magenta, green, blue.
const char* colour(std::int32_t label) {
  static constexpr const char* codes[] = {"\033[1;33m", "\033[1;36m", "\033[1;31m", "\033[1;35m", "\033[1;32m",
                                          "\033[1;34m"};
  return codes[static_cast<std::size_t>(label - 1) % std::size(codes)];
}

void write(std::string_view s) { std::fwrite(s.data(), 1, s.size(), stdout); }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Find and redact emails, IP addresses, keys and passwords in source code"};
  std::string model = SC2_TAGGER_MODEL, file, colour_mode = "auto";
  bool json = false, redact = false, raw = false;
  int threads = 0;
  double min_score = 0.0;
  sc2::TaggingOptions tagging;
  app.add_option("file", file, "the source file ('-' or none: standard input)");
  app.add_option("--file", file, "the source file (same as the positional argument)");
  app.add_option("--model", model, "token classifier directory (config.json, tokenizer.json, *.safetensors)")
      ->capture_default_str();
  auto* json_flag = app.add_flag("--json", json, "print the spans as JSON");
  app.add_flag("--redact", redact, "print the source with each span replaced by its placeholder")->excludes(json_flag);
  app.add_option("--color", colour_mode, "colour the marks: auto (on a terminal), always, never")
      ->check(CLI::IsMember({"auto", "always", "never"}))->capture_default_str();
  app.add_flag("--raw", raw, "print the model's token runs as they are, without growing and joining them");
  app.add_option("--min-score", min_score, "drop spans whose score is below this")->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--window", tagging.window, "tokens per forward pass")->capture_default_str()
      ->check(CLI::Range(std::int64_t{16}, std::int64_t{1} << 20));
  app.add_option("--context", tagging.context, "tokens each window repeats from the previous one")
      ->capture_default_str()->check(CLI::Range(std::int64_t{0}, std::int64_t{1} << 20));
  app.add_option("--threads", threads, "CPU threads (0: one per core)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  try {
    const std::filesystem::path dir(model);
    SC2_CHECK(std::filesystem::is_directory(dir), "'{}' is not a model directory", model);
    const TaggerSettings settings = read_settings(dir / "config.json");
    auto tagger = sc2::Starcoder2ForTokenClassification::load(dir);
    const auto tokenizer = sc2::Tokenizer::from_file(dir / "tokenizer.json");
    const std::string text = read_input(file);
    tagging.label_delay = settings.label_delay;
    tagging.end_token = tokenizer.special_token_id("<|endoftext|>").value_or(0);

    sc2::CpuContext ctx(threads);
    const auto ids = tokenizer.encode(text);
    const auto tags = sc2::tag_tokens(tagger, ctx, ids, tagging);
    auto spans = sc2::label_spans(tags, sc2::token_byte_offsets(tokenizer, ids), text);
    if (!raw) {
      const SecretRules rules{text, tagger.config().id2label};
      spans = sc2::repair_spans(
          std::move(spans), text, [&](const sc2::TextSpan& s, char c, bool left) { return rules.admits(s, c, left); },
          [&](sc2::TextSpan& s) { return rules.keeps(s); });
    }
    std::erase_if(spans, [&](const sc2::TextSpan& s) { return s.score < min_score; });

    if (json) {
      nlohmann::json out = {{"file", file.empty() ? "-" : file}, {"tokens", ids.size()},
                            {"spans", nlohmann::json::array()}};
      for (const auto& s : spans)
        out["spans"].push_back({{"begin", s.begin},
                                {"end", s.end},
                                {"label", tagger.label(s.label)},
                                {"score", s.score},
                                {"text", text.substr(s.begin, s.end - s.begin)}});
      fmt::print("{}\n", out.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
      return 0;
    }
    const bool coloured = colour_mode == "always" || (colour_mode == "auto" && isatty(STDOUT_FILENO));
    std::size_t at = 0;
    for (const auto& s : spans) {
      write(std::string_view(text).substr(at, s.begin - at));
      const std::string& label = tagger.label(s.label);
      const std::string_view inside = std::string_view(text).substr(s.begin, s.end - s.begin);
      if (redact) {
        const auto it = settings.placeholders.find(label);
        write(it != settings.placeholders.end() ? it->second : "<" + label + ">");
      } else if (coloured) {
        write(fmt::format("{}{}\033[0m", colour(s.label), inside));
      } else {
        write(fmt::format("[[{}:{}]]", label, inside));
      }
      at = s.end;
    }
    write(std::string_view(text).substr(at));
    std::fflush(stdout);
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "error: {}\n", e.what());
    return 1;
  }
  return 0;
}
