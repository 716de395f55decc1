"""What `pipx install .` (or pip) builds from pyproject.toml: the command, every module,
every dependency. The install itself was checked by hand with pipx 1.18 (see the README);
this keeps the metadata from drifting away from the code."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name[0]).lower()


def test_the_syncd_command_is_the_cli() -> None:
    assert PROJECT["scripts"] == {"syncd": "syncd.cli:main"}
    module, _, attr = PROJECT["scripts"]["syncd"].partition(":")
    assert callable(getattr(importlib.import_module(module), attr))


def test_every_code_directory_is_a_package_that_gets_installed() -> None:
    # packages.find takes only directories with __init__.py: a module anywhere else would
    # be missing from an installed syncd (and only there).
    for directory in sorted({p.parent for p in (REPO / "syncd").rglob("*.py")}):
        if "__pycache__" not in directory.parts:
            assert (directory / "__init__.py").is_file(), f"{directory} has no __init__.py"


def test_every_third_party_import_is_a_declared_dependency() -> None:
    imported: set[str] = set()
    for path in (REPO / "syncd").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                imported.add(node.module.split(".")[0])
    third_party = imported - set(sys.stdlib_module_names) - {"syncd", "__future__"}
    owners = importlib.metadata.packages_distributions()
    declared = {_name(r) for r in PROJECT["dependencies"]}
    for module in sorted(third_party):
        dists = {_name(d) for d in owners.get(module, [])}
        assert dists & declared, f"syncd imports {module} (from {dists}), not a dependency"


def test_the_readme_install_section_leads_with_pipx() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("\n## Install\n", 1)[1].split("\n## ", 1)[0]
    first_block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    assert first_block.startswith("pipx install .")
    assert "python3 -m venv" in section  # the alternative stays
