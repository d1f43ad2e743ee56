"""Each library patch names the exact version it was written against; a different version fails here.

A patch of a library's internals (app/patches/) may break silently when the library changes: a
private attribute renamed, a call order changed. So each patch module declares ``WRITTEN_FOR``
(the distribution and its version, or ``python`` and its major.minor for the standard library),
and this test fails, saying which patch to re-check, as soon as the installed version or the pin
in requirements.txt (the source of truth) differs.
"""

from __future__ import annotations

import importlib.metadata
import re
import sys

import pytest

from app import patches
from tests.support.processes import ROOT


def pins() -> dict[str, str]:
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.MULTILINE)
    return {name.lower().replace("_", "-"): version for name, version in found}


@pytest.mark.parametrize("name", patches.MODULES)
def test_each_patch_was_written_for_the_version_in_use(name: str) -> None:
    module = patches.module(name)
    library, written_for = module.WRITTEN_FOR
    advice = (f"app/patches/{name}.py was written for {library} {written_for}; re-check the patch against "
              f"{{}} (its docstring says what it relies on, and its equivalence tests must pass), "
              f"then update WRITTEN_FOR")
    if library == "python":
        running = f"{sys.version_info.major}.{sys.version_info.minor}"
        assert running == written_for, advice.format(f"Python {running}")
        return
    pinned = pins().get(library)
    assert pinned == written_for, advice.format(f"requirements.txt's pin {library}=={pinned}")
    installed = importlib.metadata.version(library)
    assert installed == written_for, advice.format(f"the installed {library} {installed}")


def test_every_module_of_the_package_is_listed() -> None:
    files = {p.stem for p in (ROOT / "app" / "patches").glob("*.py") if p.stem != "__init__"}
    assert files == set(patches.MODULES)
