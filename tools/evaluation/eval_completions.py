#!/usr/bin/env python3
"""Does the bundled model write code? Completions of held-out functions and five common prompts, run by sc2.

Every generation here is sc2's own (`sc2-generate --batch-file`, greedy), so
this needs no PyTorch and measures what a user gets.

  * 40 functions of held-out standard-library files (tools/data/corpus.py's
    split, which no bundled model has seen): every function whose docstring holds
    a doctest example, at most EXAMPLES_PER_FILE a file, then one function a
    file from the other files, in a seeded order, up to 40. The prompt is the
    file before the function (at most 2,000 characters), its header and its own
    docstring (when it has one), as in HumanEval: the model writes the body.
    Greedy, at most 256 new tokens; the function is cut at its end (the first
    non-blank line indented no deeper than the `def`).
    - parses: the header, docstring and body, dedented, pass `ast.parse`;
    - runs: for a function with a doctest example, the file with the function
      replaced by the completed one is executed as its module (in a child
      process, 20 s at most) and the docstring's examples are run; it runs when
      no example raises an exception it did not expect; it passes when every
      example prints what the docstring says.
  * Five common prompts (FIVE_PROMPTS: fibonacci, quicksort, reading a CSV
    file, a class with two methods, a fill-in-the-middle hole in a loop), shown
    as they come out (cut at the end of the top-level function or class the
    prompt opens), with whether the result parses.

    python3 tools/evaluation/eval_completions.py --model models/sc2-tiny [--sc2-generate build/examples/sc2-generate]

Prints a markdown summary for docs/model-card.md; writes the details to
--report (.train/completions-<model>.json). The completions are executed code
from a model: run this in a throwaway environment.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "data"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from corpus import PYTHON_STDLIB, corpus_files, file_key, read_text  # noqa: E402
from functions import cut_function, functions_of, parse_error, prompt_of  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = 40
EXAMPLES_PER_FILE = 3
NEW_TOKENS = 256
COMMON_NEW_TOKENS = 128
RUN_SECONDS = 20

FIVE_PROMPTS = [
    {"name": "fibonacci", "prompt": "def fibonacci(n):"},
    {"name": "quicksort", "prompt": "def quicksort(items):\n    \"\"\"Return a sorted copy of items.\"\"\""},
    {"name": "read a CSV file",
     "prompt": "import csv\n\n\ndef read_rows(path):\n    \"\"\"Return the rows of the CSV file at path as a list of dicts.\"\"\""},
    {"name": "a class with two methods",
     "prompt": "class BankAccount:\n    \"\"\"A balance that deposits add to and withdrawals take from.\"\"\"\n\n"
               "    def __init__(self, balance=0):\n        self.balance = balance\n\n    def deposit(self, amount):"},
    {"name": "fill-in-the-middle in a loop",
     "fim_prefix": "def total_length(words):\n    total = 0\n    for word in words:\n        ",
     "fim_suffix": "\n    return total\n"},
]

# Runs in a child process: execute the module with one function replaced, then that function's doctests.
RUNNER = r"""
import doctest, json, sys, types
source_path, module_name, qualname = sys.argv[1:4]
source = open(source_path, encoding="utf-8").read()
result = {"executed": False, "examples": 0, "raised": 0, "failed": 0, "error": None}
try:
    module = types.ModuleType(module_name)
    module.__file__ = source_path
    module.__package__ = module_name if source_path.endswith("__init__.py") else module_name.rpartition(".")[0]
    sys.modules[module_name] = module
    exec(compile(source, source_path, "exec"), module.__dict__)
    result["executed"] = True
    target = module
    for part in qualname.split("."):
        target = getattr(target, part)
    class Runner(doctest.DocTestRunner):
        def report_unexpected_exception(self, out, test, example, exc_info):
            result["raised"] += 1
            result["error"] = result["error"] or f"{exc_info[0].__name__}: {exc_info[1]}"[:200]
        def report_failure(self, out, test, example, got):
            result["failed"] += 1
    runner = Runner(verbose=False, optionflags=doctest.ELLIPSIS)
    for test in doctest.DocTestFinder(recurse=False).find(target, qualname, globs=dict(module.__dict__)):
        result["examples"] += len(test.examples)
        runner.run(test, out=lambda s: None)
