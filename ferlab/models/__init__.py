"""Model registry and architectures. Importing this package registers every model."""
from . import backbones, fernet, keras_reports  # noqa: F401  (registration side effect)
from .fold import fold_batchnorm
from .registry import FERModel, ModelSpec, count_params, create_model, get_spec, list_models, register
from .summary import format_summary, summarize

__all__ = ["FERModel", "ModelSpec", "count_params", "create_model", "fold_batchnorm", "format_summary", "get_spec",
           "list_models", "register", "summarize"]
