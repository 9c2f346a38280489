#!/bin/sh
# Secrets from files (Compose `secrets:`, any /run/secrets mount): a file named like a
# setting, e.g. /run/secrets/USDCARB_IDENTITY_SERVICE_KEY, becomes that environment
# variable. Kubernetes passes secrets as variables directly (secretKeyRef).
set -eu
if [ -d /run/secrets ]; then
  for file in /run/secrets/USDCARB_*; do
    [ -f "$file" ] || continue
    name=$(basename "$file")
    value=$(cat "$file")
    export "$name=$value"
  done
fi
exec "$@"
