#!/usr/bin/env bash
# Configures, builds and tests executor-exporter in several configurations.
#
#   scripts/test.sh                                   # release, tsan and asan
#   EE_CONFIGS=release scripts/test.sh                # one configuration
#   EE_CONFIGS="tsan" EE_CTEST_ARGS="-R e2e" scripts/test.sh
#   EE_CTEST_ARGS="-R 'promtool finds' -V" scripts/test.sh   # shell-style quoting is honoured
#
# Configurations (build directories under ${EE_BUILD_ROOT:-build}/):
#   release  Release
#   tsan     RelWithDebInfo, -DEXECUTOR_EXPORTER_SANITIZE=thread
#   asan     RelWithDebInfo, -DEXECUTOR_EXPORTER_SANITIZE=address (ASan + UBSan)
# All use Ninja (when available) and -DEXECUTOR_EXPORTER_WERROR=ON.
#
# Environment: EE_CONFIGS, EE_BUILD_ROOT, EE_JOBS (build, default 2), EE_CTEST_JOBS (default 2),
# EE_CTEST_ARGS (extra ctest arguments), EE_CMAKE_ARGS (extra CMake arguments),
# CXX (compiler, honoured by CMake on the first configure of a build directory).
# Exits non-zero if any configuration fails; prints one summary line per configuration.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo_root=$(pwd)

scripts/install-deps.sh

read -r -a configs <<<"${EE_CONFIGS:-release tsan asan}"
build_root="${EE_BUILD_ROOT:-build}"
jobs="${EE_JOBS:-2}"
ctest_jobs="${EE_CTEST_JOBS:-2}"
# Shell-style word splitting and quoting for the extra arguments.
ctest_extra=()
cmake_extra=()
eval "ctest_extra=(${EE_CTEST_ARGS:-})"
eval "cmake_extra=(${EE_CMAKE_ARGS:-})"

generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

log() { printf '\n=== %s\n' "$*"; }

# Prints the command prefix needed to run TSan binaries built with compiler $1 (empty if none).
# Newer kernels use more mmap randomization bits than older TSan runtimes support, which fails
# with "FATAL: ThreadSanitizer: unexpected memory mapping"; disabling ASLR for the process tree
# (setarch -R) avoids it.
tsan_prefix() {
  local cxx=$1 dir=$2
  mkdir -p "$dir"
  printf '#include <thread>\nint main() { int x = 0; std::thread t([&] { x = 1; }); t.join(); return x - 1; }\n' \
    >"$dir/probe.cpp"
  if ! "$cxx" -fsanitize=thread -g -O1 "$dir/probe.cpp" -o "$dir/probe" -pthread 2>"$dir/compile.log"; then
    echo "test.sh: warning: could not compile the TSan probe:" >&2
    cat "$dir/compile.log" >&2
    return 0
  fi
  local out
  if out=$("$dir/probe" 2>&1); then
    return 0
  fi
  if grep -q "unexpected memory mapping" <<<"$out"; then
    local arch
    arch=$(uname -m)
    if setarch "$arch" -R "$dir/probe" >/dev/null 2>&1; then
      echo "test.sh: TSan needs ASLR off on this kernel; running under 'setarch $arch -R'" >&2
      echo "setarch $arch -R"
      return 0
    fi
    echo "test.sh: warning: TSan fails here and 'setarch -R' does not help (try" \
      "'sudo sysctl vm.mmap_rnd_bits=28'):" >&2
  else
    echo "test.sh: warning: the TSan probe failed:" >&2
  fi
  echo "$out" >&2
  return 0
}

declare -A summary=()
failed=0

