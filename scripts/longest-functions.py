#!/usr/bin/env python3
"""Lists the longest Rust functions of the product (not its tests): lines from `fn` to the
closing brace. Usage: scripts/longest-functions.py [N] [DIR]  (default 10, the checkout)."""
import pathlib
import re
import sys

FN = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?(?:const\s+)?(?:async\s+)?fn\s+(\w+)")
SKIP = ("tests/", "target/", "/benches/", "/tests/")


def functions(path, text):
    lines = text.splitlines()
    in_tests = False
    for i, line in enumerate(lines):
        if line.strip() == "#[cfg(test)]":
            in_tests = True
        match = FN.match(line)
        if not match or in_tests:
            continue
        depth, started = 0, False
        for j in range(i, len(lines)):
            code = re.sub(r'"(?:\\.|[^"\\])*"', '""', lines[j].split("//")[0])
            if not started and ";" in code and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            started = started or "{" in code
            if started and depth <= 0:
                yield j - i + 1, f"{path}:{i + 1}", match.group(1)
                break


def main():
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    root = pathlib.Path(sys.argv[2] if len(sys.argv) > 2 else ".")
    found = []
    for path in sorted(root.rglob("*.rs")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(SKIP[0]) or any(s in "/" + relative for s in SKIP[1:]):
            continue
        found.extend(functions(relative, path.read_text()))
    for length, place, name in sorted(found, reverse=True)[:count]:
        print(f"{length:4} {name:32} {place}")


main()
