"""The documentation a user meets, held to what it says.

- Every ```python block of README.md and docs/**/*.md runs. The blocks of one file run in
  order in one namespace (a guide builds on its earlier blocks), as one test per file. A block
  may have set-up that the page does not show: an HTML comment right above it,
  ``<!-- setup: ... -->``, whose code runs first. A block that needs something of the machine
  says so in a comment right above it, ``<!-- requires: root tun kernel_mptcp -->`` (the names
  of tests/conftest.py's CAPABILITIES): it runs on its own, in a fresh network namespace when
  it needs root, as a test of its own under the same rules as every ``requires`` mark. A block
  that cannot run at all is preceded by a visible line that starts with "Not run by the
  tests:" and gives the reason.
- Every ``mptcp-fast ...`` command line in a shell block names a subcommand whose ``--help``
  works and options it has; a line without placeholders parses as a whole. The same for the
  ``python -m mptcp_fast...`` commands.
- Every option of the command line has help text that shows its default.
- The docs site builds with ``mkdocs build --strict`` (so every page, link and API reference
  entry resolves), and every object its API reference renders has a docstring that cites no
  issue number; the engine's public classes show their real signature and methods in help().
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import pydoc
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")


def _doc_files() -> list[str]:
    found = [os.path.join(ROOT, "README.md")]
    for folder, _, names in os.walk(DOCS):
        found += [os.path.join(folder, name) for name in names if name.endswith(".md")]
    return sorted(found)


DOC_FILES = _doc_files()


def _name(path: str) -> str:
    return os.path.relpath(path, ROOT)


# ------------------------------------------------------------------------------ the blocks

FENCE = re.compile(r"^(\s*)```\s*([\w+-]*)\s*$")
COMMENT = re.compile(r"<!--(.*?)-->", re.S)
NOT_RUN = "Not run by the tests:"


@dataclass
class Block:
    path: str
    line: int                   # of the opening fence, 1-based
    language: str
    code: str
    setup: str = ""
    requires: tuple = ()
    not_run: str | None = None
    markers: list = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{_name(self.path)}:{self.line}"


def blocks(path: str) -> list[Block]:
    """The fenced blocks of a Markdown file, with the markers in the text right above each."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    found, before, i = [], [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            before.append(lines[i])
            i += 1
            continue
        indent, language = match.groups()
        start, body = i, []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        block = Block(path, start + 1, language.lower(), "\n".join(body) + "\n")
        _read_markers(block, "\n".join(before))
        found.append(block)
        before = []
    return found


def _read_markers(block: Block, text: str) -> None:
    """The HTML comments that end the text above the block (blank lines between allowed), and
    a visible "Not run by the tests:" line in its last paragraph."""
    tail = text.rstrip()
    while tail.endswith("-->"):
        start = tail.rfind("<!--")
        comment = tail[start + 4:-3]
        block.markers.append(comment)
        head, _, rest = comment.strip().partition(":")
        if head == "setup":
            block.setup = textwrap.dedent(rest.strip("\n")) + "\n" + block.setup
        elif head == "requires":
            block.requires = tuple(rest.split())
        tail = tail[:start].rstrip()
    paragraph = tail.split("\n\n")[-1]
    if NOT_RUN in paragraph:
        block.not_run = paragraph.split(NOT_RUN, 1)[1].strip()


ALL_BLOCKS = [b for path in DOC_FILES for b in blocks(path)]
PYTHON = [b for b in ALL_BLOCKS if b.language in ("python", "py")]
PLAIN_FILES = sorted({b.path for b in PYTHON if not b.requires and b.not_run is None})
NEEDING = [b for b in PYTHON if b.requires and b.not_run is None]


def _run(block: Block, namespace: dict) -> None:
    source = block.setup + block.code
    try:
        code = compile(source, block.where, "exec")
        exec(code, namespace)
    except Exception as exc:
        raise AssertionError(f"the python block at {block.where} failed: "
                             f"{type(exc).__name__}: {exc}") from exc


@pytest.mark.parametrize("path", PLAIN_FILES, ids=_name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    """The file's python blocks, in order, in one namespace, in a scratch directory."""
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__docs__"}
    for block in PYTHON:
        if block.path == path and not block.requires and block.not_run is None:
            with contextlib.redirect_stdout(io.StringIO()):
                _run(block, namespace)


@pytest.mark.parametrize("block", [pytest.param(b, marks=pytest.mark.requires(*b.requires),
                                                 id=b.where) for b in NEEDING])
def test_python_blocks_that_need_the_machine_run(block, tmp_path):
    """A block that declares what it needs, on its own (and as root in a fresh network
    namespace, its loopback up, so that nothing it makes outlives it)."""
    command = [sys.executable, "-c", block.setup + block.code]
    if "root" in block.requires or "testbed" in block.requires:
        command = ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                   *command]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                          env=env)
    assert done.returncode == 0, (f"the python block at {block.where} failed "
                                  f"(exit {done.returncode}):\n{done.stdout}\n{done.stderr}")


