#pragma once
/// \file
/// The byte-level pieces of the tokenizer: GPT-2's byte <-> character
/// alphabet, the character classes of `unicode_tables.hpp` behind an O(1)
/// lookup, and the two splitters of the pre-tokenizer.
///
/// `split_byte_level_regex` is a hand-written scanner for the fixed pattern
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// with Oniguruma's semantics (leftmost alternative first, greedy runs with
/// backtracking), which the ByteLevel pre-tokenizer of Hugging Face
/// `tokenizers` runs. Every character is a letter, a number, white space or
/// "other", so the matches tile the input: there is never a gap. At a position:
///   1. an apostrophe followed by s, t, m, d, re, ve or ll (ASCII, lower case)
///      is a contraction;
///   2. otherwise an optional U+0020 then a run of letters, of numbers or of
///      "other" characters, the class taken from the first character after the
///      optional space;
///   3. otherwise a run of white space: all of it at the end of the input; all
///      but its last character when more than one and followed by a
///      non-space (`\s+(?!\S)` backtracks one character); else all of it.
/// `split_digits` is the Digits pre-tokenizer (Rust `char::is_numeric`).

#include <sc2/tokenizer/detail/unicode_tables.hpp>
#include <sc2/tokenizer/detail/utf8.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

namespace sc2::detail {

/// GPT-2's reversible map from the 256 byte values to printable characters:
/// '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF map to themselves, the other 68
/// bytes to U+0100.. in increasing byte order (so ' ' is U+0120 'Ġ').
struct ByteAlphabet {
  std::array<char32_t, 256> byte_to_char{};
  std::array<std::int16_t, 0x144> char_to_byte{};  ///< -1 where the character is not in the alphabet

  /// The byte a character stands for, or -1.
  constexpr int byte_of(char32_t c) const noexcept { return c < char_to_byte.size() ? char_to_byte[c] : -1; }
};

/// Builds GPT-2's `bytes_to_unicode` table.
constexpr ByteAlphabet make_byte_alphabet() {
  ByteAlphabet alphabet;
  auto printable = [](unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE; };
  char32_t next = 0x100;
  for (unsigned b = 0; b < 256; ++b) alphabet.byte_to_char[b] = printable(b) ? char32_t(b) : next++;
  for (auto& v : alphabet.char_to_byte) v = -1;
  for (unsigned b = 0; b < 256; ++b) alphabet.char_to_byte[alphabet.byte_to_char[b]] = static_cast<std::int16_t>(b);
  return alphabet;
}

/// The byte alphabet, built at compile time.
inline constexpr ByteAlphabet kByteAlphabet = make_byte_alphabet();

/// Class bits (`CharClass`) of any code point: a 64 KiB table for the Basic
/// Multilingual Plane, a binary search over `kClassRuns` above it.
class CharClassTable {
public:
  CharClassTable() : bmp_(std::make_unique<std::uint8_t[]>(0x10000)) {
    for (std::size_t r = 0; r < kClassRuns.size(); ++r) {
      const char32_t first = kClassRuns[r].first;
      if (first >= 0x10000) break;
      const char32_t last = r + 1 < kClassRuns.size() ? std::min<char32_t>(kClassRuns[r + 1].first, 0x10000) : 0x10000;
      std::fill(bmp_.get() + first, bmp_.get() + last, kClassRuns[r].classes);
    }
  }

  /// Class bits of `cp`.
  std::uint8_t operator()(char32_t cp) const noexcept {
    if (cp < 0x10000) return bmp_[cp];
    auto it = std::upper_bound(kClassRuns.begin(), kClassRuns.end(), cp,
                               [](char32_t c, const CharClassRun& run) { return c < run.first; });
    return std::prev(it)->classes;
  }

