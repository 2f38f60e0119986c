"""`ferlab report` and `ferlab compare --html/--png` on tiny runs the tests train, and the choices
behind the report's galleries and reproduce command."""
from __future__ import annotations

import base64
import csv
import io
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import write_folder
from ferlab.cli import main
from ferlab.labels import FER2013_CLASSES
from ferlab.report.command import train_command
from ferlab.report.gallery import examples, mistakes

SECTIONS = ("summary", "config", "data", "curves", "per-class", "confusion", "calibration", "mistakes",
            "explanations", "reproduce")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two 2-epoch fernet_tiny runs on a small synthetic dataset (a few seconds each)."""
    from ferlab import train
    from ferlab.train import config

    root = tmp_path_factory.mktemp("report")
    data = root / "fer"
    write_folder(data / "train", list(FER2013_CLASSES), 16, seed=1)
    write_folder(data / "val", list(FER2013_CLASSES), 6, seed=2)
    out = {"data": data}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FERLAB_CACHE", str(root / "cache"))
        for name, extra in (("a", {}), ("b", {"optimizer": "adamw", "lr": 0.003})):
            cfg = config.build(data=str(data), arch="fernet_tiny", epochs=2, batch_size=32, augment="light",
                               out=str(root / "runs"), name=name, threads=1, chance_epochs=99, **extra)
            out[name] = train.fit(cfg, log=lambda m: None)
    return out


def _images(html: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))))
            for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_mistakes_are_only_mistakes_most_confident_first():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4), size=300)
    y = rng.integers(0, 4, 300)
    y[:5] = probs[:5].argmax(1)  # some right answers among them
    chosen = mistakes(probs, y, per_class=5)
    pred, conf = probs.argmax(1), probs.max(1)
    for k, idx in chosen.items():
        wrong = np.flatnonzero((y == k) & (pred != k))
        assert len(idx) == min(5, len(wrong)) and all(y[i] == k and pred[i] != k for i in idx)
        assert list(conf[idx]) == sorted(conf[idx], reverse=True)
        assert conf[idx].min() >= np.sort(conf[wrong])[::-1][len(idx) - 1]  # none more confident left out
    assert mistakes(np.eye(3), np.arange(3), 4) == {0: [], 1: [], 2: []}  # all right: an empty gallery


def test_examples_are_the_first_faces_of_each_class():
    y = np.array([2, 0, 2, 1, 2, 0])
    assert examples(y, 4, 2) == {0: [1, 5], 1: [3], 2: [0, 2], 3: []}


def test_train_command_gives_only_the_changed_options():
    cmd = train_command({"data": "my data/fer", "arch": "fernet_tiny", "epochs": 8, "lr": 0.1, "classes": [],
                         "mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.4], "channels_last": False, "name": "x",
                         "init": "", "not_an_option_any_more": 3})
    args = shlex.split(cmd)
    assert args[:2] == ["ferlab", "train"]
    assert args[args.index("--data") + 1] == "my data/fer" and args[args.index("--epochs") + 1] == "8"
    assert args[args.index("--std") + 1] == "0.2,0.3,0.4" and "--no-channels-last" in args
    assert args[args.index("--mean") + 1] == "0.4,0.5,0.6"
    for left_out in ("--lr", "--classes", "--init", "--not-an-option-any-more"):
        assert left_out not in args


def test_report_of_a_tiny_run_has_every_section_and_no_external_reference(runs, tmp_path, capsys):
    run = runs["a"]
    # A fine-tuning run's stage column: the curves mark where stage 2 starts.
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    with open(run / "metrics.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=[*rows[0], "stage"])
        w.writeheader()
        w.writerows([{**r, "stage": i + 1} for i, r in enumerate(rows)])
    out = tmp_path / "r.html"
    assert main(["report", str(run), "--out", str(out), "--mistakes", "3", "--faces", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    html = out.read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html, section
    assert not re.search(r'(src|href)\s*=\s*["\']?\s*(https?:)?//', html, re.I)  # nothing fetched
    assert "http://" not in html and "https://" not in html
    # The numbers shown are those of the evaluation of best.pt on val.
    m = json.loads((run / "eval_val.json").read_text())
    assert f"{100 * m['accuracy']:.2f} %" in html
    for c, r in m["per_class"].items():
        assert f"<td>{c}</td><td>{r['precision']:.3f}</td><td>{r['recall']:.3f}</td>" in html
    assert "stage starts (epochs 2)" in html
    cmd = re.search(r"<pre>(ferlab train [^<]*)</pre>", html).group(1)
    assert "--arch fernet_tiny" in cmd and "--epochs 2" in cmd and "--name a" in cmd
    # curves, per-class curves (present when metrics.csv has them), confusion, reliability, mistakes, explanations
    figures = _images(html)
    assert len(figures) >= 5 and all(im.shape[0] > 100 and im.shape[1] > 100 for im in figures)


def test_report_defaults_and_errors(runs, tmp_path, capsys):
    assert main(["report", str(runs["b"]), "--faces", "0", "--mistakes", "0"]) == 0
    html = (runs["b"] / "report_val.html").read_text()
    assert "Not shown (--faces 0)" in html and "Not shown (--mistakes 0)" in html
    assert main(["report", str(runs["b"]), "--split", "test"]) == 2
    assert "no 'test' split" in capsys.readouterr().err
    assert main(["report", str(runs["b"]), "--data", str(tmp_path / "gone")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_compare_html_and_png(runs, tmp_path, capsys):
    html, png = tmp_path / "cmp.html", tmp_path / "cmp.png"
    assert main(["compare", str(runs["a"]), str(runs["b"]), "--html", str(html), "--png", str(png)]) == 0
    table = capsys.readouterr().out
    assert "train_acc" in table and "f1_happy" in table
    page = html.read_text()
    assert '<section id="curves">' in page and '<section id="per-class">' in page and "https://" not in page
    for run in ("a", "b"):
        f1 = json.loads((runs[run] / "eval_val.json").read_text())["per_class"]
        row = "".join(f"<td>{f1[c]['f1']:.3f}</td>" for c in FER2013_CLASSES)
        assert f"<td>{run}</td>{row}" in page.replace("\n", "").replace("  ", "")
    assert len(_images(page)) == 1
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 800
