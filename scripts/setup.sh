#!/usr/bin/env bash
# Installs what wasmfn needs on Debian 12. Idempotent: a second run only checks.
#   - Debian's Rust 1.96 with its std source, lld and wasi-libc: builds Rust functions for wasm32-wasip2
#     offline (-Zbuild-std), where rustup cannot download the wasm32-wasip2 target;
#   - Node.js, componentize-js and esbuild (npm) for JavaScript functions; componentize-py (PyPI) for Python;
#   - docker-registry, skopeo and htpasswd (apache2-utils) for the OCI registry tests;
#   - nats-server (JetStream) for the eventing tests;
#   - kubectl (kustomize) and kubernetes-validate (PyPI) for the offline checks of deploy/;
#   - containerd and runc for the containerd shim's tests; protoc and libseccomp to build the shim;
#   - wrk, hyperfine and busybox-static (a native container to compare the shim with) for the benchmarks;
#   - chromium and chromium-driver (WebDriver) for the console's browser test; the console's npm packages
#     (CodeMirror, uPlot, esbuild) to check that its committed bundle is fresh.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

pkgs=(rustc-web cargo-web rust-web-src rust-web-llvm lld-22 wasi-libc wrk hyperfine ca-certificates
  docker-registry skopeo apache2-utils openssl git nats-server containerd runc protobuf-compiler libseccomp-dev
  pkg-config busybox-static chromium chromium-driver)
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
# kubectl renders the kustomize base in the manifest checks; Debian's kubernetes-client when none is installed.
command -v kubectl >/dev/null 2>&1 || pkgs+=(kubernetes-client)
command -v python3 >/dev/null 2>&1 || pkgs+=(python3)
python3 -c 'import ensurepip' >/dev/null 2>&1 || pkgs+=(python3-venv)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The nats-server package may start a system server on :4222; the tests run their own on ephemeral ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled nats-server >/dev/null 2>&1; then
  $SUDO systemctl disable --now nats-server >/dev/null 2>&1 || true
fi
# The package starts a system registry on :5000; the tests run their own on 127.0.0.1 ephemeral ports.
if command -v systemctl >/dev/null 2>&1 && systemctl is-enabled docker-registry >/dev/null 2>&1; then
  $SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true
fi

# The package starts a system containerd; the shim tests run their own with a socket in a temp dir. Only a
# containerd this run installed is stopped: one that was there before may be running Docker or a kubelet.
if [[ " ${missing[*]:-} " == *" containerd "* ]] && command -v systemctl >/dev/null 2>&1 \
  && systemctl is-enabled containerd >/dev/null 2>&1; then
  $SUDO systemctl disable --now containerd >/dev/null 2>&1 || true
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: no host Rust toolchain: install rustup (https://rustup.rs) with Rust >= 1.95" >&2
  exit 1
fi

# componentize-js for the JavaScript template, pinned by package-lock.json.
js=compiler-templates/js
stamp="$js/node_modules/.wasmfn-lock-sha256"
want=$(sha256sum "$js/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm install in $js"
  # `npm ci` rejects this lock file (optional per-platform packages of other platforms); `npm install`
  # still follows it.
  npm install --prefix "$js" --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# The console's third-party code (console/dist is committed; the test rebuilds it to check it is fresh).
console=console
stamp="$console/node_modules/.wasmfn-lock-sha256"
want=$(sha256sum "$console/package-lock.json" | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci in $console"
  npm ci --prefix "$console" --no-audit --no-fund --loglevel=error
  echo "$want" > "$stamp"
fi

# componentize-py for the Python template, in its own virtualenv (Debian's Python is externally managed).
venv=compiler-templates/python/.venv
if ! "$venv/bin/componentize-py" --version 2>/dev/null | grep -q "0.25.1"; then
  echo "setup: componentize-py 0.25.1 into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check componentize-py==0.25.1
fi
