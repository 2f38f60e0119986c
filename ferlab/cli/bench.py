"""`ferlab bench train`, `infer`, `photo` and `video`: figures written to JSON files."""
from __future__ import annotations

from ..config import RECIPES
from ..detect import DETECTORS
from ..predict import BACKENDS


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="reproducible speed/accuracy benchmarks writing JSON")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT")
    bsub.required = True
    t = bsub.add_parser("train", help="train a recipe; val accuracy at time points, images/s, GFLOP/s vs peak")
    t.add_argument("--recipe", default="fast", choices=sorted(RECIPES), help="recipe to train (default: fast)")
    t.add_argument("--data", help="dataset with train and val splits (required unless --run)")
    t.add_argument("--run", metavar="RUN_DIR", help="summarise a finished run instead of training (matmul peaks "
                   "are then measured now)")
    t.add_argument("--minutes", type=float, default=0.0, help="wall-clock budget in minutes (0 = the recipe's epochs)")
    t.add_argument("--epochs", type=int, help="override the recipe's epochs")
    t.add_argument("--model", help="override the recipe's model")
    t.add_argument("--name", default="", help="run name under --runs")
    t.add_argument("--runs", default="runs", help="parent folder of run directories")
    t.add_argument("--out", default="benchmarks/results/train.json", help="JSON file to write")
    t.set_defaults(func=run_train)

    i = bsub.add_parser("infer", help="faces/s of classification at batch 1 and 64, PyTorch and ONNX Runtime")
    i.add_argument("models", nargs="*", default=["default"], help="checkpoints or registered model names "
                   "(default: the bundled model)")
    i.add_argument("--threads", type=int, default=2, help="threads (default: 2)")
    i.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement")
    i.add_argument("--out", default="benchmarks/results/infer.json", help="JSON file to write")
    i.set_defaults(func=run_infer)

    ph = bsub.add_parser("photo", help="end-to-end latency of a 640x480 photo (one face, six faces, none), "
                         "PyTorch and ONNX Runtime")
    _add_use_args(ph)
    ph.add_argument("--seconds", type=float, default=2.0, help="seconds per measurement (default: 2)")
    ph.add_argument("--out", default="benchmarks/results/photo.json", help="JSON file to write")
    ph.set_defaults(func=run_photo)

    v = bsub.add_parser("video", help="end-to-end frames/s of a 640x480 video (decode, detect, track, classify, "
                        "write outputs)")
    _add_use_args(v)
    v.add_argument("--frames", type=int, default=150, help="frames of the generated video (default: 150)")
    v.add_argument("--repeats", type=int, default=3, help="runs per setting; the median is reported (default: 3)")
    v.add_argument("--video", help="time this video file instead of the generated one")
    v.add_argument("--out", default="benchmarks/results/video.json", help="JSON file to write")
    v.set_defaults(func=run_video)


def _add_use_args(p) -> None:
    p.add_argument("--model", default="default", help="checkpoint, run directory or registered model name "
                   "(default: the bundled model)")
    p.add_argument("--detector", default="yunet", choices=DETECTORS, help="face detector (default: yunet)")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                   help="backends to time (default: both)")
    p.add_argument("--threads", type=int, default=2, help="threads for OpenCV, PyTorch and ONNX Runtime (default: 2)")


def run_train(args) -> int:
    import json

    from ..bench import bench_train

    if args.run:
        from ..bench import summarize_run
        from ..benchkit import write_json

        r = summarize_run(args.run, args.recipe)
        write_json(r, args.out)
    elif not args.data:
        raise ValueError("pass --data DATASET to train, or --run RUN_DIR to summarise a finished run")
    else:
        overrides = {k: v for k, v in (("epochs", args.epochs), ("model", args.model)) if v is not None}
        r = bench_train(args.recipe, args.data, args.out, budget_minutes=args.minutes, runs_dir=args.runs,
                        name=args.name, **overrides)
    print(json.dumps({k: r[k] for k in ("model", "epochs_run", "train_minutes", "images_per_s_median", "train_gflops",
                                        "fraction_of_peak", "val_acc_at_minutes", "best_val_acc", "val_acc_tta")},
                     indent=1))
    print(f"written: {args.out}")
    return 0


def run_infer(args) -> int:
    import json

    from ..bench_infer import bench_infer

    r = bench_infer(args.models, threads=args.threads, seconds=args.seconds, out=args.out)
    print(json.dumps(r, indent=1, default=str)[:4000])
    print(f"written: {args.out}")
    return 0


def run_photo(args) -> int:
    from ..bench_use import bench_photo

    r = bench_photo(args.model, args.detector, args.backends, threads=args.threads, seconds=args.seconds, out=args.out)
    for backend, b in r["backends"].items():
        many, none = b["photos"]["several_faces"]["jpeg"], b["photos"]["no_face"]["jpeg"]
        print(f"{backend}: one face {b['one_face_array_ms']:.1f} ms from an array, {b['one_face_jpeg_ms']:.1f} ms "
              f"from a JPEG (target {r['target_ms']:g}); several faces {many['latency_ms_p50']:.1f} ms "
              f"({many['faces']} found); no face {none['latency_ms_p50']:.1f} ms (JPEG)")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"written: {args.out}")
    return 0


def run_video(args) -> int:
    from ..bench_use import bench_video

    r = bench_video(args.model, args.detector, args.backends, threads=args.threads, frames=args.frames,
                    repeats=args.repeats, video=args.video, out=args.out)
    print(f"decoding alone: {r['decode_only_fps']:.0f} frames/s")
    for backend, b in r["backends"].items():
        print(f"{backend}: {b['annotated_video']['fps']:.1f} frames/s writing the annotated video, "
              f"{b['csv_only']['fps']:.1f} without (target {r['target_fps']:g})")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"written: {args.out}")
    return 0
