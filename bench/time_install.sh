#!/usr/bin/env bash
# README's Quick start install, timed as a new user meets it: a clean clone of a revision, a
# fresh venv (python -m venv) and an empty pip cache, so pip downloads the build dependencies
# (setuptools, Cython) and the package's own from the index. Three steps, in order:
#
#   1. pip install -e .            the Quick start's first command: every module compiled
#   2. pip install -e '.[test]'    its second: the test extras, over that build
#   3. pip install -e '.[test]'    once more, everything in place: what is left is pip's own
#                                  work (resolution, the isolated build environment) and the
#                                  build's check that nothing changed
#
#   bench/time_install.sh                   # HEAD
#   bench/time_install.sh BEFORE AFTER      # several revisions, one after the other
#
# Environment: PYTHON (default python3) makes the venv; MPTCP_FAST_CFLAGS and the like reach
# the build as they would a user's. Printed per step: wall time, CPU time of everything it ran
# (user + system; gcc included), the 1-minute load average when it started (other people's
# jobs share the cores), and the build's own summary where it prints one (how many modules it
# compiled). Clones, venvs and caches are made in a temporary folder and removed at the end.
set -euo pipefail

repo=$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)
python=${PYTHON:-python3}
[ $# -gt 0 ] || set -- HEAD
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "$(nproc) cores, $("$python" -c 'import sys; print(sys.version.split()[0])'), $(gcc --version | head -1)"
for rev in "$@"; do
    commit=$(git -C "$repo" rev-parse --short "$rev")
    here="$work/$commit"
    git clone -q --no-local "$repo" "$here/src"
    git -C "$here/src" checkout -q "$commit"
    "$python" -m venv "$here/venv"
    export PIP_CACHE_DIR="$here/pip-cache"         # empty: everything comes from the index
    echo "$rev ($commit)"
    step=0
    for target in . '.[test]' '.[test]'; do
        step=$((step + 1))
        load=$(cut -d' ' -f1 /proc/loadavg)
        log="$here/step$step.log"
        (cd "$here/src" && /usr/bin/time -f "%e %U %S" -o "$here/time" \
            "$here/venv/bin/python" -m pip install -v -e "$target" >"$log" 2>&1) || {
            echo "  step $step failed: $log"; tail -20 "$log"; exit 1; }
        read -r wall user system <"$here/time"
        summary=$(grep -o "mptcp_fast: [0-9]* compiled modules.*" "$log" | tail -1 || true)
        printf "  %d. pip install -e %-8s %6.1f s wall %7.1f s CPU   load %5s   %s\n" \
            "$step" "$target" "$wall" "$(echo "$user + $system" | bc)" "$load" "${summary#mptcp_fast: }"
    done
    "$here/venv/bin/python" -c 'import mptcp_fast; print("  backend:", mptcp_fast.BACKEND)'
done
