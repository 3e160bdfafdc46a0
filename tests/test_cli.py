"""The `suanli` command: the demo trains for real and its gradients agree three ways."""
import subprocess
import sys

from suanli import cli


def test_demo_learns_and_gradients_agree():
    report = cli.demo(steps=300, seed=0)
    assert report["gradient_max_error"] < 1e-8
    assert report["final_loss"] < 0.5 * report["first_loss"]
    assert report["accuracy"] > 0.8


def test_demo_is_deterministic():
    a = cli.demo(steps=20, seed=3)
    b = cli.demo(steps=20, seed=3)
    assert a["final_loss"] == b["final_loss"]


def test_info_prints_registry(capsys):
    cli.main(["info"])
    out = capsys.readouterr().out
    assert "primitive" in out and "matmul" in out


def test_bad_arguments_are_reported():
    r = subprocess.run([sys.executable, "-m", "suanli.cli", "demo", "--steps", "1"], capture_output=True, text=True)
    assert r.returncode != 0 and "--steps must be at least 5" in r.stderr
