#!/usr/bin/env bash
# The extensions built with AddressSanitizer and UBSan, then the memory-safety regression
# tests and the fuzz targets run against them. Exits non-zero on any
# sanitizer report or failing test.
#
#   bench/sanitize.sh                 # about 6 minutes on 2 cores (bench/RESULTS.md)
#   MPTCP_FAST_FUZZ_EXAMPLES=20000 bench/sanitize.sh     # longer fuzz runs
#   KEEP=1 bench/sanitize.sh          # keep the build directory (its path is printed)
#
# The repository's tracked files (git ls-files, with uncommitted edits) are copied to a
# temporary directory and built there, so the worktree's own .so files are not touched.
# Python itself is not instrumented: libasan is preloaded, PYTHONMALLOC=malloc sends every
# object to the instrumented malloc (pymalloc's arenas would hide an over-read of a small
# bytes object), and leaks are not checked (the interpreter keeps objects until exit).
# Python's CFLAGS carry -fwrapv, which makes signed overflow defined and UBSan silent on
# it: -fno-wrapv comes after it, so int64 overflow in the extensions is reported.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/mptcp-sanitize.XXXXXX")"
log="$work/sanitize.log"
cleanup() { if [ -z "${KEEP:-}" ]; then rm -rf "$work"; else echo "kept: $work"; fi; }
trap cleanup EXIT

start=$(date +%s)
cd "$repo"
git ls-files -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$work"
cd "$work"

san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
export MPTCP_FAST_CFLAGS="$san -fno-wrapv -O1 -g"
export MPTCP_FAST_LDFLAGS="-fsanitize=address,undefined"
export MPTCP_FAST_REQUIRE_EXT=1
echo "building in $work with: $MPTCP_FAST_CFLAGS"
python setup.py build_ext --inplace -j "${JOBS:-2}" >"$work/build.log" 2>&1 || {
    tail -30 "$work/build.log"; echo "sanitize: the build failed"; exit 2; }
built=$(date +%s)

asan="$(gcc -print-file-name=libasan.so)"
ubsan="$(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD="$asan $ubsan" PYTHONMALLOC=malloc PYTHONPATH="$work"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=0:exitcode=99"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:exitcode=98"
# the tests must import this build, not an installed copy of the package
python -c "import sys, mptcp_fast
assert mptcp_fast.__file__.startswith('$work/'), mptcp_fast.__file__
assert mptcp_fast.BACKEND == 'cython', mptcp_fast.BACKEND" || {
    echo "sanitize: the sanitizer build does not import"; exit 2; }
status=0
# -m '': the fuzz-marked tests too, at MPTCP_FAST_FUZZ_EXAMPLES examples (default below)
MPTCP_FAST_FUZZ_EXAMPLES="${MPTCP_FAST_FUZZ_EXAMPLES:-2000}" \
    python -m pytest -q -p no:cacheprovider -m '' \
        tests/test_memory_safety.py tests/test_hardening.py tests/test_fuzz.py \
        tests/test_engine_fuzz.py 2>&1 | tee "$log" || status=$?
# the engine under attack: regressions, the bounds property, the blind attacker
# and the random sequences, at their default sizes
python -m pytest -q -p no:cacheprovider tests/test_engine_hardening.py \
    tests/test_engine_bounds.py tests/test_engine_blind.py tests/test_engine_sequences.py \
    2>&1 | tee -a "$log" || status=$?

end=$(date +%s)
# a report that did not stop the run (e.g. from a thread) still fails it
if grep -qE "ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer" "$log"; then
    echo "sanitize: sanitizer report found (see above)"
    [ "$status" -eq 0 ] && status=1
fi
# the tests must have run against this build, not an installed copy
if ! grep -qE "[0-9]+ passed" "$log"; then
    echo "sanitize: no test passed"; [ "$status" -eq 0 ] && status=1
fi
echo "sanitize: build $((built - start)) s, tests $((end - built)) s, exit $status"
exit "$status"
