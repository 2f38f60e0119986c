"""Export: a checkpoint to a self-describing ONNX file (`onnx`: export, int8 quantization, the
post-export check, and `OnnxClassifier`, which reads the file back) and the verb's `config`."""
from ..lazy import exports

_API = {"export": "onnx", "export_onnx": "onnx", "OnnxClassifier": "onnx", "ExportConfig": "config"}
__all__ = sorted(_API)
__getattr__ = exports(__name__, _API)
