"""Container start with the containerd shim: time from `ctr run` to the first HTTP 200, cold (empty compile cache)
and warm (compiled code cached), against peers in the same run on the same containerd: a native `busybox httpd`
in a runc container, and `wasmtime serve` started as a plain process (no container) on the same component, cold
and from a `wasmtime compile`d `.cwasm`. Needs root (containerd). Used by bench.py (`--only shim`)."""

import hashlib
import io
import json
import os
import shutil
import statistics
import subprocess
import tarfile
import tempfile
import time
import urllib.request

LOOPBACK = "127.0.0.1"


def _tar(files):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, data, mode in files:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), mode
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _sha(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()


def plain_image(path, ref, files, entrypoint):
    """An OCI layout tarball (one uncompressed layer, linux/amd64) that `ctr images import` names `ref`."""
    desc = lambda mt, b: {"mediaType": mt, "digest": _sha(b), "size": len(b)}
    layer = _tar(files)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": entrypoint},
                         "rootfs": {"type": "layers", "diff_ids": [_sha(layer)]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": desc("application/vnd.oci.image.config.v1+json", config),
                           "layers": [desc("application/vnd.oci.image.layer.v1.tar", layer)]}).encode()
    md = desc("application/vnd.oci.image.manifest.v1+json", manifest)
    md["annotations"] = {"io.containerd.image.name": ref}
    index = json.dumps({"schemaVersion": 2, "manifests": [md]}).encode()
    blobs = [("blobs/sha256/" + _sha(b)[7:], b, 0o644) for b in (layer, config, manifest)]
    with open(path, "wb") as f:
        f.write(_tar([("oci-layout", b'{"imageLayoutVersion":"1.0.0"}', 0o644), ("index.json", index, 0o644)] + blobs))


def first_200(port, started, proc, timeout=60):
    """Seconds from `started` to the first 200 on `/`, polling every 2 ms."""
    deadline = started + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/", timeout=5) as r:
                if r.status == 200:
                    return time.monotonic() - started
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"exited before serving: {proc.stdout.read() if proc.stdout else ''}")
        time.sleep(0.002)
    raise SystemExit("timed out waiting for the first 200")


