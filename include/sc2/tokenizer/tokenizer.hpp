#pragma once
/// \file
/// The byte-level BPE tokenizer of StarCoder2 (and GPT-2 shaped models),
/// reading a Hugging Face tokenizer.json and giving the ids Hugging Face
/// `tokenizers` gives, id for id.
///
/// Encoding, in the reference's order:
///   1. added tokens are found in the raw text (non-normalized ones first, then
///      normalized ones in what is left; there is no normalizer) and never split;
///   2. the rest goes through the pre-tokenizer: the Digits steps, then
///      ByteLevel (optional prefix space, then GPT-2's split regex, see
///      `detail/byte_level.hpp`);
///   3. each pre-token's bytes are merged by BPE (`detail/bpe.hpp`), through a
///      cache of pre-token -> ids that lives for the call.
/// Decoding maps each token back to its bytes and replaces ill-formed UTF-8
/// by U+FFFD, as the ByteLevel decoder does; `DecodeStream` does the same
/// incrementally.
///
/// Errors: a tokenizer.json with a component sc2 does not implement is refused
/// at load with an `sc2::Error` naming it (see `detail/tokenizer_json.hpp`).
/// `encode` refuses text that is not valid UTF-8 with an `sc2::Error` giving
/// the byte offset of the first bad byte (the reference cannot even receive
/// such text: Rust strings are valid UTF-8). `decode` refuses ids the
/// tokenizer does not have (the reference silently drops them).
///
/// Thread safety: a `Tokenizer` is immutable after loading; `encode` and
/// `decode` may run concurrently. A `DecodeStream` belongs to one thread.
///
///     auto tok = sc2::Tokenizer::from_file("models/sc2-tiny/tokenizer.json");
///     std::vector<std::int32_t> ids = tok.encode("def f(x):\n    return x");
///     std::string text = tok.decode(ids);
///     std::int32_t eos = tok.special_token_id("<|endoftext|>").value();

#include <sc2/core/error.hpp>
#include <sc2/tokenizer/detail/added_tokens.hpp>
#include <sc2/tokenizer/detail/bpe.hpp>
#include <sc2/tokenizer/detail/byte_level.hpp>
#include <sc2/tokenizer/detail/tokenizer_json.hpp>
#include <sc2/tokenizer/detail/utf8.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace sc2 {

/// A token of tokenizer.json's "added_tokens", matched in raw text before BPE.
struct AddedToken {
  std::int32_t id = 0;       ///< its token id
  std::string content;       ///< the text it matches
  bool special = false;      ///< dropped by `decode` with `skip_special_tokens`
  bool single_word = false;  ///< matches only between non-word characters
  bool lstrip = false;       ///< takes in the white space on its left
  bool rstrip = false;       ///< takes in the white space on its right
  bool normalized = false;   ///< matched after the (absent) normalizer, in a second pass
};

/// Options of `Tokenizer::decode` and `DecodeStream`.
struct DecodeOptions {
  bool skip_special_tokens = false;  ///< leave out tokens whose text is a special added token
};

