#pragma once
/// \file
/// Reading a Hugging Face tokenizer.json into a plain description of the
/// pipeline, and refusing, with an `sc2::Error` that names it, every component
/// or option that would make sc2's output differ from the reference.
///
/// Accepted (everything StarCoder2's and GPT-2's files contain):
///   version "1.0" or absent; truncation and padding null;
///   normalizer null (or an empty Sequence);
///   pre_tokenizer: ByteLevel, or a Sequence (nested allowed) of Digits steps
///     ending with one ByteLevel;
///   post_processor null, ByteLevel, or a Sequence of ByteLevel (they only
///     adjust offsets, never ids);
///   decoder ByteLevel;
///   model BPE (or untyped with vocab and merges): merges as "a b" strings or
///     ["a", "b"] pairs; dropout null or 0; unk_token, fuse_unk, byte_fallback,
///     ignore_merges; continuing_subword_prefix and end_of_word_suffix null;
///   added_tokens with all their flags.

#include <sc2/core/error.hpp>
#include <sc2/io/detail/json_depth.hpp>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace sc2::detail {

/// The BPE model of a tokenizer.json.
struct BpeModelConfig {
  std::vector<std::pair<std::string, std::int32_t>> vocab;  ///< byte-level token string -> id
  std::vector<std::pair<std::string, std::string>> merges;  ///< in rank order
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

/// Most steps (Digits and ByteLevel, after flattening Sequences) a pre_tokenizer may have.
inline constexpr std::size_t kMaxPreTokenizerSteps = 64;

/// The pre-tokenizer: Digits steps (true: individual digits) then ByteLevel.
struct PreTokenizerConfig {
  std::vector<bool> digits_steps;
  bool add_prefix_space = false;
  bool use_regex = true;
};

/// One entry of "added_tokens".
struct AddedTokenConfig {
  std::int32_t id = 0;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

/// Everything sc2 needs from a tokenizer.json.
struct TokenizerConfig {
  BpeModelConfig model;
  PreTokenizerConfig pre_tokenizer;
  std::vector<AddedTokenConfig> added_tokens;
};

/// Reads the fields of one JSON document, naming the file and the JSON path in errors.
class TokenizerJsonReader {
public:
  using Json = nlohmann::json;

  explicit TokenizerJsonReader(std::string_view source) : source_(source) {}

  /// Parses and checks a whole tokenizer.json.
  TokenizerConfig read(std::string_view text) const {
    // Deep nesting would overflow the stack when a message prints a value or a Sequence is flattened.
    SC2_CHECK(!json_nested_deeper_than(text), "{}: malformed JSON: nested deeper than {} levels", source_,
              kMaxJsonDepth);
    Json root;
    try {
      root = Json::parse(text.begin(), text.end());
    } catch (const Json::exception& e) {  // parse_error, and out_of_range for a number like 1e309
      SC2_FAIL("{}: malformed JSON: {}", source_, e.what());
    }
    expect(root, Json::value_t::object, "the top level");
    TokenizerConfig config;
    if (const Json* version = optional(root, "version"); version && !version->is_null()) {
      SC2_CHECK(version->is_string() && version->get<std::string>() == "1.0", "{}: version: expected \"1.0\", found {}",
                source_, version->dump());
    }
    for (const char* option : {"truncation", "padding"}) {
      const Json* node = optional(root, option);
      SC2_CHECK(node == nullptr || node->is_null(),
                "{}: {} is not supported: expected null, found {} (it changes the ids encode returns)", source_, option,
                node ? node->dump() : "");
    }
    check_normalizer(optional(root, "normalizer"));
    config.pre_tokenizer = read_pre_tokenizer(optional(root, "pre_tokenizer"));
    check_post_processor(optional(root, "post_processor"), "post_processor");
    check_decoder(optional(root, "decoder"));
    const Json* model = optional(root, "model");
    SC2_CHECK(model != nullptr, "{}: missing field 'model'", source_);
    config.model = read_model(*model);
    if (const Json* added = optional(root, "added_tokens"); added && !added->is_null()) {
      expect(*added, Json::value_t::array, "added_tokens");
      for (std::size_t i = 0; i < added->size(); ++i)
        config.added_tokens.push_back(read_added_token((*added)[i], fmt::format("added_tokens[{}]", i)));
    }
    return config;
  }

private:
  static const char* type_name(const Json& node) { return node.type_name(); }

  const Json* optional(const Json& object, std::string_view key) const {
    auto it = object.find(key);
    return it == object.end() ? nullptr : &*it;
  }

  const Json& required(const Json& object, std::string_view key, std::string_view path) const {
    const Json* node = optional(object, key);
    SC2_CHECK(node != nullptr, "{}: {}: missing field '{}'", source_, path, key);
    return *node;
  }

  void expect(const Json& node, Json::value_t type, std::string_view path) const {
    static constexpr auto name_of = [](Json::value_t t) {
      switch (t) {
        case Json::value_t::object:
          return "an object";
        case Json::value_t::array:
          return "an array";
        case Json::value_t::string:
          return "a string";
        case Json::value_t::boolean:
          return "a boolean";
        default:
          return "a number";
      }
    };
    SC2_CHECK(node.type() == type, "{}: {}: expected {}, found {}", source_, path, name_of(type), type_name(node));
  }

