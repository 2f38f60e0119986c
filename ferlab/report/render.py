"""Jinja2 templates (`templates/`) rendered into one self-contained HTML file: figures are
embedded as base64 PNG data, styles inline, so the page opens offline and can be mailed."""
from __future__ import annotations

import base64
import functools
from pathlib import Path

from ..fileio import write_text


@functools.cache
def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.PackageLoader("ferlab.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), undefined=jinja2.StrictUndefined,
                              trim_blocks=True, lstrip_blocks=True)


def png_data(path: str | Path) -> str:
    """A PNG file as a `data:` URI for an <img src>."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render(template: str, path: str | Path, **context) -> Path:
    """Render `templates/<template>` with `context` and write it atomically to `path`."""
    html = _environment().get_template(template).render(**context)
    return write_text(path, html, "HTML report")
