#!/usr/bin/env python3
"""Fails when a module of a crate imports one that imports it back (directly or through others).

Usage: scripts/check-module-cycles.py runtime/node/src
Edges are `crate::…` and `super::…` paths in code (not comments), and the crate root's `child::…` paths; a
parent's `mod child;` is not an edge. Items of the crate root (`crate::Error` through a `pub use`) count as the
root, so a module that reaches an item through the root's re-export while the root uses that module is a cycle.
"""
import os
import re
import sys


def modules(src):
    mods = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(root, f), src)[:-3].split(os.sep)
            if rel[-1] in ("mod", "lib", "main"):
                rel = rel[:-1]
            mods[tuple(rel)] = os.path.join(root, f)
    return mods


def strip_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def resolve(path, mods):
    """The longest module prefix of an item path (the crate root for an item defined there)."""
    for n in range(len(path), -1, -1):
        if tuple(path[:n]) in mods:
            return tuple(path[:n])
    return None


def edges(mods):
    out = {m: set() for m in mods}
    for m, file in mods.items():
        text = strip_comments(open(file, encoding="utf-8").read())
        # Test modules may use anything of their parent.
        text = re.sub(r"#\[cfg\(test\)\]\s*mod \w+ \{.*", "", text, flags=re.S)
        # Expand `use a::{b, c::d}` one level: enough for this code base's style.
        for prefix, inner in re.findall(r"\b((?:crate|super)(?:::\w+)*)::\{([^{}]*)\}", text):
            for part in inner.split(","):
                part = part.strip().split(" as ")[0]
                if part:
                    text += f"\n{prefix}::{part};"
        for p in re.findall(r"\b((?:crate|super)(?:::\w+)+)", text):
            parts = p.split("::")
            if parts[0] == "crate":
                path = parts[1:]
            else:
                base = list(m)
                while parts and parts[0] == "super":
                    base = base[:-1]
                    parts = parts[1:]
                path = base + parts
            target = resolve(path, mods)
            if target is not None and target != m:
                out[m].add(target)
        if m == ():
            for child in re.findall(r"(?<![:\w])(\w+)::", text):
                if (child,) in mods:
                    out[m].add((child,))
    return out


def cycles(graph):
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return found


MAX_LINES = 400


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: check-module-cycles.py SRC_DIR")
    src = sys.argv[1]
    mods = modules(src)
    graph = edges(mods)
    bad = cycles(graph)
    name = lambda m: "::".join(m) or "crate"
    for comp in bad:
        members = sorted(comp)
        detail = "; ".join(f"{name(a)} -> {name(b)}" for a in members for b in sorted(graph[a]) if b in comp)
        print(f"import cycle in {src}: {detail}", file=sys.stderr)
    long = [f for f in mods.values() if sum(1 for _ in open(f, encoding="utf-8")) > MAX_LINES]
    for f in long:
        print(f"{f} is over {MAX_LINES} lines: split it", file=sys.stderr)
    if bad or long:
        sys.exit(1)
    print(f"{src}: {len(mods)} modules, no import cycle, none over {MAX_LINES} lines")


main()
