#!/usr/bin/env python3
"""wasmfn benchmarks: throughput and latency against `wasmtime serve`, cold start, instantiation time,
deploy-to-first-response and density. Everything runs on 127.0.0.1 with ephemeral ports.

Run through bench/run.sh, which builds what this needs."""

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

LOOPBACK = "127.0.0.1"
# Both servers run without backtrace capture, as in production (RUST_BACKTRACE=1 makes every error value
# capture a backtrace).
SERVER_ENV = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}


def free_port():
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except OSError:
            pass
        time.sleep(0.02)
    raise SystemExit(f"timed out waiting for {what}")


def http(method, url, body=None, timeout=120):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Wasmfn:
    """A `wasmfn serve` process with its own data dir."""

    def __init__(self, binary, config=""):
        self.dir = tempfile.mkdtemp(prefix="wasmfn-bench-")
        cfg = os.path.join(self.dir, "node.toml")
        with open(cfg, "w") as f:
            f.write(f'data-dir = "{self.dir}/data"\nlisten = "{LOOPBACK}:0"\nadmin-listen = "{LOOPBACK}:0"\n'
                    f'component-dirs = ["/"]\n{config}\n')
        self.binary, self.cfg = binary, cfg
        self._spawn()

    def restart(self):
        """Stops the node and starts it again on the same data dir."""
        self.proc.terminate()
        self.proc.wait(timeout=60)
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--config", self.cfg],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**SERVER_ENV, "WASMFN_LOG": "warn"},
        )
        self.ingress = self.admin = None
        while self.ingress is None or self.admin is None:
            line = self.proc.stdout.readline()
            if not line:
                raise SystemExit("wasmfn exited before listening")
            m = re.match(r"wasmfn (admin )?listening on http://(\S+)", line)
            if m:
                if m.group(1):
                    self.admin = m.group(2)
                else:
                    self.ingress = m.group(2)

    def deploy(self, name, component, extra=""):
        manifest = (
            "apiVersion: wasmfn.dev/v1alpha1\nkind: Function\n"
            f"metadata:\n  name: {name}\nspec:\n  component: {os.path.abspath(component)}\n{extra}"
        )
        status, body = http("POST", f"http://{self.admin}/v1/functions", manifest.encode())
        assert status in (200, 201), body
        return json.loads(body)

    def url(self, name, path="/"):
        return f"http://{self.ingress}/default/{name}{path}"

    def metrics(self):
        return http("GET", f"http://{self.admin}/metrics")[1].decode()

    def rss_kib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


class WasmtimeServe:
    def __init__(self, binary, component, extra=()):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [binary, "serve", "-S", "cli=y", "--addr", f"{LOOPBACK}:{self.port}", *extra, component],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=SERVER_ENV,
        )
        wait_until(lambda: http("GET", self.url())[0] == 200, 60, "wasmtime serve")

    def url(self):
        return f"http://{LOOPBACK}:{self.port}/"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def to_ms(text):
    m = re.match(r"([\d.]+)(us|ms|s)", text)
    v, unit = float(m.group(1)), m.group(2)
    return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v


def wrk(url, connections, seconds, script=None):
    threads = min(connections, 2)
    extra = ["-s", script] if script else []
    out = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency", *extra, url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "p50_ms": to_ms(lat["50"]),
        "p99_ms": to_ms(lat["99"]),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": sock.group(1) if sock else "",
    }


