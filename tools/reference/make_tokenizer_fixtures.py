#!/usr/bin/env python3
"""Dump reference token ids from Hugging Face `tokenizers` into
tests/fixtures/tokenizer/, for tests/tokenizer/tokenizer_test.cpp.

Writes:
  * gpt2_style_tokenizer.json -- a second small byte-level BPE in GPT-2's shape:
    plain ByteLevel(add_prefix_space=True) pre-tokenizer, merges in the
    ["a", "b"] pair form that current `tokenizers` writes, and added tokens with
    every flag (special, single_word, lstrip, rstrip, normalized);
  * reference.json -- the test texts and, for each tokenizer configuration, the
    ids `Tokenizer.encode(text).ids` gives, plus the decoded strings where they
    differ from the text:

    {"tokenizers_version": "0.23.3",
     "texts": [{"name": ..., "text": ...}, ...],
     "tokenizers": [{"name": ..., "file": path from the repo root, or "json": {...},
                     "patch": RFC 7386 merge patch applied to the file's JSON or null,
                     "vocab_size": ..., "special_tokens": {content: id},
                     "ids": {"<text index>": [ids]},
                     "decoded": {"<text index>": text} (only where decode(ids) != text),
                     "decoded_skip_special": {...} (only where it differs from "decoded")}]}

Run after tools/training/train_tokenizer.py:

    python3 tools/reference/make_tokenizer_fixtures.py
"""

from __future__ import annotations

import copy
import json
import pathlib
import random
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
from corpus import corpus_files, corpus_texts, read_text  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "tokenizer"
SC2_TINY = "models/sc2-tiny/tokenizer.json"
GPT2_STYLE = "tests/fixtures/tokenizer/gpt2_style_tokenizer.json"

# ----------------------------------------------------------------------------- texts

CODE = {
    "python": '''import os, sys
from typing import Optional

class Cache(dict):
    """A tiny LRU-ish cache."""
    def __init__(self, capacity: int = 128) -> None:
        super().__init__()
        self.capacity = capacity

    def get_or(self, key, default=None):
        return self[key] if key in self else default

def main(argv: list[str]) -> int:
    x = 3.14159e-10 + 0x1F - 0o17 + 1_000_000
    print(f"{x!r:>10} {argv[1:]}", file=sys.stderr)
    return 0 if x else 1
''',
    "c": '''#include <stdio.h>
#include <stdint.h>

/* Sum of a buffer. */
static uint64_t sum(const uint8_t *p, size_t n) {
\tuint64_t s = 0;
\tfor (size_t i = 0; i < n; ++i) s += p[i];
\treturn s;
}

int main(int argc, char **argv) {
\tprintf("%s: %llu\\n", argv[0], (unsigned long long)sum((const uint8_t *)"abc", 3));
\treturn argc > 1 ? 0 : -1;
}
''',
    "cpp": '''template <class T, std::size_t N>
constexpr auto make_array(const T (&init)[N]) -> std::array<T, N> {
  std::array<T, N> out{};
  for (std::size_t i = 0; i < N; ++i) out[i] = init[i];
  return out;
}
namespace sc2::detail { inline int f() noexcept { return 42'000; } }  // C++14 digit separator
std::vector<std::map<std::string, int>> v{{{"a", 1}}};
auto lambda = [&](auto&&... xs) { return (xs + ...); };
''',
    "rust": '''use std::collections::HashMap;

#[derive(Debug, Clone)]
pub struct Token<'a> { text: &'a str, id: u32 }

fn count<'a>(words: &[&'a str]) -> HashMap<&'a str, usize> {
    let mut m = HashMap::new();
    for w in words { *m.entry(*w).or_insert(0usize) += 1; }
    m
}
fn main() { println!("{:?}", count(&["a", "b", "a"])); let _x: i64 = -9_223_372_036_854_775_808; }
''',
    "javascript": '''const fetchJson = async (url, { retries = 3 } = {}) => {
  for (let i = 0; i < retries; i++) {
    try { const r = await fetch(url); return await r.json(); }
    catch (e) { console.error(`attempt ${i + 1}/${retries}:`, e?.message ?? e); }
  }
  return null;
};
export default fetchJson; // ES2020 ?. and ??
let re = /^[a-z]+\\d{2,}$/gi, n = 0b1010n ** 3n;
''',
    "shell": '''#!/usr/bin/env bash
set -euo pipefail
for f in "$@"; do
  if [[ -f "$f" ]]; then wc -l -- "$f" | awk '{print $1}'; fi
done 2>&1 | sort -n | tail -n 3
echo "${HOME:-/root}" $((1 + 2 * 3)) $'tab\\there'
''',
    "sql": '''SELECT u.id, u.name, COUNT(o.id) AS orders
FROM users u LEFT JOIN orders o ON o.user_id = u.id
WHERE u.created_at >= '2024-01-01' AND u.name NOT LIKE '%test%'
GROUP BY u.id, u.name HAVING COUNT(o.id) > 10 ORDER BY orders DESC LIMIT 50;
''',
    "html": '''<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>T&amp;C &lt;draft&gt;</title></head>
<body><div class="a b" data-x='1'><p>Hello,&nbsp;<b>world</b>!</p><!-- comment --></div>
<script>document.querySelector("p").textContent += " \\u00e9";</script></body></html>
''',
    "markdown_and_json": '''# Title
* item `code` and **bold** _it_
{"key": [1, 2.5, -3e+8, true, null], "nested": {"ü": "\\u00fc"}}
''',
}

