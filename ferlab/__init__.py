"""ferlab: facial expression recognition that trains fast on a CPU and works on real photos."""
__version__ = "0.1.0"


def load_default():
    """The bundled pretrained model as a `checkpoint.Loaded` (model, classes, preprocess, meta)."""
    from .checkpoint import load_default as _load_default

    return _load_default()


def __getattr__(name):
    # Lazy so `import ferlab` stays fast and free of OpenCV unless prediction is used.
    if name == "Recognizer":
        from .predict.recognizer import Recognizer

        return Recognizer
    raise AttributeError(f"module 'ferlab' has no attribute {name!r}")