def histogram_buckets(metrics, name, match):
    """Cumulative bucket counts of a Prometheus histogram, as [(le, count)] sorted by le."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith(name + "_bucket{") and match in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.rsplit(" ", 1)[1])))
    return sorted(buckets)


def histogram_quantile(buckets, q):
    """Prometheus-style quantile (linear interpolation inside the bucket) of cumulative buckets."""
    total = buckets[-1][1] if buckets else 0
    if not total:
        return None
    prev_le, prev_n = 0.0, 0.0
    for le, n in buckets:
        if n >= q * total:
            if le == float("inf"):
                return prev_le
            return prev_le + (le - prev_le) * ((q * total - prev_n) / max(n - prev_n, 1e-9))
        prev_le, prev_n = le, n
    return None


def bucket_delta(after, before):
    old = dict(before)
    return [(le, n - old.get(le, 0.0)) for le, n in after]


def metric(metrics, name, match=""):
    for line in metrics.splitlines():
        if line.startswith(name) and match in line and not line.startswith("#"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def timed_get(url):
    t = time.perf_counter()
    status, _ = http("GET", url)
    assert status == 200
    return (time.perf_counter() - t) * 1000


class KeepAlive:
    """One persistent HTTP/1.1 connection, so connection set-up does not blur a server-side difference."""

    def __init__(self, addr):
        import http.client
        host, port = addr.rsplit(":", 1)
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def timed_get(self, path):
        t = time.perf_counter()
        self.conn.request("GET", path)
        r = self.conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        return (time.perf_counter() - t) * 1000


class Native:
    """The native ceiling: `native-hello` (bench/native), a plain hyper server answering the Rust hello's bytes."""

    def __init__(self, binary):
        self.proc = subprocess.Popen([binary, f"{LOOPBACK}:0"], stdout=subprocess.PIPE, text=True, env=SERVER_ENV)
        line = self.proc.stdout.readline()
        m = re.match(r"listening on http://(\S+)", line)
        if not m:
            raise SystemExit(f"native-hello did not start: {line!r}")
        self.addr = m.group(1)

    def url(self, path="/"):
        return f"http://{self.addr}{path}"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)


