"""The examples run: the notebook's code cells in order, and the CLI script."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_notebook_is_current_and_runs(monkeypatch):
    sys.path.insert(0, str(EXAMPLES))
    try:
        import make_notebook
    finally:
        sys.path.pop(0)
    notebook = json.loads((EXAMPLES / "walkthrough.ipynb").read_text())
    assert notebook == make_notebook.build(), "run examples/make_notebook.py"
    monkeypatch.delenv("FERCLEAN_DATA", raising=False)  # the demo path: seconds, not minutes
    namespace: dict = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "walkthrough.ipynb", "exec"), namespace)
    assert len(namespace["cleaned"]) < len(namespace["ds"])
    assert len(namespace["after"]) == 0


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("sha256sum") is None,
                    reason="needs bash and sha256sum")
def test_cli_script_runs(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "DATA": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    run = subprocess.run(["bash", str(EXAMPLES / "cli_quickstart.sh")], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "outputs in" in run.stdout