class Containerd:
    def __init__(self, shim_dir):
        self.dir = tempfile.mkdtemp(prefix="wasmfn-bench-ctrd-")
        self.sock = os.path.join(self.dir, "c.sock")
        self.shim_cache = os.path.join(self.dir, "shim")
        cfg = os.path.join(self.dir, "config.toml")
        with open(cfg, "w") as f:
            f.write(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                    f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.sock}"\n'
                    f'[ttrpc]\n  address = "{self.sock}.ttrpc"\n')
        env = dict(os.environ, PATH=f"{shim_dir}:{os.environ['PATH']}", WASMFN_SHIM_DIR=self.shim_cache)
        self.log = open(os.path.join(self.dir, "containerd.log"), "w")
        self.proc = subprocess.Popen(["containerd", "--config", cfg], env=env, stdout=self.log, stderr=self.log)
        deadline = time.monotonic() + 30
        while subprocess.run(self.ctr("version"), capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise SystemExit("containerd did not start")
            time.sleep(0.05)

    def ctr(self, *args):
        return ["ctr", "--address", self.sock, "--namespace", "bench", *args]

    def run(self, image, cid, runtime, port, args=()):
        env = ["--env", f"PORT={port}", "--env", f"WASMFN_ADDRESS={LOOPBACK}"]
        return subprocess.Popen(self.ctr("run", "--rm", "--net-host", "--runtime", runtime, *env, image, cid, *args),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop_task(self, cid, proc):
        subprocess.run(self.ctr("task", "kill", "-s", "SIGKILL", cid), capture_output=True)
        proc.wait(timeout=60)

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        subprocess.run(["umount", "-R", "-l", os.path.join(self.dir, "root")], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def shim(args, results, free_port):
    samples = args.shim_samples
    ctrd = Containerd(os.path.dirname(os.path.abspath(args.shim)))
    work = tempfile.mkdtemp(prefix="wasmfn-bench-shim-")
    components = [("rust", args.component)] + ([("js", args.js_component)] if args.js_component else [])
    try:
        sizes = {}
        for lang, path in components:
            with open(path, "rb") as f:
                component = f.read()
            sizes[lang] = len(component)
            plain_image(f"{work}/{lang}.tar", f"bench/{lang}:1", [("app.wasm", component, 0o644)], ["/app.wasm"])
            subprocess.run(ctrd.ctr("images", "import", f"{work}/{lang}.tar"), check=True, capture_output=True)
            subprocess.run([args.wasmtime, "compile", "-o", f"{work}/{lang}.cwasm", path], check=True)
        busybox = shutil.which("busybox")
        if busybox:
            with open(busybox, "rb") as f:
                bb = f.read()
            plain_image(f"{work}/bb.tar", "bench/busybox:1",
                        [("bin/busybox", bb, 0o755), ("www/index.html", b"hello\n", 0o644)],
                        ["/bin/busybox", "httpd", "-f", "-h", "/www"])
            subprocess.run(ctrd.ctr("images", "import", f"{work}/bb.tar"), check=True, capture_output=True)

        times = {}
        for i in range(samples):
            for lang, path in components:
                # Cold: nothing compiled yet for this engine.
                shutil.rmtree(os.path.join(ctrd.shim_cache, "aot"), ignore_errors=True)
                os.makedirs(os.path.join(ctrd.shim_cache, "aot"), mode=0o1777, exist_ok=True)
                for kind in ("shim_cold", "shim_warm"):
                    port, cid = free_port(), f"{lang}-{kind}-{i}"
                    t = time.monotonic()
                    p = ctrd.run(f"bench/{lang}:1", cid, "io.containerd.wasmfn.v1", port)
                    times.setdefault(f"{lang}_{kind}", []).append(first_200(port, t, p))
                    ctrd.stop_task(cid, p)
                for kind, wasm, extra in (("wasmtime_cold", path, ["-C", "cache=n"]),
                                          ("wasmtime_precompiled", f"{work}/{lang}.cwasm", ["--allow-precompiled"])):
                    port = free_port()
                    t = time.monotonic()
                    p = subprocess.Popen([args.wasmtime, "serve", "-S", "cli=y", *extra, "--addr", f"{LOOPBACK}:{port}",
                                          wasm], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    times.setdefault(f"{lang}_{kind}", []).append(first_200(port, t, p))
                    p.kill()
                    p.wait()
            if busybox:
                port, cid = free_port(), f"bb-{i}"
                cmd = ["/bin/busybox", "httpd", "-f", "-h", "/www", "-p", f"{LOOPBACK}:{port}"]
                t = time.monotonic()
                p = ctrd.run("bench/busybox:1", cid, "io.containerd.runc.v2", port, cmd)
                times.setdefault("runc_busybox", []).append(first_200(port, t, p))
                ctrd.stop_task(cid, p)
        med = {k: statistics.median(v) * 1000 for k, v in times.items()}
        out = results["shim"] = {"samples": samples, "median_ms": med,
                                 "min_ms": {k: min(v) * 1000 for k, v in times.items()},
                                 "max_ms": {k: max(v) * 1000 for k, v in times.items()},
                                 "component_bytes": sizes}
        for k, v in med.items():
            print(f"{k:<26} median {v:8.1f} ms  (min {out['min_ms'][k]:.1f}, max {out['max_ms'][k]:.1f}, n={samples})",
                  flush=True)
        for lang, _ in components:
            warm = med[f"{lang}_shim_warm"]
            line = (f"{lang}: shim cold/warm x{med[f'{lang}_shim_cold'] / warm:.2f}; "
                    f"warm vs containerd-shim-spin's reported 1138 ms median x{warm / 1138:.3f}")
            if "runc_busybox" in med:
                line += f"; warm vs runc busybox x{warm / med['runc_busybox']:.2f}"
            print(line, flush=True)
    finally:
        ctrd.close()
        shutil.rmtree(work, ignore_errors=True)
