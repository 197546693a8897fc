"""The compiled engine's cost as a deterministic count: instructions executed inside the
compiled ``Network.run`` per MSS data segment of a 4 MiB transfer over two unimpaired 10 Gbit/s
paths (``demo.run_transfer``), counted by callgrind. Wall-clock figures on a shared 2-core
machine move by tens of percent from minute to minute; this count does not.

    python bench/count_instructions.py                      # the package as imported
    python bench/count_instructions.py /path/a /path/b      # several built source trees

Each tree is imported through PYTHONPATH (build it first: ``python setup.py build_ext
--inplace``). Needs valgrind; takes about a minute per tree.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile

SIZE = 4 << 20
MSS_PAYLOAD = 1420
CHILD = f"""
from mptcp_fast import BACKEND, demo
assert BACKEND == "cython", BACKEND
paths = [demo.PathSpec(10e9, 0.001), demo.PathSpec(10e9, 0.001)]
demo.run_transfer({SIZE}, paths, hash_data=False, queue=64 << 20)
"""
RUN = "__pyx_pw_10mptcp_fast_8_cengine_5netem_7Network_*run"


def count(tree: str | None) -> int:
    env = dict(os.environ)
    if tree:
        env["PYTHONPATH"] = os.path.abspath(tree)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        # the real interpreter, not a shim script valgrind would trace instead
        python = os.path.realpath(sys.executable)
        done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                               f"--toggle-collect={RUN}", python, "-c", CHILD],
                              env=env, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise SystemExit(f"no callgrind total in:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(argv: list[str]) -> int:
    trees = argv or [None]
    segments = -(-SIZE // MSS_PAYLOAD)
    for tree in trees:
        total = count(tree)
        print(f"{tree or 'installed package'}: {total:,} instructions in Network.run, "
              f"{total / segments:,.0f} per MSS data segment ({segments:,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
