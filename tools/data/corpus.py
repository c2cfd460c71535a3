"""The local source-code corpus sc2's demo tokenizer and model are trained on.

Two permissively usable bodies of source that every machine of this project
has (Debian bookworm):
  * the CPython 3.11 standard library, /usr/lib/python3.11/**/*.py
    (Python Software Foundation License);
  * the C headers of the C library and the Linux user-space API, the *.h files
    of the Debian packages libc6-dev and linux-libc-dev under /usr/include.

Each file has a stable key, "<corpus>/<path relative to its root>", e.g.
"python3.11/json/decoder.py" or "include/linux/types.h". A file is HELD OUT
(never trained on: the evaluation split) iff

    int(sha256(key).hexdigest()[:16], 16) % 100 < HELD_OUT_PERCENT

so the split does not depend on where the files live, on their order or on
which other files exist. Files that are not valid UTF-8 are skipped.

    from corpus import corpus_files, read_text
    for path in corpus_files("train"): text = read_text(path)
"""

from __future__ import annotations

import hashlib
import pathlib
import subprocess
from typing import Iterator, Literal, Optional

PYTHON_STDLIB = pathlib.Path("/usr/lib/python3.11")
INCLUDE = pathlib.Path("/usr/include")
HEADER_PACKAGES = ("libc6-dev", "linux-libc-dev")
HELD_OUT_PERCENT = 5

Split = Literal["train", "held_out", "all"]


def file_key(path: pathlib.Path) -> str:
    """The stable key of a corpus file, used for the held-out rule."""
    path = pathlib.Path(path)
    if path.is_relative_to(PYTHON_STDLIB):
        return "python3.11/" + path.relative_to(PYTHON_STDLIB).as_posix()
    if path.is_relative_to(INCLUDE):
        return "include/" + path.relative_to(INCLUDE).as_posix()
    raise ValueError(f"{path} is not in the corpus")


def is_held_out(path: pathlib.Path) -> bool:
    """Whether a corpus file belongs to the held-out split."""
    digest = hashlib.sha256(file_key(path).encode("utf-8")).hexdigest()
    return int(digest[:16], 16) % 100 < HELD_OUT_PERCENT


def _python_files() -> Iterator[pathlib.Path]:
    for path in PYTHON_STDLIB.rglob("*.py"):
        parts = path.relative_to(PYTHON_STDLIB).parts
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        yield path


def _header_files() -> Iterator[pathlib.Path]:
    try:
        listing = subprocess.run(["dpkg", "-L", *HEADER_PACKAGES], check=True, capture_output=True, text=True).stdout
        candidates = (pathlib.Path(line) for line in listing.splitlines())
    except (OSError, subprocess.CalledProcessError):
        # Not a Debian system: the same packages' folders.
        candidates = (p for d in ("linux", "asm-generic", "x86_64-linux-gnu", "net", "netinet", "arpa") for p in
                      (INCLUDE / d).rglob("*.h"))
    for path in candidates:
        if path.suffix == ".h" and path.is_relative_to(INCLUDE) and path.is_file() and not path.is_symlink():
            yield path


def read_text(path: pathlib.Path) -> Optional[str]:
    """The file's text, or None when it is not valid UTF-8."""
    try:
        return pathlib.Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return None


def corpus_files(split: Split = "train") -> list[pathlib.Path]:
    """Corpus files of one split, sorted by key; UTF-8 validity is checked by read_text."""
    files = sorted(set(_python_files()) | set(_header_files()), key=file_key)
    if split == "all":
        return files
    want_held_out = split == "held_out"
    return [p for p in files if is_held_out(p) == want_held_out]


def corpus_texts(split: Split = "train") -> Iterator[str]:
    """Texts of one split, skipping files that are not valid UTF-8."""
    for path in corpus_files(split):
        text = read_text(path)
        if text is not None:
            yield text


if __name__ == "__main__":
    for name in ("train", "held_out"):
        files = corpus_files(name)
        size = sum(p.stat().st_size for p in files)
        print(f"{name}: {len(files)} files, {size / 1e6:.1f} MB")
