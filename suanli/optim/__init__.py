"""Optimizers, learning-rate schedulers and weight averaging, with torch's API (``torch.optim``).

Each optimizer class owns its state and checks its hyper-parameters; the update maths is a pure
function on NumPy arrays next to it (``sgd_update``, ``adam_update``, ``rmsprop_update``,
``adagrad_update``). float16/bfloat16 parameters are updated with float32 state and maths.

>>> import suanli
>>> from suanli import optim
>>> w = suanli.tensor([2.0, -1.0], requires_grad=True)
>>> opt = optim.AdamW([w], lr=0.1)
>>> sched = optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
>>> for _ in range(20):
...     opt.zero_grad()
...     (w ** 2).sum().backward()
...     opt.step()
...     sched.step()
>>> sched.get_last_lr()
[0.025]
"""
from . import lr_scheduler
from .adagrad import Adagrad, adagrad_update
from .adam import Adam, AdamW, adam_update
from .ema import EMA
from .optimizer import Optimizer
from .rmsprop import RMSprop, rmsprop_update
from .sgd import SGD, sgd_update

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "Adagrad", "EMA", "lr_scheduler",
           "sgd_update", "adam_update", "rmsprop_update", "adagrad_update"]
