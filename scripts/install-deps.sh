#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages needed to build, test and run executor-exporter.
# Idempotent: only missing packages are installed, and `apt-get update` runs only if
# something is missing. Silent when everything is already installed.
set -euo pipefail

packages=(
  build-essential cmake ninja-build g++ clang libclang-rt-14-dev
  prometheus-cpp-dev libfmt-dev zlib1g-dev catch2 libboost-dev libbenchmark-dev libtbb-dev
  prometheus prometheus-pushgateway curl clang-format clang-tidy nodejs libpq-dev postgresql
  chromium
)

# The StatsD server the StatsD sink's tests talk to: the reference implementation, from
# the npm registry (Debian does not package it). Pinned; installed once per machine.
statsd_version=0.9.0
statsd_prefix="${EE_TOOLS_DIR:-${HOME}/.cache/executor_exporter}/statsd"
install_statsd() {
  if [[ -f "$statsd_prefix/node_modules/statsd/stats.js" ]]; then
    return 0
  fi
  echo "install-deps: installing statsd $statsd_version from npm into $statsd_prefix"
  mkdir -p "$statsd_prefix"
  npm install --prefix "$statsd_prefix" --no-audit --no-fund --ignore-scripts --loglevel=error \
    "statsd@$statsd_version" >/dev/null
}

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "install-deps: dpkg-query not found; this script supports Debian/Ubuntu only." >&2
  echo "install-deps: please install the equivalents of: ${packages[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

# Debian's nodejs comes without npm (its own package); other builds of nodejs (NodeSource)
# bundle it and conflict with Debian's. Ask for the package only when the command is absent.
if ! command -v npm >/dev/null 2>&1; then
  missing+=(npm)
fi

if ((${#missing[@]} == 0)); then
  install_statsd
  exit 0
fi

echo "install-deps: installing missing packages: ${missing[*]}"
sudo_cmd=()
if [[ "$(id -u)" -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then
    sudo_cmd=(sudo)
  else
    echo "install-deps: not root and sudo is not available; install as root: ${missing[*]}" >&2
    exit 1
  fi
fi

export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
install_statsd
echo "install-deps: done"
