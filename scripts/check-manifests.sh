#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/, offline (no cluster):
#   1. every kustomization (deploy/, deploy/base/, deploy/e2e/) renders with `kubectl kustomize`, with each
#      kubectl given (KUBECTL, plus EXTRA_KUBECTLS, e.g. Debian's kubectl 1.20 whose kustomize is v2.0.3);
#   2. `kubernetes-validate --strict` against the Kubernetes $K8S_VERSION schemas, over the renderings and every
#      file of deploy/ that holds Kubernetes objects (custom objects such as the Function examples only get a
#      "Couldn't find schema" warning: their own test checks them against the CRD);
#   3. policy on the renderings: least-privilege RBAC (no wildcards, no Secrets, the node's role read-only
#      apart from functions/status) and hardened pods (requests and limits, probes, non-root, no privilege
#      escalation, capabilities dropped, RuntimeDefault seccomp, read-only root file system);
#   4. `bash -n` (and shellcheck, when installed) over deploy/*.sh.
# Exits non-zero when any check fails, after running them all; each failure is listed at the end.
#
# Needs kubectl and kubernetes-validate (bundles the schemas):
#   pip install kubernetes-validate==1.37.0
# or INSTALL=1, which installs it into a virtualenv under ~/.cache/wasmfn/ (PyPI is needed once).
# Environment:
#   KUBECTL=kubectl              the kubectl whose rendering is validated
#   EXTRA_KUBECTLS="/path/a …"   more kubectl binaries that must render every kustomization too
#   K8S_VERSION=1.33             Kubernetes version of the schemas
#   KUBERNETES_VALIDATE=…        the kubernetes-validate command (default: on PATH, or the INSTALL=1 virtualenv)
#   ALLOW_MISSING_CRD=1          render deploy/ with a stand-in when deploy/crd.yaml is not generated yet
#   RENDERED_DIR=DIR             keep the renderings there (default: a temporary folder)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBECTL=${KUBECTL:-kubectl}
K8S_VERSION=${K8S_VERSION:-1.33}
KV_VERSION=1.37.0
kv_venv=${XDG_CACHE_HOME:-$HOME/.cache}/wasmfn/kubernetes-validate-$KV_VERSION
failures=()
fail() {
  echo "FAIL: $*" >&2
  failures+=("$*")
}
step() { printf '\n== %s\n' "$*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
out=${RENDERED_DIR:-$tmp/rendered}
mkdir -p "$out"

# --- tools -----------------------------------------------------------------------------------------------
command -v "$KUBECTL" >/dev/null 2>&1 || { echo "check-manifests: $KUBECTL not found (apt-get install kubernetes-client, or https://kubernetes.io/docs/tasks/tools/)" >&2; exit 2; }
if [ -z "${KUBERNETES_VALIDATE:-}" ]; then
  if command -v kubernetes-validate >/dev/null 2>&1; then
    KUBERNETES_VALIDATE=kubernetes-validate
  elif [ -x "$kv_venv/bin/kubernetes-validate" ]; then
    KUBERNETES_VALIDATE=$kv_venv/bin/kubernetes-validate
  elif [ "${INSTALL:-0}" = 1 ]; then
    echo "check-manifests: installing kubernetes-validate==$KV_VERSION into $kv_venv"
    python3 -m venv "$kv_venv"
    "$kv_venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$KV_VERSION"
    KUBERNETES_VALIDATE=$kv_venv/bin/kubernetes-validate
  else
    echo "check-manifests: kubernetes-validate not found: pip install kubernetes-validate==$KV_VERSION" >&2
    echo "  (or run with INSTALL=1 to install it into $kv_venv)" >&2
    exit 2
  fi
fi
# A Python with PyYAML for the policy checks: kubernetes-validate depends on PyYAML, so its own interpreter has it.
python=""
for candidate in python3 "$(head -n1 "$(command -v "$KUBERNETES_VALIDATE" 2>/dev/null || echo /dev/null)" 2>/dev/null | sed -n 's/^#! *//p' | cut -d' ' -f1)"; do
  if [ -n "$candidate" ] && "$candidate" -c 'import yaml' >/dev/null 2>&1; then python=$candidate; break; fi
done

# --- 1. render ---------------------------------------------------------------------------------------------
step "render the kustomizations"
src=deploy
if [ ! -f deploy/crd.yaml ]; then
  if [ "${ALLOW_MISSING_CRD:-0}" = 1 ]; then
    echo "WARN: deploy/crd.yaml is missing; rendering deploy/ with a stand-in CRD (ALLOW_MISSING_CRD=1)"
    cp -r deploy "$tmp/deploy"
    src=$tmp/deploy
    cat >"$src/crd.yaml" <<'EOF'
# Stand-in for the generated CRD (scripts/check-manifests.sh, ALLOW_MISSING_CRD=1).
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: functions.wasmfn.dev
spec:
  group: wasmfn.dev
  names: {kind: Function, listKind: FunctionList, plural: functions, singular: function, shortNames: [fn]}
  scope: Namespaced
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}
    subresources: {status: {}}
