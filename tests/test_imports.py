"""The import rules: the import-linter contracts in pyproject.toml (no cycles in core, core never
imports streamlit, pages never import torch, the streams' packages do not import each other),
and, where a contract cannot tell an import in a function from one at the top of a module, that
importing the module really leaves torch out."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import REPO


def test_the_import_contracts_hold():
    lint = Path(sys.executable).with_name("lint-imports")
    assert lint.exists(), f"{lint}: not found; pip install -r requirements-test.txt"
    done = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout, done.stdout[-4000:]


def test_the_imports_the_torch_contract_ignores_stay_inside_functions():
    """pyproject.toml's pages-no-torch contract ignores core.runner → core.devices /
    core.distributed, core.images.data → torch and core.provenance → torch because they
    happen inside functions: the Data, Train, Results and Runs pages import these modules, and
    torch takes seconds to load."""
    code = ("import sys, core.runner, core.images.data, core.provenance; "
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip() == "False", done.stderr
