"""The pseudonym key: created once, read the same way by every stage."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseq.contracts.cache import SALT_NAME
from medseq.errors import CacheError
from medseq.preprocess.pseudonym import load_or_create_salt, pseudonym, read_salt


def test_key_is_created_once_and_read_back(tmp_path: Path) -> None:
    assert read_salt(tmp_path) is None
    key = load_or_create_salt(tmp_path)
    assert read_salt(tmp_path) == key == load_or_create_salt(tmp_path)
    assert pseudonym("Doe^Jane", key) == pseudonym("Doe^Jane", read_salt(tmp_path) or b"")


@pytest.mark.parametrize(("text", "reason"), [("zz-not-hex\n", "unreadable"), ("00ff\n", "short")])
def test_unusable_key_is_an_error_not_a_silent_new_pseudonym(
    tmp_path: Path, text: str, reason: str
) -> None:
    (tmp_path / SALT_NAME).write_text(text)
    with pytest.raises(CacheError, match=reason):
        read_salt(tmp_path)
