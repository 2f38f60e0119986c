"""Evaluation: `metrics` (accuracy, macro-F1, per class, confusion), `tta` (batched logits with
test-time augmentation), `outputs` (the evaluation files), `job` (a checkpoint on a split),
`compare` (runs side by side) and `config` (the verbs' options, torch-free)."""
from ..lazy import exports

_API = {"format_metrics": "metrics", "predict_logits": "tta", "evaluate": "job", "format_table": "compare",
        "write_evaluation": "outputs"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
