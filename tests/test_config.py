"""YAML configs with overrides, and their hashes."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel

from medseq.config import config_hash, dump_yaml, load_config
from medseq.errors import UsageError


class Inner(BaseModel):
    hidden: int = 32
    cell: str = "lstm"


class Settings(BaseModel):
    epochs: int = 5
    model: Inner = Inner()


def test_defaults_file_and_dotted_overrides_compose(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("epochs: 9\nmodel:\n  cell: gru\n")
    loaded = load_config(Settings, cfg, {"model.hidden": 64, "epochs": None})
    assert loaded.epochs == 9  # None override leaves the file's value
    assert loaded.model.hidden == 64
    assert loaded.model.cell == "gru"


def test_hash_ignores_key_order_and_changes_with_values() -> None:
    a = Settings.model_validate({"epochs": 3, "model": {"hidden": 8, "cell": "rnn"}})
    b = Settings.model_validate({"model": {"cell": "rnn", "hidden": 8}, "epochs": 3})
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(Settings())
    assert config_hash(a).startswith("sha256:")


def test_dump_yaml_round_trips(tmp_path: Path) -> None:
    original = Settings.model_validate({"epochs": 2, "model": {"hidden": 4}})
    path = tmp_path / "out.yaml"
    path.write_text(dump_yaml(original))
    assert load_config(Settings, path) == original


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("epochs: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "YAML mapping"),
        ("epochs: many\n", "setting epochs"),
    ],
)
def test_bad_config_is_a_one_line_usage_error(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UsageError) as info:
        load_config(Settings, path)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_config_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"missing\.yaml"):
        load_config(Settings, tmp_path / "missing.yaml")
