"""The compiled engine's cost as a deterministic count: instructions executed inside the
compiled ``Network.run`` per MSS data segment of a 4 MiB transfer over two unimpaired 10 Gbit/s
paths (``demo.run_transfer``), counted by callgrind. Wall-clock figures on a shared 2-core
machine move by tens of percent from minute to minute; this count does not.

    python bench/count_instructions.py                      # the package as imported
    python bench/count_instructions.py /path/a /path/b      # several built source trees
    python bench/count_instructions.py --analyze CAPTURE /path/a /path/b

``--analyze`` counts the capture analyzer's walk instead: the instructions inside the compiled
tracker's ``run`` and ``packet`` (the tracker, the receive pipeline, the mapping store and
reassembly; not the capture decode or the analyzer's Python) while ``analyze(CAPTURE)`` runs,
per packet of the capture.

Each tree is imported through PYTHONPATH (build it first: ``python setup.py build_ext
--inplace``). Needs valgrind; takes about a minute per tree.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile

SIZE = 4 << 20
MSS_PAYLOAD = 1420
ENGINE = f"""
from mptcp_fast import BACKEND
from mptcp_fast.sim import demo
assert BACKEND == "cython", BACKEND
paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(10e9, 0.001)]
demo.run_transfer({SIZE}, paths, hash_data=False, queue=64 << 20)
"""
ENGINE_RUN = ["__pyx_pw_10mptcp_fast_8_cengine_5netem_7Network_*run"]
ANALYZE = """
import sys
from mptcp_fast import BACKEND
from mptcp_fast import analysis
assert BACKEND == "cython", BACKEND
analysis.analyze(sys.argv[1])
"""
# the tracker's Python-callable run() and packet(), whatever module name and layout it has
TRACKER_WALK = ["__pyx_pw_*_tracking*Tracker_*run", "__pyx_pw_*_tracking*Tracker_*packet"]


def count(tree: str | None, child: str, toggles: list, args: list) -> int:
    """The instructions ``python -c child *args`` executes inside ``toggles``."""
    return callgrind(tree, ["-c", child, *args], toggles)[0]


def callgrind(tree: str | None, python_args: list, toggles: list) -> tuple[int, str]:
    """Run ``python *python_args`` under callgrind (``tree`` first on the path), collecting
    only inside the functions ``toggles`` names: (instructions counted, its stdout)."""
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.path.abspath(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # the real interpreter, not a shim script valgrind would trace instead
        python = os.path.realpath(sys.executable)
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               *(f"--toggle-collect={name}" for name in toggles), python,
                               *python_args],
                              env=env, capture_output=True, text=True, check=True,
                              # the tree itself as the working directory: ``-c`` puts the
                              # working directory first on sys.path, before PYTHONPATH
                              cwd=os.path.abspath(tree) if tree else None)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in:\n{done.stderr[-2000:]}")
    return int(found.group(1)), done.stdout


def packets_in(path: str) -> int:
    from mptcp_fast.analysis import capture
    return sum(1 for _ in capture.open_capture(path))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="*", help="built source trees (default: as imported)")
    parser.add_argument("--analyze", metavar="CAPTURE",
                        help="count the analyzer's walk over this capture instead of the engine")
    args = parser.parse_args(argv)
    trees = args.trees or [None]
    if args.analyze:
        capture = os.path.abspath(args.analyze)
        packets = packets_in(capture)
        for tree in trees:
            total = count(tree, ANALYZE, TRACKER_WALK, [capture])
            print(f"{tree or 'installed package'}: {total:,} instructions in the tracker's walk "
                  f"over {os.path.basename(capture)}, {total / packets:,.0f} per packet "
                  f"({packets:,})")
        return 0
    segments = -(-SIZE // MSS_PAYLOAD)
    for tree in trees:
        total = count(tree, ENGINE, ENGINE_RUN, [])
        print(f"{tree or 'installed package'}: {total:,} instructions in Network.run, "
              f"{total / segments:,.0f} per MSS data segment ({segments:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