  bool read_bool(const Json& object, std::string_view key, std::string_view path) const {
    const Json& node = required(object, key, path);
    SC2_CHECK(node.is_boolean(), "{}: {}.{}: expected a boolean, found {}", source_, path, key, type_name(node));
    return node.get<bool>();
  }

  std::int32_t read_id(const Json& node, std::string_view path) const {
    SC2_CHECK(node.is_number_integer() && node.get<std::int64_t>() >= 0 &&
                  node.get<std::int64_t>() <= std::numeric_limits<std::int32_t>::max(),
              "{}: {}: expected a token id (an integer in [0, 2^31)), found {}", source_, path, node.dump());
    return static_cast<std::int32_t>(node.get<std::int64_t>());
  }

  std::string type_of(const Json& node, std::string_view path) const {
    expect(node, Json::value_t::object, path);
    const Json& type = required(node, "type", path);
    SC2_CHECK(type.is_string(), "{}: {}.type: expected a string, found {}", source_, path, type_name(type));
    return type.get<std::string>();
  }

  void check_normalizer(const Json* node) const {
    if (node == nullptr || node->is_null()) return;
    const std::string type = type_of(*node, "normalizer");
    if (type == "Sequence") {
      const Json& steps = required(*node, "normalizers", "normalizer");
      if (steps.is_array() && steps.empty()) return;
    }
    SC2_FAIL("{}: normalizer of type '{}' is not supported: sc2 implements no normalizer (expected null)", source_,
             type);
  }

  void check_decoder(const Json* node) const {
    SC2_CHECK(node != nullptr && !node->is_null(),
              "{}: decoder is null: sc2 needs the ByteLevel decoder of a byte-level BPE", source_);
    const std::string type = type_of(*node, "decoder");
    SC2_CHECK(type == "ByteLevel", "{}: decoder of type '{}' is not supported: sc2 implements the ByteLevel decoder",
              source_, type);
  }

  void check_post_processor(const Json* node, std::string_view path) const {
    if (node == nullptr || node->is_null()) return;
    const std::string type = type_of(*node, path);
    if (type == "ByteLevel") return;  // adjusts offsets only
    if (type == "Sequence") {
      const Json& steps = required(*node, "processors", path);
      expect(steps, Json::value_t::array, fmt::format("{}.processors", path));
      for (std::size_t i = 0; i < steps.size(); ++i)
        check_post_processor(&steps[i], fmt::format("{}.processors[{}]", path, i));
      return;
    }
    SC2_FAIL(
        "{}: {} of type '{}' is not supported: sc2 implements ByteLevel (or null) post-processing, which adds "
        "no token",
        source_, path, type);
  }

  void flatten_pre_tokenizer(const Json& node, std::string_view path,
                             std::vector<std::pair<const Json*, std::string>>& out) const {
    const std::string type = type_of(node, path);
    if (type == "Sequence") {
      const Json& steps = required(node, "pretokenizers", path);
      const std::string steps_path = fmt::format("{}.pretokenizers", path);
      expect(steps, Json::value_t::array, steps_path);
      for (std::size_t i = 0; i < steps.size(); ++i)
        flatten_pre_tokenizer(steps[i], fmt::format("{}[{}]", steps_path, i), out);
      return;
    }
    out.emplace_back(&node, std::string(path));
  }

  PreTokenizerConfig read_pre_tokenizer(const Json* node) const {
    SC2_CHECK(node != nullptr && !node->is_null(),
              "{}: pre_tokenizer is null: sc2 needs a ByteLevel pre-tokenizer (byte-level BPE)", source_);
    std::vector<std::pair<const Json*, std::string>> steps;
    flatten_pre_tokenizer(*node, "pre_tokenizer", steps);
    // encode recurses once per step: bound the steps so a hostile file cannot overflow the stack.
    SC2_CHECK(steps.size() <= kMaxPreTokenizerSteps, "{}: pre_tokenizer has {} steps; sc2 accepts at most {}",
              source_, steps.size(), kMaxPreTokenizerSteps);
    PreTokenizerConfig config;
    bool byte_level = false;
    for (const auto& [step, path] : steps) {
      const std::string type = type_of(*step, path);
      SC2_CHECK(!byte_level, "{}: {} ({}) comes after ByteLevel: sc2 supports ByteLevel only as the last step", source_,
                path, type);
      if (type == "Digits") {
        config.digits_steps.push_back(read_bool(*step, "individual_digits", path));
      } else if (type == "ByteLevel") {
        byte_level = true;
        config.add_prefix_space = read_bool(*step, "add_prefix_space", path);
        if (const Json* use_regex = optional(*step, "use_regex")) {
          SC2_CHECK(use_regex->is_boolean(), "{}: {}.use_regex: expected a boolean, found {}", source_, path,
                    type_name(*use_regex));
          config.use_regex = use_regex->get<bool>();
        }
      } else {
        SC2_FAIL("{}: {} of type '{}' is not supported: sc2 implements ByteLevel, Digits and Sequence", source_, path,
                 type);
      }
    }
    SC2_CHECK(byte_level, "{}: pre_tokenizer has no ByteLevel step: sc2 needs a byte-level BPE", source_);
    return config;
  }

