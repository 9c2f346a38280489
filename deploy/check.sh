#!/usr/bin/env bash
# `make deploy-check`: validate deploy/, istio/ and .github/workflows offline; any
# defect fails. The Makefile installs the pinned tools first and exports:
#   DEPLOY_VENV (python tools), K8S_SCHEMA_VERSION, CRD_FILES, COMPOSE_SPEC, SCHEMAS.
set -euo pipefail
cd "$(dirname "$0")/.."
out=.cache/deploy
mkdir -p "$out/rendered"
py=.venv/bin/python
tools="$DEPLOY_VENV/bin"
step() { printf '== %s\n' "$*"; }

step "generated manifests are up to date (deploy/tools/gen_manifests.py --check)"
"$py" deploy/tools/gen_manifests.py --check

step "schemas for kubeconform (Kubernetes v$K8S_SCHEMA_VERSION + Istio/KEDA/Argo CRDs)"
if [ ! -f "$SCHEMAS/.done" ]; then
  rm -rf "$SCHEMAS"
  # shellcheck disable=SC2086  # CRD_FILES is a list of paths without spaces
  "$tools/python" deploy/tools/schemas.py "$SCHEMAS" "$K8S_SCHEMA_VERSION" $CRD_FILES
  touch "$SCHEMAS/.done"
fi

for overlay in deploy/k8s/overlays/*/; do
  name=$(basename "$overlay")
  step "kustomize build $overlay"
  kustomize build "$overlay" > "$out/rendered/$name.yaml"
  step "kubeconform -strict $name (every object must find its schema: none skipped)"
  kubeconform -strict -summary -output text \
    -schema-location "$SCHEMAS/k8s/{{ .ResourceKind }}{{ .KindSuffix }}.json" \
    -schema-location "$SCHEMAS/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json" \
    "$out/rendered/$name.yaml"
done

step "hadolint on every Dockerfile"
mapfile -t dockerfiles < <(find deploy -name '*Dockerfile' | sort)
"$tools/hadolint" --failure-threshold info "${dockerfiles[@]}"

step "shellcheck on the deployment scripts"
mapfile -t scripts < <(find deploy -name '*.sh' | sort)
"$tools/shellcheck" "${scripts[@]}"

step "actionlint on every workflow (with shellcheck on run: steps)"
actionlint -shellcheck "$tools/shellcheck" .github/workflows/*.yml

step "Compose file against the Compose Specification schema"
"$py" deploy/tools/check_compose.py "$COMPOSE_SPEC" deploy/compose/compose.yaml

step "checkov policy scan (exceptions with reasons: deploy/checkov.yaml)"
"$tools/checkov" --config-file deploy/checkov.yaml --quiet --compact --skip-download \
  -f "$out"/rendered/*.yaml -f "${dockerfiles[@]}" -f .github/workflows/*.yml

step "gateway config for the Kubernetes topology: envoy --mode validate"
# The per-caller limit files the gateway-limits ConfigMap holds, where validate finds them.
"$py" -m usdcarb.ratelimit.service --divided --out "$out/limits" >/dev/null
USDCARB_GATEWAY_LIMITS_DIR="$out/limits/envoy" \
  sh deploy/gateway/render.sh k8s gen/descriptor/usdcarb.binpb "$out/envoy-k8s.yaml" "$py"
sh deploy/gateway/render.sh compose gen/descriptor/usdcarb.binpb "$out/envoy-compose.yaml" "$py"
for cfg in "$out/envoy-k8s.yaml" "$out/envoy-compose.yaml"; do
  .venv/bin/envoy --mode validate -c "$cfg" --log-level critical
done

# `make test` runs tests/deploy with the whole suite; alone, deploy-check runs them here.
if [ "${DEPLOY_CONTRACT_TESTS:-yes}" = yes ]; then
  step "contract tests on the rendered manifests (tests/deploy)"
  "$py" -m pytest -q -p no:cacheprovider tests/deploy
fi