run_config() {
  local cfg=$1 build_type sanitize
  local -a extra=()
  case "$cfg" in
    # The release configuration also builds the benchmark suite, whose smoke run is a
    # ctest, so the benchmarks cannot rot.
    release) build_type=Release sanitize="" extra=(-DEXECUTOR_EXPORTER_BUILD_BENCH=ON) ;;
    tsan) build_type=RelWithDebInfo sanitize=thread extra=() ;;
    asan) build_type=RelWithDebInfo sanitize=address extra=() ;;
    *)
      echo "test.sh: unknown configuration '$cfg' (expected release, tsan or asan)" >&2
      summary[$cfg]="FAIL (unknown configuration)"
      return 1
      ;;
  esac
  local dir="$build_root/$cfg"
  local -a prefix=()

  (
    # Sanitizer runtime options apply to this configuration only (subshell).
    case "$cfg" in
      tsan) export TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 ${TSAN_OPTIONS:-}" ;;
      asan)
        export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
        export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
        ;;
    esac

    log "[$cfg] configure ($dir)"
    local -a gen=()
    [[ -f "$dir/CMakeCache.txt" ]] || gen=("${generator[@]}")
    if ! cmake -S "$repo_root" -B "$dir" "${gen[@]}" \
      -DCMAKE_BUILD_TYPE="$build_type" \
      -DEXECUTOR_EXPORTER_SANITIZE="$sanitize" \
      -DEXECUTOR_EXPORTER_WERROR=ON \
      -DEXECUTOR_EXPORTER_BUILD_TESTS=ON \
      -DEXECUTOR_EXPORTER_BUILD_EXAMPLES=ON \
      "${extra[@]}" "${cmake_extra[@]}"; then
      exit 10
    fi

    if [[ "$cfg" == tsan ]]; then
      local cxx
      cxx=$(sed -n 's/^CMAKE_CXX_COMPILER:[A-Z]*=//p' "$dir/CMakeCache.txt")
      local p
      p=$(tsan_prefix "${cxx:-c++}" "$dir/tsan-probe")
      # shellcheck disable=SC2206 # intentional word splitting of "setarch ARCH -R"
      [[ -z "$p" ]] || prefix=($p)
    fi

    log "[$cfg] build (-j$jobs)"
    # The build runs the test binary (Catch2 test discovery), so it needs the prefix too.
    if ! "${prefix[@]}" cmake --build "$dir" --parallel "$jobs"; then
      exit 20
    fi

    log "[$cfg] test (ctest -j$ctest_jobs ${ctest_extra[*]})"
    if ! (cd "$dir" && "${prefix[@]}" ctest --output-on-failure -j"$ctest_jobs" \
      "${ctest_extra[@]}"); then
      exit 30
    fi
  )
  local rc=$?
  case $rc in
    0) summary[$cfg]="PASS" ;;
    10) summary[$cfg]="FAIL (configure)" ;;
    20) summary[$cfg]="FAIL (build)" ;;
    30)
      summary[$cfg]="FAIL (tests)"
      # CI shows only the tail of the log: name the failed tests in the summary too.
      local failed_log="$build_root/$cfg/Testing/Temporary/LastTestsFailed.log"
      if [[ -s "$failed_log" ]]; then
        summary[$cfg]+=$'\n'"$(sed 's/^[0-9]*:/           failed: /' "$failed_log")"
      fi
      ;;
    *) summary[$cfg]="FAIL (exit $rc)" ;;
  esac
  return "$rc"
}

for cfg in "${configs[@]}"; do
  start=$SECONDS
  if run_config "$cfg"; then :; else failed=1; fi
  # The timing goes on the first line, before any list of failed tests.
  first=${summary[$cfg]%%$'\n'*}
  rest=${summary[$cfg]#"$first"}
  summary[$cfg]="$first in $((SECONDS - start))s$rest"
done

# The process pool's frame decoder is fuzzed for a bounded time with every full run
# (libFuzzer needs clang; scripts/fuzz.sh builds its own tree). EE_FUZZ_SECONDS=0 skips it.
if [[ " ${configs[*]} " == *" release "* && "${EE_FUZZ_SECONDS:-20}" != 0 ]]; then
  configs+=(fuzz)
  start=$SECONDS
  log "[fuzz] frame decoder, ${EE_FUZZ_SECONDS:-20}s"
  if FUZZ_SECONDS="${EE_FUZZ_SECONDS:-20}" FUZZ_BUILD_DIR="$build_root/fuzz" scripts/fuzz.sh; then
    summary[fuzz]="PASS"
  else
    summary[fuzz]="FAIL"
    failed=1
  fi
  summary[fuzz]+=" in $((SECONDS - start))s"
fi

echo
echo "=== summary"
for cfg in "${configs[@]}"; do
  printf '%-8s %s\n' "$cfg:" "${summary[$cfg]}"
done
exit "$failed"
