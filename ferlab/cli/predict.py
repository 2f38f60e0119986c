"""`ferlab predict`: faces and expressions in photos, folders, videos or a webcam."""
from __future__ import annotations

import argparse

from ..predict.config import PredictConfig
from .options import add_options, build


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="find faces and their expressions in photos, folders, videos or a webcam",
        description="Detect faces, align them and classify their expressions. Folders are searched "
                    "recursively; a folder laid out <class>/<file> also gets a file,true,predicted CSV and "
                    "its accuracy. Videos give a per-frame CSV, a summary JSON and an annotated video. "
                    "Exits 1 when no input could be read.")
    add_options(p, PredictConfig)
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    from ..predict.job import run

    report = run(build(args, PredictConfig))
    shown = report.records if len(report.records) <= 20 else [r for r in report.records if r["error"]][:20]
    for r in shown:
        if r["error"]:
            print(f"{r['path']}: error: {r['error']}")
        elif not r["faces"]:
            print(f"{r['path']}: no face")
        else:
            faces = ", ".join(f"{f['label']} {f['probs'][f['label']]:.0%}" for f in r["faces"])
            print(f"{r['path']}: {len(r['faces'])} face(s): {faces}")
    print(f"{len(report.records)} input(s), {report.no_face} without a face, {report.errors} unreadable")
    if report.accuracy is not None:
        print(f"labelled folder accuracy: {report.accuracy:.4f} ({report.correct}/{report.labelled} files; "
              "a file with no face found counts as wrong)")
    if report.annotated:
        print(f"wrote {len(report.annotated)} annotated image(s), e.g. {report.annotated[0]}")
    for path in report.written:
        print(f"wrote {path}")
    return report.exit_code