SPACES = "\u00a0\u1680\u180e\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000\u0085\ufeff\u200b"

TEXTS: list[tuple[str, str]] = [
    ("empty", ""),
    ("single space", " "),
    ("single letter", "a"),
    ("hello world", "Hello world"),
    ("tiny words", "ba ab abc cab ba bab aba x xa ab\u00e9 \u00e9\u00e9 \u00a9 a\u00c3 ba"),
    *[(f"code {k}", v) for k, v in CODE.items()],
    ("crlf mixed", "line one\r\nline two\nline three\r\n\r\n  indented\r\n\tTabbed\r\r\n"),
    ("space runs", "a  b   c    d\n\n\nend     \n" + " " * 40 + "x" + " " * 17),
    ("tabs and newlines", "\t\t\tx\n\t\n\t\t\n\n\n\n    \t  \n" + "\t" * 13 + "\n" * 9),
    ("trailing spaces", "text   "),
    ("leading spaces", "     text"),
    ("only newlines", "\n\n\n"),
    ("digits", "0 1 12 123 1234 12345 3.14 1e10 0xFF 1,000,000 2024-06-01 v1.2.3-rc4"),
    ("contractions", "I'm you're we've they'll she'd it's don't 'tis"),
    ("contractions upper", "I'M YOU'RE WE'VE THEY'LL SHE'D IT'S DON'T JOHN'S"),
    ("contractions unicode", "it\u2019s don\u2019t we\u2019re I\u02bcm rock\u2018n\u2019roll"),
    ("quote edge", "'s 's 'S ''s x'sy '' ' 'd 're'"),
    ("cjk", "中文分词测试：你好，世界！日本語のテキスト、カタカナ。한국어 텍스트입니다."),
    ("emoji", "I \u2764\ufe0f code \U0001f600\U0001f680\U0001f44d\U0001f3fd flags \U0001f1fa\U0001f1f8\U0001f1ef\U0001f1f5"),
    ("emoji zwj", "family \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 tech \U0001f469\U0001f3fd\u200d\U0001f4bb rainbow \U0001f3f3\ufe0f\u200d\U0001f308"),
    ("combining marks", "e\u0301 a\u0308 n\u0303o Zalgo Z\u0351\u0352\u0357a\u0346\u034al\u0350g\u0300o\u0301 \u0915\u094d\u0937 \u0e01\u0e34\u0e48"),
    ("rtl", "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 \u202bembedded\u202c \u200fmark"),
    ("zero width", "a\u200bb\u200cc\u200dd\u2060e\ufefff \u200b \u200b\u200b x"),
    ("unicode spaces", "a" + "b".join(SPACES) + "c " + SPACES + " d" + SPACES[::-1]),
    ("unicode space runs", "x\u00a0\u00a0y\u3000\u3000z\u2003 w \u2003\u2003\u2003v\u0085\u0085"),
    ("nbsp letters", "\u00a0word\u00a0\u00a0word \u00a0 word"),
    ("numbers other scripts", "\u0966\u0967\u0968 \u0660\u0661\u0662\u0663 \u06f4\u06f5 \u00b2\u00b3\u00b9 \u00bc\u00bd \u2167\u216b \uff10\uff11\uff12 \u2460\u2461 \u4e00\u4e8c\u4e09"),
    ("non-bmp letters digits", "\U0001d400\U0001d401 \U0001d7ce\U0001d7cf \U000104a0\U000104a1 \U00010400\U00010428 \U00020000\U0002a6d6 \U00011de0\U00011de1 \U00016ff4 \U0001e4f0"),
    ("fullwidth", "\uff21\uff22\uff23 \uff41\uff42 \uff10\uff19 \uff01\uff1f\uff08\uff09"),
    ("special tokens", "<fim_prefix>def f(x):<fim_suffix>    return x<fim_middle>"),
    ("special tokens adjacent", "a<|endoftext|>b <|endoftext|> c<file_sep>  <repo_name>name\n<file_sep>x<|endoftext|><|endoftext|>"),
    ("special token prefixes", "<fim_prefix <fim_prefix>> <<fim_middle>> <|endoftext| <pr><pr_diff><pr_diff_hunk><pr> <NAME>x<EMAIL> <KEY><PASSWORD>"),
    ("added tokens gpt2", "the theory <mask>  x   <mask> [RS]   y word words sword word_ _word ∑x<ab <abc> <abcd>"),
    ("added tokens lstrip rstrip", "  <sep>  z<sep>\t\nq\u3000<sep>\u00a0the\u2003the"),
    ("added tokens single word", "word,word;word\u00e9word word1 1word \u0301word word\u0301 \u4e00word \u200dword"),
    ("control chars", "\x00\x01\x07\x08\x0b\x0c\x1b[31mred\x1b[0m\x7f \x1c\x1d\x1e\x1f"),
    ("latin1 and symbols", "caf\u00e9 na\u00efve \u00c5ngstr\u00f6m \u00df \u00a9\u00ae\u2122 \u20ac100 \u00a3 \u00a5 \u2192\u2190 \u2264\u2265 \u221e \u2211\u220f"),
    ("punctuation runs", "!!!??? ... ---> <=> ::: ;; @@ ## $$ %% ^^ && ** (( )) [[ ]] {{ }} || \\\\ // ~~ `` \"\" ''"),
    ("mixed scripts", "abc\u0430\u0431\u0432\u03b1\u03b2\u03b3123\u0661\u0662abc \u0627\u0644\u0639\u0631\u0628\u064a\u0629english\u05e2\u05d1\u05e8\u05d9\u05ea"),
    ("surrogate neighbours", "\ud7ff\ue000\uffff\U00010000\U0010ffff\ufffd"),
    ("very long line", "".join(f"x{i % 97}=y[{i}]+z*{i * 7 % 13}; " for i in range(2000))),
    ("long word", "a" * 300 + "b" * 40 + "ab" * 50),
    ("long space run", " " * 2000 + "x"),
    ("long newline run", "\n" * 500),
    ("long digit run", "0123456789" * 50),
]

