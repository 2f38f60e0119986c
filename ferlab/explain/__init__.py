"""What a model looks at: `attribution` (saliency, SmoothGrad, Grad-CAM, shared scales, masked
saliency), `feature_maps` (feature maps), `filters` (gradient-ascent filter images and first-layer
kernels), `inputs` (what they share: model input, classes, layers, hooks), `config` (the verb's
options, torch-free) and `job` (the `ferlab explain` verb: photos and folders -> faces -> figures).

Every explainer takes a `Loaded` checkpoint (or a reference `checkpoint.load` accepts) and
either uint8 face crops, prepared with the checkpoint's own preprocessing, or already
preprocessed float tensors (N, C, S, S). Maps come back at the model's input resolution (S, S),
so they lie exactly over the image the model saw (`to_images`). Hook-based explainers are
context managers that remove their hooks on exit, also on error.
"""
from ..lazy import exports

_API = {"saliency": "attribution", "gradcam": "attribution", "GradCAM": "attribution", "Attribution": "attribution",
        "shared_scale": "attribution", "top_pixels": "attribution", "masked_saliency": "attribution",
        "Masked": "attribution", "activations": "feature_maps", "Activations": "feature_maps",
        "channel_pages": "feature_maps", "visualize_filters": "filters", "FilterImages": "filters",
        "conv_kernels": "filters", "Kernels": "filters", "Capture": "inputs", "model_input": "inputs",
        "to_images": "inputs", "class_index": "inputs", "conv_layers": "inputs", "get_layer": "inputs", "ExplainConfig": "config",
        "METHODS": "config", "run": "job"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
