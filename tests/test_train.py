"""Training from typed configs: config errors, the loop, resume == uninterrupted, amp, MNIST end to end."""
import os

import numpy as np
import pytest

import suanli
from suanli.train import config as C
from suanli.train import recipes

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
MNIST_DIR = os.path.normpath(os.path.join(ROOT, "..", "shared", "data", "mnist"))


# --------------------------------------------------------------------------------------- configs

@pytest.mark.parametrize("name", ["mnist-lenet5", "shakespeare-char-gpt", "babygpt"])
def test_shipped_configs_load(name):
    cfg = C.load(os.path.join(CONFIGS, f"{name}.toml"))
    assert cfg.recipe == name and isinstance(cfg, C.RECIPES[name])
    assert C.loads(C.dumps(cfg)) == cfg


def test_unknown_key_names_key_file_and_choices(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('recipe = "mnist-lenet5"\n[optim]\nlearning_rate = 0.1\n')
    with pytest.raises(C.ConfigError) as e:
        C.load(path)
    msg = str(e.value)
    assert str(path) in msg and "'optim.learning_rate'" in msg and "mnist-lenet5" in msg
    assert "known keys in [optim]: name, lr," in msg


def test_wrong_type_names_key_expected_type_and_file(tmp_path):
    path = tmp_path / "c.toml"
    for body, expect in [('epochs = "2"', "key 'epochs' expects int, got string \"2\""),
                         ("epochs = 2.5", "key 'epochs' expects int, got float 2.5"),
                         ("batch_size = true", "key 'batch_size' expects int, got bool true"),
                         ('amp = "fp8"', "key 'amp' expects one of \"none\", \"bf16\", \"fp16\", got string \"fp8\""),
                         ("optim = 1", "key 'optim' expects a table [optim], got int 1"),
                         ("progress = 1", "key 'progress' expects bool (true or false), got int 1")]:
        path.write_text(f'recipe = "mnist-lenet5"\n{body}\n')
        with pytest.raises(C.ConfigError) as e:
            C.load(path)
        assert str(path) in str(e.value) and expect in str(e.value), str(e.value)


def test_int_is_accepted_for_float_and_stays_float():
    cfg = C.loads('recipe = "babygpt"\n[optim]\nlr = 1\n')
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)


def test_overrides_are_typed():
    cfg = C.loads('recipe = "mnist-lenet5"', ["optim.lr=3e-4", "epochs=3", "amp=bf16", "progress=false",
                                              "data_dir=/x/y"])
    assert (cfg.optim.lr, cfg.epochs, cfg.amp, cfg.progress, cfg.data_dir) == (3e-4, 3, "bf16", False, "/x/y")
    for item, expect in [("epochs=two", "key 'epochs' expects int, got 'two'"),
                         ("optim.nme=sgd", "unknown key 'optim.nme'"),
                         ("optim=3", "key 'optim' is a table"),
                         ("model.n_layer=2", "unknown key 'model'"),
                         ("epochs", "expected key=value")]:
        with pytest.raises(C.ConfigError, match=None) as e:
            C.loads('recipe = "mnist-lenet5"', [item])
        assert expect in str(e.value) and repr(item) in str(e.value), str(e.value)


def test_recipe_errors():
    with pytest.raises(C.ConfigError, match="no 'recipe' key"):
        C.loads("seed = 1")
    with pytest.raises(C.ConfigError, match="set recipe to one of 'digits-lenet5'"):
        C.loads('recipe = "resnet"')
    with pytest.raises(C.ConfigError, match="not valid TOML"):
        C.loads("recipe = ")
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load("/nonexistent/config.toml")
    with pytest.raises(C.ConfigError, match="'optim.lr' must be > 0"):
        C.loads('recipe = "babygpt"\n[optim]\nlr = 0')


# ------------------------------------------------------------------------------------ the loop

def _digits_cfg(tmp_path, **kw):
    base = {"recipe": "digits-lenet5", "out_dir": str(tmp_path), "batch_size": 64, "max_steps": 30,
            "progress": False, "plot": False, "eval_interval": 10,
            "optim": {"name": "adamw", "lr": 2e-3, "weight_decay": 0.01, "schedule": "cosine",
                      "warmup_steps": 5, "grad_clip": 1.0}}
    base.update(kw)
    return C.from_dict(base)


def _state(trainer):
    sd = {k: v.numpy().copy() for k, v in trainer.model.state_dict().items()}
    return sd, trainer.optimizer.state_dict()


def _assert_same_state(a, b):
    (sa, oa), (sb, ob) = a, b
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    for i, st in oa["state"].items():
        for k, v in st.items():
            np.testing.assert_array_equal(np.asarray(getattr(v, "numpy", lambda: v)()),
                                          np.asarray(getattr(ob["state"][i][k], "numpy", lambda: ob["state"][i][k])()))


