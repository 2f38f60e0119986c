"""`ferlab bench train`, `infer`, `photo` and `video`: figures written to JSON files."""
from __future__ import annotations

from ..bench.config import BenchInferConfig, BenchPhotoConfig, BenchTrainConfig, BenchVideoConfig
from .options import add_options, build


def add_parsers(sub) -> None:
    p = sub.add_parser("bench", help="reproducible speed/accuracy benchmarks writing JSON")
    bsub = p.add_subparsers(dest="bench", metavar="WHAT")
    bsub.required = True
    for name, cls, func, text in (
            ("train", BenchTrainConfig, run_train, "train a recipe; val accuracy at time points, images/s, GFLOP/s "
                                                   "vs peak"),
            ("infer", BenchInferConfig, run_infer, "faces/s of classification at batch 1 and 64, PyTorch and ONNX "
                                                   "Runtime"),
            ("photo", BenchPhotoConfig, run_photo, "end-to-end latency of a 640x480 photo (one face, six faces, "
                                                   "none), PyTorch and ONNX Runtime"),
            ("video", BenchVideoConfig, run_video, "end-to-end frames/s of a 640x480 video (decode, detect, track, "
                                                   "classify, write outputs)")):
        q = bsub.add_parser(name, help=text)
        add_options(q, cls)
        q.set_defaults(func=func)


def run_train(args) -> int:
    import json

    from ..bench.train import bench_train, summarize_run
    from ..fileio import write_json

    cfg = build(args, BenchTrainConfig)
    if cfg.run:
        r = summarize_run(cfg.run, cfg.recipe)
        write_json(cfg.json, r)
    else:
        overrides = {k: v for k, v in (("epochs", cfg.epochs), ("arch", cfg.arch), ("device", cfg.device))
                     if v is not None}
        r = bench_train(cfg.recipe, cfg.data, cfg.json, budget_minutes=cfg.minutes, runs_dir=cfg.runs,
                        name=cfg.name, **overrides)
    print(json.dumps({k: r[k] for k in ("model", "epochs_run", "train_minutes", "images_per_s_median", "train_gflops",
                                        "fraction_of_peak", "val_acc_at_minutes", "best_val_acc", "val_acc_tta")},
                     indent=1))
    print(f"written: {cfg.json}")
    return 0


def run_infer(args) -> int:
    import json

    from ..bench.infer import bench_infer

    cfg = build(args, BenchInferConfig)
    r = bench_infer(list(cfg.models), threads=cfg.threads, seconds=cfg.seconds, out=cfg.json)
    print(json.dumps(r, indent=1, default=str)[:4000])
    print(f"written: {cfg.json}")
    return 0


def run_photo(args) -> int:
    from ..bench.use import bench_photo

    cfg = build(args, BenchPhotoConfig)
    r = bench_photo(cfg.model, cfg.detector, cfg.backends, threads=cfg.threads, seconds=cfg.seconds, out=cfg.json,
                    device=cfg.device)
    for backend, b in r["backends"].items():
        many, none = b["photos"]["several_faces"]["jpeg"], b["photos"]["no_face"]["jpeg"]
        print(f"{backend}: one face {b['one_face_array_ms']:.1f} ms from an array, {b['one_face_jpeg_ms']:.1f} ms "
              f"from a JPEG (target {r['target_ms']:g}); several faces {many['latency_ms_p50']:.1f} ms "
              f"({many['faces']} found); no face {none['latency_ms_p50']:.1f} ms (JPEG)")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"written: {cfg.json}")
    return 0


def run_video(args) -> int:
    from ..bench.use import bench_video

    cfg = build(args, BenchVideoConfig)
    r = bench_video(cfg.model, cfg.detector, cfg.backends, threads=cfg.threads, frames=cfg.frames,
                    repeats=cfg.repeats, video=cfg.video, out=cfg.json, device=cfg.device)
    print(f"decoding alone: {r['decode_only_fps']:.0f} frames/s")
    for backend, b in r["backends"].items():
        print(f"{backend}: {b['annotated_video']['fps']:.1f} frames/s writing the annotated video, "
              f"{b['csv_only']['fps']:.1f} without (target {r['target_fps']:g})")
    for w in r["warnings"]:
        print(f"warning: {w}")
    print(f"written: {cfg.json}")
    return 0
