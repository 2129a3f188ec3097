"""Instance reuse (`spec.scaling.reuse`) on the JavaScript and Python hello: wasmfn with and without reuse
against `wasmtime serve` with and without `--max-instance-reuse-count`, same component, same machine, rounds
interleaved, median round reported."""

REUSE_COUNT = 1000


def reuse(args, results, b):
    out = results.setdefault("reuse", {})
    for lang, component in (("js", args.js_component), ("python", args.py_component)):
        if not component:
            continue
        servers = {}
        try:
            servers["wasmtime"] = b.WasmtimeServe(args.wasmtime, component)
            servers["wasmtime-reuse"] = b.WasmtimeServe(
                args.wasmtime, component, ["--max-instance-reuse-count", str(REUSE_COUNT), "--idle-instance-timeout", "60s"]
            )
            wf = servers["wasmfn"] = b.Wasmfn(args.wasmfn)
            wf.deploy("fresh", component, "  limits:\n    memory: 256Mi\n")
            wf.deploy("reuse", component, f"  limits:\n    memory: 256Mi\n  scaling:\n    reuse: {{maxRequests: {REUSE_COUNT}}}\n")
            urls = {
                "wasmtime": servers["wasmtime"].url(),
                "wasmtime-reuse": servers["wasmtime-reuse"].url(),
                "wasmfn": wf.url("fresh"),
                "wasmfn-reuse": wf.url("reuse"),
            }
            for c in (16,):
                runs = {}
                for _ in range(args.rounds):
                    for name, url in urls.items():
                        b.wrk(url, c, 2)  # warm-up
                        runs.setdefault(name, []).append(b.wrk(url, c, args.seconds))
                row = {}
                for name, rs in runs.items():
                    rs.sort(key=lambda r: r["rps"])
                    row[name] = rs[len(rs) // 2]
                row["ratio_reuse_vs_wasmtime"] = row["wasmfn-reuse"]["rps"] / row["wasmtime"]["rps"]
                row["ratio_reuse_vs_wasmtime_reuse"] = row["wasmfn-reuse"]["rps"] / row["wasmtime-reuse"]["rps"]
                row["ratio_fresh_vs_wasmtime"] = row["wasmfn"]["rps"] / row["wasmtime"]["rps"]
                out.setdefault(lang, {})[str(c)] = row
                line = " | ".join(
                    f"{n} {row[n]['rps']:.0f} rps p99 {row[n]['p99_ms']:.2f}ms" + (f" non2xx {row[n]['non2xx']}" if row[n]["non2xx"] else "")
                    for n in urls
                )
                print(
                    f"reuse {lang} c={c}: {line} | reuse/wasmtime x{row['ratio_reuse_vs_wasmtime']:.2f}, "
                    f"reuse/wasmtime-reuse x{row['ratio_reuse_vs_wasmtime_reuse']:.2f}, fresh/wasmtime x{row['ratio_fresh_vs_wasmtime']:.2f}",
                    flush=True,
                )
        finally:
            for s in servers.values():
                s.stop()