def throughput(args, results):
    wt = WasmtimeServe(args.wasmtime, args.component)
    wf = Wasmfn(args.wasmfn)
    native = Native(args.native) if args.native else None
    wf.deploy("hello", args.component)
    inst_name, inst_match = "wasmfn_instantiation_duration_seconds", 'function="hello"'
    results["instantiation_us"] = {}
    try:
        for c in args.connections:
            before = histogram_buckets(wf.metrics(), inst_name, inst_match)
            row = {}
            # Interleave the two servers, several rounds each, and keep the median round.
            for rnd in range(args.rounds):
                servers = [("wasmtime", wt.url()), ("wasmfn", wf.url("hello"))]
                if native:
                    servers.append(("native", native.url("/default/hello")))
                for name, url in servers:
                    wrk(url, c, 2)  # warm-up
                    row.setdefault(name, []).append(wrk(url, c, args.seconds))
            summary = {}
            for name, runs in row.items():
                runs.sort(key=lambda r: r["rps"])
                summary[name] = runs[len(runs) // 2]
            summary["ratio_rps"] = summary["wasmfn"]["rps"] / summary["wasmtime"]["rps"]
            summary["ratio_p99"] = summary["wasmfn"]["p99_ms"] / summary["wasmtime"]["p99_ms"]
            if native:
                summary["share_of_native"] = summary["wasmfn"]["rps"] / summary["native"]["rps"]
            results["throughput"][str(c)] = summary
            level = bucket_delta(histogram_buckets(wf.metrics(), inst_name, inst_match), before)
            results["instantiation_us"][str(c)] = {
                q: round(histogram_quantile(level, float(q)) * 1e6, 1) for q in ("0.5", "0.99")
            }
            print(f"c={c:<4} wasmtime {summary['wasmtime']['rps']:>9.0f} rps p50 {summary['wasmtime']['p50_ms']:.2f}ms "
                  f"p99 {summary['wasmtime']['p99_ms']:.2f}ms | wasmfn {summary['wasmfn']['rps']:>9.0f} rps "
                  f"p50 {summary['wasmfn']['p50_ms']:.2f}ms p99 {summary['wasmfn']['p99_ms']:.2f}ms | "
                  f"x{summary['ratio_rps']:.2f} rps, p99 x{summary['ratio_p99']:.2f} | instantiation p50 "
                  f"{results['instantiation_us'][str(c)]['0.5']} us p99 {results['instantiation_us'][str(c)]['0.99']} us",
                  flush=True)
            if native:
                print(f"       native hyper {summary['native']['rps']:>9.0f} rps p99 {summary['native']['p99_ms']:.2f}ms | "
                      f"wasmfn at {summary['share_of_native'] * 100:.0f}% of native", flush=True)
    finally:
        wt.stop()
        wf.stop()
        if native:
            native.stop()


def cold_start(args, results):
    # Both kinds of request follow the same idle pause (parked threads, cold caches), so the difference is the
    # cost of loading evicted code from the AOT cache and linking it: the pause is shorter than the idle TTL
    # before a warm request, and longer than it (eviction observed) before a cold one.
    ttl, pause = 1.0, 0.3
    wf = Wasmfn(args.wasmfn, f'idle-ttl = "{int(ttl * 1000)}ms"')
    try:
        wf.deploy("hello", args.component)
        conn = KeepAlive(wf.ingress)
        warm, cold = [], []
        for _ in range(args.cold_samples):
            conn.timed_get("/default/hello/")  # loaded now
            time.sleep(pause)
            warm.append(conn.timed_get("/default/hello/"))
            wait_until(lambda: metric(wf.metrics(), "wasmfn_loaded_revisions") == 0, 10, "eviction")
            time.sleep(pause)
            cold.append(conn.timed_get("/default/hello/"))
        cs = metric(wf.metrics(), "wasmfn_cold_starts_total", 'function="hello"')
        assert cs == args.cold_samples, f"expected {args.cold_samples} cold starts, metrics say {cs}"
        r = {
            "warm_median_ms": statistics.median(warm),
            "cold_median_ms": statistics.median(cold),
            "added_ms": statistics.median(cold) - statistics.median(warm),
            "samples": args.cold_samples,
            "idle_pause_s": pause,
        }
        results["cold_start"] = r
        print(f"cold start (AOT hit): warm {r['warm_median_ms']:.3f} ms, cold {r['cold_median_ms']:.3f} ms, "
              f"added {r['added_ms']:.3f} ms (median of {r['samples']}, each after {pause}s idle)", flush=True)
    finally:
        wf.stop()
    for label, component in (("rust", args.component), ("js", args.js_component)):
        if not component or not os.path.exists(component):
            continue
        wf = Wasmfn(args.wasmfn)
        try:
            t = time.perf_counter()
            wf.deploy("fresh", component)
            timed_get(wf.url("fresh"))
            ms = (time.perf_counter() - t) * 1000
            results.setdefault("deploy_to_first_response_ms", {})[label] = ms
            print(f"deploy to first response with compile ({label}, {os.path.getsize(component)} bytes): {ms:.0f} ms",
                  flush=True)
        finally:
            wf.stop()


def density(args, results):
    wf = Wasmfn(args.wasmfn, 'idle-ttl = "1h"')
    try:
        base = wf.rss_kib()
        t = time.perf_counter()
        for i in range(args.functions):
            wf.deploy(f"f{i}", args.component)
        deploy_s = time.perf_counter() - t
        time.sleep(1)
        deployed = wf.rss_kib()
        t = time.perf_counter()
        for i in range(args.functions):
            http("GET", wf.url(f"f{i}"))
        call_s = time.perf_counter() - t
        called = wf.rss_kib()
        r = {
            "functions": args.functions,
            "rss_empty_mib": base / 1024,
            "rss_deployed_idle_mib": deployed / 1024,
            "rss_after_one_call_each_mib": called / 1024,
            "per_function_kib": (called - base) / args.functions,
            "deploy_seconds": deploy_s,
            "first_calls_seconds": call_s,
        }
        results["density"] = r
        print(f"density: {args.functions} functions: RSS empty {r['rss_empty_mib']:.1f} MiB, deployed "
              f"{r['rss_deployed_idle_mib']:.1f} MiB, after one call each {r['rss_after_one_call_each_mib']:.1f} MiB "
              f"({r['per_function_kib']:.1f} KiB/function); deploys {deploy_s:.1f} s", flush=True)
    finally:
        wf.stop()


def deploys(args, results):
    """A deploy storm: `--deploy-functions` functions deployed one by one through the admin API (the component
    uploaded once, deployed by digest, so each deploy costs the table's work, not the component's). Reports the
    median deploy time of the first and the last 100, so a deploy whose cost grows with the number of functions
    shows, and the bytes the node wrote for its table per deploy."""
    wf = Wasmfn(args.wasmfn, 'idle-ttl = "1h"')
    try:
        with open(args.component, "rb") as f:
            status, body = http("POST", f"http://{wf.admin}/v1/components", f.read())
        assert status == 201, body
        digest = json.loads(body)["digest"]
        n = args.deploy_functions
        times = []
        t0 = time.perf_counter()
        for i in range(n):
            manifest = json.dumps({"apiVersion": "wasmfn.dev/v1alpha1", "kind": "Function",
                                   "metadata": {"name": f"f{i:05d}"}, "spec": {"component": digest}})
            t = time.perf_counter()
            status, body = http("POST", f"http://{wf.admin}/v1/functions", manifest.encode())
            times.append(time.perf_counter() - t)
            assert status == 201, body
        total = time.perf_counter() - t0
        written = metric(wf.metrics(), "wasmfn_table_bytes_written_total")
        r = {
            "functions": n,
            "total_seconds": total,
            "first_100_median_ms": statistics.median(times[:100]) * 1000,
            "last_100_median_ms": statistics.median(times[-100:]) * 1000,
            "table_bytes_written_per_deploy": written / n if written else None,
            "rss_mib": wf.rss_kib() / 1024,
        }
        # One request to each function (its code loaded, an instance run), then a restart on the same data.
        for i in range(n):
            assert http("GET", wf.url(f"f{i:05d}"))[0] == 200
        r["rss_after_one_request_each_mib"] = wf.rss_kib() / 1024
        t = time.perf_counter()
        wf.restart()
        wait_until(lambda: http("GET", f"http://{wf.admin}/readyz")[0] == 200, 60, "readiness after the restart")
        r["restart_to_ready_seconds"] = time.perf_counter() - t
        r["rss_after_restart_mib"] = wf.rss_kib() / 1024
        listed = json.loads(http("GET", f"http://{wf.admin}/v1/functions")[1])["functions"]
        assert len(listed) == n, len(listed)
        assert http("GET", wf.url(f"f{n - 1:05d}"))[0] == 200
        results["deploys"] = r
        print(f"deploys: RSS {r['rss_after_one_request_each_mib']:.1f} MiB after one request to each; restart to "
              f"ready (/readyz 200, {n} functions restored) {r['restart_to_ready_seconds']:.2f} s, RSS then "
              f"{r['rss_after_restart_mib']:.1f} MiB", flush=True)
        per = f"{r['table_bytes_written_per_deploy']:.0f} B" if written else "n/a (no metric)"
        print(f"deploys: {n} functions in {total:.1f} s; median deploy {r['first_100_median_ms']:.2f} ms (first 100) "
              f"-> {r['last_100_median_ms']:.2f} ms (last 100); table written per deploy {per}; "
              f"RSS {r['rss_mib']:.1f} MiB", flush=True)
    finally:
        wf.stop()


def revisions(args, results):
    """The cost of a traffic split (two revisions, 90/10) next to one revision and to `wasmtime serve`, and how
    many failing requests an automatic rollback lets through under load."""
    wt = WasmtimeServe(args.wasmtime, args.component)
    wf = Wasmfn(args.wasmfn)
    env = lambda v: f"  env: [{{name: VERSION, value: {v}}}]\n"
    wf.deploy("single", args.component)
    wf.deploy("split", args.component, env("v1"))
    wf.deploy("split", args.component, env("v2") + "  traffic:\n    - {revisionName: split-1, percent: 90}\n"
              "    - {latestRevision: true, percent: 10}\n")
    out = results["revisions"] = {"split": {}}
    try:
        for c in [c for c in args.connections if c in (16, 64)] or args.connections[:1]:
            row = {}
            for rnd in range(args.rounds):
                for name, url in (("wasmtime", wt.url()), ("single", wf.url("single")), ("split", wf.url("split"))):
                    wrk(url, c, 2)  # warm-up
                    row.setdefault(name, []).append(wrk(url, c, args.seconds))
            summary = {name: sorted(runs, key=lambda r: r["rps"])[len(runs) // 2] for name, runs in row.items()}
            summary["split_vs_single"] = summary["split"]["rps"] / summary["single"]["rps"]
            summary["split_vs_wasmtime"] = summary["split"]["rps"] / summary["wasmtime"]["rps"]
            out["split"][str(c)] = summary
            print(f"c={c:<4} wasmtime {summary['wasmtime']['rps']:>8.0f} rps | one revision "
                  f"{summary['single']['rps']:>8.0f} rps p99 {summary['single']['p99_ms']:.2f}ms | 90/10 split "
                  f"{summary['split']['rps']:>8.0f} rps p99 {summary['split']['p99_ms']:.2f}ms | split/one "
                  f"x{summary['split_vs_single']:.3f}, split/wasmtime x{summary['split_vs_wasmtime']:.2f}", flush=True)

        # A revision that fails every request (1Mi of memory cannot hold the component's initial memory),
        # rolled out at 50% under 16 connections of load.
        rollout = "  rollout: {steps: 2, duration: 10m, maxErrorRate: 0.05, minRequests: 20}\n"
        wf.deploy("rb", args.component, rollout)
        load = threading.Thread(target=wrk, args=(wf.url("rb"), 16, 4))
        load.start()
        time.sleep(1)  # load running before the bad deploy (not a synchronisation: the figures come from counters)
        wf.deploy("rb", args.component, rollout + "  limits: {memory: 1Mi}\n")
        started = time.monotonic()
        while True:
            status, body = http("GET", f"http://{wf.admin}/v1/functions/default/rb")
            if json.loads(body).get("rollout", {}).get("state") == "RolledBack":
                break
            if time.monotonic() - started > 30:
                raise SystemExit("no rollback within 30 s")
        took_ms = (time.monotonic() - started) * 1000
        load.join()
        revs = {r["name"]: r for r in json.loads(http("GET", f"http://{wf.admin}/v1/functions/default/rb/revisions")[1])["revisions"]}
        out["rollback"] = {
            "observed_after_ms": round(took_ms, 1),
            "failed_requests": revs["rb-2"]["errors"],
            "min_requests": 20,
            "good_requests": revs["rb-1"]["requests"],
        }
        print(f"rollback: {revs['rb-2']['errors']} failed requests reached clients (threshold needs 20), rolled back "
              f"{took_ms:.0f} ms after the deploy returned (as seen by polling), {revs['rb-1']['requests']} served by rb-1",
              flush=True)
    finally:
        wt.stop()
        wf.stop()


POST_EVENT_LUA = """
wrk.method = "POST"
wrk.body = '{"order": 1}'
wrk.headers["content-type"] = "application/json"
wrk.headers["ce-specversion"] = "1.0"
wrk.headers["ce-id"] = "bench"
wrk.headers["ce-source"] = "/bench"
wrk.headers["ce-type"] = "dev.wasmfn.bench"
"""


def events(args, results):
    """Events through the broker (accepted, filtered, delivered in-process) against the same binary-mode event
    POSTed straight to the function, and to `wasmtime serve`."""
    script = os.path.join(tempfile.mkdtemp(prefix="wasmfn-bench-"), "post-event.lua")
    with open(script, "w") as f:
        f.write(POST_EVENT_LUA)
    wt = WasmtimeServe(args.wasmtime, args.component)
    wf = Wasmfn(args.wasmfn)
    trigger = "  triggers:\n    - {name: t, events: {filter: {exact: {type: dev.wasmfn.bench}}}, delivery: {retry: 0}}\n"
    wf.deploy("sink", args.component, trigger)
    broker = f"http://{wf.ingress}/_events/default"
    delivered = lambda: metric(wf.metrics(), "wasmfn_events_delivered_total", 'function="sink"')
    out = results["events"] = {}
    try:
        for c in [c for c in args.connections if c in (16, 64)] or args.connections[:1]:
            row = {}
            for rnd in range(args.rounds):
                for name, url in (("wasmtime", wt.url()), ("direct", wf.url("sink"))):
                    wrk(url, c, 2, script)
                    row.setdefault(name, []).append(wrk(url, c, args.seconds, script)["rps"])
                # The broker answers 202 before delivering: count what was delivered in the window, after it drains.
                wrk(broker, c, 2, script)
                wait_until(lambda: metric(wf.metrics(), "wasmfn_events_received_total", 'function="sink"') <= delivered() + 0, 60, "drain")
                before, started = delivered(), time.monotonic()
                r = wrk(broker, c, args.seconds, script)
                wait_until(lambda: metric(wf.metrics(), "wasmfn_events_received_total", 'function="sink"') <= delivered(), 60, "drain")
                row.setdefault("broker", []).append((delivered() - before) / (time.monotonic() - started))
                row.setdefault("broker_503", []).append(r["non2xx"])
            med = {k: sorted(v)[len(v) // 2] for k, v in row.items()}
            med["broker_vs_direct"] = med["broker"] / med["direct"]
            med["broker_vs_wasmtime"] = med["broker"] / med["wasmtime"]
            out[str(c)] = med
            print(f"c={c:<4} wasmtime serve {med['wasmtime']:>8.0f} req/s | wasmfn direct {med['direct']:>8.0f} req/s | "
                  f"wasmfn broker {med['broker']:>8.0f} delivered/s (503s {med['broker_503']}) | broker/direct "
                  f"x{med['broker_vs_direct']:.2f}, broker/wasmtime x{med['broker_vs_wasmtime']:.2f}", flush=True)
    finally:
        wt.stop()
        wf.stop()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--wasmfn", required=True)
    p.add_argument("--wasmtime", required=True)
    p.add_argument("--component", required=True)
    p.add_argument("--native", help="native-hello (bench/native): the hyper ceiling in the throughput part")
    p.add_argument("--js-component")
    p.add_argument("--py-component")
    p.add_argument("--connections", type=int, nargs="+", default=[1, 16, 64, 256])
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cold-samples", type=int, default=30)
    p.add_argument("--functions", type=int, default=1000)
    p.add_argument("--deploy-functions", type=int, default=2000)
    p.add_argument("--quick", action="store_true", help="short runs for a smoke test")
    p.add_argument("--shim", help="containerd-shim-wasmfn-v1 (the shim part needs root and containerd)")
    p.add_argument("--shim-samples", type=int, default=15)
    p.add_argument(
        "--only", choices=["throughput", "cold", "density", "deploys", "revisions", "events", "reuse", "shim"]
    )
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results.json"))
    args = p.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.cold_samples, args.functions, args.shim_samples = 2, 1, 5, 50, 3
        args.deploy_functions = 200
    results = {
        "machine": {"cpus": os.cpu_count(), "uname": " ".join(os.uname())},
        "throughput": {},
    }
    if args.only in (None, "throughput"):
        throughput(args, results)
    if args.only in (None, "cold"):
        cold_start(args, results)
    if args.only in (None, "density"):
        density(args, results)
    if args.only in (None, "deploys"):
        deploys(args, results)
    if args.only in (None, "revisions"):
        revisions(args, results)
    if args.only in (None, "events"):
        events(args, results)
    if args.only in (None, "reuse") and (args.js_component or args.py_component):
        import reuse as reuse_bench  # bench/reuse.py

        reuse_bench.reuse(args, results, sys.modules[__name__])
    if args.only in (None, "shim") and args.shim:
        import shim as shim_bench  # bench/shim.py

        shim_bench.shim(args, results, free_port)
    with open(args.out, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
