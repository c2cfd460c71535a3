"""Held-out Python functions as completion prompts, and how a completed function is cut and checked.

Used by tools/evaluation/eval_completions.py. A function's prompt is the
text of its file before it (the last PROMPT_CHARS characters, from a line
start), its header (decorators included) and, when the task includes it, its
docstring; the prompt ends where its last line's text ends, not after the
newline (byte-level BPE joins a newline with the next line's indentation, so a
lone newline token tells the model an unindented line follows).
"""

from __future__ import annotations

import ast
import textwrap
from typing import Optional

PROMPT_CHARS = 2000


def cut_function(generated: str, indent: int) -> tuple[str, bool]:
    """The generated body up to the end of the function; whether an end was seen.

    The end is the first non-blank line indented no deeper than the `def` once
    the body has begun."""
    kept, started = [], False
    for line in generated.splitlines(keepends=True):
        stripped = line.strip()
        if stripped:
            depth = len(line) - len(line.lstrip())
            if started and depth <= indent:
                return "".join(kept), True
            started = True
        kept.append(line)
    return "".join(kept), False


def parse_error(function: str) -> Optional[str]:
    """None when the (dedented) function parses, else the parser's message."""
    try:
        ast.parse(textwrap.dedent(function))
        return None
    except SyntaxError as e:
        return f"{e.msg} (line {e.lineno})"


def functions_of(text: str) -> list[dict]:
    """The functions of a file whose body starts on a later line than the header.

    Each: name, qualname, def_line (1-based, of the `def`), first_line (of its
    first decorator), end_line (last line), indent, header_end (0-based index of
    the body's first line), docstring_end (0-based index after the docstring's
    last line, or header_end when it has none) and has_examples (its docstring
    holds a doctest example)."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    found = []

    def visit(node: ast.AST, scope: list[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                header_end = child.body[0].lineno - 1
                if header_end > child.lineno - 1:
                    first = child.body[0]
                    has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
                               and isinstance(first.value.value, str))
                    docstring = ast.get_docstring(child) if has_doc else None
                    found.append({
                        "name": child.name, "qualname": ".".join(scope + [child.name]), "def_line": child.lineno,
                        "first_line": min([child.lineno] + [d.lineno for d in child.decorator_list]),
                        "end_line": child.end_lineno,
                        "indent": len(lines[child.lineno - 1]) - len(lines[child.lineno - 1].lstrip()),
                        "header_end": header_end, "docstring_end": first.end_lineno if has_doc else header_end,
                        "has_examples": bool(docstring and ">>>" in docstring),
                        "only_docstring": has_doc and len(child.body) == 1,
                    })
                visit(child, scope + [child.name, "<locals>"])
            elif isinstance(child, ast.ClassDef):
                visit(child, scope + [child.name])
    visit(tree, [])
    return found


def prompt_of(text: str, function: dict, with_docstring: bool) -> str:
    """The completion prompt of a function: the file before it (at most PROMPT_CHARS), its header and,
    with_docstring, its docstring; ending where the last line's text ends."""
    lines = text.splitlines(keepends=True)
    before = "".join(lines[:function["first_line"] - 1])
    if len(before) > PROMPT_CHARS:
        before = before[-PROMPT_CHARS:]
        before = before[before.index("\n") + 1:] if "\n" in before else ""
    end = function["docstring_end"] if with_docstring else function["header_end"]
    own = "".join(lines[function["first_line"] - 1:end])
    return (before + own).rstrip("\n")