EOF
  else
    fail "deploy/crd.yaml is missing: generate it with \`cargo run -p wasmfn-operator --bin crdgen > deploy/crd.yaml\` (or set ALLOW_MISSING_CRD=1)"
  fi
fi

kustomizations=()
while IFS= read -r k; do kustomizations+=("$(dirname "$k")"); done < <(find "$src" -name kustomization.yaml | sort)
rendered=()
kubectls=("$KUBECTL")
read -r -a extra <<<"${EXTRA_KUBECTLS:-}"
kubectls+=("${extra[@]}")
for kc in "${kubectls[@]}"; do
  version=$("$kc" version --client 2>/dev/null | head -n1 | grep -o 'v[0-9][0-9.]*' | head -n1 || true)
  for dir in "${kustomizations[@]}"; do
    rel=${dir#"$src"}
    rel=deploy${rel}
    if [ "$rel" = deploy ] && [ "$src" = deploy ] && [ ! -f deploy/crd.yaml ]; then
      echo "skip $rel with $kc: deploy/crd.yaml is missing"
      continue
    fi
    name=$(echo "$rel" | tr '/' '-')
    file="$out/${name}.kubectl-${version:-unknown}.yaml"
    if "$kc" kustomize "$dir" >"$file" 2>"$tmp/err"; then
      echo "ok   $kc ${version} kustomize $rel/ -> $(grep -c '^kind:' "$file") objects"
      # Only the first kubectl's renderings are validated: the others must render, and differ only in
      # kustomize's known quirks (v2.0.3 sets metadata.namespace on the cluster-scoped RuntimeClass).
      if [ "$kc" = "$KUBECTL" ]; then rendered+=("$file"); fi
    else
      fail "$kc ${version} kustomize $rel/: $(grep -v '^# Warning' "$tmp/err" | tail -n 3)"
    fi
  done
done

# --- 2. schemas --------------------------------------------------------------------------------------------
step "kubernetes-validate -k $K8S_VERSION --strict"
objects=()
while IFS= read -r f; do
  case "$(basename "$f")" in kustomization.yaml | kustomization.yml | Kustomization) continue ;; esac
  case "$f" in */patches/*) continue ;; esac  # partial objects and JSON patches, checked through the renderings
  grep -q '^kind:' "$f" || continue
  objects+=("$f")
done < <(find deploy \( -name '*.yaml' -o -name '*.yml' \) | sort)
if [ ${#rendered[@]} -gt 0 ] || [ ${#objects[@]} -gt 0 ]; then
  if $KUBERNETES_VALIDATE -k "$K8S_VERSION" --strict --quiet "${rendered[@]}" "${objects[@]}" >"$tmp/kv.log" 2>&1; then
    echo "ok   ${#rendered[@]} renderings and ${#objects[@]} files"
  else
    fail "kubernetes-validate: $(grep -c '^ERROR' "$tmp/kv.log" || true) errors"
  fi
  # Warnings (custom objects without a schema) are expected; errors are not.
  sed 's/^/     /' "$tmp/kv.log"
fi

# --- 3. policy ---------------------------------------------------------------------------------------------
step "policy: RBAC and pod hardening"
if [ -z "$python" ]; then
  fail "no Python with PyYAML for the policy checks (pip install pyyaml)"
elif [ ${#rendered[@]} -gt 0 ]; then
  if ! "$python" - "${rendered[@]}" <<'EOF'; then
import sys
import yaml

problems = []
for path in sys.argv[1:]:
    with open(path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    where = path.rsplit("/", 1)[-1]

    def bad(msg):
        problems.append(f"{where}: {msg}")

    accounts = {(d["metadata"].get("namespace"), d["metadata"]["name"]) for d in docs if d["kind"] == "ServiceAccount"}
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        if kind in ("ClusterRole", "Role"):
            for rule in d.get("rules", []):
                for field in ("apiGroups", "resources", "verbs"):
                    if "*" in rule.get(field, []):
                        bad(f"{kind} {name}: wildcard in {field}")
                if any(r.split("/")[0] == "secrets" for r in rule.get("resources", [])):
                    bad(f"{kind} {name}: grants access to Secrets")
                if set(rule.get("verbs", [])) & {"escalate", "bind", "impersonate"}:
                    bad(f"{kind} {name}: escalate/bind/impersonate")
            if name == "wasmfn-node":
                allowed = {("wasmfn.dev", "functions"): {"get", "list", "watch"},
                           ("wasmfn.dev", "functions/status"): {"patch"}}
                for rule in d.get("rules", []):
                    for g in rule.get("apiGroups", []):
                        for r in rule.get("resources", []):
                            extra = set(rule.get("verbs", [])) - allowed.get((g, r), set())
                            if extra:
                                bad(f"ClusterRole wasmfn-node: {sorted(extra)} on {g}/{r} (the node only reads Functions and patches functions/status)")
        if kind in ("ClusterRoleBinding", "RoleBinding"):
            for s in d.get("subjects", []):
                if s.get("kind") == "ServiceAccount" and (s.get("namespace"), s["name"]) not in accounts:
                    bad(f"{kind} {name}: ServiceAccount {s.get('namespace')}/{s['name']} is not defined")
        if kind in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
            pod = d["spec"]["template"]["spec"]
            ns = d["metadata"].get("namespace")
            sa = pod.get("serviceAccountName")
            if sa and (ns, sa) not in accounts:
                bad(f"{kind} {name}: ServiceAccount {ns}/{sa} is not defined")
            psc = pod.get("securityContext", {})
            for init, c in [(True, c) for c in pod.get("initContainers", [])] + [(False, c) for c in pod["containers"]]:
                cname = f"{kind} {name} container {c['name']}"
                res = c.get("resources", {})
                for part in ("requests", "limits"):
                    for r in ("cpu", "memory"):
                        if r not in res.get(part, {}):
                            bad(f"{cname}: no {r} in resources.{part}")
                if not init:
                    for probe in ("livenessProbe", "readinessProbe"):
                        if probe not in c:
                            bad(f"{cname}: no {probe}")
                sc = c.get("securityContext", {})
                if sc.get("allowPrivilegeEscalation") is not False:
                    bad(f"{cname}: allowPrivilegeEscalation is not false")
                if sc.get("privileged"):
                    bad(f"{cname}: privileged")
                if "ALL" not in sc.get("capabilities", {}).get("drop", []):
                    bad(f"{cname}: capabilities not dropped (drop: [ALL])")
                if sc.get("readOnlyRootFilesystem") is not True:
                    bad(f"{cname}: readOnlyRootFilesystem is not true")
                seccomp = sc.get("seccompProfile", psc.get("seccompProfile", {})).get("type")
                if seccomp not in ("RuntimeDefault", "Localhost"):
                    bad(f"{cname}: no RuntimeDefault seccomp profile")
                non_root = sc.get("runAsNonRoot", psc.get("runAsNonRoot"))
                if not init and non_root is not True:
                    bad(f"{cname}: runAsNonRoot is not true")
                if init and non_root is not True:
                    # Root is only acceptable for a one-shot step holding nothing but CAP_CHOWN.
                    added = set(sc.get("capabilities", {}).get("add", []))
                    if not added <= {"CHOWN"}:
                        bad(f"{cname}: runs as root with {sorted(added)}")
    print(f"ok   {where}: {len(docs)} objects")

for p in problems:
    print(f"FAIL: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
    fail "policy checks (see above)"
  fi
fi

# --- 4. scripts --------------------------------------------------------------------------------------------
step "deploy/*.sh"
for s in deploy/*.sh; do
  [ -e "$s" ] || continue
  if bash -n "$s"; then echo "ok   bash -n $s"; else fail "bash -n $s"; fi
  if command -v shellcheck >/dev/null 2>&1; then
    if shellcheck "$s"; then echo "ok   shellcheck $s"; else fail "shellcheck $s"; fi
  fi
done

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "check-manifests: ${#failures[@]} check(s) failed:" >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-manifests: all checks passed"
