#!/usr/bin/env bash
# The benchmark suite (issue 4): installs what it needs, builds bench/ in build-bench/,
# runs it and writes the report.
#
#   scripts/bench.sh                      full suite (~4 min on 2 cores), rewrites
#                                         docs/benchmarks.md and docs/benchmarks.png
#   scripts/bench.sh --smoke              every row once at tiny sizes (seconds); no docs
#   scripts/bench.sh --scaling OUTDIR     metric layer and pools with 1,2,4,8,16 workers and
#                                         producers; writes OUTDIR/scaling.{json,md,png}
#   scripts/bench.sh --report-only [--scaling-json FILE]
#                                         rewrites the docs from the last full run (adding
#                                         a scaling run's table and curves when given)
# Options: --rounds N, --threads 1,2,4,8,16, --no-install, --jobs N (build parallelism,
# default 2), and anything after `--` goes to the bench binary (e.g. --filter 'ff_').
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BENCH_BUILD_DIR:-$ROOT/build-bench}"
MODE=full
OUTDIR=""
SCALING_JSON=""
INSTALL=1
JOBS="${BENCH_JOBS:-2}"
EXTRA=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    --smoke) MODE=smoke ;;
    --scaling) MODE=scaling; OUTDIR="${2:?--scaling needs an output directory}"; shift ;;
    --report-only) MODE=report ;;
    --scaling-json) SCALING_JSON="${2:?}"; shift ;;
    --rounds) EXTRA+=(--rounds "${2:?}"); shift ;;
    --threads) EXTRA+=(--threads "${2:?}"); shift ;;
    --no-install) INSTALL=0 ;;
    --jobs) JOBS="${2:?}"; shift ;;
    --) shift; EXTRA+=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------------------
# Dependencies (Debian/Ubuntu packages)
# ---------------------------------------------------------------------------
install_deps() {
  local pkgs=(cmake ninja-build g++ python3 prometheus-cpp-dev libfmt-dev libbenchmark-dev
              libtbb-dev libboost-dev gnuplot-nox)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "bench.sh: installing ${missing[*]}" >&2
  local sudo=()
  [[ $(id -u) -ne 0 ]] && sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" ||
    { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; }
}

if [[ $INSTALL -eq 1 && $MODE != report ]] && command -v dpkg >/dev/null; then
  install_deps
fi

# ---------------------------------------------------------------------------
# Build: through the top-level CMakeLists when it has the bench option, else bench/
# on its own (it pulls in the library from the repository root).
# ---------------------------------------------------------------------------
build() {
  local src="$ROOT/bench" opts=()
  if grep -q 'EXECUTOR_EXPORTER_BUILD_BENCH' "$ROOT/CMakeLists.txt"; then
    src="$ROOT"
    opts=(-DEXECUTOR_EXPORTER_BUILD_BENCH=ON -DEXECUTOR_EXPORTER_BUILD_TESTS=OFF
          -DEXECUTOR_EXPORTER_BUILD_EXAMPLES=OFF)
  fi
  # A build dir configured from the other source tree cannot be reused.
  if [[ -f "$BUILD/CMakeCache.txt" ]] &&
     ! grep -q "CMAKE_HOME_DIRECTORY:INTERNAL=$src\$" "$BUILD/CMakeCache.txt"; then
    rm -rf "$BUILD"
  fi
  cmake -S "$src" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release "${opts[@]}" >/dev/null
  cmake --build "$BUILD" --target executor_exporter_bench -j "$JOBS"
}

bench_bin() {
  local b
  b="$(find "$BUILD" -name executor_exporter_bench -type f -perm -u+x | head -n1)"
  [[ -n "$b" ]] || { echo "bench.sh: executor_exporter_bench not built" >&2; exit 1; }
  echo "$b"
}

case "$MODE" in
  smoke)
    build
    "$(bench_bin)" --smoke --out "$BUILD/smoke" "${EXTRA[@]}"
    ;;
  full)
    build
    "$(bench_bin)" --out "$BUILD/results" "${EXTRA[@]}"
    args=(--results "$BUILD/results/results.json")
    [[ -n "$SCALING_JSON" ]] && args+=(--scaling "$SCALING_JSON")
    python3 "$ROOT/bench/report.py" "${args[@]}" --md "$ROOT/docs/benchmarks.md" \
      --png "$ROOT/docs/benchmarks.png"
    ;;
  scaling)
    build
    mkdir -p "$OUTDIR"
    OUTDIR="$(cd "$OUTDIR" && pwd)"
    "$(bench_bin)" --scaling --out "$OUTDIR" "${EXTRA[@]}"
    python3 "$ROOT/bench/report.py" --scaling "$OUTDIR/scaling.json" --md "$OUTDIR/scaling.md" \
      --png "$OUTDIR/scaling.png"
    echo "bench.sh: scaling results in $OUTDIR (scaling.json, scaling.md, scaling.png)"
    ;;
  report)
    [[ -f "$BUILD/results/results.json" ]] || { echo "bench.sh: no full run in $BUILD/results" >&2; exit 1; }
    args=(--results "$BUILD/results/results.json")
    [[ -n "$SCALING_JSON" ]] && args+=(--scaling "$SCALING_JSON")
    python3 "$ROOT/bench/report.py" "${args[@]}" --md "$ROOT/docs/benchmarks.md" \
      --png "$ROOT/docs/benchmarks.png"
    ;;
esac
