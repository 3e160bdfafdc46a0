"""The `suanli` command: demo end to end, clear errors for bad data, babygpt, showcase, info."""
import gzip
import os
import subprocess
import sys

import numpy as np
import pytest

from suanli import cli, plot

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "suanli.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


# ----------------------------------------------------------------------------------------- demo

def test_demo_end_to_end(tmp_path):
    """`suanli demo` in a fresh process: trains, reports, writes checkpoint/weights/curves/report."""
    out = tmp_path / "demo"
    r = run_cli("demo", "--out", str(out), "--quick", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "test accuracy" in r.stdout
    assert "identical logits" in r.stdout          # the demo itself asserts the reload is exact
    for name in ("checkpoint.safetensors", "model.safetensors", "history.json", "report.txt", "config.toml"):
        assert (out / name).is_file(), name
    report = (out / "report.txt").read_text()
    assert str(out / "checkpoint.safetensors") in report
    if plot.available():
        assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert "curves.png" in report


def test_demo_learns_and_is_deterministic(tmp_path):
    a = cli.demo(out=str(tmp_path / "a"), seed=3, quick=True, progress=False)
    b = cli.demo(out=str(tmp_path / "b"), seed=3, quick=True, progress=False)
    assert a["identical_reload"]
    assert a["accuracy"] > 0.8                     # 1 epoch on 1437 digits; the full demo (8 epochs) ~99%
    assert a["history"]["train"]["loss"] == b["history"]["train"]["loss"]
    assert a["accuracy"] == b["accuracy"]


def test_demo_data_missing_dir(tmp_path):
    missing = tmp_path / "nowhere"
    r = run_cli("demo", "--out", str(tmp_path / "o"), "--data", str(missing), "--no-progress")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert str(missing) in r.stderr and "no such directory" in r.stderr
    assert "train-images-idx3-ubyte" in r.stderr    # says what was expected there


def test_demo_data_missing_file(tmp_path):
    r = run_cli("demo", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "missing train-images-idx3-ubyte" in r.stderr


def _write_idx(path, array, magic):
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def test_demo_data_corrupt_file(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 64), ("t10k", 16)):
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8),
                   0x803)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8), 0x801)
    bad = tmp_path / "train-images-idx3-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:200])          # a truncated download
    r = run_cli("demo", "--out", str(tmp_path / "o"), "--data", str(tmp_path), "--no-progress")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(bad) in r.stderr and "truncated" in r.stderr


# -------------------------------------------------------------------------------------- babygpt

def test_babygpt_probabilities_and_graph(tmp_path, capsys):
    res = cli.babygpt(out=str(tmp_path), progress=False)
    probs = res["probabilities"]
    assert sorted(probs) == [format(i, "03b") for i in range(8)]
    for p0, p1 in probs.values():
        assert p0 >= 0 and p1 >= 0 and abs(p0 + p1 - 1) < 1e-6
    # in "111101111011110" the states 011, 101 and 110 are always followed by 1
    for s in ("011", "101", "110"):
        assert probs[s][1] > 0.5, (s, probs[s])
    text = capsys.readouterr().out
    assert "P(next=1)" in text and "111" in text
    if plot.available():
        png = tmp_path / "babygpt.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and str(png) in text


# ------------------------------------------------------------------------------- train command

def test_train_command_reports_config_errors(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text('recipe = "babygpt"\nmax_step = 5\n')
    r = run_cli("train", str(cfg))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert str(cfg) in r.stderr and "'max_step'" in r.stderr and "did you mean 'max_steps'" in r.stderr

    cfg.write_text('recipe = "babygpt"\n[optim]\nlr = "fast"\n')
    r = run_cli("train", str(cfg))
    assert r.returncode == 2 and str(cfg) in r.stderr
    assert "'optim.lr' expects float, got string \"fast\"" in r.stderr

    r = run_cli("train", os.path.join(ROOT, "configs", "babygpt.toml"), "--set", "max_steps=many")
    assert r.returncode == 2 and "'max_steps' expects int, got 'many'" in r.stderr

    r = run_cli("train", os.path.join(ROOT, "configs", "mnist-lenet5.toml"))
    assert r.returncode == 2 and "needs data_dir" in r.stderr and "--set data_dir=DIR" in r.stderr


def test_train_command_babygpt(tmp_path):
    r = run_cli("train", os.path.join(ROOT, "configs", "babygpt.toml"), "--set", f"out_dir={tmp_path}",
                "--max_steps", "3", "--progress=false", "--plot", "false")
    assert r.returncode == 0, r.stderr
    assert "3 steps" in r.stdout and "P(next=0)" in r.stdout
    assert (tmp_path / "checkpoint.safetensors").is_file()


# -------------------------------------------------------------------------------- showcase, info

def test_showcase_learns_and_gradients_agree():
    report = cli.showcase(steps=300, seed=0)
    assert report["gradient_max_error"] < 1e-8
    assert report["final_loss"] < 0.5 * report["first_loss"]
    assert report["accuracy"] > 0.8


def test_showcase_is_deterministic():
    a = cli.showcase(steps=20, seed=3)
    b = cli.showcase(steps=20, seed=3)
    assert a["final_loss"] == b["final_loss"]


def test_info_prints_registry(capsys):
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "primitive" in out and "matmul" in out


def test_bad_arguments_are_reported():
    r = run_cli("showcase", "--steps", "1")
    assert r.returncode != 0 and "--steps must be at least 5" in r.stderr
    r = run_cli("demo", "--bogus")
    assert r.returncode != 0 and "unrecognized arguments: --bogus" in r.stderr


def test_override_parsing():
    assert cli._overrides_from(["--max-steps", "3", "--optim.lr=0.1"]) == ["max_steps=3", "optim.lr=0.1"]
    with pytest.raises(cli.CommandError, match="needs a value"):
        cli._overrides_from(["--seed"])


def test_plot_without_matplotlib_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(plot.PlotUnavailable, match=r"pip install 'suanli\[plot\]'"):
        plot.plot_markov_chain({"000": (0.5, 0.5)}, tmp_path / "g.png")
    assert not (tmp_path / "g.png").exists()