  /// Class bits of the character at `p` (valid UTF-8); stores its length in `length`.
  std::uint8_t at(const unsigned char* p, std::size_t& length) const noexcept {
    if (*p < 0x80) {
      length = 1;
      return kAsciiClasses[*p];
    }
    const Utf8Char c = decode_utf8(p);
    length = c.length;
    return (*this)(c.code_point);
  }

private:
  std::unique_ptr<std::uint8_t[]> bmp_;
};

/// The process-wide class table, built on first use.
inline const CharClassTable& char_classes() {
  static const CharClassTable table;
  return table;
}

/// Splits `piece` (valid UTF-8) as the ByteLevel regex does; calls `emit(std::string_view)` per match.
template <class Emit>
void split_byte_level_regex(std::string_view piece, const CharClassTable& classes, Emit&& emit) {
  enum Kind : std::uint8_t { kOther, kLetterRun, kNumberRun, kSpaceRun };
  auto kind_of = [](std::uint8_t bits) -> Kind {
    if (bits & kLetter) return kLetterRun;
    if (bits & kNumber) return kNumberRun;
    if (bits & kSpace) return kSpaceRun;
    return kOther;
  };
  const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
  const std::size_t n = piece.size();
  auto kind_at = [&](std::size_t i, std::size_t& length) -> Kind {
    if (s[i] < 0x80) {
      length = 1;
      return kind_of(kAsciiClasses[s[i]]);
    }
    return kind_of(classes.at(s + i, length));
  };
  auto match = [&](std::size_t begin, std::size_t end) { emit(piece.substr(begin, end - begin)); };

  std::size_t i = 0;
  while (i < n) {
    const unsigned char c = s[i];
    if (c == '\'' && i + 1 < n) {
      const unsigned char d = s[i + 1];
      std::size_t length = 0;
      if (d == 's' || d == 't' || d == 'm' || d == 'd') {
        length = 2;
      } else if (i + 2 < n) {
        const unsigned char e = s[i + 2];
        if ((d == 'r' && e == 'e') || (d == 'v' && e == 'e') || (d == 'l' && e == 'l')) length = 3;
      }
      if (length != 0) {
        match(i, i + length);
        i += length;
        continue;
      }
    }
    std::size_t length = 0;
    const Kind kind = kind_at(i, length);
    // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: the optional space, then a run.
    std::size_t run_start = i;
    Kind run_kind = kind;
    std::size_t run_length = length;
    if (c == ' ' && i + 1 < n) {
      std::size_t next_length = 0;
      const Kind next_kind = kind_at(i + 1, next_length);
      if (next_kind != kSpaceRun) run_start = i + 1, run_kind = next_kind, run_length = next_length;
    }
    if (run_kind != kSpaceRun) {
      std::size_t j = run_start + run_length;
      while (j < n) {
        if (s[j] < 0x80) {
          if (kind_of(kAsciiClasses[s[j]]) != run_kind) break;
          ++j;
          continue;
        }
        std::size_t l = 0;
        if (kind_at(j, l) != run_kind) break;
        j += l;
      }
      match(i, j);
      i = j;
      continue;
    }
    // `\s+(?!\S)|\s+`
    std::size_t j = i + length;
    std::size_t last = i;  // start of the run's last character
    while (j < n) {
      std::size_t l = 0;
      if (kind_at(j, l) != kSpaceRun) break;
      last = j;
      j += l;
    }
    const std::size_t end = (j == n || last == i) ? j : last;
    match(i, end);
    i = end;
  }
}

/// The Digits pre-tokenizer on `piece` (valid UTF-8): numeric characters (Rust
/// `char::is_numeric`) are split from the rest, each alone when `individual`,
/// else in runs. Calls `emit(std::string_view)` per non-empty part.
template <class Emit>
void split_digits(std::string_view piece, bool individual, const CharClassTable& classes, Emit&& emit) {
  const auto* s = reinterpret_cast<const unsigned char*>(piece.data());
  const std::size_t n = piece.size();
  std::size_t start = 0;
  bool in_numeric_run = false;
  std::size_t i = 0;
  while (i < n) {
    std::size_t length = 1;
    const bool numeric = s[i] < 0x80 ? (s[i] >= '0' && s[i] <= '9') : (classes.at(s + i, length) & kNumeric) != 0;
    if (numeric) {
      if (i > start && (!in_numeric_run || individual)) emit(piece.substr(start, i - start)), start = i;
      in_numeric_run = true;
    } else if (in_numeric_run) {
      emit(piece.substr(start, i - start));
      start = i;
      in_numeric_run = false;
    }
    i += length;
  }
  if (n > start) emit(piece.substr(start, n - start));
}

}  // namespace sc2::detail
