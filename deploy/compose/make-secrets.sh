#!/bin/sh
# Create the Compose stack's secrets once, as files in deploy/compose/secrets/ (never
# committed): random passwords and keys, and each calling service's credential derived
# from identity's service key (usdcarb.platform.service_auth.derive_credential).
# Usage: deploy/compose/make-secrets.sh [PYTHON]   (PYTHON: one that imports usdcarb)
set -eu
python=${1:-.venv/bin/python}
dir=$(dirname "$0")/secrets
mkdir -p "$dir"
chmod 0700 "$dir"
umask 077
random() { "$python" -c 'import secrets; print(secrets.token_urlsafe(32), end="")'; }
put() { [ -s "$dir/$1" ] || printf '%s' "$2" > "$dir/$1"; }
put postgres_password "$(random)"
pw=$(cat "$dir/postgres_password")
for svc in IDENTITY STRATEGY VALIDATION INGESTION BACKTEST NOTIFICATION; do
  put "USDCARB_${svc}_DATABASE_URL" "postgresql://usdcarb:${pw}@postgres:5432/usdcarb"
done
put USDCARB_IDENTITY_KEY_PASSPHRASE "$(random)"
put USDCARB_IDENTITY_SERVICE_KEY "$(random)"
put USDCARB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD "$(random)"
put alert_token "$(random)"  # Alertmanager -> notification's receiver (bearer token)
key=$(cat "$dir/USDCARB_IDENTITY_SERVICE_KEY")
for svc in ingestion backtest; do
  upper=$(echo "$svc" | tr '[:lower:]' '[:upper:]')
  put "USDCARB_${upper}_SERVICE_CREDENTIAL" "$("$python" -c 'import sys
from usdcarb.platform.service_auth import derive_credential
print(derive_credential(sys.argv[1], sys.argv[2]), end="")' "$key" "$svc")"
done
echo "secrets in $dir (admin password: $dir/USDCARB_IDENTITY_BOOTSTRAP_ADMIN_PASSWORD)"
