#!/usr/bin/env python3
"""Code-health figures for the closing notes of code-review issues.

Counts, in the library code of the workspace (src/ trees; `#[cfg(test)]`
code excluded, and so are files only compiled for tests):
- functions longer than a threshold (default 80 lines, from `fn` to its
  closing brace), listed with their length;
- `Result<_, String>` return types.

A heuristic reader (braces counted outside strings, chars and comments), good
enough for figures; not a Rust parser.

    tests/tools/code-health.py [--max-lines 80] [--list]
"""
import argparse
import pathlib
import re
import sys

FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")


def string_results(text):
    """Offsets of `Result<T, String>`: the error argument, at the top level
    of the generic list, is exactly `String`."""
    for m in re.finditer(r"\bResult<", text):
        depth, args, cur = 1, [], []
        for ch in text[m.end():]:
            if ch == "<":
                depth += 1
            elif ch == ">":
                depth -= 1
                if depth == 0:
                    break
            elif ch == "," and depth == 1:
                args.append("".join(cur).strip())
                cur = []
                continue
            cur.append(ch)
        args.append("".join(cur).strip())
        if len(args) == 2 and args[1] == "String":
            yield m.start()


def strip_code(line, state):
    """Returns the line with strings, chars and comments blanked; `state`
    carries block comments and raw strings across lines."""
    out = []
    i = 0
    while i < len(line):
        if state["block"]:
            end = line.find("*/", i)
            if end < 0:
                return "".join(out)
            state["block"] = False
            i = end + 2
            continue
        if state["raw"] is not None:
            end = line.find(state["raw"], i)
            if end < 0:
                return "".join(out)
            i = end + len(state["raw"])
            state["raw"] = None
            continue
        if state["str"]:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == '"':
                state["str"] = False
            i += 1
            continue
        c = line[i]
        if line.startswith("//", i):
            break
        if line.startswith("/*", i):
            state["block"] = True
            i += 2
            continue
        m = re.match(r'b?r(#*)"', line[i:])
        if m:
            state["raw"] = '"' + m.group(1)
            i += m.end()
            continue
        if c == '"':
            state["str"] = True
            i += 1
            continue
        m = re.match(r"b?'(\\.|[^\\'])'", line[i:])
        if m:
            i += m.end()
            continue
        out.append(c)
        i += 1
    return "".join(out)


def functions(path):
    lines = path.read_text().splitlines()
    state = {"block": False, "raw": None, "str": False}
    code = [strip_code(l, state) for l in lines]
    in_tests = None
    found = []
    for n, text in enumerate(code):
        if re.match(r"\s*#\[cfg\(test\)\]", lines[n]):
            in_tests = n
        m = FN.match(text)
        if not m:
            continue
        depth = 0
        opened = False
        for k in range(n, len(code)):
            for ch in code[k]:
                if ch == "{":
                    depth += 1
                    opened = True
                elif ch == "}":
                    depth -= 1
                elif ch == ";" and not opened and depth == 0:
                    break
            else:
                if opened and depth == 0:
                    found.append((m.group(6), n + 1, k - n + 1, in_tests is not None))
                    break
                continue
            break
    return found


TEST_MOD = re.compile(
    r"^\s*#\[cfg\(test\)\]\s*\n((?:\s*#\[[^\]]*\]\s*\n)*)\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;",
    re.M,
)
PATH_ATTR = re.compile(r'#\[path\s*=\s*"([^"]+)"\]')


def test_only_files(paths):
    """Files that are modules declared `#[cfg(test)] mod name;` (optionally
    with `#[path = "..."]`) by their parent: compiled only for tests, so
    their functions are test code, and counting them as library code would
    report unit tests (e.g. kubernetes/objects_tests.rs) as long library
    functions. Found from the declaration rather than the file's name, so a
    test module named anything is excluded and a library file that happens
    to be called `*_tests.rs` is not."""
    out = set()
    for path in paths:
        text = path.read_text()
        for m in TEST_MOD.finditer(text):
            attrs, name = m.group(1), m.group(2)
            explicit = PATH_ATTR.search(attrs)
            if explicit:
                # `#[path]` on a file-level `mod` is relative to the file's
                # directory.
                out.add((path.parent / explicit.group(1)).resolve())
                continue
            # `mod name;` in lib.rs/main.rs/mod.rs lives beside it; in
            # `foo.rs`, under `foo/`.
            base = path.parent if path.name in ("lib.rs", "main.rs", "mod.rs") else path.with_suffix("")
            out.add((base / f"{name}.rs").resolve())
            out.add((base / name / "mod.rs").resolve())
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--max-lines", type=int, default=80)
    ap.add_argument("--list", action="store_true", help="list each long function and String result")
    args = ap.parse_args()
    root = pathlib.Path(__file__).resolve().parents[2]
    long_fns = []
    found_strings = []
    for src in sorted(root.glob("*/src")) + sorted(root.glob("tests/support/src")):
        paths = sorted(src.rglob("*.rs"))
        tests_only = test_only_files(paths)
        for path in paths:
            if path.resolve() in tests_only:
                continue
            rel = path.relative_to(root)
            for name, line, length, test in functions(path):
                if length > args.max_lines and not test:
                    long_fns.append((length, f"{rel}:{line}", name))
            text = path.read_text()
            cut = text.find("#[cfg(test)]")
            body = text if cut < 0 else text[:cut]
            for start in string_results(body):
                found_strings.append(f"{rel}:{body[:start].count(chr(10)) + 1}")
    if args.list:
        for length, where, name in sorted(long_fns, reverse=True):
            print(f"{length:5} lines  {name}  {where}")
        for where in found_strings:
            print(f"Result<_, String>  {where}")
    print(f"functions over {args.max_lines} lines: {len(long_fns)}")
    print(f"Result<_, String> in library code: {len(found_strings)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
