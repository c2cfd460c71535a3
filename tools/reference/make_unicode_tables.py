#!/usr/bin/env python3
"""Generate include/sc2/tokenizer/detail/unicode_tables.hpp: the character classes the
byte-level BPE tokenizer needs, exactly as the Hugging Face `tokenizers`
package (0.23.3, the reference) sees them.

Three engines inside `tokenizers` classify characters, and they do not all use
the same Unicode version (found by probing the package, see --verify):

  * The ByteLevel split regex runs on Oniguruma (the `onig` crate, the default
    `SysRegex` of the `tokenizers` crate; the Python wheel is built with it).
    Its `\\p{L}` and `\\p{N}` are General_Category L* and N* of Unicode 16.0.0,
    and `\\s` is the White_Space property.
  * The Digits pre-tokenizer uses Rust's `char::is_numeric` (General_Category
    Nd|Nl|No) from the Rust standard library the wheel was built with:
    Unicode 17.0.0.
  * Added tokens' `single_word`, `lstrip` and `rstrip` use the Rust `regex`
    crate: `\\w` (Alphabetic | M | Nd | Pc | Join_Control) of Unicode 16.0.0 and
    `\\s` (White_Space).

Pinned sources (PyPI):
  * unicodedata2==16.0.0 -- the Unicode 16.0.0 Character Database's
    General_Category (UnicodeData.txt);
  * regex==2026.5.9 -- whose property tables are Unicode 17.0.0: White_Space,
    Alphabetic, Join_Control and the 17.0.0 General_Category. Where a Unicode
    16.0.0 property is needed from it, it is restricted to the code points
    assigned in 16.0.0 (by unicodedata2); --verify proves this equals what
    `tokenizers` does.

    pip install unicodedata2==16.0.0 regex==2026.5.9
    python3 tools/reference/make_unicode_tables.py            # writes the header
    python3 tools/reference/make_unicode_tables.py --verify   # also checks every code
                                                    # point against tokenizers
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import regex
import unicodedata2

UCD_VERSION = "16.0.0"
REGEX_VERSION = "2026.5.9"
TOKENIZERS_VERSION = "0.23.3"

# Bits of the class byte, mirrored by sc2::detail::CharClass in the header.
LETTER = 1  # Oniguruma \p{L}, Unicode 16.0.0
NUMBER = 2  # Oniguruma \p{N}, Unicode 16.0.0
SPACE = 4  # White_Space: Oniguruma \s, Rust regex \s, char::is_whitespace
NUMERIC = 8  # Rust char::is_numeric, Unicode 17.0.0
WORD = 16  # Rust regex \w, Unicode 16.0.0

CODE_POINTS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
ROOT = pathlib.Path(__file__).resolve().parents[2]
OUTPUT = ROOT / "include" / "sc2" / "io" / "detail" / "unicode_tables.hpp"


def regex_set(pattern: str) -> set[int]:
    text = "".join(map(chr, CODE_POINTS))
    return {ord(m.group()) for m in regex.finditer(pattern, text)}


def compute_flags() -> list[int]:
    if unicodedata2.unidata_version != UCD_VERSION:
        sys.exit(f"need unicodedata2 with Unicode {UCD_VERSION}, found {unicodedata2.unidata_version}")
    if regex.__version__ != REGEX_VERSION:
        sys.exit(f"need regex=={REGEX_VERSION} (Unicode 17.0.0 tables), found {regex.__version__}")
    # U+11DE0 TOLONG SIKI DIGIT ZERO is new in Unicode 17.0.0.
    if not regex.fullmatch(r"\p{N}", "\U00011DE0"):
        sys.exit("the regex module does not carry Unicode 17.0.0 tables")

    category = {c: unicodedata2.category(chr(c)) for c in CODE_POINTS}
    assigned16 = {c for c, cat in category.items() if cat != "Cn"}
    numeric17 = regex_set(r"\p{N}")
    white_space = regex_set(r"\p{White_Space}")
    word17 = regex_set(r"[\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]")
    # Consistency of the two sources on what they share.
    letters17 = regex_set(r"\p{L}")
    letters16 = {c for c, cat in category.items() if cat.startswith("L")}
    if letters17 & assigned16 != letters16:
        sys.exit("unicodedata2 16.0.0 and regex disagree on \\p{L} for Unicode 16.0.0 code points")

    flags = [0] * 0x110000
    for c in CODE_POINTS:
        cat = category[c]
        f = 0
        if cat.startswith("L"):
            f |= LETTER
        if cat.startswith("N"):
            f |= NUMBER
        if c in white_space:
            f |= SPACE
        if c in numeric17:
            f |= NUMERIC
        if c in word17 and c in assigned16:
            f |= WORD
        flags[c] = f
    return flags


def verify_against_tokenizers(flags: list[int]) -> None:
    """Probe every code point through `tokenizers` and compare, class by class."""
    import tokenizers
    from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

    if tokenizers.__version__ != TOKENIZERS_VERSION:
        print(f"warning: probing tokenizers {tokenizers.__version__}, tables target {TOKENIZERS_VERSION}")

    def onig(pattern: str) -> set[int]:
        splitter = pre_tokenizers.Split(Regex(pattern), behavior="removed")
        kept = set()
        for _, (a, b) in splitter.pre_tokenize_str("".join(map(chr, CODE_POINTS))):
            kept.update(CODE_POINTS[a:b])
        return set(CODE_POINTS) - kept

    def digits() -> set[int]:
        pieces = pre_tokenizers.Digits(individual_digits=True).pre_tokenize_str("a".join(map(chr, CODE_POINTS)))
        return {CODE_POINTS[a // 2] for _, (a, b) in pieces if b - a == 1 and a % 2 == 0}

    def rust_word() -> set[int]:
        # An added token with single_word only matches after a non-word character.
        tok = Tokenizer(models.BPE())
        tok.add_tokens([AddedToken("\x00", single_word=True, normalized=False)])
        enc = tok.encode("".join(chr(c) + "\x00 " for c in CODE_POINTS if c != 0))
        matched = {o[0] // 3 for o in enc.offsets}
        probed = [c for c in CODE_POINTS if c != 0]
        return {probed[i] for i in range(len(probed)) if i not in matched}

    def rust_space() -> set[int]:
        # lstrip swallows the white space before an added token.
        tok = Tokenizer(models.BPE())
        tok.add_tokens([AddedToken("\x00", lstrip=True, normalized=False)])
        probed = [c for c in CODE_POINTS if c not in (0, ord("."))]
        enc = tok.encode("".join("." + chr(c) + "\x00" for c in probed))
        return {probed[o[0] // 3] for o in enc.offsets if o[0] % 3 == 1}

    def ours(bit: int, exclude=()) -> set[int]:
        return {c for c in CODE_POINTS if flags[c] & bit and c not in exclude}

    checks = [
        ("Oniguruma \\p{L}", onig(r"\p{L}"), ours(LETTER)),
        ("Oniguruma \\p{N}", onig(r"\p{N}"), ours(NUMBER)),
        ("Oniguruma \\s", onig(r"\s"), ours(SPACE)),
        ("Digits char::is_numeric", digits(), ours(NUMERIC)),
        ("added-token \\w", rust_word(), ours(WORD, exclude=(0,))),
        ("added-token \\s", rust_space(), ours(SPACE, exclude=(0, ord(".")))),
    ]
    failed = False
    for name, reference, table in checks:
        extra, missing = sorted(table - reference), sorted(reference - table)
        status = "ok" if not extra and not missing else "MISMATCH"
        failed |= status != "ok"
        print(f"{status:8} {name}: {len(reference)} code points"
              + (f"; only in table {[hex(c) for c in extra[:8]]}, only in tokenizers {[hex(c) for c in missing[:8]]}"
                 if status != "ok" else ""))
    if failed:
        sys.exit("tables do not match tokenizers")


def runs(flags: list[int]) -> list[tuple[int, int]]:
    out = []
    for c in range(0x110000):
        if not out or out[-1][1] != flags[c]:
            out.append((c, flags[c]))
    return out


def render(flags: list[int]) -> str:
    table = runs(flags)
    ascii_row = "\n".join("    " + " ".join(f"{flags[c]}," for c in range(row, row + 16)) for row in range(0, 128, 16))
    body = []
    line = "   "
    for first, f in table:
        item = f" {{0x{first:X}, {f}}},"
        if len(line) + len(item) > 100:
            body.append(line)
            line = "   "
        line += item
    body.append(line)
    return f"""#pragma once
