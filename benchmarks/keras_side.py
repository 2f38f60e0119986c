"""The Keras half of `keras_compare.py`: one report network trained and evaluated by Keras 3 on
TensorFlow's CPU backend, on the arrays the ferlab half trains on.

It runs in its own throwaway venv, never ferlab's (TensorFlow would pull its own numpy, protobuf...),
and imports nothing from ferlab; `keras_compare.py` starts it once per repetition:

    python3 -m venv /tmp/kerasvenv
    /tmp/kerasvenv/bin/pip install tensorflow-cpu==2.21.0 keras==3.15.1 numpy

Input: a folder with `train_x.npy` / `val_x.npy` (float32 NHWC, pixels / 255, as the reports fed
Keras) and `train_y.npy` / `val_y.npy` (int64 class indices). The models are the reports' Keras
stacks (Keras defaults: 'valid' padding unless 'same' is written, BatchNorm momentum 0.99 and
epsilon 1e-3, a softmax output layer); their trainable parameter count must equal
`--expect-params` (ferlab's count of the same network), or the run stops before training.
Training: `compile(Adam(1e-3), sparse categorical crossentropy)`, then `fit` on the in-memory
arrays for `--epochs` epochs without validation data, so a callback times each epoch's training
alone. Evaluation: `predict` on val at the same batch size, once to warm up, then `--eval-passes`
timed passes.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np


def _conv_a(layers, inp, classes):
    x = inp
    for _ in range(3):
        x = layers.Conv2D(32, 2, activation="relu")(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    return layers.Dense(classes, activation="softmax")(x)


def _conv_b_pool(layers, inp, classes):
    x = layers.Conv2D(32, 3, activation="relu")(inp)
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(layers.Dense(128, activation="relu")(x))
    return layers.Dense(classes, activation="softmax")(x)


def _dnn(layers, inp, classes):
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(inp))
    x = layers.Activation("relu")(x)
    x = layers.Dropout(0.25)(layers.MaxPooling2D(2)(x))
    x = layers.Flatten()(x)
    x = layers.Dropout(0.5)(layers.Dense(1028, activation="relu")(x))
    return layers.Dense(classes, activation="softmax")(x)


def _dense_bn(layers, x, width, dropout):
    x = layers.Dense(width)(x)
    x = layers.LeakyReLU(negative_slope=0.01)(layers.BatchNormalization()(x))
    return layers.Dropout(dropout)(x) if dropout else x


def _conv_bn(layers, inp, classes):
    x = inp
    for filters, dropout in ((32, 0.0), (64, 0.1), (128, 0.2), (256, 0.2)):
        x = layers.Conv2D(filters, 3, padding="same")(x)
        x = layers.LeakyReLU(negative_slope=0.01)(layers.BatchNormalization()(x))
        x = layers.MaxPooling2D(2)(x)
        if dropout:
            x = layers.Dropout(dropout)(x)
    x = layers.Flatten()(x)
    x = _dense_bn(layers, x, 512, 0.5)
    x = _dense_bn(layers, x, 256, 0.1)
    return layers.Dense(classes, activation="softmax")(x)


def _dense_only(layers, inp, classes):
    x = layers.Flatten()(inp)
    for width in (512, 512, 512, 256, 256, 256):
        x = _dense_bn(layers, x, width, 0.1)
    return layers.Dense(classes, activation="softmax")(x)


#: ferlab's name of each report network -> its Keras stack.
MODELS = {"seed_cnn_a": _conv_a, "seed_cnn_b_pool": _conv_b_pool, "seed_dnn": _dnn, "seed_cnn_bn": _conv_bn,
          "seed_dense_bn": _dense_only}


def build(name: str, shape: tuple[int, int, int], classes: int):
    import keras

    try:
        stack = MODELS[name]
    except KeyError:
        raise SystemExit(f"unknown network {name!r}; choose one of: {', '.join(MODELS)}") from None
    inp = keras.Input(shape=shape)
    return keras.Model(inp, stack(keras.layers, inp, classes), name=name)


def trainable_params(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.trainable_weights))


def run(a: argparse.Namespace) -> dict:
    import keras
    import tensorflow as tf

    # before the first op: TensorFlow fixes its thread pools when it creates them
    tf.config.threading.set_intra_op_parallelism_threads(a.threads)
    tf.config.threading.set_inter_op_parallelism_threads(a.threads)
    keras.utils.set_random_seed(a.seed)
    x, y = np.load(a.data / "train_x.npy"), np.load(a.data / "train_y.npy")
    xv, yv = np.load(a.data / "val_x.npy"), np.load(a.data / "val_y.npy")
    model = build(a.arch, x.shape[1:], a.num_classes)
    params = trainable_params(model)
    if a.expect_params and params != a.expect_params:
        raise SystemExit(f"{a.arch}: Keras model has {params:,} trainable parameters, ferlab's {a.expect_params:,}")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)

    timer = EpochTimer()
    t_fit = time.perf_counter()
    hist = model.fit(x, y, batch_size=a.batch_size, epochs=a.epochs, shuffle=True, verbose=0, callbacks=[timer])
    fit_seconds = time.perf_counter() - t_fit

    model.predict(xv, batch_size=a.batch_size, verbose=0)  # warm-up: traces the predict function
    eval_seconds, probs = [], None
    for _ in range(a.eval_passes):
        t = time.perf_counter()
        probs = model.predict(xv, batch_size=a.batch_size, verbose=0)
        eval_seconds.append(time.perf_counter() - t)
    pred = probs.argmax(1)
    val_loss = float(-np.log(np.clip(probs[np.arange(len(yv)), yv], 1e-7, 1.0)).mean())
    eval_median = float(np.median(eval_seconds))
    return {
        "arch": a.arch, "params_trainable": params,
        "params_non_trainable": int(sum(np.prod(w.shape) for w in model.non_trainable_weights)),
        "train_size": len(y), "val_size": len(yv), "input_nhwc": list(x.shape[1:]), "batch_size": a.batch_size,
        "epochs": a.epochs, "epoch_seconds": timer.seconds,
        "epoch_images_per_s": [len(y) / s for s in timer.seconds],
        "train_images_per_s": len(y) / timer.seconds[-1], "fit_seconds": fit_seconds,
        "train_loss": [float(v) for v in hist.history["loss"]],
        "train_acc": [float(v) for v in hist.history["accuracy"]],
        "eval_seconds": eval_seconds, "eval_images_per_s": len(yv) / eval_median,
        "val_acc": float((pred == yv).mean()), "val_loss": val_loss,
        "jit_compile": bool(model.jit_compile),
        "threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                    "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
        "tf_enable_onednn_opts": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "unset (TensorFlow's default: on)"),
        "seed": a.seed,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", required=True, choices=sorted(MODELS))
    p.add_argument("--data", type=Path, required=True, help="folder with train_x/train_y/val_x/val_y .npy")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--expect-params", type=int, default=0, help="trainable parameters the model must have")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-passes", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="JSON file for the result")
    a = p.parse_args()
    res = run(a)
    a.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"keras {a.arch}: epoch {a.epochs} {res['train_images_per_s']:.0f} img/s, eval "
          f"{res['eval_images_per_s']:.0f} img/s, val acc {res['val_acc']:.4f}", file=sys.stderr)


if __name__ == "__main__":
    main()