RANDOM_POOL = (
    list("abcxyzABCXYZ0123456789_'\"<>|/\\.,;:!?()[]{}#$%^&*-+=~`@ \t\n\r")
    + list("sStTdDmM") * 3 + ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S"]
    + list(SPACES) + list("\u00e9\u00df\u00b2\u00bd\u2167\u0663\u0967\uff11\u4e00\u4e2d\u3042\ud55c\u05e9\u0645\u0301\u0308\u200d\ufe0f")
    + ["\U0001f600", "\U0001f468\u200d\U0001f469", "\U0001d7ce", "\U000104a0", "\U00011de0", "\U00010400", "\u2019", "\u02bc"]
    + ["<|endoftext|>", "<fim_prefix>", "<file_sep>", "<fim_", "<mask>", "[RS]", "<sep>", "word", "the", "<ab", "<abc>"]
)


def random_texts(count: int, seed: int = 20240601) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    out = []
    for i in range(count):
        n = rng.choice([1, 2, 3, 5, 8, 13, 21, 34])
        out.append((f"random {i}", "".join(rng.choice(RANDOM_POOL) for _ in range(n))))
    return out


def held_out_excerpts(count: int, chars: int) -> list[tuple[str, str]]:
    out = []
    for path in corpus_files("held_out"):
        text = read_text(path)
        if text is None or len(text) < chars:
            continue
        out.append((f"held-out {path.name}", text[:chars]))
        if len(out) == count:
            break
    return out


# ----------------------------------------------------------------------------- tokenizers


def train_gpt2_style() -> Tokenizer:
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = list(corpus_texts("train"))[:200]
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.add_special_tokens([
        AddedToken("<mask>", lstrip=True, special=True, normalized=False),  # RoBERTa's mask
        AddedToken("<abc>", special=True, normalized=False),
    ])
    tokenizer.add_tokens([
        AddedToken("[RS]", rstrip=True, normalized=False),
        AddedToken("<sep>", lstrip=True, rstrip=True, normalized=False),
        AddedToken("word", single_word=True, normalized=True),
        AddedToken("the", single_word=True, normalized=True),
        AddedToken("he", normalized=False),  # also in the model's vocab: keeps that id
        AddedToken("\u2211x", normalized=True),
        AddedToken("<ab", normalized=True),
    ])
    return tokenizer


