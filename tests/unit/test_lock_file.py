"""requirements.lock (`make lock`) pins what pyproject.toml asks for, every package with its
hashes, so `make install` and CI install exactly what was locked (`pip install
--require-hashes`)."""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.support import ROOT

LOCK = ROOT / "requirements.lock"
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;\\]+)", re.M)


def _locked() -> dict[str, str]:
    return {canonicalize_name(name): version for name, version in PIN.findall(LOCK.read_text())}


def test_every_pin_in_pyproject_is_locked_at_that_version() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in (*project["dependencies"],
                                       *project["optional-dependencies"]["test"])]
    locked = _locked()
    stale = []
    for requirement in wanted:
        pins = [s.version for s in requirement.specifier if s.operator == "=="]
        name = canonicalize_name(requirement.name)
        if name not in locked or (pins and locked[name] != pins[0]):
            stale.append(f"{requirement} (locked: {locked.get(name)})")
    assert not stale, f"run `make lock`: {stale}"


def test_every_locked_package_has_hashes() -> None:
    entries = re.split(r"\n(?=[A-Za-z0-9])", LOCK.read_text())
    packages = [e for e in entries if PIN.match(e)]
    assert len(packages) > 50
    unhashed = [e.split()[0] for e in packages if "--hash=sha256:" not in e]
    assert not unhashed, unhashed
