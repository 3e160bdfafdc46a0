"""Exact resume: N training steps == k steps, checkpoint, load in a fresh process, N - k steps -- bit for bit.

The model has dropout and the DataLoader shuffles, so the RNG states and the loader's position inside
the epoch must all be restored. Every run is a separate Python process.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

try:
    from suanli import nn
    from suanli.optim import AdamW, lr_scheduler  # noqa: F401
    _MISSING = None if all(hasattr(nn, n) for n in ("Linear", "Dropout", "Sequential")) else "suanli.nn layers"
except ImportError as exc:   # suanli.optim is written in parallel with this test
    _MISSING = f"{exc}"

pytestmark = pytest.mark.skipif(_MISSING is not None,
                                reason=f"exact-resume test needs suanli.nn and suanli.optim (AdamW, "
                                       f"lr_scheduler), not available yet: {_MISSING}")

SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import suanli
    from suanli import nn
    from suanli.data import DataLoader, TensorDataset
    from suanli.io import load_checkpoint, save_checkpoint, save_file
    from suanli.optim import AdamW, lr_scheduler

    mode, start, stop, ckpt, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]

    def build(seed):
        suanli.manual_seed(seed)
        model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
        opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.05)
        sched = lr_scheduler.StepLR(opt, step_size=4, gamma=0.7)
        g = np.random.default_rng(0)
        data = TensorDataset(g.normal(size=(40, 6)).astype(np.float32), g.integers(0, 3, size=40))
        loader = DataLoader(data, batch_size=8, shuffle=True)       # 5 batches per epoch
        return model, opt, sched, loader

    def batches(loader):
        while True:
            yield from loader

    if mode == "resume":
        model, opt, sched, loader = build(seed=12345)                # wrong init on purpose: must be overwritten
        info = load_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, extra={"loader": loader})
        assert info["step"] == start, info["step"]
    else:
        model, opt, sched, loader = build(seed=0)
    model.train()
    losses = []
    stream = batches(loader)
    for step in range(start, stop):
        x, y = next(stream)
        loss = suanli.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    if mode == "save":
        save_checkpoint(ckpt, model=model, optimizer=opt, scheduler=sched, step=stop, extra={"loader": loader})
    result = {f"param.{k}": v for k, v in model.state_dict().items()}
    result["losses"] = np.array(losses)
    save_file(result, out)
""")


def _run(tmp_path, *args):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *map(str, args)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from suanli.io import load_numpy
    return load_numpy(args[-1])


@pytest.mark.parametrize("k", [7, 10])            # 7: in the middle of epoch 2; 10: at an epoch boundary
def test_resume_is_bit_exact(tmp_path, k):
    n = 17
    ckpt = tmp_path / "ckpt.safetensors"
    full = _run(tmp_path, "straight", 0, n, ckpt, tmp_path / "full.safetensors")
    head = _run(tmp_path, "save", 0, k, ckpt, tmp_path / "head.safetensors")
    tail = _run(tmp_path, "resume", k, n, ckpt, tmp_path / "tail.safetensors")
    np.testing.assert_array_equal(np.concatenate([head["losses"], tail["losses"]]), full["losses"])
    params = [name for name in full if name.startswith("param.")]
    assert params
    for name in params:
        assert full[name].tobytes() == tail[name].tobytes(), name
    assert not np.array_equal(full["param.0.weight"], head["param.0.weight"])   # training moved them