/// \\file
/// Unicode character classes of the byte-level BPE tokenizer. GENERATED by
/// tools/reference/make_unicode_tables.py -- do not edit; rerun the script instead.
///
/// The classes reproduce Hugging Face `tokenizers` {TOKENIZERS_VERSION} code point for
/// code point (the script's --verify mode probes all 1,112,064 scalar values):
///   kLetter  Oniguruma \\p{{L}} of the ByteLevel split regex: General_Category
///            L*, Unicode 16.0.0 (the Oniguruma bundled by the `onig` crate).
///   kNumber  Oniguruma \\p{{N}}: General_Category N*, Unicode 16.0.0.
///   kSpace   White_Space: Oniguruma \\s, and \\s of the Rust `regex` crate used
///            by added tokens' lstrip/rstrip (unchanged since Unicode 6.3).
///   kNumeric Rust char::is_numeric of the Digits pre-tokenizer: N*, Unicode
///            17.0.0 (the Rust standard library the wheel was built with).
///   kWord    Rust `regex` crate \\w of added tokens' single_word: Alphabetic |
///            M | Nd | Pc | Join_Control, Unicode 16.0.0.
///
/// Sources, pinned: unicodedata2=={UCD_VERSION} (Unicode {UCD_VERSION} General_Category)
/// and regex=={REGEX_VERSION} (Unicode 17.0.0 White_Space, Alphabetic, Join_Control,
/// General_Category), both from PyPI.
///
/// Layout: `kAsciiClasses` for U+0000..U+007F and `kClassRuns`, the whole code
/// space as runs (first code point, class bits), sorted by first code point.

#include <array>
#include <cstdint>

namespace sc2::detail {{

/// Bits of a code point's class byte.
enum CharClass : std::uint8_t {{
  kLetter = {LETTER},
  kNumber = {NUMBER},
  kSpace = {SPACE},
  kNumeric = {NUMERIC},
  kWord = {WORD},
}};

/// One run of code points sharing the same class bits, from `first` to the next run.
struct CharClassRun {{
  char32_t first;
  std::uint8_t classes;
}};

/// Class bits of U+0000..U+007F.
inline constexpr std::array<std::uint8_t, 128> kAsciiClasses = {{
{ascii_row}
}};

/// Class bits of every code point as {len(table)} runs.
inline constexpr std::array<CharClassRun, {len(table)}> kClassRuns = {{{{
{chr(10).join(body)}
}}}};

}}  // namespace sc2::detail
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verify", action="store_true", help="probe every code point through `tokenizers`")
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    args = parser.parse_args()
    flags = compute_flags()
    if args.verify:
        verify_against_tokenizers(flags)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(render(flags))
    print(f"wrote {args.output} ({len(runs(flags))} runs)")


if __name__ == "__main__":
    main()
