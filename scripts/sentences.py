#!/usr/bin/env python3
"""Turns plain-text files into one sentence per line.

Usage: sentences.py OUT.txt FILE_OR_DIR... [--every K]

Files are read in sorted order (folders: their *.txt files); runs of
whitespace collapse, text splits after '.', '!' or '?' followed by a space
and an upper-case letter or a quote, and sentences of fewer than 5 or more
than 60 words are dropped, as are exact duplicates. With --every K only
every K-th sentence is kept (a deterministic sample). Standard library only.
"""
import re
import sys
from pathlib import Path


def sentences(text):
    text = re.sub(r"\s+", " ", text)
    for s in re.split(r"(?<=[.!?])\s+(?=[\"'A-Z])", text):
        s = s.strip()
        if 5 <= len(s.split()) <= 60:
            yield s


def main(argv):
    every = 1
    if "--every" in argv:
        i = argv.index("--every")
        every = int(argv[i + 1])
        del argv[i : i + 2]
    out, inputs = Path(argv[0]), [Path(a) for a in argv[1:]]
    files = []
    for p in inputs:
        files.extend(sorted(p.glob("*.txt")) if p.is_dir() else [p])
    seen, kept = set(), []
    for f in files:
        raw = f.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:  # gensim's files are Latin-1
            text = raw.decode("latin-1")
        for s in sentences(text):
            if s not in seen:
                seen.add(s)
                kept.append(s)
    kept = kept[::every]
    out.write_text("\n".join(kept) + "\n", encoding="utf-8")
    print(f"{out}: {len(kept)} sentences from {len(files)} files", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
