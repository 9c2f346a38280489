#!/bin/sh
# Render the gateway's Envoy config for a topology (k8s | compose) with the project's
# generator: used by the gateway image build and by `make deploy-check` (envoy --mode
# validate). Usage: render.sh TOPOLOGY DESCRIPTOR OUT [PYTHON]
set -eu
topology=$1 descriptor=$2 out=$3 python=${4:-python}
ports="$(dirname "$0")/upstreams-${topology}.json"
ratelimit=$("$python" -c 'import json, sys; print(json.load(open(sys.argv[1]))["ratelimit"])' "$ports")
# JWKS: identity's, through the gateway itself (remote, cached). Backends are plaintext to
# the pod's Istio sidecar, which does mutual TLS (Kubernetes), or on the Compose network.
# Kubernetes runs several gateway replicas: each enforces its share of the per-caller
# limits, dividing by the replicas the headless Service resolves to.
set -- --ratelimit "$ratelimit" --route-authorization --env prod
# Their limits come from the gateway-limits ConfigMap, mounted where Envoy watches it
# (USDCARB_GATEWAY_LIMITS_DIR: elsewhere for an offline check).
if [ "$topology" = k8s ]; then
  set -- "$@" --local-cluster gateway-replicas.usdcarb.svc.cluster.local:8080 \
    --local-limits-dir "${USDCARB_GATEWAY_LIMITS_DIR:-/etc/usdcarb/limits}"
fi
exec "$python" -m usdcarb.gateway.config --out "$out" --ports-json "$ports" \
  --listen-host 0.0.0.0 --descriptor "$descriptor" \
  --jwks-uri http://127.0.0.1:8080/.well-known/jwks.json "$@"
