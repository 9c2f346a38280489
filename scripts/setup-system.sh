#!/usr/bin/env bash
# Install the system pieces of the dev stack on Debian bookworm, idempotently:
# PostgreSQL 15 (+ contrib), Redis, and TimescaleDB built (Apache-only) from trixie's
# source package. Recipe and rationale: /work/shared/notes/timescaledb.md.
#
# Fast when everything is present: one dpkg-query and one file test, no apt calls.
# Services that apt may start are left alone: the dev stack runs its own clusters
# (services/usdcarb/devstack) on their own ports and never depends on them.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR="$ROOT/.cache/timescaledb-build"
PG_MAJOR=15
PG_CONFIG="/usr/lib/postgresql/$PG_MAJOR/bin/pg_config"
LOG="$BUILD_DIR/setup.log"

# wrk: the HTTP load generator of the gateway benchmarks. prometheus (+ promtool) and
# prometheus-alertmanager: the stack's monitoring (services/usdcarb/observability); their
# own systemd units are never used, the devstack runs them on free loopback ports.
# chromium: the headless browser that opens the HTML reports in tests (tests/cli).
BASE_PACKAGES=(postgresql-15 postgresql-contrib redis-server wrk prometheus prometheus-alertmanager
  chromium)
# pgbackrest: WAL archiving, backups and point-in-time restore of the stack's cluster
# (services/usdcarb/devstack/pgbackrest.py, docs/backup-and-restore.md).
BASE_PACKAGES+=(pgbackrest)
BUILD_PACKAGES=(cmake gcc make libssl-dev dpkg-dev)

say() { printf 'setup-system: %s\n' "$*"; }

SUDO=()
if [[ $EUID -ne 0 ]]; then
  command -v sudo >/dev/null || { say "expected root or sudo, got neither"; exit 1; }
  SUDO=(sudo)
fi

# Run a noisy command with its output in $LOG; show the tail only when it fails.
quiet() {
  mkdir -p "$BUILD_DIR"
  printf '\n$ %s\n' "$*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    say "failed: $*"
    tail -n 30 "$LOG" >&2
    exit 1
  fi
}

# Print the packages in "$@" that are not installed.
missing_packages() {
  local pkg status
  for pkg in "$@"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == installed ]] || printf '%s\n' "$pkg"
  done
}

installed_version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }

APT_UPDATED=0
apt_install() {
  if [[ $APT_UPDATED -eq 0 ]]; then
    say "apt-get update"
    quiet "${SUDO[@]}" apt-get update
    APT_UPDATED=1
  fi
  say "installing $*"
  quiet "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y --no-install-recommends "$@"
}

timescaledb_installed() {
  [[ -x "$PG_CONFIG" ]] || return 1
  [[ -f "$("$PG_CONFIG" --sharedir)/extension/timescaledb.control" ]] || return 1
  # The control file alone may be left over from a failed install.
  compgen -G "$("$PG_CONFIG" --pkglibdir)/timescaledb*.so" >/dev/null
}

# ---------------------------------------------------------------- packages
# The virtualenv needs venv/ensurepip: part of CPython, but a separate package on Debian.
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  BASE_PACKAGES+=(python3-venv)
fi
mapfile -t missing < <(missing_packages "${BASE_PACKAGES[@]}")
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
else
  say "${BASE_PACKAGES[*]}: present"
fi

if timescaledb_installed; then
  say "timescaledb: present ($("$PG_CONFIG" --sharedir)/extension/timescaledb.control)"
  exit 0
fi

# Pin the headers to the installed server: the default candidate (a newer security
# release) would also upgrade the server and libpq under a running cluster.
server_version="$(installed_version "postgresql-$PG_MAJOR")"
dev_version="$(installed_version "postgresql-server-dev-$PG_MAJOR")"
mapfile -t missing < <(missing_packages "${BUILD_PACKAGES[@]}")
if [[ "$dev_version" != "$server_version" ]]; then
  missing+=("postgresql-server-dev-$PG_MAJOR=$server_version")
fi
if ((${#missing[@]})); then
  apt_install "${missing[@]}"
else
  say "build dependencies: present"
fi

# ---------------------------------------------------------------- timescaledb
# A private apt configuration that knows only trixie's deb-src: nothing in /etc/apt
# changes and the system package lists are not touched.
APT_DIR="$BUILD_DIR/apt"
SRC_DIR="$BUILD_DIR/src"
mkdir -p "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
cat >"$APT_DIR/trixie-src.sources" <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
PRIVATE_APT=(
  -o "Dir::Etc::SourceList=$APT_DIR/trixie-src.sources"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$APT_DIR/lists"
  -o "Dir::Cache=$APT_DIR/cache"
)

say "fetching the newest trixie timescaledb source package"
quiet apt-get "${PRIVATE_APT[@]}" update
rm -rf "$SRC_DIR"
mkdir -p "$SRC_DIR"
(cd "$SRC_DIR" && quiet apt-get "${PRIVATE_APT[@]}" source --download-only timescaledb)
dsc="$(ls "$SRC_DIR"/timescaledb_*.dsc)"
say "unpacking $(basename "$dsc")"
(cd "$SRC_DIR" && quiet dpkg-source -x "$(basename "$dsc")" tree)

say "building timescaledb (Apache-only) against $("$PG_CONFIG" --version)"
quiet cmake -S "$SRC_DIR/tree" -B "$SRC_DIR/tree/build" \
  -DPG_CONFIG="$PG_CONFIG" \
  -DAPACHE_ONLY=1 -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF \
  -DUSE_TELEMETRY=OFF -DSEND_TELEMETRY_DEFAULT=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo
quiet make -C "$SRC_DIR/tree/build" -j"$(nproc)"
quiet "${SUDO[@]}" make -C "$SRC_DIR/tree/build" install

timescaledb_installed || { say "expected timescaledb.control after install, got none"; exit 1; }
say "timescaledb installed: $(basename "$dsc" .dsc)"
