#!/usr/bin/env bash
# Builds the libFuzzer target with clang++ 14 into build/fuzz and runs it for a
# bounded time over a scratch copy of fuzz/corpus (so new inputs found during
# the run never pollute the checked-in seeds). Exits non-zero on a finding;
# crash inputs are kept in build/fuzz/artifacts/.
#
#   FUZZ_SECONDS   run time in seconds (default 30)
#   FUZZ_CXX       compiler (default clang++-14, falling back to clang++)
#   FUZZ_JOBS      build parallelism (default 2)
#   FUZZ_BUILD_DIR build directory (default build/fuzz)
#   extra arguments are libFuzzer flags (e.g. -seed=1); to replay a crash run
#   the built binary directly on the crash file.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${FUZZ_BUILD_DIR:-${root}/build/fuzz}"
seconds="${FUZZ_SECONDS:-30}"
cxx="${FUZZ_CXX:-$(command -v clang++-14 || command -v clang++ || true)}"
if [[ -z "${cxx}" ]]; then
  echo "fuzz.sh: clang++ not found (set FUZZ_CXX)" >&2
  exit 2
fi

cmake -S "${root}/fuzz" -B "${build}" -DCMAKE_CXX_COMPILER="${cxx}" \
  -DEXECUTOR_EXPORTER_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "${build}" --target frame_decoder_fuzzer -j "${FUZZ_JOBS:-2}"

work="$(mktemp -d "${TMPDIR:-/tmp}/ee-fuzz.XXXXXX")"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}/corpus" "${build}/artifacts"
cp -R "${root}/fuzz/corpus/." "${work}/corpus/"

# -malloc_limit_mb: inputs are at most a few KiB, so any single allocation
# above 64 MiB means a length was trusted before it was checked.
status=0
"${build}/frame_decoder_fuzzer" \
  -max_total_time="${seconds}" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=64 \
  -max_len=4096 -print_final_stats=1 \
  -artifact_prefix="${build}/artifacts/" \
  "$@" "${work}/corpus" || status=$?

if [[ ${status} -ne 0 ]]; then
  echo "fuzz.sh: FINDING (exit ${status}); reproduce with:" >&2
  echo "  ${build}/frame_decoder_fuzzer ${build}/artifacts/<crash-file>" >&2
  exit "${status}"
fi
echo "fuzz.sh: no findings in ${seconds}s"
