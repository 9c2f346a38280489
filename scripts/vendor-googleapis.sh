#!/usr/bin/env bash
# Copy the google/api and google/rpc .proto sources we import from the pinned
# googleapis-common-protos wheel into proto/google (buf cannot reach the BSR here).
set -euo pipefail
cd "$(dirname "$0")/.."
src=$(.venv/bin/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')
for f in google/api/annotations.proto google/api/http.proto google/api/field_behavior.proto \
         google/api/resource.proto \
         google/rpc/status.proto google/rpc/error_details.proto google/rpc/code.proto; do
  install -D -m 0644 "$src/$f" "proto/$f"
done
