#!/usr/bin/env bash
# Regenerate everything derived from proto/: gen/ (Python stubs, OpenAPI, Envoy
# descriptor set), the Python SDK's betterproto2 code and the Go SDK's code.
# Output is deterministic so CI can fail on any difference from what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PWD/.tools/bin:$PATH"

# Generate into a staging tree, then sync file by file (scripts/sync_tree.py): gen/ never
# disappears under a test or service that runs meanwhile.
root=$PWD
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r proto buf.yaml buf.gen.yaml buf.gen.sdk.yaml pyproject.toml "$stage"/
ln -s "$root/.venv" "$stage/.venv"
ln -s "$root/.tools" "$stage/.tools"
ln -s "$root/scripts" "$stage/scripts"
(
  cd "$stage"
  buf generate "$@"
  buf generate --template buf.gen.sdk.yaml

  # Envoy's grpc_json_transcoder reads a self-contained descriptor set.
  mkdir -p gen/descriptor
  buf build --exclude-source-info -o gen/descriptor/usdcarb.binpb

  # Package markers: gen/python/usdcarb is completed by services/usdcarb (pkgutil.extend_path).
  touch gen/python/usdcarb/v1/__init__.py
)
for dir in gen/python gen/openapi gen/descriptor clients/python/usdcarb_sdk/_gen clients/go/gen; do
  mkdir -p "$stage/$dir"
  python3 scripts/sync_tree.py "$stage/$dir" "$dir" >/dev/null
done

# docs/api.md: the RPC tables are generated from the contracts too.
.venv/bin/python scripts/gen_api_docs.py >/dev/null

# deploy/ and istio/: Kubernetes base, Istio policies and prod Rollouts follow the contracts,
# the role table's service grants and the services' ports (make deploy-check fails if stale).
.venv/bin/python deploy/tools/gen_manifests.py >/dev/null
