#!/usr/bin/env bash
# End-to-end test of wasmfn on Kubernetes, on a local kind cluster (not run in CI: it needs Docker, kind and
# a few GB of disk and memory). It
#   1. creates a kind cluster (reused if it exists),
#   2. builds ghcr.io/wasmfn/wasmfn:dev (Dockerfile) and ghcr.io/wasmfn/builder:dev
#      (compiler-templates/Dockerfile) and loads them into the cluster,
#   3. installs deploy/crd.yaml and the deploy/e2e/ overlay: everything of deploy/base plus a plain-HTTP
#      registry in wasmfn-system that the operator pushes to and the nodes pull from,
#   4. checks the RBAC: the node's ServiceAccount cannot create Jobs, and neither account can read Secrets,
#   5. applies deploy/examples/python-inline.yaml (hello-inline), waits for BuildSucceeded and Ready, and
#      curls http://127.0.0.1:<port>/default/hello-inline/ through a port-forward of svc/wasmfn-ingress,
#   6. applies hello-image, a Function with spec.image = the component hello-inline's build pushed
#      (status.image), and curls it,
#   7. deletes both and checks that their build Jobs and ConfigMaps are gone and the node stops serving them.
# On failure it prints the Functions, the build pods and the operator's and nodes' logs.
#
# Usage: deploy/e2e.sh
# Environment:
#   CLUSTER=wasmfn-e2e     kind cluster name (kubectl context kind-$CLUSTER; no other context is touched)
#   KEEP=1                 keep the cluster afterwards (it is deleted on exit otherwise, pass or fail)
#   SKIP_BUILD=1           do not build the images; load the existing local ones
#   KIND_NODE_IMAGE=…      node image for `kind create cluster --image`, e.g. kindest/node:v1.33.1
#   PORT=…                 local port of the port-forward (a free one by default)
#   TIMEOUT=600            seconds to wait for a Function to become Ready
#   E2E_IMAGE=REF          component for hello-image instead of hello-inline's (a registry the nodes can reach)
# Needs: docker (with BuildKit), kind, kubectl >= 1.23, curl.
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${CLUSTER:-wasmfn-e2e}
KEEP=${KEEP:-0}
SKIP_BUILD=${SKIP_BUILD:-0}
TIMEOUT=${TIMEOUT:-600}
WASMFN_IMAGE=ghcr.io/wasmfn/wasmfn:dev
BUILDER_IMAGE=ghcr.io/wasmfn/builder:dev
REGISTRY_IMAGE=registry:2
CONTEXT=kind-$CLUSTER
NS=default

if [ -t 1 ]; then bold=$'\033[1m' red=$'\033[31m' green=$'\033[32m' reset=$'\033[0m'; else bold="" red="" green="" reset=""; fi
n=0
step() {
  n=$((n + 1))
  printf '\n%s==> [%d] %s%s\n' "$bold" "$n" "$*" "$reset"
}
info() { printf '    %s\n' "$*"; }
die() {
  printf '%sFAIL: %s%s\n' "$red" "$*" "$reset" >&2
  exit 1
}
k() { kubectl --context "$CONTEXT" "$@"; }

for tool in docker kind kubectl curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
[ -f deploy/crd.yaml ] || die "deploy/crd.yaml is missing: cargo run -p wasmfn-operator --bin crdgen > deploy/crd.yaml"
docker info >/dev/null 2>&1 || die "docker cannot reach a Docker engine"

tmp=$(mktemp -d)
pf_pid=""

diagnostics() {
  printf '\n%s==> diagnostics%s\n' "$bold" "$reset"
  set +e
  k get functions -A -o yaml
  k get jobs,pods,configmaps -n "$NS" -l app.kubernetes.io/managed-by=wasmfn-operator -o wide
  k -n wasmfn-system get pods -o wide
  k get events -A --sort-by=.lastTimestamp | tail -n 40
  for fn in hello-inline hello-image; do
    echo "--- build pods of $fn"
    k -n "$NS" logs -l "wasmfn.dev/function=$fn" --all-containers --tail=100 --prefix
  done
  echo "--- operator"
  k -n wasmfn-system logs deploy/wasmfn-operator --tail=200
  echo "--- nodes"
  k -n wasmfn-system logs -l app.kubernetes.io/name=wasmfn-node --all-containers --tail=200 --prefix
  [ -f "$tmp/port-forward.log" ] && { echo "--- port-forward"; cat "$tmp/port-forward.log"; }
  set -e
}

