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

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "tests", "typing")
MARK = re.compile(r"#\s*error:\s*\[([a-z-]+)\]")
REPORTED = re.compile(r"^(?P<file>[^:]+):(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$")


def _run(args: list[str], cwd: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


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


def test_a_users_script_passes_mypy_strict_and_a_wrong_one_fails_where_marked(tmp_path):
    # run from a directory of its own: mypy must find mptcp_fast where the interpreter does
    # (the install), not in the working directory
    for name in ("user_script.py", "wrong_script.py"):
        shutil.copy(os.path.join(SCRIPTS, name), tmp_path / name)
    done = _run(["mypy", "--strict", "--cache-dir", str(tmp_path / "cache"), "--no-incremental",
                 "user_script.py", "wrong_script.py"], cwd=str(tmp_path))
    output = done.stdout + done.stderr
    assert "import-not-found" not in output and "import-untyped" not in output, output
    assert _reported_errors(output, "user_script.py") == set(), output
    expected = _marked_errors(os.path.join(SCRIPTS, "wrong_script.py"))
    assert len(expected) >= 15
    assert _reported_errors(output, "wrong_script.py") == expected, output
    assert done.returncode == 1


def test_the_package_passes_its_mypy_configuration(tmp_path):
    done = _run(["mypy", "--cache-dir", str(tmp_path / "cache")], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"Success: no issues found in \d+ source files", done.stdout), done.stdout


def test_the_package_passes_ruff():
    done = _run(["ruff", "check", "--no-cache", "mptcp_fast"], cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "All checks passed!" in done.stdout
