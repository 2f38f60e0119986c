"""After the last epoch: best.pt scored once more with the configured TTA, the evaluation files
and the curves written, and the final figures recorded in best.pt."""
from __future__ import annotations

from pathlib import Path

from .. import checkpoint, data
from ..evaluate.calibration import calibrate, reliability
from ..evaluate.metrics import metrics
from ..evaluate.outputs import write_evaluation
from ..evaluate.tta import predict_logits
from ..figures import plot_curves
from .. import history
from .config import TrainConfig


def finish(run_dir: Path, cfg: TrainConfig, val: data.FaceData, log=print) -> dict:
    """Final validation of best.pt with the configured TTA and its calibration temperature;
    writes eval, confusion, reliability and curves."""
    payload = checkpoint.read(run_dir / "best.pt")
    loaded = checkpoint.build(payload, str(run_dir / "best.pt"))
    logits = predict_logits(loaded.model, val.images, loaded.preprocess, cfg.tta)
    m = metrics(val.labels.numpy(), logits.argmax(1).numpy(), val.classes)
    split = cfg.val_split or f"train[{cfg.val_fraction}]"
    m.update({"split": split, "tta": cfg.tta})
    # The temperature is fitted on the validation logits with the run's TTA, as they are used.
    cal = calibrate(logits, val.labels, split)
    t, y = cal["temperature"], val.labels.numpy()
    m["calibration"] = cal
    m["reliability"] = {"uncalibrated": reliability(logits.softmax(1).numpy(), y),
                        f"temperature {t:.2f}": reliability((logits / t).softmax(1).numpy(), y)}
    payload["calibration"] = cal
    write_evaluation(m, run_dir, "val", title=f"{cfg.arch} val (tta {cfg.tta})")
    rows = history.read(run_dir / "metrics.csv")
    plot_curves(rows, run_dir / "curves.png", title=cfg.arch)
    payload["metrics"].update({"val_acc_tta": m["accuracy"], "val_macro_f1_tta": m["macro_f1"], "tta": cfg.tta,
                               "epochs_run": len(rows),
                               "train_minutes": rows[-1]["elapsed"] / 60 if rows else 0.0})
    checkpoint.save(payload, run_dir / "best.pt")
    log(f"best checkpoint: val acc {payload['metrics']['val_acc']:.4f}, with tta {cfg.tta}: {m['accuracy']:.4f} "
        f"macro-F1 {m['macro_f1']:.4f}, ECE {100 * cal['ece_before']:.1f} % -> {100 * cal['ece_after']:.1f} % at "
        f"temperature {t:.2f} -> {run_dir}")
    return m
