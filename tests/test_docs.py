"""The documentation site builds with ``mkdocs build --strict``: a broken link between pages, a
missing page in the nav or an API reference to a name that does not exist fails the suite."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import REPO


def test_docs_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (tmp_path / "site" / "api" / "index.html").is_file()
    assert "build_model" in (tmp_path / "site" / "api" / "index.html").read_text()


def test_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    setup = [line for line in readme.splitlines()[:8] if line.startswith("python3 -m venv")]
    assert any("vop demo" in line for line in setup) and any("pytest" in line for line in setup)
    ci = (REPO / ".ci" / "run").read_text()
    assert next(line for line in setup if "pytest" in line) in ci  # CI runs the README's test command
