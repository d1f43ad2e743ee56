"""docs/configuration.md is made from the settings table and must match it."""

from __future__ import annotations

from pathlib import Path

from app.config.reference import COMMAND, markdown
from app.config.settings import TABLE

ROOT = Path(__file__).resolve().parents[2]


def test_configuration_page_matches_the_table():
    page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert page == markdown(), f"docs/configuration.md differs from app/config/settings.py: run {COMMAND}"


def test_every_setting_is_on_the_page_and_secrets_say_so():
    page = markdown()
    for entry in TABLE:
        row = next(line for line in page.splitlines() if line.startswith(f"| `{entry.env}` |"))
        assert ("*Secret*" in row) == entry.secret, row
