#!/usr/bin/env python3
"""Build time and size of a typical Kyma Node.js function with npm dependencies (issue 18).

`bench/kyma-node` is a Kyma-style `main(event, context)` using axios and lodash. Each round copies it to a fresh
folder (no node_modules) and builds it with `wasmfn build`:
- cold: an empty build cache (so the run includes `npm install` and splicing the JS engine, made once per builder);
- first build on a warm builder: a fresh folder and a new cache key, the engine cache kept (what a build Job with
  a persistent cache, or a second function on a laptop, costs; `npm install` included);
- edit: the same folder after changing one line of the handler (node_modules present).
Rounds interleave the three; medians are reported with the component's size, raw and gzip-compressed (what a
registry stores and a node pulls).

Usage: bench/kyma_build.py --wasmfn target/release/wasmfn [--rounds 5]   (writes bench/kyma-build.json)
"""

import argparse
import gzip
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def build(wasmfn, src, cache, out):
    env = dict(os.environ, WASMFN_CACHE_DIR=cache)
    t = time.monotonic()
    p = subprocess.run([wasmfn, "build", src, "-o", out], env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"building {src} failed:\n{p.stderr}")
    if "cached" in p.stdout:
        raise SystemExit(f"{src}: expected a build, got a cache hit")
    return elapsed


def fresh_copy(root, name):
    dst = os.path.join(root, name)
    shutil.copytree(os.path.join(HERE, "kyma-node"), dst)
    # A new source (and so a new cache key) per copy, as a new function would be.
    with open(os.path.join(dst, "handler.js"), "a") as f:
        f.write(f"// {name} {time.time()}\n")
    return dst


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wasmfn", required=True)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    times = {"cold": [], "warm_builder": [], "edit": []}
    size = gz = None
    warm_cache = tempfile.mkdtemp(prefix="wasmfn-bench-kyma-warm-")
    try:
        root = tempfile.mkdtemp(prefix="wasmfn-bench-kyma-")
        out = os.path.join(root, "out.wasm")
        # Fill the warm builder's engine cache once.
        build(args.wasmfn, fresh_copy(root, "prime"), warm_cache, out)
        for i in range(args.rounds):
            cold_cache = tempfile.mkdtemp(prefix="wasmfn-bench-kyma-cold-")
            try:
                times["cold"].append(build(args.wasmfn, fresh_copy(root, f"cold{i}"), cold_cache, out))
            finally:
                shutil.rmtree(cold_cache, ignore_errors=True)
            src = fresh_copy(root, f"warm{i}")
            times["warm_builder"].append(build(args.wasmfn, src, warm_cache, out))
            size = os.path.getsize(out)
            with open(out, "rb") as f:
                gz = len(gzip.compress(f.read(), 6))
            handler = os.path.join(src, "handler.js")
            with open(handler, "a") as f:
                f.write(f"// edit {i} {time.time()}\n")
            times["edit"].append(build(args.wasmfn, src, warm_cache, out))
        shutil.rmtree(root, ignore_errors=True)
    finally:
        shutil.rmtree(warm_cache, ignore_errors=True)
    result = {
        "rounds": args.rounds,
        "median_s": {k: statistics.median(v) for k, v in times.items()},
        "all_s": times,
        "component_bytes": size,
        "component_gzip_bytes": gz,
    }
    with open(os.path.join(HERE, "kyma-build.json"), "w") as f:
        json.dump(result, f, indent=2)
    m = result["median_s"]
    print(f"kyma-node (axios + lodash), median of {args.rounds}:")
    print(f"  cold (empty cache, npm install): {m['cold']:.2f} s")
    print(f"  first build on a warm builder:   {m['warm_builder']:.2f} s")
    print(f"  after an edit:                   {m['edit']:.2f} s")
    print(f"  component: {size / 2**20:.1f} MiB, {gz / 2**20:.1f} MiB gzip")


if __name__ == "__main__":
    main()