except BaseException as e:
    result["error"] = f"{type(e).__name__}: {e}"[:200]
print(json.dumps(result))
"""


def module_name(key: str) -> str:
    parts = key.split("/", 1)[1][:-3].split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def choose(seed: int) -> list[dict]:
    """The held-out functions to complete: doctest-bearing ones first, then one a file."""
    rng = random.Random(seed)
    per_file = []
    for path in corpus_files("held_out"):
        if path.suffix != ".py" or (text := read_text(path)) is None:
            continue
        try:
            found = functions_of(text)
        except SyntaxError:
            continue
        found = [f for f in found if not f["only_docstring"]]
        if found:
            per_file.append((file_key(path), path, text, found))
    chosen = []
    for key, path, text, found in per_file:
        with_examples = [f for f in found if f["has_examples"]]
        for f in rng.sample(with_examples, min(EXAMPLES_PER_FILE, len(with_examples))):
            chosen.append({"file": key, "path": path, "text": text, **f})
    order = list(per_file)
    rng.shuffle(order)
    for key, path, text, found in order:
        if len(chosen) >= SAMPLES:
            break
        others = [f for f in found if not f["has_examples"]]
        if others:
            chosen.append({"file": key, "path": path, "text": text, **rng.choice(others)})
    return chosen[:SAMPLES]


def generate(sc2_generate: pathlib.Path, model: pathlib.Path, requests: list[dict], threads: int) -> list[dict]:
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False, encoding="utf-8") as f:
        for r in requests:
            f.write(json.dumps(r) + "\n")
        path = f.name
    run = subprocess.run([str(sc2_generate), "--model", str(model), "--batch-file", path, "--threads", str(threads),
                          "--max-running", "8", "--quiet"], capture_output=True, text=True, check=True)
    pathlib.Path(path).unlink()
    return [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def run_examples(function: dict, completed: str) -> dict:
    lines = function["text"].splitlines(keepends=True)
    replaced = "".join(lines[:function["first_line"] - 1]) + completed.rstrip("\n") + "\n" + "".join(
        lines[function["end_line"]:])
    with tempfile.TemporaryDirectory() as folder:
        name = pathlib.Path(function["file"]).name
        source = pathlib.Path(folder) / name
        source.write_text(replaced, encoding="utf-8")
        try:
            run = subprocess.run([sys.executable, "-c", RUNNER, str(source), module_name(function["file"]),
                                  function["qualname"]], capture_output=True, text=True, timeout=RUN_SECONDS,
                                 cwd=folder)
            out = run.stdout.strip().splitlines()
            result = json.loads(out[-1]) if out else {"executed": False, "error": run.stderr[-200:]}
        except subprocess.TimeoutExpired:
            result = {"executed": False, "error": f"timed out after {RUN_SECONDS} s"}
    result["runs"] = bool(result.get("executed")) and result.get("examples", 0) > 0 and result.get("raised", 1) == 0
    result["passes"] = result["runs"] and result.get("failed", 1) == 0
    return result


def reference_check(functions: list[dict]) -> None:
    """The original functions must run and pass their own examples, or the check means nothing."""
    for f in functions:
        if f["has_examples"]:
            lines = f["text"].splitlines(keepends=True)
            original = "".join(lines[f["first_line"] - 1:f["end_line"]])
            r = run_examples(f, original)
            f["original_passes"] = r["passes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "models" / "sc2-tiny")
    parser.add_argument("--sc2-generate", type=pathlib.Path, default=ROOT / "build" / "examples" / "sc2-generate")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=40)
    parser.add_argument("--report", type=pathlib.Path)
    args = parser.parse_args()
    if not PYTHON_STDLIB.is_dir():
        raise SystemExit(f"{PYTHON_STDLIB} is missing: the held-out files are Debian 12's standard library")
    report_path = args.report or ROOT / ".train" / f"completions-{args.model.name}.json"

    functions = choose(args.seed)
    reference_check(functions)
    requests = [{"prompt": prompt_of(f["text"], f, with_docstring=True), "max_new_tokens": NEW_TOKENS}
                for f in functions]
    requests += [{k: v for k, v in p.items() if k != "name"} | {"max_new_tokens": COMMON_NEW_TOKENS}
                 for p in FIVE_PROMPTS]
    results = generate(args.sc2_generate, args.model, requests, args.threads)

    samples = []
    for f, request, result in zip(functions, requests, results):
        body, ended = cut_function(result["text"], f["indent"])
        ended = ended or result["stop_reason"] == "eos"
        lines = f["text"].splitlines(keepends=True)
        given = "".join(lines[f["first_line"] - 1:f["docstring_end"]]).rstrip("\n")
        completed = given + body
        error = parse_error(completed)
        sample = {"file": f["file"], "qualname": f["qualname"], "def_line": f["def_line"],
                  "has_examples": f["has_examples"], "ended": ended, "parses": error is None, "error": error,
                  "completion": body}
        if f["has_examples"]:
            sample["original_passes"] = f["original_passes"]
            sample["run"] = run_examples(f, completed) if error is None else {"runs": False, "passes": False,
                                                                               "error": "does not parse"}
        samples.append(sample)

    common = []
    for p, result in zip(FIVE_PROMPTS, results[len(functions):]):
        text = result["text"]
        if "prompt" in p:
            # Cut at the end of the top-level function or class the prompt opens.
            top_level = any(line.startswith(("def ", "class ")) for line in p["prompt"].splitlines())
            shown = (cut_function(text, 0)[0] if top_level else text).rstrip()
            whole = p["prompt"] + shown
        else:
            shown = text
            whole = p["fim_prefix"] + shown + p["fim_suffix"]
        common.append({"name": p["name"], "output": shown, "program": whole, "parses": parse_error(whole) is None,
                       "stop_reason": result["stop_reason"]})

    parsed = sum(s["parses"] for s in samples)
    runnable = [s for s in samples if s["has_examples"] and s["original_passes"]]
    runs = sum(s["run"]["runs"] for s in runnable)
    passes = sum(s["run"]["passes"] for s in runnable)
    summary = {"model": str(args.model), "samples": len(samples), "parses": parsed,
               "ended": sum(s["ended"] for s in samples), "with_examples": len(runnable), "runs": runs,
               "passes": passes, "common_parse": sum(c["parses"] for c in common)}
    report_path.parent.mkdir(parents=True, exist_ok=True)
    report_path.write_text(json.dumps({"summary": summary, "samples": samples, "common": common}, indent=1) + "\n")

    print(f"| model | parse | ended within {NEW_TOKENS} tokens | runs its doctest | passes its doctest |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {args.model.name} | {parsed}/{len(samples)} ({parsed / len(samples):.0%}) | "
          f"{summary['ended']}/{len(samples)} | {runs}/{len(runnable)} | {passes}/{len(runnable)} |")
    print()
    for s in samples:
        status = "parses" if s["parses"] else f"no: {s['error']}"
        run = ""
        if s["has_examples"]:
            r = s["run"]
            run = " | " + ("passes" if r["passes"] else "runs" if r["runs"] else f"fails: {r.get('error')}")
        print(f"- `{s['file']}` `{s['qualname']}`: {status}{run}")
    for c in common:
        print(f"\n### {c['name']} ({'parses' if c['parses'] else 'does not parse'})\n\n```python\n{c['program']}\n```")


if __name__ == "__main__":
    main()
