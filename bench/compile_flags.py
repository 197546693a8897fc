"""What the C compiler's flags cost at install: the CPU seconds gcc takes to compile generated
modules with each set of flags, the rest of the command line as setup.py's build gives it
(Python's own CFLAGS and the include folders).

    python bench/compile_flags.py                                  # three modules, small to large
    python bench/compile_flags.py mptcp_fast/engine/subflow.c      # any generated .c file

The .c files are Cython's output in this tree: build first (python setup.py build_ext
--inplace). Each compile runs alone and is timed by the CPU it used (user + system), which other
people's jobs on the machine change less than they change wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import shlex
import subprocess
import sysconfig
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT = ["mptcp_fast/engine/rtt.c", "pyx/mptcp_fast/wire/_options_c.c",
           "mptcp_fast/engine/connection.c"]
FLAGS = {"-O3 -g (Python's)": ["-O3", "-g"], "-O3 -g0": ["-O3", "-g0"],
         "-O2 -g0": ["-O2", "-g0"], "-O1 -g0 (setup.py)": ["-O1", "-g0"]}


def _children_cpu() -> float:
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def compile_seconds(source: str, flags: list[str]) -> float:
    """CPU seconds of one compile of ``source`` (relative to the tree) with ``flags`` last."""
    base = shlex.split(sysconfig.get_config_var("CC")) + shlex.split(
        sysconfig.get_config_var("CFLAGS")) + sysconfig.get_config_var("CCSHARED").split()
    includes = ["-Ipyx", f"-I{sysconfig.get_paths()['include']}"]
    with tempfile.TemporaryDirectory() as folder:
        before = _children_cpu()
        subprocess.run(base + includes + ["-w", "-c", source, "-o", os.path.join(folder, "x.o")]
                       + flags, cwd=ROOT, check=True)
        return _children_cpu() - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="*", default=DEFAULT)
    args = parser.parse_args()
    print(f"{'module':40s}" + "".join(f"{name:>22s}" for name in FLAGS))
    for source in args.sources:
        size = os.path.getsize(os.path.join(ROOT, source)) >> 10
        cells = "".join(f"{compile_seconds(source, flags):20.1f} s" for flags in FLAGS.values())
        print(f"{source + f' ({size} KiB)':40s}{cells}", flush=True)


if __name__ == "__main__":
    main()
