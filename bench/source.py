#!/usr/bin/env python3
"""Source to first response (issue 16, items 1 and 2): how long a new or edited JavaScript or Python function
takes from `wasmfn build` to its first 200 on a node that has already served that language.

One node (release build, fresh data dir). Per language, the hello example is built and deployed first (the
builder's caches and the node's compile cache are warm after it). Then, for `--rounds` rounds, interleaved:
- "new": a copy of the api example with a unique marker in its source (a new function: new build, new digest),
  built with the wasmfn pipeline, deployed through the admin API, requested until the first 200;
- "edit": the same function with its source changed again, redeployed under the same name (what `wasmfn up`
  does on a save);
- "peer": for JavaScript, the same "new" step built by componentize-js's own pipeline
  (WASMFN_JS_PIPELINE=componentize-js): the build wasmfn used before, on the same machine in the same run.
Each step reports build, deploy (the admin call returns once the code is compiled and linked) and first-request
times; medians over the rounds.

Usage: bench/source.py --wasmfn target/release/wasmfn [--rounds 3] [--langs js,python]   (writes bench/source.json)
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Wasmfn, http  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LANGS = {"js": ("hello-js", "api-js", "handler.js", "//"), "python": ("hello-py", "api-py", "handler.py", "#")}


def build(wasmfn, cache, src, out, env=None):
    t = time.monotonic()
    p = subprocess.run([wasmfn, "build", src, "-o", out], capture_output=True, text=True,
                       env={**os.environ, "WASMFN_CACHE_DIR": cache, **(env or {})})
    if p.returncode != 0:
        raise SystemExit(f"building {src} failed:\n{p.stdout}\n{p.stderr}")
    if "cached" in p.stdout:
        raise SystemExit(f"{src}: expected a build, got a cache hit")
    return time.monotonic() - t


def deploy_and_call(node, name, component):
    t = time.monotonic()
    node.deploy(name, component)
    deployed = time.monotonic() - t
    t = time.monotonic()
    deadline = t + 60
    while True:
        status, _ = http("GET", node.url(name))
        if status == 200:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"{name}: no 200 within 60 s (last {status})")
    return deployed, time.monotonic() - t


def variant(example, entry, comment, marker, into):
    """A copy of `example` whose entry file carries `marker`: a different source, so a different build."""
    shutil.rmtree(into, ignore_errors=True)
    shutil.copytree(os.path.join(ROOT, "examples", example), into,
                    ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
    with open(os.path.join(into, entry), "a") as f:
        f.write(f"\n{comment} {marker}\n")
    nm = os.path.join(ROOT, "examples", example, "node_modules")
    if os.path.isdir(nm):
        os.symlink(nm, os.path.join(into, "node_modules"))


def step(wasmfn, node, cache, work, name, src, env=None):
    out = os.path.join(work, f"{name}-{time.monotonic_ns()}.wasm")
    b = build(wasmfn, cache, src, out, env)
    d, r = deploy_and_call(node, name, out)
    return {"build_s": b, "deploy_s": d, "first_request_s": r, "total_s": b + d + r}


def median(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wasmfn", required=True)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--langs", default="js,python")
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="wasmfn-bench-source-")
    cache = os.path.join(work, "cache")
    node = Wasmfn(args.wasmfn)
    results = {}
    try:
        for lang in args.langs.split(","):
            hello, api, entry, comment = LANGS[lang]
            first = step(args.wasmfn, node, cache, work, hello, os.path.join(ROOT, "examples", hello))
            print(f"{lang} first function (cold builder, cold node): {first['total_s']:.2f} s", flush=True)
            rows = {"new": [], "edit": [], "peer": []}
            for i in range(args.rounds):
                src = os.path.join(work, f"{lang}-{i}")
                variant(api, entry, comment, f"new function {i}", src)
                rows["new"].append(step(args.wasmfn, node, cache, work, f"{lang}-api-{i}", src))
                variant(api, entry, comment, f"edited {i}", src)
                rows["edit"].append(step(args.wasmfn, node, cache, work, f"{lang}-api-{i}", src))
                if lang == "js":
                    variant(api, entry, comment, f"peer function {i}", src)
                    rows["peer"].append(step(args.wasmfn, node, cache, work, f"{lang}-peer-{i}", src,
                                             {"WASMFN_JS_PIPELINE": "componentize-js"}))
                print(f"{lang} round {i}: " + ", ".join(f"{k} {v[-1]['total_s']:.2f} s" for k, v in rows.items() if v),
                      flush=True)
            summary = {"first": first}
            for kind, r in rows.items():
                if r:
                    summary[kind] = {k: median(r, k) for k in ("build_s", "deploy_s", "first_request_s", "total_s")}
                    summary[kind]["rounds"] = r
            results[lang] = summary
            for kind in ("new", "edit", "peer"):
                if kind in summary:
                    s = summary[kind]
                    print(f"{lang} {kind}: build {s['build_s']:.2f} + deploy {s['deploy_s']:.2f} + first request "
                          f"{s['first_request_s'] * 1000:.0f} ms = {s['total_s']:.2f} s (median of {args.rounds})")
    finally:
        node.stop()
        shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(ROOT, "bench", "source.json"), "w") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