cleanup() {
  local rc=$?
  trap - EXIT
  set +e
  if [ $rc -ne 0 ] && kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then diagnostics; fi
  [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null
  rm -rf "$tmp"
  if [ "$KEEP" = 1 ]; then
    echo "KEEP=1: the cluster stays: kubectl --context $CONTEXT …; delete it with: kind delete cluster --name $CLUSTER"
  elif kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    echo "deleting the kind cluster $CLUSTER (KEEP=1 keeps it)"
    kind delete cluster --name "$CLUSTER" >/dev/null 2>&1
  fi
  if [ $rc -eq 0 ]; then printf '\n%sPASS%s\n' "$green" "$reset"; else printf '\n%sFAILED (exit %d)%s\n' "$red" "$rc" "$reset"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Loads a local image into the cluster's nodes. `kind load docker-image` fails on some Docker versions
# using the containerd image store; an archive works there.
load_image() {
  if ! kind load docker-image --name "$CLUSTER" "$1" >/dev/null 2>"$tmp/load.err"; then
    info "kind load docker-image failed ($(tail -n1 "$tmp/load.err")); trying an image archive"
    docker save -o "$tmp/image.tar" "$1"
    kind load image-archive --name "$CLUSTER" "$tmp/image.tar" >/dev/null
    rm -f "$tmp/image.tar"
  fi
  info "loaded $1"
}

# wait_built FUNCTION: waits for BuildSucceeded=True, failing at once when it is False.
wait_built() {
  local fn=$1 deadline=$((SECONDS + TIMEOUT)) status reason message
  while :; do
    status=$(k -n "$NS" get function "$fn" -o jsonpath='{.status.conditions[?(@.type=="BuildSucceeded")].status}' || true)
    case "$status" in
      True) return 0 ;;
      False)
        reason=$(k -n "$NS" get function "$fn" -o jsonpath='{.status.conditions[?(@.type=="BuildSucceeded")].reason}')
        message=$(k -n "$NS" get function "$fn" -o jsonpath='{.status.conditions[?(@.type=="BuildSucceeded")].message}')
        die "$fn: BuildSucceeded=False ($reason): $message"
        ;;
    esac
    [ $SECONDS -lt "$deadline" ] || die "$fn: no BuildSucceeded=True after ${TIMEOUT}s"
    sleep 3
  done
}

# expect_body PATH BODY: GETs the ingress until it answers BODY (up to 60 s: nodes pick up a Ready
# Function's image asynchronously).
expect_body() {
  local path=$1 want=$2 got="" deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    if got=$(curl -fsS --max-time 10 "http://127.0.0.1:$port$path" 2>"$tmp/curl.err") && [ "$got" = "$want" ]; then
      info "GET $path -> \"$got\""
      return 0
    fi
    sleep 2
  done
  die "GET http://127.0.0.1:$port$path: want \"$want\", got \"$got\" $(cat "$tmp/curl.err")"
}

# ----------------------------------------------------------------------------------------------------------
step "kind cluster $CLUSTER"
if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  info "reusing the existing cluster"
else
  kind create cluster --name "$CLUSTER" --wait 180s ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}
fi
k cluster-info >/dev/null
info "kubectl context $CONTEXT, Kubernetes $(k version -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1)"

step "images"
if [ "$SKIP_BUILD" = 1 ]; then
  info "SKIP_BUILD=1: using the local $WASMFN_IMAGE and $BUILDER_IMAGE"
else
  info "docker build -t $WASMFN_IMAGE ."
  DOCKER_BUILDKIT=1 docker build -t "$WASMFN_IMAGE" -f Dockerfile .
  info "docker build -t $BUILDER_IMAGE -f compiler-templates/Dockerfile ."
  DOCKER_BUILDKIT=1 docker build -t "$BUILDER_IMAGE" -f compiler-templates/Dockerfile .
fi
load_image "$WASMFN_IMAGE"
load_image "$BUILDER_IMAGE"
# The registry image too, when Docker can get it (otherwise the kind node pulls it).
if docker image inspect "$REGISTRY_IMAGE" >/dev/null 2>&1 || docker pull -q "$REGISTRY_IMAGE" >/dev/null 2>&1; then
  load_image "$REGISTRY_IMAGE"
fi

step "install: deploy/crd.yaml and the deploy/e2e overlay (deploy/base + in-cluster registry)"
k apply -f deploy/crd.yaml
k wait --for=condition=Established crd/functions.wasmfn.dev --timeout=60s
k apply -k deploy/e2e/
k -n wasmfn-system rollout status deploy/registry --timeout=180s
k -n wasmfn-system rollout status deploy/wasmfn-operator --timeout=180s
k -n wasmfn-system rollout status ds/wasmfn-node --timeout=180s