/// A byte-level BPE tokenizer loaded from a Hugging Face tokenizer.json.
class Tokenizer {
public:
  /// Loads a tokenizer.json file.
  ///
  ///     auto tok = sc2::Tokenizer::from_file("models/sc2-tiny/tokenizer.json");
  static Tokenizer from_file(const std::filesystem::path& path) {
    std::ifstream file(path, std::ios::binary);
    SC2_CHECK(file.good(), "{}: cannot open the tokenizer file", path.string());
    std::string text((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
    SC2_CHECK(!file.bad(), "{}: cannot read the tokenizer file", path.string());
    return from_json(text, path.string());
  }

  /// Loads a tokenizer from tokenizer.json text; `source` names it in errors.
  static Tokenizer from_json(std::string_view json, std::string_view source = "tokenizer.json") {
    return Tokenizer(detail::TokenizerJsonReader(source).read(json), source);
  }

  /// The ids of `text` (UTF-8), as `tokenizers`' `Tokenizer.encode(text).ids`.
  /// Throws `sc2::Error` with the byte offset when `text` is not valid UTF-8.
  ///
  ///     std::vector<std::int32_t> ids = tok.encode("<fim_prefix>def f(");
  std::vector<std::int32_t> encode(std::string_view text) const {
    const std::size_t bad = detail::find_invalid_utf8(text);
    SC2_CHECK(bad == std::string_view::npos,
              "Tokenizer::encode: the text is not valid UTF-8: ill-formed sequence at byte offset {} (byte 0x{:02X})",
              bad, bad == std::string_view::npos ? 0u : static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
    const detail::CharClassTable& classes = detail::char_classes();
    std::vector<detail::TextSplit> splits;
    added_non_normalized_.find_matches(text, 0, classes, splits, source_);
    if (!added_normalized_.empty()) {
      std::vector<detail::TextSplit> second;
      for (const detail::TextSplit& split : splits) {
        if (split.id >= 0)
          second.push_back(split);
        else
          added_normalized_.find_matches(text.substr(split.begin, split.end - split.begin), split.begin, classes,
                                         second, source_);
      }
      splits.swap(second);
    }
    EncodeScratch scratch;
    std::vector<std::int32_t> ids;
    ids.reserve(text.size() / 3 + 4);
    for (const detail::TextSplit& split : splits) {
      if (split.id >= 0)
        ids.push_back(split.id);
      else if (split.end > split.begin)
        pre_tokenize(0, text.substr(split.begin, split.end - split.begin), classes, scratch, ids);
    }
    return ids;
  }

  /// The text of `ids`: each token's bytes, ill-formed UTF-8 replaced by U+FFFD.
  /// Throws `sc2::Error` for an id the tokenizer does not have.
  ///
  ///     std::string text = tok.decode(ids, {.skip_special_tokens = true});
  std::string decode(std::span<const std::int32_t> ids, DecodeOptions options = {}) const {
    std::string bytes;
    for (std::int32_t id : ids) append_token_bytes(bytes, id, options);
    std::string text;
    text.reserve(bytes.size());
    detail::append_utf8_lossy(text, bytes, /*at_end=*/true);
    return text;
  }

  /// The id of a token: an added token's content or a vocabulary entry (byte-level form, e.g. "Ġreturn").
  std::optional<std::int32_t> token_to_id(std::string_view token) const {
    if (auto it = added_ids_.find(token); it != added_ids_.end()) return it->second;
    if (auto it = model_ids_.find(token); it != model_ids_.end()) return it->second;
    return std::nullopt;
  }

  /// The token of an id (an added token's content, else the vocabulary entry), or nullopt.
  std::optional<std::string_view> id_to_token(std::int32_t id) const {
    if (!has_id(id)) return std::nullopt;
    return std::string_view(tokens_[static_cast<std::size_t>(id)].text);
  }

  /// The number of distinct tokens, added tokens included (`get_vocab_size()` of the reference).
  std::size_t vocab_size() const noexcept { return vocab_size_; }

  /// One past the largest id: the rows an embedding table needs.
  std::size_t id_limit() const noexcept { return tokens_.size(); }

  /// The id of the special added token `content` (e.g. "<fim_prefix>"), or nullopt.
  std::optional<std::int32_t> special_token_id(std::string_view content) const {
    auto it = added_ids_.find(content);
    if (it == added_ids_.end() || !tokens_[static_cast<std::size_t>(it->second)].special) return std::nullopt;
    return it->second;
  }

  /// Whether `id` is a token `decode` skips with `skip_special_tokens`.
  bool is_special(std::int32_t id) const { return has_id(id) && tokens_[static_cast<std::size_t>(id)].special; }

  /// The added tokens, by increasing id, with their flags as read from the file.
  std::span<const AddedToken> added_tokens() const noexcept { return added_tokens_; }

  /// The bytes one token decodes to (possibly part of a UTF-8 character).
  std::string_view token_bytes(std::int32_t id) const {
    SC2_CHECK(has_id(id), "{}: token id {} is not in the vocabulary (ids go up to {})", source_, id,
              tokens_.size() - 1);
    return tokens_[static_cast<std::size_t>(id)].bytes;
  }

  /// The name of the file (or source) this tokenizer was read from.
  const std::string& source() const noexcept { return source_; }

private:
  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using StringToId = std::unordered_map<std::string, std::int32_t, StringHash, std::equal_to<>>;

  /// What an id stands for.
  struct TokenEntry {
    std::string text;   ///< what id_to_token returns
    std::string bytes;  ///< what it decodes to
    bool present = false;
    bool special = false;
  };

  /// Buffers reused across the pre-tokens of one encode call.
  struct EncodeScratch {
    detail::WordCache cache;
    std::vector<std::int32_t> symbols;
    std::string prefixed;
  };

  static constexpr std::int32_t kNoUnk = -1;
  static constexpr std::int32_t kUnkNotInVocab = -2;
  static constexpr std::size_t kLongestCachedWord = 256;

  Tokenizer(detail::TokenizerConfig config, std::string_view source)
      : source_(source), pre_tokenizer_(std::move(config.pre_tokenizer)) {
    // Ids index a table, so a huge id would be a huge allocation: a numbering
    // without gaps never reaches the count of vocab entries and added tokens.
    const std::size_t id_bound = config.model.vocab.size() + config.added_tokens.size();
    for (const auto& [token, id] : config.model.vocab)
      SC2_CHECK(static_cast<std::size_t>(id) < id_bound,
                "{}: model.vocab: id {} of '{}' is out of range: {} vocab entries and {} added tokens number ids "
                "below {}",
                source_, id, token, config.model.vocab.size(), config.added_tokens.size(), id_bound);
    load_model(config.model);
    load_added_tokens(config.added_tokens);
  }

  bool has_id(std::int32_t id) const noexcept {
    return id >= 0 && static_cast<std::size_t>(id) < tokens_.size() && tokens_[static_cast<std::size_t>(id)].present;
  }

  TokenEntry& entry(std::int32_t id) {
    if (static_cast<std::size_t>(id) >= tokens_.size()) tokens_.resize(static_cast<std::size_t>(id) + 1);
    return tokens_[static_cast<std::size_t>(id)];
  }

  /// The bytes a token string decodes to: through the byte alphabet when every
  /// character is in it, else the string itself (the ByteLevel decoder's rule).
  static std::string decoded_bytes(std::string_view token) {
    std::string bytes;
    const auto* p = reinterpret_cast<const unsigned char*>(token.data());
    const auto* end = p + token.size();
    while (p < end) {
      const detail::Utf8Sequence seq = detail::examine_utf8(p, static_cast<std::size_t>(end - p));
      if (seq.kind != detail::Utf8Sequence::kComplete) return std::string(token);
      const int byte = detail::kByteAlphabet.byte_of(detail::decode_utf8(p).code_point);
      if (byte < 0) return std::string(token);
      bytes += static_cast<char>(byte);
      p += seq.length;
    }
    return bytes;
  }

  /// The byte-level string (as in the vocabulary) of raw bytes.
  static std::string byte_level_string(std::string_view bytes) {
    std::string out;
    for (unsigned char b : bytes) detail::append_utf8(out, detail::kByteAlphabet.byte_to_char[b]);
    return out;
  }

  void load_model(const detail::BpeModelConfig& model) {
    model_ids_.reserve(model.vocab.size());
    for (const auto& [token, id] : model.vocab) {
      model_ids_.emplace(token, id);
      TokenEntry& e = entry(id);
      SC2_CHECK(!e.present, "{}: model.vocab: id {} is given to both '{}' and '{}'", source_, id, e.text, token);
      e.text = token;
      e.bytes = decoded_bytes(token);
      e.present = true;
    }
    for (unsigned b = 0; b < 256; ++b) {
      const char byte = static_cast<char>(b);
      const std::string token = byte_level_string(std::string_view(&byte, 1));
      auto it = model_ids_.find(token);
      byte_ids_[b] = it == model_ids_.end() ? -1 : it->second;
      if (model.byte_fallback && byte_ids_[b] < 0) {
        // "<0xXX>" for each UTF-8 byte of the byte-level character, all or nothing.
        std::vector<std::int32_t> fallback;
        for (unsigned char u : token) {
          auto f = model_ids_.find(fmt::format("<0x{:02X}>", static_cast<unsigned>(u)));
          if (f == model_ids_.end()) {
            fallback.clear();
            break;
          }
          fallback.push_back(f->second);
        }
        byte_fallback_ids_[b] = std::move(fallback);
      }
    }
    if (model.unk_token) {
      unk_token_ = *model.unk_token;
      auto it = model_ids_.find(unk_token_);
      unk_id_ = it == model_ids_.end() ? kUnkNotInVocab : it->second;
    }
    fuse_unk_ = model.fuse_unk;
    ignore_merges_ = model.ignore_merges;
    if (ignore_merges_) {
      for (const auto& [token, id] : model.vocab) {
        std::string bytes = decoded_bytes(token);
        if (byte_level_string(bytes) == token) raw_ids_.emplace(std::move(bytes), id);
      }
    }
    merges_.reserve(model.merges.size());
    std::string merged;
    for (std::size_t rank = 0; rank < model.merges.size(); ++rank) {
      const auto& [left, right] = model.merges[rank];
      auto l = model_ids_.find(left);
      SC2_CHECK(l != model_ids_.end(), "{}: model.merges[{}] (\"{} {}\"): token '{}' is not in model.vocab", source_,
                rank, left, right, left);
      auto r = model_ids_.find(right);
      SC2_CHECK(r != model_ids_.end(), "{}: model.merges[{}] (\"{} {}\"): token '{}' is not in model.vocab", source_,
                rank, left, right, right);
      merged.assign(left).append(right);
      auto m = model_ids_.find(merged);
      SC2_CHECK(m != model_ids_.end(), "{}: model.merges[{}] (\"{} {}\"): the merged token '{}' is not in model.vocab",
                source_, rank, left, right, merged);
      merges_.insert_or_assign(l->second, r->second, {static_cast<std::uint32_t>(rank), m->second});
    }
    vocab_size_ = model_ids_.size();
  }

  /// Assigns ids as the reference's AddedVocabulary::add_tokens does and checks them against the file.
  void load_added_tokens(const std::vector<detail::AddedTokenConfig>& tokens) {
    const std::int32_t model_size = static_cast<std::int32_t>(model_ids_.size());
    std::int32_t next_id = model_size;
    std::unordered_map<std::int32_t, AddedToken> by_id;
    for (const detail::AddedTokenConfig& t : tokens) {
      if (t.content.empty()) continue;
      std::int32_t id;
      if (auto it = added_ids_.find(t.content); it != added_ids_.end())
        id = it->second;
      else if (auto m = model_ids_.find(t.content); m != model_ids_.end())
        id = m->second;
      else
        id = next_id++;
      SC2_CHECK(id == t.id,
                "{}: added token '{}' is listed with id {}, but Hugging Face tokenizers gives it id {} (the "
                "vocabulary has {} entries)",
                source_, t.content, t.id, id, model_size);
      added_ids_[t.content] = id;
      by_id[id] = AddedToken{id, t.content, t.special, t.single_word, t.lstrip, t.rstrip, t.normalized};
      if (t.special) special_contents_.insert(t.content);
    }
    std::vector<detail::AddedTokenPattern> non_normalized, normalized;
    for (auto& [id, token] : by_id) {
      TokenEntry& e = entry(id);
      e.text = token.content;
      e.bytes = decoded_bytes(token.content);
      e.present = true;
      added_tokens_.push_back(token);
      (token.normalized ? normalized : non_normalized)
          .push_back({token.content, id, token.single_word, token.lstrip, token.rstrip});
    }
    std::sort(added_tokens_.begin(), added_tokens_.end(),
              [](const AddedToken& a, const AddedToken& b) { return a.id < b.id; });
    added_non_normalized_ = detail::AddedTokenMatcher(std::move(non_normalized));
    added_normalized_ = detail::AddedTokenMatcher(std::move(normalized));
    // decode's skip_special_tokens compares the token's text with the special contents.
    for (TokenEntry& e : tokens_) e.special = e.present && special_contents_.contains(e.text);
    std::unordered_set<std::string_view> distinct;
    for (const auto& [token, id] : model_ids_) distinct.insert(token);
    for (const auto& [content, id] : added_ids_) distinct.insert(content);
    vocab_size_ = distinct.size();
  }

  void append_token_bytes(std::string& out, std::int32_t id, DecodeOptions options) const {
    SC2_CHECK(has_id(id), "{}: cannot decode token id {}: it is not in the vocabulary (ids go up to {})", source_, id,
              tokens_.size() - 1);
    const TokenEntry& e = tokens_[static_cast<std::size_t>(id)];
    if (options.skip_special_tokens && e.special) return;
    out += e.bytes;
  }

  friend class DecodeStream;

  /// Runs Digits step `step` and the later ones on `part`, then ByteLevel and BPE.
  void pre_tokenize(std::size_t step, std::string_view part, const detail::CharClassTable& classes,
                    EncodeScratch& scratch, std::vector<std::int32_t>& ids) const {
    if (step < pre_tokenizer_.digits_steps.size()) {
      detail::split_digits(part, pre_tokenizer_.digits_steps[step], classes,
                           [&](std::string_view piece) { pre_tokenize(step + 1, piece, classes, scratch, ids); });
      return;
    }
    std::string_view subject = part;
    if (pre_tokenizer_.add_prefix_space && part.front() != ' ') {
      scratch.prefixed.assign(1, ' ');
      scratch.prefixed.append(part);
      subject = scratch.prefixed;
    }
    if (pre_tokenizer_.use_regex)
      detail::split_byte_level_regex(subject, classes, [&](std::string_view word) { encode_word(word, scratch, ids); });
    else
      encode_word(subject, scratch, ids);
  }

  /// BPE-encodes one pre-token (raw bytes), appending its ids.
  void encode_word(std::string_view word, EncodeScratch& scratch, std::vector<std::int32_t>& ids) const {
    if (word.size() == 1) {
      const std::int32_t id = byte_ids_[static_cast<unsigned char>(word[0])];
      if (id >= 0) {
        ids.push_back(id);
        return;
      }
    }
    if (ignore_merges_) {
      if (auto it = raw_ids_.find(word); it != raw_ids_.end()) {
        ids.push_back(it->second);
        return;
      }
    }
    const bool cacheable = word.size() < kLongestCachedWord;
    const std::uint64_t hash = cacheable ? detail::hash_bytes(word) : 0;
    if (cacheable) {
      bool found = false;
      std::span<const std::int32_t> cached = scratch.cache.find(word, hash, found);
      if (found) {
        ids.insert(ids.end(), cached.begin(), cached.end());
        return;
      }
    }
    std::vector<std::int32_t>& symbols = scratch.symbols;
    symbols.clear();
    initial_symbols(word, symbols);
    symbols.resize(detail::bpe_merge(symbols.data(), symbols.size(), merges_));
    ids.insert(ids.end(), symbols.begin(), symbols.end());
    if (cacheable) scratch.cache.insert(word, hash, symbols);
  }

  /// One symbol per byte, with the reference's unknown-character handling:
  /// byte fallback ("<0xXX>" tokens), else unk_token (fused when fuse_unk),
  /// else the byte is dropped.
  void initial_symbols(std::string_view word, std::vector<std::int32_t>& symbols) const {
    bool unk_pending = false;
    for (unsigned char b : word) {
      const std::int32_t id = byte_ids_[b];
      if (id >= 0) {
        if (unk_pending) symbols.push_back(unk_id_), unk_pending = false;
        symbols.push_back(id);
        continue;
      }
      // As in the reference, byte fallback tokens go in while an unk stays pending.
      if (!byte_fallback_ids_[b].empty()) {
        symbols.insert(symbols.end(), byte_fallback_ids_[b].begin(), byte_fallback_ids_[b].end());
        continue;
      }
      if (unk_id_ == kNoUnk) continue;
      SC2_CHECK(unk_id_ != kUnkNotInVocab, "{}: model.unk_token '{}' is not in model.vocab, and byte 0x{:02X} needs it",
                source_, unk_token_, static_cast<unsigned>(b));
      if (unk_pending && !fuse_unk_) symbols.push_back(unk_id_);
      unk_pending = true;
    }
    if (unk_pending) symbols.push_back(unk_id_);
  }

  std::string source_;
  detail::PreTokenizerConfig pre_tokenizer_;
  std::vector<TokenEntry> tokens_;  // by id
  StringToId model_ids_;
  StringToId added_ids_;
  StringToId raw_ids_;  // raw bytes -> id, for ignore_merges
  std::unordered_set<std::string> special_contents_;
  std::vector<AddedToken> added_tokens_;
  detail::AddedTokenMatcher added_non_normalized_;
  detail::AddedTokenMatcher added_normalized_;
  std::array<std::int32_t, 256> byte_ids_{};
  std::array<std::vector<std::int32_t>, 256> byte_fallback_ids_{};
  std::int32_t unk_id_ = kNoUnk;
  std::string unk_token_;
  bool fuse_unk_ = false;
  bool ignore_merges_ = false;
  detail::MergeTable merges_;
  std::size_t vocab_size_ = 0;
};

/// Decodes ids one at a time for streaming generation: `step` returns the text
/// that became complete, never part of a UTF-8 character; `flush` returns the
/// rest (an incomplete character as U+FFFD). The concatenation of everything
/// returned equals `Tokenizer::decode` of all the ids.
///
///     sc2::DecodeStream stream(tok);
///     for (std::int32_t id : generated) std::cout << stream.step(id) << std::flush;
///     std::cout << stream.flush();
class DecodeStream {
public:
  /// A stream over `tokenizer`, which must outlive it.
  explicit DecodeStream(const Tokenizer& tokenizer, DecodeOptions options = {})
      : tokenizer_(&tokenizer), options_(options) {}

  /// Adds one id; returns the text it completes (often empty, at most a few characters).
  std::string step(std::int32_t id) {
    std::string text;
    step(id, text);
    return text;
  }
  /// Adds one id and appends the text it completes to `out` (no allocation once `out` has room).
  void step(std::int32_t id, std::string& out) {
    tokenizer_->append_token_bytes(pending_, id, options_);
    const std::size_t consumed = detail::append_utf8_lossy(out, pending_, /*at_end=*/false);
    pending_.erase(0, consumed);
  }

  /// Returns whatever is pending, an incomplete final character as U+FFFD, and starts afresh.
  std::string flush() {
    std::string text;
    flush(text);
    return text;
  }
  /// Appends whatever is pending to `out`, as `flush()` returns it.
  void flush(std::string& out) {
    detail::append_utf8_lossy(out, pending_, /*at_end=*/true);
    pending_.clear();
  }

  /// Bytes held back because they may be the start of a character.
  std::size_t pending_bytes() const noexcept { return pending_.size(); }

private:
  const Tokenizer* tokenizer_;
  DecodeOptions options_;
  std::string pending_;
};

}  // namespace sc2
