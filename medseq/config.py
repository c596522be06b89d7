"""Settings files: YAML into pydantic models, command-line overrides on top, stable hashes.

Each stage defines its own pydantic model (``PreprocessConfig``, ``TrainConfig``); this module
only loads, overrides and fingerprints them, so every command handles config files the same way.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from medseq.errors import UsageError, first_line

M = TypeVar("M", bound=BaseModel)


def load_config(
    model: type[M], path: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> M:
    """Build ``model`` from an optional YAML file, then apply ``overrides``.

    Overrides use dotted keys for nested settings (``{"model.hidden": 64}``); ``None`` values are
    ignored so unset CLI options do not mask the file. Errors name the file and the setting.
    """
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as err:
            raise UsageError(f"cannot read config ({err.strerror})", path=path) from None
        except yaml.YAMLError as err:
            raise UsageError(f"not valid YAML ({first_line(err)})", path=path) from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise UsageError("config must be a YAML mapping of settings", path=path)
        data = loaded
    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        where, message = first_validation_error(err)
        source = f"{path}: " if path is not None else ""
        raise UsageError(f"{source}setting {where or 'config'}: {message}") from None


def first_validation_error(err: ValidationError) -> tuple[str, str]:
    """``(dotted location, message)`` of a pydantic error's first problem, for one-line errors."""
    first = err.errors()[0]
    return ".".join(str(part) for part in first["loc"]), str(first["msg"])


def config_hash(config: BaseModel) -> str:
    """Stable ``sha256:`` hash of a config's canonical JSON (key order does not matter)."""
    return canonical_hash(config.model_dump(mode="json"))


def canonical_hash(data: Any) -> str:
    """``sha256:`` of ``data`` as canonical JSON (sorted keys, no spaces; other types as str)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def config_differences(before: Mapping[str, Any], after: Mapping[str, Any], *,
                       limit: int = 3) -> str:
    """``crop_size 32 -> 48, registration.iterations 200 -> 100``: what two settings differ in.

    Nested sections are compared key by key; a key only one side has shows as ``(unset)``.
    Lists at most ``limit`` keys, then ``and N more``.
    """
    changes: list[str] = []
    flat_before, flat_after = _flatten(before), _flatten(after)
    for key in sorted(set(flat_before) | set(flat_after)):
        old = flat_before.get(key, "(unset)")
        new = flat_after.get(key, "(unset)")
        if old != new:
            changes.append(f"{key} {_show(old)} -> {_show(new)}")
    if len(changes) > limit:
        changes = [*changes[:limit], f"and {len(changes) - limit} more"]
    return ", ".join(changes) or "no setting differs; the recorded hash does"


def dump_yaml(config: BaseModel) -> str:
    """The config as YAML, in field order, for ``--print-config`` and run directories."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UsageError(f"setting {key}: {part} is not a section")
        node = child
    node[parts[-1]] = value
