import json
import subprocess
import sys


from ferlab.cli import main


def test_models_lists_every_registered_model(capsys):
    from ferlab.models import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert "422,375" in out


def test_summary_prints_keras_style_table(capsys):
    assert main(["summary", "seed_cnn_bn"]) == 0
    out = capsys.readouterr().out
    assert "Trainable params: 1,703,623" in out and "(None, 32, 48, 48)" in out


def test_summary_unknown_model_lists_choices(capsys):
    assert main(["summary", "vgg17"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'vgg17'" in err and "fernet_s" in err


def test_train_evaluate_compare_from_the_command_line(tiny_fer_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    args = ["train", "--data", str(tiny_fer_dir), "--model", "fernet_tiny", "--epochs", "2", "--batch-size", "32",
            "--out", str(runs), "--threads", "1", "--no-bf16", "--augment", "light"]
    assert main(args + ["--name", "a"]) == 0
    assert main(args + ["--name", "b", "--optimizer", "adamw", "--lr", "0.003"]) == 0
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(runs / "a"), "--data", str(tiny_fer_dir), "--split", "val", "--json",
                 str(out_json)]) == 0
    m = json.loads(out_json.read_text())
    assert 0.0 <= m["accuracy"] <= 1.0 and len(m["confusion"]) == 7
    capsys.readouterr()
    assert main(["compare", str(runs / "a"), str(runs / "b"), "--csv", str(tmp_path / "cmp.csv")]) == 0
    table = capsys.readouterr().out
    assert "fernet_tiny" in table and "val_acc_eval" in table
    assert (tmp_path / "cmp.csv").read_text().count("\n") == 3


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    assert main(["train", "--data", str(tmp_path / "missing"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: dataset" in err and "does not exist" in err and "Traceback" not in err
    assert main(["evaluate", str(tmp_path / "nope.pt"), "--data", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_python_dash_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "ferlab", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "train" in r.stdout and "predict" in r.stdout
