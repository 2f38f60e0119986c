"""`ferlab models` and `ferlab summary`."""
from __future__ import annotations


def add_parsers(sub) -> None:
    p = sub.add_parser("models", help="list registered architectures with parameters and MFLOPs")
    p.set_defaults(func=run_models)
    s = sub.add_parser("summary", help="Keras-style layer table of an architecture or a checkpoint; --png: its layer "
                                      "graph")
    s.add_argument("model", metavar="MODEL", help="a registered architecture (see `ferlab models`), or a "
                   "checkpoint: a run directory, a .pt file, or a bundled model ('default', 'tiny')")
    s.add_argument("--num-classes", type=int, help="number of classes (architectures only; default: its own)")
    s.add_argument("--in-chans", type=int, help="input channels (architectures only; default: its own)")
    s.add_argument("--input-size", type=int, help="input side in pixels (architectures only; default: its own)")
    s.add_argument("--png", metavar="FILE", help="also draw the layer graph with output shapes (as Keras' "
                   "plot_model) to this PNG file")
    s.set_defaults(func=run_summary)


def run_models(args) -> int:
    from ..models import count_params, create_model, get_spec, list_models, summarize

    print(f"{'name':<22}{'input':<12}{'params':>12}{'MFLOPs':>10}  description")
    for name in list_models():
        spec = get_spec(name)
        m = create_model(name)
        s = summarize(m)
        print(f"{name:<22}{f'{spec.input_size}x{spec.input_size}x{spec.in_chans}':<12}{count_params(m):>12,}"
              f"{2 * s['macs'] / 1e6:>10.1f}  {spec.description}")
    return 0


def run_summary(args) -> int:
    from .. import checkpoint
    from ..models import create_model, format_summary, list_models, summarize

    if args.model in list_models():
        m = create_model(args.model, num_classes=args.num_classes, in_chans=args.in_chans, input_size=args.input_size)
        name = title = args.model
    else:
        try:
            loaded = checkpoint.load(args.model)
        except FileNotFoundError:
            raise ValueError(f"unknown model {args.model!r}: not a registered architecture ({', '.join(list_models())}) "
                             "nor a checkpoint file, run directory or bundled model") from None
        m, name = loaded.model, f"{loaded.model_name} ({loaded.path})"
        title = f"{loaded.model_name} ({args.model})"
    print(format_summary(name, summarize(m), (m.input_size, m.input_size, m.in_chans)))
    if args.png:
        from ..figures import architecture_figure
        from ..models.summary import layer_graph

        if not args.png.lower().endswith(".png"):
            raise ValueError(f"--png must name a .png file, got {args.png!r}")
        print(f"wrote {architecture_figure(layer_graph(m), args.png, title=title)}")
    return 0