def test_every_block_that_does_not_run_says_why():
    """Not-run blocks are rare and give their reason; markers name known capabilities."""
    from conftest import CAPABILITIES
    for block in PYTHON:
        for name in block.requires:
            assert name in CAPABILITIES or name == "testbed", f"{block.where}: {name!r}?"
        if block.not_run is not None:
            assert len(block.not_run) > 10, f"{block.where}: say why it is not run"
    assert len([b for b in PYTHON if b.not_run is not None]) <= 2


# ------------------------------------------------------------------------------ command lines

SHELL = ("", "sh", "shell", "bash", "console", "text")
PLACEHOLDER = re.compile(r"[\[\]{}]|\.\.\.|\b[A-Z][A-Z_]+\b")


def _command_lines() -> list[tuple[str, str]]:
    """(where, command) for every command of a shell block (continuation lines joined)."""
    found = []
    for block in ALL_BLOCKS:
        if block.language not in SHELL:
            continue
        lines = block.code.replace("\\\n", " ").splitlines()
        for number, line in enumerate(lines):
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:]
            for part in re.split(r"\s*(?:\|\||&&|\||;|&(?!\S))\s*", line):
                part = part.split(" #", 1)[0].strip()
                part = re.sub(r"^(sudo\s+|\w+=\S+\s+)+", "", part)
                if part.startswith(("mptcp-fast", "python -m mptcp_fast")):
                    found.append((f"{_name(block.path)}:{block.line + 1 + number}", part))
    return found


COMMANDS = _command_lines()


def _subparsers(parser: argparse.ArgumentParser) -> dict:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def _options(parser: argparse.ArgumentParser) -> set:
    return {s for action in parser._actions for s in action.option_strings}


def _mentioned_options(tokens) -> list[str]:
    out = []
    for token in tokens:
        for piece in re.findall(r"--[a-z][a-z0-9-]*", token):
            out.append(piece)
    return out


def test_the_docs_show_mptcp_fast_commands():
    assert len([c for _, c in COMMANDS if c.startswith("mptcp-fast")]) >= 10


@pytest.mark.parametrize("where,command", [c for c in COMMANDS if c[1].startswith("mptcp-fast")],
                         ids=[c[0] for c in COMMANDS if c[1].startswith("mptcp-fast")])
def test_mptcp_fast_command_lines_parse(where, command):
    from mptcp_fast.cli.main import build_parser
    parser = build_parser()
    tokens = shlex.split(command, comments=True)[1:]
    if not tokens or tokens[0] in ("--version", "--help", "-h"):
        return
    sub = _subparsers(parser)
    assert tokens[0] in sub, f"{where}: no subcommand {tokens[0]!r} in {command!r}"
    subparser = sub[tokens[0]]
    with contextlib.redirect_stdout(io.StringIO()) as out, pytest.raises(SystemExit) as done:
        parser.parse_args([tokens[0], "--help"])
    assert done.value.code == 0 and "usage:" in out.getvalue()
    known = _options(subparser)
    for option in _mentioned_options(tokens[1:]):
        assert option in known, f"{where}: {command!r}: {tokens[0]} has no option {option}"
    if not PLACEHOLDER.search(" ".join(tokens)) and not {"-h", "--help"} & set(tokens):
        with contextlib.redirect_stderr(io.StringIO()) as err:
            try:
                parser.parse_args(tokens)
            except SystemExit as exc:
                raise AssertionError(f"{where}: {command!r} does not parse: "
                                     f"{err.getvalue()}") from exc


MODULE_COMMANDS = sorted({shlex.split(c)[2] for _, c in COMMANDS
                          if c.startswith("python -m mptcp_fast")})


@pytest.mark.parametrize("module", MODULE_COMMANDS)
def test_python_m_command_lines_name_options_that_exist(module):
    done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for where, command in COMMANDS:
        tokens = shlex.split(command, comments=True)
        if tokens[:3] == ["python", "-m", module]:
            for option in _mentioned_options(tokens[3:]):
                assert option in done.stdout, f"{where}: {command!r}: no option {option}"


def _all_parsers():
    from mptcp_fast.cli.main import build_parser
    parser = build_parser()
    return [("mptcp-fast", parser)] + [(f"mptcp-fast {name}", p)
                                      for name, p in _subparsers(parser).items()]


def test_every_command_line_option_has_help_that_shows_its_default():
    for name, parser in _all_parsers():
        if name == "mptcp-fast":
            continue
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
                continue
            label = action.option_strings[0] if action.option_strings else action.dest
            assert action.help, f"{name} {label}: no help text"
            if action.required:
                continue
            shown = parser._get_formatter()._get_help_string(action) % {
                **vars(action), "default": action.default, "prog": parser.prog}
            assert "default" in shown, f"{name} {label}: the default is not shown"
        assert "(default: " in text


# ------------------------------------------------------------------------------ the site

