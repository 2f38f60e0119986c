"""The HTML report of a training run (`ferlab report`) and of runs side by side (`ferlab compare
--html`): one self-contained file each, figures embedded, nothing fetched when it opens.

`config` (the verb's options, torch-free), `build` (a run -> its report), `gallery` (which faces
the mistakes and explanation galleries show), `command` (the command that reproduces a run),
`compare` (the comparison page) and `render` (Jinja2 templates, embedded PNGs)."""
from ..lazy import exports

_API = {"ReportConfig": "config", "build_report": "build", "mistakes": "gallery", "examples": "gallery",
        "train_command": "command", "write_compare_html": "compare", "run": "build"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
