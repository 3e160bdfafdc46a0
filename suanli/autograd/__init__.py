"""Autograd: the reverse-mode engine, grad modes, custom Functions, forward mode, transforms, checks."""
from . import forward_ad, functional
from .engine import backward, grad
from .function import Function, FunctionCtx
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad,
                        set_grad_enabled)
from .gradcheck import check_grads, gradcheck, gradgradcheck

__all__ = ["backward", "grad", "Function", "FunctionCtx", "no_grad", "enable_grad", "set_grad_enabled",
           "inference_mode", "is_grad_enabled", "is_inference_mode_enabled", "gradcheck", "gradgradcheck",
           "check_grads", "forward_ad", "functional"]