def test_the_docs_site_builds_strictly(tmp_path):
    """mkdocs build --strict: every page in the nav, every link and every API reference entry
    resolves, and mkdocstrings renders the docstrings without a warning."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
                           "--config-file", os.path.join(ROOT, "mkdocs.yml"),
                           "--site-dir", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "site" / "reference" / "engine" / "index.html").exists()
    assert time.monotonic() - started < 120


def _reference_entries() -> list[tuple[str, dict]]:
    """(identifier, options) of every ``::: identifier`` of the API reference pages."""
    import yaml
    found = []
    for folder, _, names in os.walk(os.path.join(DOCS, "reference")):
        for name in sorted(names):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                text = f.read()
            for match in re.finditer(r"^::: ([\w.]+)\n((?:    .*\n)*)", text, re.M):
                config = yaml.safe_load(textwrap.dedent(match.group(2))) or {}
                found.append((match.group(1), config.get("options", {})))
    return found


ISSUE_NUMBER = re.compile(r"(?<![\w&])#\d+\b|\bissues?\s+\d+", re.I)


def test_what_the_api_reference_renders_has_docstrings():
    """Each object of the API reference, and each public member it renders, has a docstring,
    and none refers to an issue number."""
    griffe = pytest.importorskip("griffe")
    package = griffe.load("mptcp_fast", search_paths=[ROOT], resolve_aliases=True,
                          resolve_external=False)
    entries = _reference_entries()
    assert len(entries) >= 20
    missing, issues = [], []

    def check(obj, path):
        obj = obj.final_target if obj.is_alias else obj
        text = obj.docstring.value if obj.docstring else ""
        if not text.strip():
            missing.append(path)
        if ISSUE_NUMBER.search(text):
            issues.append(path)
        return obj

    for identifier, config in entries:
        target = package if identifier == "mptcp_fast" else \
            package[identifier.removeprefix("mptcp_fast.")]
        obj = check(target, identifier)
        chosen = config.get("members")
        if chosen is False:
            continue
        members = dict(obj.members)
        if obj.kind.value == "class":
            members.update({name: member for name, member in obj.inherited_members.items()
                            if name in (chosen or ())})
        for name, member in members.items():
            if chosen is not None and name not in chosen:
                continue
            if name.startswith("_") or (member.is_alias and chosen is None):
                continue
            target = member.final_target if member.is_alias else member
            if chosen is None and target.kind.value not in ("function", "class"):
                continue            # attributes without a docstring are not rendered
            member = check(member, f"{identifier}.{name}")
            if member.kind.value == "class" and obj.kind.value == "module":
                for inner, sub in member.members.items():
                    if not inner.startswith("_") and not sub.is_alias \
                            and sub.kind.value in ("function", "class"):
                        check(sub, f"{identifier}.{name}.{inner}")
    assert not missing, f"no docstring: {missing}"
    assert not issues, f"docstrings that cite an issue number: {issues}"


def test_no_docstring_of_the_package_cites_an_issue_number():
    for folder, _, names in os.walk(os.path.join(ROOT, "mptcp_fast")):
        for name in names:
            if name.endswith(".py"):
                with open(os.path.join(folder, name), encoding="utf-8") as f:
                    text = f.read()
                for doc in re.findall(r'"""(.*?)"""', text, re.S):
                    assert not ISSUE_NUMBER.search(doc), f"{name}: {doc[:80]!r}"


@pytest.mark.parametrize("face", ["mptcp_fast.engine.Endpoint", "mptcp_fast.sim.netem.Network",
                                  "mptcp_fast.sim.apps.BulkApp"])
def test_help_of_an_engine_class_shows_its_parameters_and_methods(face):
    module, _, name = face.rpartition(".")
    cls = getattr(__import__(module, fromlist=[name]), name)
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    signature = text.split("\n")[3]
    assert "*args" not in signature and "(" in signature, signature
    assert "Args:" in text
    public = [n for n, v in vars(cls._loaded["python"]).items()
              if not n.startswith("_") and callable(v)]
    for method in public:
        assert f"{method}(" in text, f"help({name}) does not show {method}()"


@pytest.mark.requires("compiled")
def test_help_of_the_compiled_classes_shows_their_signature():
    import inspect

    from mptcp_fast import _backend
    from mptcp_fast.wire import dss
    with _backend.use("cython"):
        assert str(inspect.signature(dss.ReassemblyQueue)) == "(initial_dsn, window=1048576)"
        assert "ReassemblyQueue(initial_dsn, window=1048576)" in pydoc.render_doc(
            dss.ReassemblyQueue, renderer=pydoc.plaintext)
        assert "refers" not in (dss.ReassemblyQueue.__doc__ or "")
        assert "see mptcp_fast.wire.dss.ReassemblyQueue" not in dss.ReassemblyQueue.__doc__


def test_readme_quick_start_keeps_its_two_commands():
    """.ci/run runs README's test command verbatim: the two commands stay as they are."""
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    start = readme.index("## Quick start")
    section = readme[start:readme.index("\n## ", start + 1)]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = [line.split("  #")[0].strip() for line in block.strip().splitlines()]
    assert commands[0].startswith("pip install -e . && mptcp-fast ")
    assert commands[1] == "pip install -e '.[test]' && python -m pytest"
    with open(os.path.join(ROOT, ".ci", "run"), encoding="utf-8") as f:
        assert commands[1] in f.read()