# Byte fallback looks up "<0xXX>" for the UTF-8 bytes of a byte-level character: 'Ã' (byte 0xC3) is
# C3 83, both present; '©' (byte 0xA9) is C2 A9, only half present, so it falls back to "<unk>".
TINY_VOCAB = {"<unk>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "abc": 6, "Ġa": 7, "<0xC3>": 8, "<0x83>": 9,
              "<0xA9>": 10, "x": 11, "<|endoftext|>": 12, "ba": 13}  # "ba" has no merge: only ignore_merges finds it


def tiny_json(**model_options) -> dict:
    model = {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
             "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
             "vocab": TINY_VOCAB, "merges": ["a b", "ab c", "Ġ a"]}
    model.update(model_options)
    return {
        "version": "1.0", "truncation": None, "padding": None,
        "added_tokens": [{"id": 12, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "post_processor": None,
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": model,
    }


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def configurations() -> list[dict]:
    sc2_bytelevel = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return [
        {"name": "sc2-tiny", "file": SC2_TINY, "patch": None},
        {"name": "sc2-tiny ignore_merges", "file": SC2_TINY, "patch": {"model": {"ignore_merges": True}}},
        {"name": "sc2-tiny ByteLevel prefix space without regex", "file": SC2_TINY, "patch": {"pre_tokenizer": {
            "type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": False,
            "pretokenizers": None}}},
        {"name": "sc2-tiny Digits after nested Sequence", "file": SC2_TINY, "patch": {"pre_tokenizer": {
            "pretokenizers": [{"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}]},
                              dict(sc2_bytelevel, add_prefix_space=True)]}}},
        {"name": "gpt2-style", "file": GPT2_STYLE, "patch": None},
        {"name": "gpt2-style contiguous digits", "file": GPT2_STYLE, "patch": {"pre_tokenizer": {
            "type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False}, {
                "type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}]}}},
        {"name": "gpt2-style without model type, no prefix space", "file": GPT2_STYLE,
         "patch": {"model": {"type": None}, "pre_tokenizer": {"add_prefix_space": False}}},
        {"name": "tiny unk", "json": tiny_json(), "patch": None},
        {"name": "tiny fuse_unk", "json": tiny_json(fuse_unk=True), "patch": None},
        {"name": "tiny byte_fallback", "json": tiny_json(byte_fallback=True), "patch": None},
        {"name": "tiny no unk", "json": tiny_json(unk_token=None, byte_fallback=True), "patch": None},
        {"name": "tiny ignore_merges", "json": tiny_json(ignore_merges=True, fuse_unk=True), "patch": None},
    ]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    gpt2 = train_gpt2_style()
    (ROOT / GPT2_STYLE).write_text(json.dumps(json.loads(gpt2.to_str()), ensure_ascii=False, indent=1) + "\n")

    texts = TEXTS + random_texts(300) + held_out_excerpts(6, 2500)
    entries = []
    for config in configurations():
        base = config["json"] if "json" in config else json.loads((ROOT / config["file"]).read_text())
        tokenizer = Tokenizer.from_str(json.dumps(merge_patch(base, config["patch"]) if config["patch"] else base))
        tiny = "json" in config
        ids, decoded, decoded_skip = {}, {}, {}
        for index, (_, text) in enumerate(texts):
            if tiny and len(text) > 300:
                continue
            if config["patch"] and len(text) > 3000:
                continue
            encoding = tokenizer.encode(text).ids
            ids[str(index)] = encoding
            plain = tokenizer.decode(encoding, skip_special_tokens=False)
            skipped = tokenizer.decode(encoding, skip_special_tokens=True)
            if plain != text:
                decoded[str(index)] = plain
            if skipped != plain:
                decoded_skip[str(index)] = skipped
        added = tokenizer.get_added_tokens_decoder()
        entry = {k: v for k, v in config.items()}
        entry.update({
            "vocab_size": tokenizer.get_vocab_size(),
            "special_tokens": {t.content: i for i, t in sorted(added.items()) if t.special},
            "ids": ids, "decoded": decoded, "decoded_skip_special": decoded_skip,
        })
        entries.append(entry)
        print(f"{config['name']}: {sum(map(len, ids.values()))} ids over {len(ids)} texts")

    reference = {"tokenizers_version": tokenizers.__version__,
                 "texts": [{"name": n, "text": t} for n, t in texts], "tokenizers": entries}
    path = OUT / "reference.json"
    path.write_text(json.dumps(reference, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path} ({path.stat().st_size / 1e3:.0f} kB), {(ROOT / GPT2_STYLE).stat().st_size / 1e3:.0f} kB")


if __name__ == "__main__":
    main()
