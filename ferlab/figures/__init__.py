"""PNG figures from arrays: training curves (`training`), confusion matrices and reliability
diagrams (`evaluation`), the explanation figures of `ferlab explain` and the report
(`explanation`), and layer diagrams (`architecture`). Nothing here knows a model, a checkpoint
or an explainer: callers pass numbers and images."""
from .architecture import architecture_figure
from ._canvas import overlay
from .evaluation import plot_confusion, plot_confusion_pair, plot_reliability
from .explanation import (activation_figure, attribution_figure, channel_ranges, filter_figure, gallery_figure,
                          grid_figure, kernel_figure, masked_figure)
from .training import plot_class_curves, plot_compare, plot_curves, stage_starts

__all__ = ["activation_figure", "architecture_figure", "attribution_figure", "channel_ranges", "filter_figure",
           "gallery_figure", "grid_figure", "kernel_figure", "masked_figure", "overlay", "plot_class_curves",
           "plot_compare", "plot_confusion", "plot_confusion_pair", "plot_curves", "plot_reliability",
           "stage_starts"]
