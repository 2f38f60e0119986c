"""Calibration: how far the model's confidence is from its accuracy, and the temperature that
closes the gap (Guo et al. 2017). The temperature is fitted on validation logits, stored in the
checkpoint, and divides the logits wherever probabilities are shown; it never changes a prediction."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

ECE_BINS = 15


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> dict:
    """Equal-width confidence bins: per bin its count, mean confidence and accuracy, and the ECE
    (the count-weighted mean |accuracy - confidence|) over all of them."""
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels)
    conf, pred = probs.max(1), probs.argmax(1)
    correct = (pred == labels).astype(np.float64)
    idx = np.minimum((conf * bins).astype(int), bins - 1)  # a confidence of 1.0 goes in the last bin
    count = np.bincount(idx, minlength=bins)
    safe = np.maximum(count, 1)
    mean_conf = np.bincount(idx, conf, minlength=bins) / safe
    accuracy = np.bincount(idx, correct, minlength=bins) / safe
    ece = float((count * np.abs(accuracy - mean_conf)).sum() / max(len(labels), 1))
    return {"bins": bins, "count": count.tolist(), "confidence": mean_conf.tolist(), "accuracy": accuracy.tolist(),
            "ece": ece}


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    return reliability(probs, labels, bins)["ece"]


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature T > 0 minimising the negative log-likelihood of softmax(logits / T)."""
    # clone(): logits from `predict_logits` are inference-mode tensors, which autograd refuses
    logits, labels = logits.detach().float().clone(), labels.long().clone()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


def calibrate(logits: torch.Tensor, labels: torch.Tensor, split: str) -> dict:
    """Fit the temperature on (logits, labels) and report the ECE before and after."""
    t = fit_temperature(logits, labels)
    y = labels.numpy()
    return {"temperature": t, "split": split, "bins": ECE_BINS,
            "ece_before": ece(logits.softmax(1).numpy(), y), "ece_after": ece((logits / t).softmax(1).numpy(), y)}
