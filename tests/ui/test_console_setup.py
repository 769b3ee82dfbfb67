"""Static checks on the console's set-up: nothing is drawn by accident (magic off, no bare
expressions), no Deploy button, runtime and test requirements apart, and a README whose Start,
Test and Troubleshooting sections say what a new user needs."""
from __future__ import annotations

import ast
import re
import tomllib

import pytest

from conftest import REPO

PAGE_FILES = sorted((REPO / "pages").glob("*.py")) + [REPO / "app.py"]


def streamlit_config() -> dict:
    return tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())


def test_magic_is_off():
    assert streamlit_config()["runner"]["magicEnabled"] is False


@pytest.mark.parametrize("path", PAGE_FILES, ids=lambda p: p.name)
def test_pages_hold_no_bare_expressions(path):
    """With magic on, a bare `a if c else b` (or any non-call expression) is drawn by
    st.write: a DeltaGenerator's docstring, 4,000 px of it. Docstrings are fine."""
    bare = [f"line {node.lineno}: {ast.unparse(node)[:60]}"
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Expr) and not isinstance(node.value, ast.Call)
            and not (isinstance(node.value, ast.Constant) and isinstance(node.value.value, str))]
    assert not bare, bare


def test_no_deploy_button():
    assert streamlit_config()["client"]["toolbarMode"] == "viewer"


def requirement_names(path) -> set[str]:
    lines = [line.split("#")[0].strip() for line in (REPO / path).read_text().splitlines()]
    return {re.split(r"[=<>~!\[ ]", line)[0].lower() for line in lines if line}


def test_runtime_test_and_benchmark_requirements_are_apart_and_dev_is_runtime_plus_test():
    runtime, test = requirement_names("requirements.txt"), requirement_names("requirements-test.txt")
    bench = requirement_names("requirements-bench.txt")
    assert {"torch", "streamlit"} <= runtime
    assert test == {"pytest", "pytest-xdist", "playwright", "import-linter"}
    assert not test & runtime and not bench & (runtime | test)
    dev = (REPO / "requirements-dev.txt").read_text().splitlines()
    assert [line for line in dev if line and not line.startswith("#")] == [
        "-r requirements.txt", "-r requirements-test.txt"]
    assert "pip install --quiet -r requirements-dev.txt" in (REPO / ".ci" / "run").read_text()


def readme_section(title: str) -> str:
    text = (REPO / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_start_and_test_are_two_commands_each():
    start, test = readme_section("Start"), readme_section("Test")
    start_cmds = start.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert start_cmds[0].startswith("python3 -m venv .venv")  # the venv first
    assert start_cmds[1] == "pip install -r requirements.txt && streamlit run app.py"
    assert "ATC_WORKDIR" in start and "artifacts/" in start  # where the workspace is
    test_cmds = test.split("```bash\n", 1)[1].split("```", 1)[0].splitlines()
    assert test_cmds == ["pip install -r requirements-dev.txt",
                         "python -m pytest -n 2 --dist loadfile"]  # both cores, a file a worker
    assert f"\n{test_cmds[1]} --durations=15\n" in (REPO / ".ci" / "run").read_text()  # the same


def test_readme_troubleshooting_covers_the_first_problems():
    text = readme_section("Troubleshooting")
    for needed in ("nvidia-smi", "torch.cuda.is_available()", "+cpu", "Home", "ATC_WORKDIR",
                   "--server.port", "server.maxUploadSize", "batch size", "failed (lost)",
                   "core.pipeline resume"):
        assert needed in text, needed
