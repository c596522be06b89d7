"""Reading and writing versioned JSON documents: the one mechanism every contract uses."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from medseq.config import first_validation_error
from medseq.errors import CacheError
from medseq.io.atomic import write_text_atomic


class Document(BaseModel):
    """Base of every versioned document: ``schema_version`` first, unknown keys refused.

    Subclasses set ``SCHEMA`` (the current major version) and ``REGENERATE`` (how a user makes a
    current copy, named in the refusal of a document this medseq cannot read).
    """

    model_config = ConfigDict(extra="forbid")

    SCHEMA: ClassVar[int] = 1
    OLDEST: ClassVar[int] = 1
    """The oldest major version this reader still accepts."""
    REGENERATE: ClassVar[str] = "rerun the command that wrote it"
    UNVERSIONED: ClassVar[int | None] = None
    """The version a copy without ``schema_version`` is read as (written before documents were
    versioned); None refuses such a copy with ``REGENERATE``."""

    schema_version: int = 1

    @classmethod
    def upgrade(cls, data: dict[str, Any]) -> dict[str, Any]:
        """``data`` of an accepted older version (``OLDEST`` up) in the current shape; the
        ``schema_version`` it was read with is kept. Identity unless a subclass changed shape."""
        return data


class Record(BaseModel):
    """Base of a nested record or a JSON-lines row (no version of its own): unknown keys refused."""

    model_config = ConfigDict(extra="forbid")


D = TypeVar("D", bound=Document)
R = TypeVar("R", bound=BaseModel)


def check_version(model: type[Document], data: object, *, path: Path) -> None:
    """Refuse a document whose major version this medseq does not read."""
    version = data.get("schema_version", model.UNVERSIONED) if isinstance(data, dict) else None
    if not isinstance(version, int) or isinstance(version, bool):
        raise CacheError(f"no schema_version: written by an older medseq; {model.REGENERATE}",
                         path=path)
    if version > model.SCHEMA:
        raise CacheError(f"schema version {version} is newer than this medseq reads "
                         f"({model.SCHEMA}); upgrade medseq", path=path)
    if version < model.OLDEST:
        raise CacheError(f"schema version {version} is no longer read (this medseq reads "
                         f"{model.OLDEST}-{model.SCHEMA}); {model.REGENERATE}", path=path)


def validate(model: type[R], data: object, *, path: Path, where: str = "") -> R:
    """Validate ``data`` against ``model``; a one-line CacheError naming the file otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        field, message = first_validation_error(err)
        raise CacheError(f"invalid {where}{field}: {message}", path=path) from None


def read_document(path: Path, model: type[D]) -> D:
    """Load ``path`` as ``model`` after checking its version."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CacheError(f"missing; {model.REGENERATE}", path=path) from None
    except (OSError, ValueError) as err:
        raise CacheError(f"unreadable ({err})", path=path) from None
    return validate_document(model, data, path=path)


def validate_document(model: type[D], data: object, *, path: Path, where: str = "") -> D:
    """Version check (an unversioned copy read as ``UNVERSIONED``), upgrade, validation."""
    check_version(model, data, path=path)
    if isinstance(data, dict):
        if "schema_version" not in data:
            data = {"schema_version": model.UNVERSIONED, **data}
        data = model.upgrade(data)
    return validate(model, data, path=path, where=where)


def dump_document(doc: Document) -> str:
    """The canonical text of a document: indented JSON, fields in model order, newline-ended."""
    return doc.model_dump_json(indent=2) + "\n"


def write_document(path: Path, doc: Document) -> Path:
    """Write ``doc`` atomically (temporary name, then rename) at the current schema version."""
    doc.schema_version = type(doc).SCHEMA
    write_text_atomic(Path(path), dump_document(doc))
    return Path(path)


def read_lines(path: Path, model: type[R]) -> Iterator[tuple[int, R]]:
    """Each non-blank line of a JSON-lines file as (line number, ``model``); errors name the
    line."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        regenerate = getattr(model, "REGENERATE", "rerun the command that wrote it")
        raise CacheError(f"missing; {regenerate}", path=path) from None
    except OSError as err:
        raise CacheError(f"cannot read ({err.strerror})", path=path) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as err:
            raise CacheError(f"line {number}: not JSON ({err})", path=path) from None
        where = f"line {number} at "
        if issubclass(model, Document):
            yield number, validate_document(model, data, path=path, where=where)
        else:
            yield number, validate(model, data, path=path, where=where)


def write_lines(path: Path, rows: Iterable[BaseModel]) -> Path:
    """Write rows as JSON lines atomically (versioned rows at the current version)."""
    text = "".join(_versioned(row).model_dump_json() + "\n" for row in rows)
    write_text_atomic(Path(path), text)
    return Path(path)


def _versioned(row: R) -> R:
    if isinstance(row, Document):
        row.schema_version = type(row).SCHEMA
    return row
