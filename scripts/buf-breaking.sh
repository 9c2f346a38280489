#!/usr/bin/env bash
# buf breaking (FILE rules) against the latest release tag (v*), when one exists.
# Contracts still grow additively before the first release; every release tag after
# that is the baseline that existing clients were built against.
set -euo pipefail
cd "$(dirname "$0")/.."
tag=$(git tag --list 'v*' --sort=-version:refname 2>/dev/null | head -n 1)
if [ -z "$tag" ]; then
  echo "buf breaking: no release tag (v*) yet; nothing to compare against"
  exit 0
fi
echo "buf breaking: against $tag"
buf breaking --against ".git#tag=$tag"
