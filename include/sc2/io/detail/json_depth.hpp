#pragma once
/// \file
/// A bound on the nesting of the JSON documents sc2 reads.
///
/// nlohmann::json parses iteratively, but printing a value (`dump()`, which
/// error messages use) and walking it recurse once per level, so a hostile
/// file of a few hundred kilobytes of `[[[[...` would overflow the stack.
/// config.json, tokenizer.json and safetensors headers nest a handful of
/// levels; every reader refuses documents deeper than `kMaxJsonDepth` before
/// parsing them.

#include <cstddef>
#include <string_view>

namespace sc2::detail {

/// Deepest nesting of arrays and objects accepted in a JSON document.
inline constexpr std::size_t kMaxJsonDepth = 128;

/// True when `text` opens more than `limit` arrays or objects inside one
/// another (brackets inside strings do not count). Exact for valid JSON; text
/// that is not JSON is refused by the parser whichever answer this gives.
inline bool json_nested_deeper_than(std::string_view text, std::size_t limit = kMaxJsonDepth) noexcept {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        ++i;  // the escaped character cannot end the string
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace sc2::detail
