"""Files that `ferlab predict` writes as results come in, so that a crash, a kill or a full disk
keeps every record produced before it: predictions JSON, the per-face CSV, the labelled CSV."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from ..fileio import SaveError, finite


class _Stream:
    """A text file opened at the start of a job, written and flushed record by record."""

    def __init__(self, path: Path, what: str):
        self.path, self.what = Path(path), what
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", newline="", encoding="utf-8")

    def _write(self, text: str) -> None:
        try:
            self._f.write(text)
            self._f.flush()
        except OSError as e:
            raise SaveError(e.errno or 0, f"could not write {self.what} {self.path} ({e.strerror}); the records "
                            "written before this one are in the file. Free disk space or choose another path") from e

    def _row(self, row: list) -> None:
        buf = io.StringIO()
        csv.writer(buf).writerow(row)
        self._write(buf.getvalue())

    def close(self) -> None:
        try:
            self._f.close()
        except OSError as e:
            raise SaveError(e.errno or 0, f"could not finish {self.what} {self.path} ({e.strerror})") from e


class JsonRecords(_Stream):
    """A JSON array of records, each written (and flushed) as soon as it exists."""

    def __init__(self, path: Path):
        super().__init__(path, "predictions JSON")
        self._n = 0
        self._write("[")

    def add(self, record: dict) -> None:
        text = json.dumps(finite(record), allow_nan=False, indent=1).replace("\n", "\n ")
        self._write(("," if self._n else "") + "\n " + text)
        self._n += 1

    def close(self) -> None:
        self._write("\n]\n")
        super().close()


class FaceCsv(_Stream):
    """One row per face (and one per image without faces or with an error)."""

    def __init__(self, path: Path, classes: list[str]):
        super().__init__(path, "face CSV")
        self.classes = classes
        self._row(["path", "face", "x", "y", "w", "h", "score", "label", *classes, "error"])

    def add(self, record: dict) -> None:
        if not record["faces"]:
            self._row([record["path"], "", "", "", "", "", "", "", *[""] * len(self.classes), record["error"] or ""])
        for i, f in enumerate(record["faces"]):
            self._row([record["path"], i, *f["box"], f["score"], f["label"], *(f["probs"][c] for c in self.classes),
                       ""])


class LabelledCsv(_Stream):
    """For <class>/<file> folders: file, true class, predicted class, faces found."""

    def __init__(self, path: Path):
        super().__init__(path, "labelled CSV")
        self._row(["file", "true", "predicted", "faces"])

    def add(self, name: str, truth: str, predicted: str, faces: int) -> None:
        self._row([name, truth, predicted, faces])