step "RBAC: least privilege"
can() { k auth can-i "$@" 2>/dev/null || true; }
node_sa=system:serviceaccount:wasmfn-system:wasmfn-node
operator_sa=system:serviceaccount:wasmfn-system:wasmfn-operator
[ "$(can watch functions.wasmfn.dev --as "$node_sa" -A)" = yes ] || die "the node cannot watch Functions"
[ "$(can patch functions.wasmfn.dev --subresource status --as "$node_sa" -n "$NS")" = yes ] ||
  die "the node cannot patch functions/status"
[ "$(can create jobs.batch --as "$node_sa" -n "$NS")" = no ] || die "the node can create Jobs"
[ "$(can get configmaps --as "$node_sa" -n "$NS")" = no ] || die "the node can read ConfigMaps"
[ "$(can create jobs.batch --as "$operator_sa" -n "$NS")" = yes ] || die "the operator cannot create Jobs"
for sa in "$node_sa" "$operator_sa"; do
  [ "$(can get secrets --as "$sa" -n "$NS")" = no ] || die "$sa can read Secrets"
done
info "node: watch functions, patch functions/status; no Jobs, ConfigMaps or Secrets. operator: Jobs, no Secrets."

step "port-forward svc/wasmfn-ingress"
# kubectl itself, not the k function: a backgrounded function is a subshell, and killing it would leave
# kubectl running.
kubectl --context "$CONTEXT" -n wasmfn-system port-forward svc/wasmfn-ingress "${PORT:-}:80" >"$tmp/port-forward.log" 2>&1 &
pf_pid=$!
port=""
for _ in $(seq 1 60); do
  port=$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$tmp/port-forward.log" | head -n1)
  [ -n "$port" ] && break
  kill -0 "$pf_pid" 2>/dev/null || die "kubectl port-forward exited: $(cat "$tmp/port-forward.log")"
  sleep 0.5
done
[ -n "$port" ] || die "kubectl port-forward did not start: $(cat "$tmp/port-forward.log")"
info "http://127.0.0.1:$port -> wasmfn-ingress:80"

step "Function hello-inline: inline Python source, built in the cluster"
k apply -f deploy/examples/python-inline.yaml
wait_built hello-inline
info "built: $(k -n "$NS" get function hello-inline -o jsonpath='{.status.image}')"
k -n "$NS" get jobs -l wasmfn.dev/function=hello-inline
k -n "$NS" wait --for=condition=Ready function/hello-inline --timeout="${TIMEOUT}s"
k -n "$NS" get function hello-inline
for field in url latestRevision digest image; do
  value=$(k -n "$NS" get function hello-inline -o jsonpath="{.status.$field}")
  [ -n "$value" ] || die "hello-inline: status.$field is empty"
  info "status.$field: $value"
done
expect_body /default/hello-inline/ "hello from inline"

step "Function hello-image: spec.image, the component hello-inline's build pushed"
image=${E2E_IMAGE:-$(k -n "$NS" get function hello-inline -o jsonpath='{.status.image}')}
info "spec.image: $image"
k apply -f - <<EOF
apiVersion: wasmfn.dev/v1alpha1
kind: Function
metadata:
  name: hello-image
  namespace: $NS
spec:
  image: $image
EOF
k -n "$NS" wait --for=condition=Ready function/hello-image --timeout="${TIMEOUT}s"
k -n "$NS" get function hello-image
expect_body /default/hello-image/ "hello from inline"

step "delete: the Functions' Jobs and ConfigMaps go, the node stops serving them"
k -n "$NS" delete function hello-inline hello-image --wait=true --timeout=120s
deadline=$((SECONDS + 120))
while :; do
  left=$(k -n "$NS" get jobs,configmaps -l 'wasmfn.dev/function in (hello-inline,hello-image)' -o name)
  [ -z "$left" ] && break
  [ $SECONDS -lt $deadline ] || die "still there 120 s after the delete: $left"
  sleep 2
done
info "no Jobs or ConfigMaps labelled wasmfn.dev/function=hello-inline|hello-image"
deadline=$((SECONDS + 60))
until [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$port/default/hello-inline/")" = 404 ]; do
  [ $SECONDS -lt $deadline ] || die "/default/hello-inline/ still answers 60 s after the delete"
  sleep 2
done
info "GET /default/hello-inline/ -> 404"
