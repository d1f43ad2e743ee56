"""The one YAML loader of our config files: the data of ``yaml.safe_load``, libyaml's speed, no kept node tree."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from app.config.settings import ConfigError
from app.config.yaml_file import _Loader, load_yaml, parse_yaml

DOCUMENT = """\
defaults: &defaults
  tier: pro
  budget_cents_per_day: 500
clients:
  - id: acme
    <<: *defaults
    key_sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
  - {id: "caf\\u00e9", tier: free, ratio: 0.5, on: yes, none: ~, when: 2026-12-07}
prices:
  gpt-4o: [2.5, 10]
  'quoted: key': "line\\nbreak"
"""


def test_same_data_as_safe_load() -> None:
    assert parse_yaml(DOCUMENT) == yaml.safe_load(DOCUMENT)
    assert parse_yaml("") is None


@pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")
def test_uses_libyaml_when_present() -> None:
    assert issubclass(_Loader, yaml.CSafeLoader)


def test_strings_are_not_the_node_trees() -> None:
    """A kept string would keep the arena of dead nodes around it (the module's docstring)."""
    loader = _Loader("key: some value")
    try:
        node = loader.get_single_node()
        ((key_node, value_node),) = node.value
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    assert data == {"key": "some value"}
    (key, value), = data.items()
    assert key is not key_node.value and value is not value_node.value


def test_unsafe_tags_are_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError):
        parse_yaml("!!python/object/apply:os.system ['true']")


def test_load_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    assert load_yaml(str(path), "MODELS_FILE") == {}  # missing: empty
    path.write_text("")
    assert load_yaml(str(path), "MODELS_FILE") == {}
    path.write_text(DOCUMENT)
    assert load_yaml(str(path), "MODELS_FILE") == yaml.safe_load(DOCUMENT)
    path.write_text("- a list\n")
    with pytest.raises(ConfigError, match=r"^MODELS_FILE: .* must hold a mapping at the top$"):
        load_yaml(str(path), "MODELS_FILE")
    path.write_text("models: [\n")
    with pytest.raises(ConfigError, match=r"^MODELS_FILE: cannot read '.*models.yaml': \S"):
        load_yaml(str(path), "MODELS_FILE")
