#pragma once
/// \file
/// Finding added tokens in raw text, as `AddedVocabulary::find_matches` of
/// Hugging Face `tokenizers` does:
///   * leftmost-longest matching of the token contents (the reference uses a
///     daachorse Aho-Corasick automaton with MatchKind::LeftmostLongest), the
///     search resuming after each match, whether kept or not;
///   * `single_word`: a match is dropped when the character before it or the
///     one after it is a word character (Rust `regex` `\w`);
///   * `lstrip`: the match takes in the white space before it, but not past
///     the end of the previous match; `rstrip`: the white space after it.
/// The text between matches is returned as plain splits, which are
/// pre-tokenized and BPE-encoded.

#include <sc2/core/error.hpp>
#include <sc2/tokenizer/detail/byte_level.hpp>
#include <sc2/tokenizer/detail/utf8.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace sc2::detail {

/// An added token as the matcher needs it.
struct AddedTokenPattern {
  std::string content;
  std::int32_t id;
  bool single_word;
  bool lstrip;
  bool rstrip;
};

/// A piece of the input: an added token (`id >= 0`) or plain text (`id < 0`), as byte offsets.
struct TextSplit {
  std::int32_t id;
  std::size_t begin;
  std::size_t end;
};

/// Leftmost-longest matcher over a set of added tokens.
class AddedTokenMatcher {
public:
  AddedTokenMatcher() = default;

  /// Builds the matcher; patterns with empty content are ignored (the reference skips them).
  explicit AddedTokenMatcher(std::vector<AddedTokenPattern> patterns) : patterns_(std::move(patterns)) {
    std::erase_if(patterns_, [](const AddedTokenPattern& p) { return p.content.empty(); });
    // Longest first, so the first candidate that matches at a position is the longest.
    std::stable_sort(patterns_.begin(), patterns_.end(), [](const AddedTokenPattern& a, const AddedTokenPattern& b) {
      return a.content.size() > b.content.size();
    });
    for (std::size_t i = 0; i < patterns_.size(); ++i) {
      const auto first = static_cast<unsigned char>(patterns_[i].content[0]);
      by_first_byte_[first].push_back(static_cast<std::uint32_t>(i));
      starts_[first] = true;
    }
  }

  /// Whether there is no pattern.
  bool empty() const noexcept { return patterns_.empty(); }

  /// Appends the splits of `sentence` (valid UTF-8), offsets shifted by `base`.
  /// `source` names the tokenizer file in errors.
  void find_matches(std::string_view sentence, std::size_t base, const CharClassTable& classes,
                    std::vector<TextSplit>& out, std::string_view source) const {
    const std::size_t n = sentence.size();
    if (patterns_.empty() || n == 0) {
      out.push_back({-1, base, base + n});
      return;
    }
    const auto* s = reinterpret_cast<const unsigned char*>(sentence.data());
    std::size_t start_offset = 0;
    std::size_t position = 0;
    while (position < n) {
      if (!starts_[s[position]]) {
        ++position;
        continue;
      }
      const AddedTokenPattern* found = nullptr;
      for (std::uint32_t index : by_first_byte_[s[position]]) {
        const AddedTokenPattern& p = patterns_[index];
        if (p.content.size() <= n - position && std::memcmp(s + position, p.content.data(), p.content.size()) == 0) {
          found = &p;
          break;
        }
      }
      if (found == nullptr) {
        ++position;
        continue;
      }
      std::size_t start = position;
      std::size_t stop = position + found->content.size();
      position = stop;
      if (found->single_word) {
        const bool space_before = start == 0 || !(classes(decode_utf8(previous_utf8(s, s + start)).code_point) & kWord);
        const bool space_after = stop == n || !(classes(decode_utf8(s + stop).code_point) & kWord);
        if (!space_before || !space_after) continue;
      }
      if (found->lstrip) {
        std::size_t new_start = start;
        while (new_start > 0) {
          const unsigned char* c = previous_utf8(s, s + new_start);
          if (!(classes(decode_utf8(c).code_point) & kSpace)) break;
          new_start = static_cast<std::size_t>(c - s);
        }
        start = std::max(new_start, start_offset);
      }
      if (found->rstrip) {
        while (stop < n) {
          const Utf8Char c = decode_utf8(s + stop);
          if (!(classes(c.code_point) & kSpace)) break;
          stop += c.length;
        }
      }
      // The reference slices (start, stop) here and panics when start > stop: an
      // all-white-space added token inside what a previous rstrip took in.
      SC2_CHECK(start <= stop,
                "{}: added token '{}' matched inside the white space the previous added token strips "
                "(Hugging Face tokenizers fails on this input too)",
                source, found->content);
      if (start_offset < start) out.push_back({-1, base + start_offset, base + start});
      out.push_back({found->id, base + start, base + stop});
      start_offset = stop;
    }
    if (start_offset != n) out.push_back({-1, base + start_offset, base + n});
  }

private:
  std::vector<AddedTokenPattern> patterns_;
  std::array<std::vector<std::uint32_t>, 256> by_first_byte_{};
  std::array<bool, 256> starts_{};
};

}  // namespace sc2::detail
