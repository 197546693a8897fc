"""Types for the library's users, and the package's own type check and lint, run as CI runs
them (after ``pip install -e '.[test]'``, which brings mypy and ruff):

- tests/typing/user_script.py uses every API the README and docs/ show and passes
  ``mypy --strict`` against the installed package (found through its editable install's path
  entry and its py.typed, as a user's mypy finds it);
- tests/typing/wrong_script.py makes mistakes a user could make, and mypy reports exactly
  those it marks (line and error code), so the check above cannot pass on missing types;
- ``python -m mypy`` passes on the package ([tool.mypy] in pyproject.toml) and
  ``python -m ruff check mptcp_fast`` passes ([tool.ruff]).

mypy writes its cache to a temporary directory: every run is a cold one.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "typing")
MARK = re.compile(r"#\s*error:\s*\[([a-z-]+)\]")
REPORTED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def _start(args: list[str], cwd: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture(scope="module")
def checks(tmp_path_factory) -> Iterator[dict[str, subprocess.Popen]]:
    """The checks, started together (the two mypy runs take a core each); a test reads its
    own with ``_finish``."""
    scripts = tmp_path_factory.mktemp("scripts")
    # a directory of its own: mypy must find mptcp_fast where the interpreter does (the
    # install), not in the working directory
    for name in ("user_script.py", "wrong_script.py"):
        shutil.copy(os.path.join(SCRIPTS, name), scripts / name)
    cache = tmp_path_factory.mktemp("mypy-cache")
    started = {
        "scripts": _start(["mypy", "--strict", "--cache-dir", str(cache / "scripts"),
                           "user_script.py", "wrong_script.py"], cwd=str(scripts)),
        "package": _start(["mypy", "--cache-dir", str(cache / "package")], cwd=ROOT),
        "ruff": _start(["ruff", "check", "--no-cache", "mptcp_fast"], cwd=ROOT),
    }
    yield started
    for process in started.values():       # the checks no test read (a -k selection)
        if process.poll() is None:
            process.kill()
        process.communicate()


def _finish(process: subprocess.Popen) -> tuple[int, str]:
    output, _ = process.communicate(timeout=600)
    return process.returncode, output


def _marked_errors(path: str) -> set[tuple[int, str]]:
    with open(path) as f:
        return {(number, match.group(1)) for number, line in enumerate(f, 1)
                if (match := MARK.search(line))}


def _reported_errors(output: str, name: str) -> set[tuple[int, str]]:
    found = set()
    for line in output.splitlines():
        match = REPORTED.match(line)
        if match and os.path.basename(match["file"]) == name:
            found.add((int(match["line"]), match["code"]))
    return found


def test_a_users_script_passes_mypy_strict_and_a_wrong_one_fails_where_marked(checks):
    returncode, output = _finish(checks["scripts"])
    assert "import-not-found" not in output and "import-untyped" not in output, output
    assert _reported_errors(output, "user_script.py") == set(), output
    expected = _marked_errors(os.path.join(SCRIPTS, "wrong_script.py"))
    assert len(expected) >= 15
    assert _reported_errors(output, "wrong_script.py") == expected, output
    assert returncode == 1


def test_the_package_passes_its_mypy_configuration(checks):
    returncode, output = _finish(checks["package"])
    assert returncode == 0, output
    assert re.search(r"Success: no issues found in \d+ source files", output), output


def test_the_package_passes_ruff(checks):
    returncode, output = _finish(checks["ruff"])
    assert returncode == 0, output
    assert "All checks passed!" in output
