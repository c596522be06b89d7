"""Render the report template (jinja2) into one self-contained HTML string.

The template lives in ``medseq/report/templates/report.html`` (shipped as package data). Figures
arrive as base64 PNG and are inlined as ``data:`` URIs; the page has no scripts and references
nothing outside itself, so it opens from an e-mail attachment without network access.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

TEMPLATE_NAME = "report.html"


def render(context: Mapping[str, Any]) -> str:
    """Fill the report template; every value is HTML-escaped except the inline images."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=PackageLoader("medseq.report", "templates"),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=False,
        lstrip_blocks=False,
    )
    return env.get_template(TEMPLATE_NAME).render(**context)
