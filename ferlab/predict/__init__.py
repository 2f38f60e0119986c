"""Use on photos, folders, videos and webcams: `config` (options, torch-free), `images` (reading),
`detect` (detectors and alignment), `backends` (PyTorch / ONNX Runtime), `recognizer`
(`Recognizer`: image -> faces -> probabilities), `annotate` (drawing), `video` (tracking and
smoothing), `outputs` (streamed result files) and `job` (the `ferlab predict` verb)."""
from ..lazy import exports

_API = {"Recognizer": "recognizer", "FaceResult": "recognizer", "ImageResult": "recognizer", "softmax": "recognizer",
        "PredictConfig": "config", "DetectorConfig": "config", "DETECTORS": "config", "BACKENDS": "config",
        "read_image": "images", "as_rgb": "images", "make_detector": "detect", "run": "job"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
