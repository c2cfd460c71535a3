#pragma once
/// \file
/// UTF-8 helpers of the tokenizer: validation with the offset of the first bad
/// byte, decoding of already validated text, and the lossy conversion Rust's
/// `String::from_utf8_lossy` performs (which is what Hugging Face `tokenizers`
/// applies to decoded bytes): each maximal subpart of an ill-formed sequence
/// becomes one U+FFFD, as the Unicode standard (chapter 3, "U+FFFD
/// Substitution of Maximal Subparts") recommends.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace sc2::detail {

/// What `examine_utf8` found at the start of a byte range.
struct Utf8Sequence {
  enum Kind : std::uint8_t {
    kComplete,   ///< a well-formed character of `length` bytes
    kIllFormed,  ///< `length` bytes (a maximal subpart, at least 1) to replace by one U+FFFD
    kTruncated,  ///< the range ends inside a character that could still be completed
  };
  Kind kind;
  std::size_t length;
};

/// Classifies the sequence starting at `p`, of which `available` (>= 1) bytes exist.
inline Utf8Sequence examine_utf8(const unsigned char* p, std::size_t available) noexcept {
  const unsigned lead = p[0];
  if (lead < 0x80) return {Utf8Sequence::kComplete, 1};
  std::size_t continuation = 0;
  unsigned low = 0x80;
  unsigned high = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    continuation = 1;
  } else if (lead == 0xE0) {
    continuation = 2, low = 0xA0;
  } else if ((lead >= 0xE1 && lead <= 0xEC) || lead == 0xEE || lead == 0xEF) {
    continuation = 2;
  } else if (lead == 0xED) {
    continuation = 2, high = 0x9F;  // no surrogates
  } else if (lead == 0xF0) {
    continuation = 3, low = 0x90;
  } else if (lead >= 0xF1 && lead <= 0xF3) {
    continuation = 3;
  } else if (lead == 0xF4) {
    continuation = 3, high = 0x8F;  // nothing above U+10FFFF
  } else {
    return {Utf8Sequence::kIllFormed, 1};
  }
  for (std::size_t i = 1; i <= continuation; ++i) {
    if (i >= available) return {Utf8Sequence::kTruncated, available};
    const unsigned byte = p[i];
    if (byte < low || byte > high) return {Utf8Sequence::kIllFormed, i};
    low = 0x80;
    high = 0xBF;
  }
  return {Utf8Sequence::kComplete, continuation + 1};
}

/// Byte offset of the first byte that is not part of a well-formed character, or npos.
inline std::size_t find_invalid_utf8(std::string_view text) noexcept {
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  std::size_t i = 0;
  while (i < n) {
    // ASCII eight bytes at a time.
    while (i + 8 <= n) {
      std::uint64_t word = 0;
      for (int k = 0; k < 8; ++k) word |= static_cast<std::uint64_t>(p[i + k]) << (8 * k);
      if (word & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    const Utf8Sequence seq = examine_utf8(p + i, n - i);
    if (seq.kind != Utf8Sequence::kComplete) return i;
    i += seq.length;
  }
  return std::string_view::npos;
}

/// A decoded character: its code point and its length in bytes.
struct Utf8Char {
  char32_t code_point;
  std::uint32_t length;
};

/// Decodes the character at `p` of text already known to be valid UTF-8.
inline Utf8Char decode_utf8(const unsigned char* p) noexcept {
  const unsigned lead = p[0];
  if (lead < 0x80) return {lead, 1};
  if (lead < 0xE0) return {((lead & 0x1Fu) << 6) | (p[1] & 0x3Fu), 2};
  if (lead < 0xF0) return {((lead & 0x0Fu) << 12) | ((p[1] & 0x3Fu) << 6) | (p[2] & 0x3Fu), 3};
  return {((lead & 0x07u) << 18) | ((p[1] & 0x3Fu) << 12) | ((p[2] & 0x3Fu) << 6) | (p[3] & 0x3Fu), 4};
}

/// Start of the character that ends at `end` (exclusive), in valid UTF-8 starting at `begin`.
inline const unsigned char* previous_utf8(const unsigned char* begin, const unsigned char* end) noexcept {
  const unsigned char* p = end - 1;
  while (p > begin && (*p & 0xC0u) == 0x80u) --p;
  return p;
}

/// Appends the UTF-8 encoding of a Unicode scalar value.
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

/// U+FFFD REPLACEMENT CHARACTER in UTF-8.
inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";

/// Appends `bytes` to `out` as valid UTF-8, each maximal ill-formed subpart
/// replaced by U+FFFD. When `at_end` is false, a trailing incomplete character
/// is left unconsumed (more bytes may complete it); when true it becomes one
/// U+FFFD. Returns the number of bytes consumed.
inline std::size_t append_utf8_lossy(std::string& out, std::string_view bytes, bool at_end) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t n = bytes.size();
  std::size_t i = 0;
  std::size_t run = 0;  // start of the pending well-formed run
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const Utf8Sequence seq = examine_utf8(p + i, n - i);
    if (seq.kind == Utf8Sequence::kComplete) {
      i += seq.length;
      continue;
    }
    out.append(bytes.data() + run, i - run);
    if (seq.kind == Utf8Sequence::kTruncated && !at_end) return i;
    out += kReplacementCharacter;
    i += seq.length;
    run = i;
  }
  out.append(bytes.data() + run, n - run);
  return n;
}

}  // namespace sc2::detail