@pytest.mark.parametrize("stop", [12, 23])      # mid-epoch, and exactly at the end of the first epoch (23 batches)
def test_resume_equals_uninterrupted_lenet(tmp_path, stop):
    full_trainer, full = recipes.train(_digits_cfg(tmp_path / "full"), log=lambda s: None)
    cfg = _digits_cfg(tmp_path / "split")
    _, first = recipes.train(cfg, stop_after=stop, log=lambda s: None)
    assert first.stopped_early and first.steps == stop
    suanli.manual_seed(999)                       # the resumed run must not depend on the RNG it starts with
    resumed_trainer, resumed = recipes.train(cfg, resume=first.files["checkpoint"], log=lambda s: None)
    assert resumed.steps == full.steps == 30
    _assert_same_state(_state(full_trainer), _state(resumed_trainer))
    assert resumed.history["train"]["loss"] == full.history["train"]["loss"]
    assert resumed.metrics == full.metrics


def test_resume_equals_uninterrupted_char_gpt(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40)
    cfg = C.from_dict({"recipe": "shakespeare-char-gpt", "data_path": str(text), "out_dir": str(tmp_path / "a"),
                       "max_steps": 8, "batch_size": 4, "eval_interval": 4, "eval_iters": 2, "sample_chars": 20,
                       "progress": False, "plot": False,
                       "model": {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8, "dropout": 0.1},
                       "optim": {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1, "decay_1d": False,
                                 "warmup_steps": 2, "schedule": "cosine", "grad_clip": 1.0}})
    full_trainer, full = recipes.train(cfg, log=lambda s: None)
    assert len(full.extras["sample"]) == 21
    cfg.out_dir = str(tmp_path / "b")
    _, first = recipes.train(cfg, stop_after=3, log=lambda s: None)
    resumed_trainer, resumed = recipes.train(cfg, resume=first.files["checkpoint"], log=lambda s: None)
    _assert_same_state(_state(full_trainer), _state(resumed_trainer))
    assert resumed.history == full.history


def test_resume_rejects_other_recipe(tmp_path):
    _, first = recipes.train(C.from_dict({"recipe": "babygpt", "out_dir": str(tmp_path), "max_steps": 2,
                                          "progress": False, "plot": False}), log=lambda s: None)
    with pytest.raises(suanli.io.CheckpointError, match="from recipe 'babygpt'"):
        recipes.train(_digits_cfg(tmp_path / "x"), resume=first.files["checkpoint"], log=lambda s: None)


def test_training_writes_its_files_and_learns(tmp_path):
    trainer, res = recipes.train(_digits_cfg(tmp_path, max_steps=0, epochs=2, eval_interval=0,
                                             plot=True), log=lambda s: None)
    assert res.steps == 2 * 23 and res.epochs == 2.0
    assert res.history["eval"]["step"] == [23, 46]
    assert res.metrics["accuracy"] > 0.8
    assert res.history["train"]["loss"][-1] < res.history["train"]["loss"][0]
    for key in ("checkpoint", "model", "history", "config"):
        assert os.path.isfile(res.files[key]), key
    assert C.load(res.files["config"]) == trainer.cfg
    loaded = suanli.io.load_file(res.files["model"])
    assert loaded.keys() == trainer.model.state_dict().keys()


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_trains(tmp_path, amp):
    trainer, res = recipes.train(_digits_cfg(tmp_path, max_steps=20, amp=amp, eval_interval=20),
                                 log=lambda s: None)
    losses = res.history["train"]["loss"]
    assert all(np.isfinite(losses)) and np.mean(losses[-5:]) < losses[0]
    assert all(p.dtype == suanli.float32 for p in trainer.model.parameters())   # float32 master weights
    if amp == "fp16":
        assert trainer.scaler is not None and trainer.scaler.get_scale() > 0


def test_babygpt_data_windows():
    x, y = recipes.babygpt_data("111101111011110")
    assert x.shape == (12, 3) and y.tolist() == [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 1, 0]


def test_transition_probabilities_sum_to_one(tmp_path):
    trainer, res = recipes.train(C.from_dict({"recipe": "babygpt", "out_dir": str(tmp_path), "max_steps": 5,
                                              "progress": False, "plot": False}), log=lambda s: None)
    probs = res.extras["probabilities"]
    assert len(probs) == 8
    np.testing.assert_allclose([sum(p) for p in probs.values()], 1.0, atol=1e-6)
    assert res.extras["training_states"] == ["011", "101", "110", "111"]


# ------------------------------------------------------------------------------- MNIST, 2 epochs

@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(MNIST_DIR), reason=f"the MNIST IDX files are not at {MNIST_DIR}")
def test_mnist_lenet5_two_epochs_reaches_98_5(tmp_path):
    cfg = C.load(os.path.join(CONFIGS, "mnist-lenet5.toml"),
                 [f"data_dir={MNIST_DIR}", f"out_dir={tmp_path}", "progress=false", "plot=false"])
    _, res = recipes.train(cfg, log=lambda s: None)
    assert res.epochs == 2.0
    assert res.metrics["accuracy"] >= 0.985, res.metrics
