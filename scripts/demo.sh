#!/usr/bin/env bash
# Builds (Release, build/release) and runs the executor_exporter demo.
#
#   scripts/demo.sh                      # serves http://127.0.0.1:8080/metrics
#   scripts/demo.sh --port 9100          # any demo arguments are passed through
#   scripts/demo.sh --bind 0.0.0.0 --duration-seconds 60
#
# Environment: EE_BUILD_ROOT (default: build), EE_JOBS (default: 2).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install-deps.sh

build_dir="${EE_BUILD_ROOT:-build}/release"
jobs="${EE_JOBS:-2}"

configure=(cmake -S . -B "$build_dir" -DCMAKE_BUILD_TYPE=Release)
if [[ ! -f "$build_dir/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then
  configure+=(-G Ninja)
fi
"${configure[@]}" >/dev/null
cmake --build "$build_dir" --target executor_exporter_demo --parallel "$jobs"

demo="$build_dir/examples/executor_exporter_demo"
if [[ ! -x "$demo" ]]; then
  # Built by tests/ when the examples are switched off.
  demo="$build_dir/tests/executor_exporter_demo"
fi
exec "$demo" "$@"
