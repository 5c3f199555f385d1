#!/usr/bin/env bash
# The benchmark suite: installs what it needs, builds bench/ in build-bench/,
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
#   scripts/bench.sh --process-pool       ProcessPoolExecutor vs Python's (fork and
#                                         forkserver, 9 rounds; ~3 min): rewrites only that section
#                                         of docs/benchmarks.md (the full suite runs it too)
# Options: --rounds N, --threads 1,2,4,8,16, --no-install, --jobs N (build parallelism,
# default 2), --pp-rounds N (process-pool rounds, default 9), --no-build (run the
# binaries already in BENCH_BUILD_DIR), and anything after `--` goes to the bench binary
# (e.g. --filter 'ff_').
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${BENCH_BUILD_DIR:-$ROOT/build-bench}"
MODE=full
OUTDIR=""
SCALING_JSON=""
INSTALL=1
JOBS="${BENCH_JOBS:-2}"
EXTRA=()
PP_ROUNDS=9
BUILD_IT=1

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
    --process-pool) MODE=process_pool ;;
    --pp-rounds) PP_ROUNDS="${2:?}"; shift ;;
    --no-build) BUILD_IT=0 ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
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
  [[ $BUILD_IT -eq 1 ]] || return 0
  local src="$ROOT/bench" opts=() targets=("$@")
  [[ ${#targets[@]} -gt 0 ]] || targets=(executor_exporter_bench executor_exporter_process_pool_bench)
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
  cmake --build "$BUILD" --target "${targets[@]}" -j "$JOBS"
}

# A throwaway PostgreSQL on loopback for the PostgreSQL sink's row (left out when the
# server binaries are missing): initdb in a temp dir, stopped and removed at exit. The
# server refuses to run as root, so root runs it as the `postgres` user.
start_bench_postgres() {
  local bindir port run=()
  bindir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)"
  [[ -n "$bindir" && -x "$bindir/initdb" ]] || return 0
  PG_TMP="$(mktemp -d "${TMPDIR:-/tmp}/ee_bench_pg.XXXXXX")"
  if [[ $(id -u) -eq 0 ]]; then
    chown postgres "$PG_TMP"
    run=(runuser -u postgres --)
  fi
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  "${run[@]}" "$bindir/initdb" -D "$PG_TMP/data" -A trust -U postgres --no-sync >/dev/null
  "${run[@]}" "$bindir/pg_ctl" -D "$PG_TMP/data" -l "$PG_TMP/log" -w \
    -o "-h 127.0.0.1 -p $port -k $PG_TMP -F" start >/dev/null
  trap 'stop_bench_postgres' EXIT
  PG_STOP=("${run[@]}" "$bindir/pg_ctl" -D "$PG_TMP/data" -m immediate -w stop)
  export EE_BENCH_POSTGRES_DSN="host=127.0.0.1 port=$port user=postgres dbname=postgres"
}
stop_bench_postgres() {
  "${PG_STOP[@]}" >/dev/null 2>&1 || true
  rm -rf "$PG_TMP"
}

bench_bin() {
  local name="${1:-executor_exporter_bench}" b
  b="$(find "$BUILD" -name "$name" -type f -perm -u+x | head -n1)"
  [[ -n "$b" ]] || { echo "bench.sh: $name not built" >&2; exit 1; }
  echo "$b"
}

# ProcessPoolExecutor vs Python's ProcessPoolExecutor: 2 workers, 20 k no-op
# tasks, submit-then-wait and map(chunksize=100), Python with fork and with forkserver.
# Rounds interleave every row, so a load change hits all of them; the report takes
# per-round ratios. Writes OUT/process_pool.json for report.py --process-pool.
process_pool_rounds() {
  local out="$1" rounds="$2" n=20000 bin r m w
  bin="$(bench_bin executor_exporter_process_pool_bench)"
  mkdir -p "$out/pp"
  # The machine's state around the rounds: load averages and /proc/stat (for steal).
  cat /proc/loadavg >"$out/pp/load_start"
  head -1 /proc/stat >"$out/pp/stat_start"
  for ((r = 0; r < rounds; r++)); do
    echo "bench.sh: process pool round $((r + 1))/$rounds" >&2
    "$bin" --benchmark_filter='SubmitThenWait|MapChunked|RoundTrip|Respawn|RawFloor' \
      --benchmark_out="$out/pp/cpp_$r.json" --benchmark_out_format=json >/dev/null
    for m in fork forkserver; do
      for w in pp_submit pp_map; do
        python3 "$ROOT/bench/python_peer.py" --workload "$w" --n "$n" --workers 2 \
          --start-method "$m" --chunksize 100 >"$out/pp/py_${r}_${m}_${w}.json"
      done
    done
  done
  head -1 /proc/stat >"$out/pp/stat_end"
  python3 - "$out" "$rounds" "$n" <<'PY'
import json, os, platform, sys
out, rounds, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
to_us = {"ns": 1e-3, "us": 1.0, "ms": 1e3, "s": 1e6}
result = {"n": n, "workers": 2, "rounds": []}
for r in range(rounds):
    with open(os.path.join(out, "pp", "cpp_%d.json" % r)) as f:
        cpp = json.load(f)
    rnd = {"cpp": {}, "cpp_time_us": {}, "python": {}}
    for b in cpp["benchmarks"]:
        key = b["name"].split("/")[0]
        if "items_per_second" in b:
            rnd["cpp"][key] = b["items_per_second"]
        rnd["cpp_time_us"][key] = b["real_time"] * to_us[b.get("time_unit", "ns")]
    for m in ("fork", "forkserver"):
        rnd["python"][m] = {}
        for w in ("pp_submit", "pp_map"):
            with open(os.path.join(out, "pp", "py_%d_%s_%s.json" % (r, m, w))) as f:
                rnd["python"][m][w] = json.load(f)["ktps"]
    result["rounds"].append(rnd)
cpu = "?"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
with open("/proc/loadavg") as f:
    load_end = " ".join(f.read().split()[:3])
with open(os.path.join(out, "pp", "load_start")) as f:
    load_start = " ".join(f.read().split()[:3])
def jiffies(name):
    with open(os.path.join(out, "pp", name)) as f:
        v = [float(x) for x in f.read().split()[1:9]]  # user .. steal
    return sum(v), v[7]
t0, s0 = jiffies("stat_start")
t1, s1 = jiffies("stat_end")
steal = 100.0 * (s1 - s0) / (t1 - t0) if t1 > t0 else 0.0
load = "load average %s at the start, %s at the end; hypervisor steal %.1f %% during the rounds" % (
    load_start, load_end, steal)
result["machine"] = {"cpu": "%s, %d CPUs" % (cpu, os.cpu_count()), "load": load,
                     "python": platform.python_version()}
# Free text about this run (how the binary was built, what else ran), from the caller.
if os.environ.get("PP_NOTE"):
    result["note"] = os.environ["PP_NOTE"]
with open(os.path.join(out, "process_pool.json"), "w") as f:
    json.dump(result, f, indent=1)
PY
}

case "$MODE" in
  smoke)
    build
    start_bench_postgres
    "$(bench_bin)" --smoke --out "$BUILD/smoke" "${EXTRA[@]}"
    "$(bench_bin executor_exporter_process_pool_bench)" --benchmark_filter='Codec|RoundTrip' \
      --benchmark_min_time=0.01
    for m in fork forkserver; do
      python3 "$ROOT/bench/python_peer.py" --workload pp_map --n 200 --start-method "$m"
    done
    ;;
  full)
    build
    start_bench_postgres
    "$(bench_bin)" --out "$BUILD/results" "${EXTRA[@]}"
    process_pool_rounds "$BUILD/results" "$PP_ROUNDS"
    args=(--results "$BUILD/results/results.json" --process-pool "$BUILD/results/process_pool.json")
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
  process_pool)
    build executor_exporter_process_pool_bench
    process_pool_rounds "$BUILD/pp_results" "$PP_ROUNDS"
    python3 "$ROOT/bench/report.py" --process-pool "$BUILD/pp_results/process_pool.json" \
      --md "$ROOT/docs/benchmarks.md"
    ;;
  report)
    [[ -f "$BUILD/results/results.json" ]] || { echo "bench.sh: no full run in $BUILD/results" >&2; exit 1; }
    args=(--results "$BUILD/results/results.json")
    [[ -f "$BUILD/results/process_pool.json" ]] &&
      args+=(--process-pool "$BUILD/results/process_pool.json")
    [[ -n "$SCALING_JSON" ]] && args+=(--scaling "$SCALING_JSON")
    python3 "$ROOT/bench/report.py" "${args[@]}" --md "$ROOT/docs/benchmarks.md" \
      --png "$ROOT/docs/benchmarks.png"
    ;;
esac
