"""Training utilities of ``torch.nn.utils``: gradient clipping.

>>> import suanli
>>> w = suanli.zeros(2, requires_grad=True)
>>> w.grad = suanli.tensor([6.0, 8.0])
>>> suanli.nn.utils.clip_grad_norm_([w], max_norm=5.0)
tensor(10.)
>>> w.grad
tensor([3., 4.])
"""
from .clip_grad import clip_grad_norm_, clip_grad_value_, clip_grads_with_norm_, get_total_norm

__all__ = ["clip_grad_norm_", "clip_grad_value_", "clip_grads_with_norm_", "get_total_norm"]
