#!/usr/bin/env bash
# Regenerates the metrics tables in README.md and docs/metrics.md from the metric catalog
# (include/executor_exporter/metrics/metric_catalog.hpp). The test suite fails while they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${EE_BUILD_DIR:-build/release}
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target executor_exporter_tests -j"${EE_JOBS:-2}"
EE_UPDATE_DOCS=1 "$build/tests/executor_exporter_tests" "[docs]"
git --no-pager diff --stat -- README.md docs/metrics.md || true
