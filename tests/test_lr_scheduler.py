"""suanli.optim.lr_scheduler against torch.optim.lr_scheduler: lr (and momentum) sequences over many
steps, composites (SequentialLR, ChainedScheduler), state dicts, torch state dicts, and errors."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

import suanli
from suanli import optim
from suanli.optim import lr_scheduler as S

T = torch.optim.lr_scheduler


def build(lib: str, opt_name: str = "SGD"):
    """An optimizer with two parameter groups of different lrs, from suanli or torch."""
    if lib == "suanli":
        a, b = suanli.zeros(2, requires_grad=True), suanli.zeros(3, requires_grad=True)
        mod = optim
    else:
        a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
        mod = torch.optim
    kw = {"momentum": 0.9} if opt_name == "SGD" else {}
    return getattr(mod, opt_name)([{"params": [a]}, {"params": [b], "lr": 0.05}], lr=0.1, **kw)


# name -> (optimizer, factory(scheduler module, optimizer)); the factory is run for both libraries
SCHEDULES = {
    "lambda": ("SGD", lambda m, o: m.LambdaLR(o, [lambda e: 0.95 ** e, lambda e: 1 / (1 + e)])),
    "multiplicative": ("SGD", lambda m, o: m.MultiplicativeLR(o, lambda e: 0.97)),
    "step": ("SGD", lambda m, o: m.StepLR(o, step_size=7, gamma=0.3)),
    "multistep": ("SGD", lambda m, o: m.MultiStepLR(o, milestones=[5, 12, 12, 40], gamma=0.5)),
    "constant": ("SGD", lambda m, o: m.ConstantLR(o, factor=0.25, total_iters=9)),
    "linear": ("SGD", lambda m, o: m.LinearLR(o, start_factor=0.1, end_factor=0.8, total_iters=23)),
    "exponential": ("SGD", lambda m, o: m.ExponentialLR(o, gamma=0.93)),
    "polynomial": ("SGD", lambda m, o: m.PolynomialLR(o, total_iters=30, power=2.0)),
    "cosine": ("SGD", lambda m, o: m.CosineAnnealingLR(o, T_max=17, eta_min=0.001)),
    "cosine_restarts": ("SGD", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2, eta_min=1e-3)),
    "onecycle_cos_sgd": ("SGD", lambda m, o: m.OneCycleLR(o, max_lr=[1.0, 0.5], total_steps=80)),
    "onecycle_linear_adam": ("Adam", lambda m, o: m.OneCycleLR(o, max_lr=0.3, epochs=8, steps_per_epoch=10,
                                                                anneal_strategy="linear", pct_start=0.25,
                                                                base_momentum=0.8, max_momentum=0.9)),
    "onecycle_three_phase": ("SGD", lambda m, o: m.OneCycleLR(o, max_lr=0.2, total_steps=80, three_phase=True,
                                                               div_factor=10.0, final_div_factor=100.0)),
    "onecycle_no_momentum": ("Adagrad", lambda m, o: m.OneCycleLR(o, max_lr=0.2, total_steps=80,
                                                                   cycle_momentum=False)),
    "warmup_then_cosine": ("AdamW", lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.01, total_iters=10), m.CosineAnnealingLR(o, T_max=50, eta_min=1e-4)],
        milestones=[10])),
    "three_phases": ("SGD", lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.5, total_iters=4), m.ExponentialLR(o, gamma=0.9),
            m.StepLR(o, step_size=5, gamma=0.5)], milestones=[6, 30])),
    "chained_warmup": ("SGD", lambda m, o: m.ChainedScheduler(
        [m.LinearLR(o, start_factor=0.2, total_iters=8), m.ExponentialLR(o, gamma=0.97)])),
    "sequential_of_chained": ("SGD", lambda m, o: m.SequentialLR(
        o, [m.ChainedScheduler([m.LinearLR(o, start_factor=0.2, total_iters=5), m.ExponentialLR(o, gamma=0.9)]),
            m.CosineAnnealingLR(o, T_max=20)], milestones=[12])),
}
STEPS = 79


def run(lib: str, name: str, steps: int = STEPS, start=None):
    """Step a fresh (or given) optimizer+scheduler; record lr, momentum and get_last_lr every step."""
    opt_name, factory = SCHEDULES[name]
    if start is None:
        opt = build(lib, opt_name)
        sched = factory(S if lib == "suanli" else T, opt)
    else:
        opt, sched = start
    seq = []
    for _ in range(steps):
        seq.append([*sched.get_last_lr(), *(g["lr"] for g in opt.param_groups),
                    *(g.get("momentum", g.get("betas", (0,))[0]) for g in opt.param_groups)])
        opt.step()
        sched.step()
    return np.array(seq, dtype=np.float64), opt, sched


# a ChainedScheduler inside a SequentialLR warns on construction in torch too
@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch(name):
    ours, _, _ = run("suanli", name)
    theirs, _, _ = run("torch", name)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-16)
    assert np.ptp(ours[:, 0]) > 0                       # the lr does change


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_state_dict_round_trip(name):
    """k steps, save optimizer + scheduler (through JSON), rebuild both, load, go on == uninterrupted."""
    straight, _, _ = run("suanli", name)
    k = 23
    first, opt, sched = run("suanli", name, steps=k)
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    saved_opt = opt.state_dict()                        # lrs, momenta, initial_lr... live in the groups
    saved_opt["param_groups"] = json.loads(json.dumps(saved_opt["param_groups"]))
    opt_name, factory = SCHEDULES[name]
    opt2 = build("suanli", opt_name)
    sched2 = factory(S, opt2)
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    rest, _, _ = run("suanli", name, steps=STEPS - k, start=(opt2, sched2))
    np.testing.assert_array_equal(np.concatenate([first, rest]), straight)


@pytest.mark.parametrize("name", ["step", "onecycle_cos_sgd", "warmup_then_cosine", "multistep"])
def test_torch_scheduler_state_dict_loads(name):
    k = 30
    theirs, topt, tsched = run("torch", name, steps=k)
    opt_name, factory = SCHEDULES[name]
    opt = build("suanli", opt_name)
    sched = factory(S, opt)
    opt.load_state_dict(topt.state_dict())              # no tensors: the optimizers never saw a gradient
    sched.load_state_dict(tsched.state_dict())
    ours, _, _ = run("suanli", name, steps=20, start=(opt, sched))
    theirs, _, _ = run("torch", name, steps=20, start=(topt, tsched))
    np.testing.assert_allclose(ours, theirs, rtol=1e-13)


def test_reduce_lr_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.89, 0.9, 0.9, 0.9, 0.9, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
    lrs = {}
    for lib, mod in (("suanli", S), ("torch", T)):
        opt = build(lib)
        sched = mod.ReduceLROnPlateau(opt, patience=2, factor=0.5, cooldown=1, min_lr=[0.0, 0.02])
        lrs[lib] = []
        for m in metrics:
            sched.step(m)
            lrs[lib].append(sched.get_last_lr())
    assert lrs["suanli"] == lrs["torch"]
    state = json.loads(json.dumps(sched.state_dict()))        # inf is written as Infinity
    again = S.ReduceLROnPlateau(build("suanli"))
    again.load_state_dict(state)
    assert again.best == 0.5 and again.min_lrs == [0.0, 0.02]


def test_lambda_state_dict_skips_functions_keeps_callable_objects():
    class Decay:
        def __init__(self):
            self.rate = 0.5

        def __call__(self, epoch):
            return self.rate ** epoch

    opt = build("suanli")
    sched = S.LambdaLR(opt, [lambda e: 1.0, Decay()])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [None, {"rate": 0.5}]
    json.dumps(sd)
    sd["lr_lambdas"][1]["rate"] = 0.25
    sched.load_state_dict(sd)
    assert sched.lr_lambdas[1].rate == 0.25


def test_warns_when_scheduler_steps_before_optimizer():
    opt = build("suanli")
    sched = S.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match=r"Detected call of `lr_scheduler.step\(\)` before `optimizer.step\(\)`"):
        sched.step()
    opt = build("suanli")
    sched = S.StepLR(opt, step_size=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        opt.step()
        sched.step()


def test_scheduler_errors():
    opt = build("suanli")
    with pytest.raises(TypeError, match="list is not an Optimizer"):
        S.StepLR([], step_size=1)
    with pytest.raises(ValueError, match=r"LinearLR: start_factor must be in \(0, 1\], got 0"):
        S.LinearLR(opt, start_factor=0)
    with pytest.raises(ValueError, match="OneCycleLR: give total_steps, or epochs and steps_per_epoch"):
        S.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="max_lr must have one value per parameter group: got 3 values for 2"):
        S.OneCycleLR(opt, max_lr=[1.0, 2.0, 3.0], total_steps=10)
    with pytest.raises(ValueError, match="SequentialLR expects one milestone fewer than schedulers"):
        S.SequentialLR(opt, [S.ExponentialLR(opt, 0.9), S.ExponentialLR(opt, 0.9)], milestones=[])
    other = build("suanli")
    with pytest.raises(ValueError, match="expects all schedulers to belong to the same optimizer"):
        S.SequentialLR(opt, [S.ExponentialLR(opt, 0.9), S.ExponentialLR(other, 0.9)], milestones=[3])
    with pytest.raises(KeyError, match="initial_lr"):
        S.StepLR(build("suanli"), step_size=2, last_epoch=5)
    sched = S.OneCycleLR(build("suanli"), max_lr=1.0, total_steps=3)
    o = sched.optimizer
    for _ in range(3):
        o.step()
        sched.step()
    with pytest.raises(ValueError, match="OneCycleLR: tried to step 4 times; the specified number of total steps is 3"):
        sched.step()
    with pytest.raises(ValueError, match=r"unexpected keys \['T_max', 'eta_min'\]"):
        S.StepLR(build("suanli"), step_size=2).load_state_dict(S.CosineAnnealingLR(build("suanli"), 5).state_dict())
