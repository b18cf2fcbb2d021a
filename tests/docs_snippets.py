#!/usr/bin/env python3
"""Checks that every ```cpp block of a guide is a piece of a program that is compiled and run, so
that the guide's code cannot rot.

    docs_snippets.py <guide.md> <source.cpp>...

A block matches when its lines, leading and trailing blanks ignored, appear in that order and next
to each other in one of the sources. Exits 1 naming each block that matches nowhere.
"""
import re
import sys


def stripped_lines(text):
    return [line.strip() for line in text.splitlines()]


def contains(haystack, needle):
    n = len(needle)
    return any(haystack[i : i + n] == needle for i in range(len(haystack) - n + 1))


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    guide, sources = argv[1], argv[2:]
    with open(guide, encoding="utf-8") as f:
        blocks = re.findall(r"^[ \t]*```cpp[ \t]*\n(.*?)^[ \t]*```[ \t]*$", f.read(), re.M | re.S)
    if not blocks:
        sys.exit(f"{guide} has no ```cpp block: is this the right file?")
    texts = []
    for source in sources:
        with open(source, encoding="utf-8") as f:
            texts.append(stripped_lines(f.read()))
    missing = 0
    for number, block in enumerate(blocks, 1):
        needle = stripped_lines(block)
        while needle and not needle[-1]:
            needle.pop()
        if not any(contains(text, needle) for text in texts):
            missing += 1
            print(f"block {number} of {guide} is in none of {', '.join(sources)}:\n{block}")
    if missing:
        print(f"{missing} of {len(blocks)} C++ blocks of {guide} are not compiled anywhere: copy "
              "them from the example they belong to, or change the example too")
        return 1
    print(f"all {len(blocks)} C++ blocks of {guide} are pieces of compiled sources")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
