#!/usr/bin/env python3
"""Build-time benchmark of the compiler templates (issue 3).

For each language's hello example: the build with an empty cache (cold: for Rust this includes building the
standard library), a second function of the same language with that cache (Rust reuses std and the shared
dependencies), and an unchanged rebuild (warm: a cache hit, timed by hyperfine). Reports component sizes.

Usage: bench/builds.py --wasmfn target/release/wasmfn [--runs 10]   (writes bench/builds.json)
"""

import argparse
import json
import os
import shutil
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGS = [("rust", "hello-rust", "api-rust"), ("js", "hello-js", "api-js"), ("python", "hello-py", "api-py")]


def build(wasmfn, cache, example, out):
    env = dict(os.environ, WASMFN_CACHE_DIR=cache)
    t = time.monotonic()
    p = subprocess.run([wasmfn, "build", os.path.join(ROOT, "examples", example), "-o", out],
                       env=env, capture_output=True, text=True)
    elapsed = time.monotonic() - t
    if p.returncode != 0:
        raise SystemExit(f"building {example} failed:\n{p.stderr}")
    if "cached" in p.stdout:
        raise SystemExit(f"{example}: expected a cold build, got a cache hit")
    return elapsed


def warm(wasmfn, cache, example, runs):
    env = dict(os.environ, WASMFN_CACHE_DIR=cache)
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        cmd = f"{wasmfn} build {os.path.join(ROOT, 'examples', example)} -o /dev/null"
        subprocess.run(["hyperfine", "-N", "--warmup", "1", "--runs", str(runs), "--export-json", f.name, cmd],
                       env=env, check=True, capture_output=True)
        r = json.load(open(f.name))["results"][0]
    return {"mean_ms": r["mean"] * 1000, "min_ms": r["min"] * 1000, "max_ms": r["max"] * 1000}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wasmfn", required=True)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args()
    results = {}
    for lang, hello, second in LANGS:
        cache = tempfile.mkdtemp(prefix=f"wasmfn-bench-build-{lang}-")
        out = os.path.join(cache, "out.wasm")
        try:
            cold = build(args.wasmfn, cache, hello, out)
            size = os.path.getsize(out)
            second_s = build(args.wasmfn, cache, second, out)
            hot = warm(args.wasmfn, cache, hello, args.runs)
        finally:
            shutil.rmtree(cache, ignore_errors=True)
        results[lang] = {"example": hello, "cold_s": cold, "second_function": second, "second_s": second_s,
                         "warm": hot, "size_bytes": size}
        print(f"{lang:<7} {hello:<11} cold {cold:6.1f}s | second function ({second}) {second_s:5.1f}s | "
              f"warm {hot['mean_ms']:6.1f} ms (max {hot['max_ms']:.1f}) | size {size / 1024:,.0f} KiB", flush=True)
    json.dump(results, open(os.path.join(ROOT, "bench", "builds.json"), "w"), indent=2)


if __name__ == "__main__":
    main()
