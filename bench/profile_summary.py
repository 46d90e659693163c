#!/usr/bin/env python3
"""Summarise a py-spy profile (speedscope JSON, or ``--format raw`` collapsed stacks).

    .venv/bin/python bench/profile_summary.py bench/results/profile-W1-api-<date>.speedscope.json [--top 25]

Prints where the samples go: by package (self time of the leaf frame), the
functions with the most self time, and the functions with the most inclusive
time (on the stack at all). py-spy samples only threads that are running
(``bench/run.py --profile`` records with ``--gil``: only the thread holding
the GIL, i.e. Python CPU time), so the percentages are of busy samples.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from pathlib import Path

Frame = tuple[str, str]  # (function, file)


def load_speedscope(path: Path, threads: Counter[str]) -> list[tuple[list[Frame], int]]:
    doc = json.loads(path.read_text())
    frames = [(f["name"], f.get("file", "")) for f in doc["shared"]["frames"]]
    stacks: list[tuple[list[Frame], int]] = []
    for profile in doc["profiles"]:
        threads[profile.get("name", "?")] += len(profile["samples"])
        # Root frame first; the weights are seconds (1 / rate each): count samples instead.
        stacks.extend(([frames[i] for i in sample], 1) for sample in profile["samples"])
    return stacks


_RAW_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def load_raw(path: Path) -> list[tuple[list[Frame], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        trace, _, count = line.rpartition(" ")
        frames: list[Frame] = []
        for part in trace.split(";"):
            m = _RAW_FRAME.match(part)
            frames.append((m.group("name"), m.group("file")) if m else (part, ""))
        stacks.append((frames, int(float(count))))
    return stacks


def package(file: str) -> str:
    if "__editable__" in file and "/taskcore/" in file:  # the strict editable install's links
        rest = file.split("/taskcore/", 1)[1]
        sub = rest.split("/", 1)[0] if "/" in rest else ""
        return f"taskcore.{sub}" if sub in ("adapters", "entrypoints") else "taskcore (core)"
    if "site-packages/" in file:
        rest = file.split("site-packages/", 1)[1]
        return rest.split("/", 1)[0].removesuffix(".py")
    for marker, name in (
        ("/src/taskcore/", "taskcore (core)"),
        ("/src/adapters/", "taskcore.adapters"),
        ("/src/entrypoints/", "taskcore.entrypoints"),
    ):
        if marker in file:
            return name
    if "/lib/python3" in file:
        rest = file.split("/lib/python3", 1)[1].split("/", 1)[-1]
        return "stdlib:" + rest.split("/", 1)[0].removesuffix(".py")
    return file or "?"


def short(frame: Frame) -> str:
    name, file = frame
    for marker in ("site-packages/", "-none-any/", "/src/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{name} ({file})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("profile", type=Path)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument(
        "--callers", metavar="TEXT", help="instead: the commonest call paths into frames matching TEXT"
    )
    ap.add_argument("--depth", type=int, default=6, help="frames shown per call path with --callers")
    args = ap.parse_args()
    text_start = args.profile.read_text()[:1]
    threads: Counter[str] = Counter()
    stacks = load_speedscope(args.profile, threads) if text_start == "{" else load_raw(args.profile)
    total = sum(w for _, w in stacks)
    if not total:
        print("no samples")
        return 1
    if args.callers:
        paths: Counter[str] = Counter()
        hits = 0
        for frames, w in stacks:
            names = [short(f) for f in frames]
            idx = next((i for i, n in enumerate(names) if args.callers in n), None)
            if idx is None:
                continue
            hits += w
            paths[" <- ".join(reversed(names[max(0, idx - args.depth + 1) : idx + 1]))] += w
        share = 100 * hits / total
        print(f"{args.profile}: frames matching {args.callers!r} in {share:.1f}% of {total:.0f} samples")
        for path, w in paths.most_common(args.top):
            print(f"{100 * w / total:6.1f}%  {path}")
        return 0
    by_pkg: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for frames, w in stacks:
        if not frames:
            continue
        leaf = frames[-1]
        by_pkg[package(leaf[1])] += w
        self_time[short(leaf)] += w
        for name in {short(f) for f in frames}:
            incl[name] += w
    print(f"{args.profile}: {total:.0f} samples")
    for name, count in threads.most_common():
        print(f"  {count:7d}  {name}")
    for title, counter in (
        ("self time by package", by_pkg),
        ("self time by function", self_time),
        ("inclusive time by function", incl),
    ):
        print(f"\n-- {title}")
        for name, w in counter.most_common(args.top):
            print(f"{100 * w / total:6.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