  BpeModelConfig read_model(const Json& node) const {
    expect(node, Json::value_t::object, "model");
    if (const Json* type = optional(node, "type")) {
      SC2_CHECK(type->is_string(), "{}: model.type: expected a string, found {}", source_, type_name(*type));
      SC2_CHECK(type->get<std::string>() == "BPE", "{}: model of type '{}' is not supported: sc2 implements BPE",
                source_, type->get<std::string>());
    }
    BpeModelConfig model;
    if (const Json* dropout = optional(node, "dropout"); dropout && !dropout->is_null()) {
      SC2_CHECK(dropout->is_number() && dropout->get<double>() == 0.0,
                "{}: model.dropout {} is not supported: BPE dropout samples merges at random (expected null)", source_,
                dropout->dump());
    }
    for (const char* affix : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      const Json* value = optional(node, affix);
      SC2_CHECK(value == nullptr || value->is_null(), "{}: model.{} {} is not supported (expected null)", source_,
                affix, value ? value->dump() : "");
    }
    if (const Json* unk = optional(node, "unk_token"); unk && !unk->is_null()) {
      SC2_CHECK(unk->is_string(), "{}: model.unk_token: expected a string or null, found {}", source_, type_name(*unk));
      model.unk_token = unk->get<std::string>();
    }
    for (auto [key, target] : {std::pair{"fuse_unk", &model.fuse_unk}, std::pair{"byte_fallback", &model.byte_fallback},
                               std::pair{"ignore_merges", &model.ignore_merges}}) {
      const Json* value = optional(node, key);
      if (value == nullptr || value->is_null()) continue;
      SC2_CHECK(value->is_boolean(), "{}: model.{}: expected a boolean, found {}", source_, key, type_name(*value));
      *target = value->get<bool>();
    }

    const Json* vocab = optional(node, "vocab");
    const Json* merges = optional(node, "merges");
    SC2_CHECK(vocab != nullptr && merges != nullptr, "{}: model: missing field '{}'", source_,
              vocab == nullptr ? "vocab" : "merges");
    expect(*vocab, Json::value_t::object, "model.vocab");
    expect(*merges, Json::value_t::array, "model.merges");
    model.vocab.reserve(vocab->size());
    for (auto it = vocab->begin(); it != vocab->end(); ++it)
      model.vocab.emplace_back(it.key(), read_id(it.value(), fmt::format("model.vocab[\"{}\"]", it.key())));

    model.merges.reserve(merges->size());
    const bool pair_form = !merges->empty() && (*merges)[0].is_array();
    std::size_t line = 0;  // rank among the string merges, counted as the reference counts
    for (std::size_t i = 0; i < merges->size(); ++i) {
      const Json& merge = (*merges)[i];
      if (pair_form) {
        SC2_CHECK(merge.is_array() && merge.size() == 2 && merge[0].is_string() && merge[1].is_string(),
                  "{}: model.merges[{}]: expected a pair of strings like the entries before it, found {}", source_, i,
                  merge.dump());
        model.merges.emplace_back(merge[0].get<std::string>(), merge[1].get<std::string>());
        continue;
      }
      SC2_CHECK(merge.is_string(),
                "{}: model.merges[{}]: expected a string \"a b\" like the entries before it, found {}", source_, i,
                merge.dump());
      const std::string& text = merge.get_ref<const std::string&>();
      if (text.starts_with("#version")) continue;  // a merges.txt header, skipped by the reference
      ++line;
      const std::size_t space = text.find(' ');
      SC2_CHECK(space != std::string::npos && text.find(' ', space + 1) == std::string::npos,
                "{}: model.merges[{}]: expected two tokens separated by one space, found \"{}\" (merge line {})",
                source_, i, text, line);
      model.merges.emplace_back(text.substr(0, space), text.substr(space + 1));
    }
    return model;
  }

  AddedTokenConfig read_added_token(const Json& node, std::string_view path) const {
    expect(node, Json::value_t::object, path);
    AddedTokenConfig token;
    token.id = read_id(required(node, "id", path), fmt::format("{}.id", path));
    const Json& content = required(node, "content", path);
    SC2_CHECK(content.is_string(), "{}: {}.content: expected a string, found {}", source_, path, type_name(content));
    token.content = content.get<std::string>();
    token.single_word = read_bool(node, "single_word", path);
    token.lstrip = read_bool(node, "lstrip", path);
    token.rstrip = read_bool(node, "rstrip", path);
    token.normalized = read_bool(node, "normalized", path);
    token.special = read_bool(node, "special", path);
    return token;
  }

  std::string source_;
};

}  // namespace sc2::detail
