"""ONNX RNN, GRU and LSTM, unrolled over time with suanli primitives (so they are differentiable).

Every attribute of the spec is honoured: ``direction`` (forward / reverse / bidirectional),
``activations`` with ``activation_alpha`` / ``activation_beta``, ``clip``, ``layout``,
``linear_before_reset`` (GRU), ``input_forget`` and peepholes (LSTM), and ``sequence_lens``: past a
batch entry's length its state is held and its outputs are zero; a reverse pass starts at its last
valid step.

The input projection ``X @ W^T`` of all steps is one matmul; each step then adds ``H @ R^T``.

>>> import numpy as np, suanli
>>> from suanli.onnx.ops_rnn import activation
>>> activation("HardSigmoid", None, None)(suanli.tensor([0.0, 10.0])).tolist()
[0.5, 1.0]
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .. import ops as S
from ..tensor import Tensor
from ._util import P, const, permute, reshape, scalar
from .errors import onnx_error
from .table import onnx_op

Act = Callable[[Tensor], Tensor]

# (uses alpha, uses beta, default alpha, default beta) of each ONNX RNN activation
_ACT_PARAMS = {
    "Relu": (False, False, None, None), "Tanh": (False, False, None, None),
    "Sigmoid": (False, False, None, None), "Softsign": (False, False, None, None),
    "Softplus": (False, False, None, None), "Affine": (True, True, 1.0, 0.0),
    "LeakyRelu": (True, False, 0.01, None), "ThresholdedRelu": (True, False, 1.0, None),
    "ScaledTanh": (True, True, 1.0, 1.0), "HardSigmoid": (True, True, 0.2, 0.5),
    "Elu": (True, False, 1.0, None),
}


def activation(name: str, alpha: float | None, beta: float | None) -> Act:
    """The activation ``name`` (ONNX spelling, any case) with its ``alpha`` / ``beta``."""
    key = {k.lower(): k for k in _ACT_PARAMS}.get(name.lower())
    if key is None:
        raise onnx_error("RNN activation", f"unknown activation {name!r}", expect=", ".join(_ACT_PARAMS))
    _, _, da, db = _ACT_PARAMS[key]
    a = da if alpha is None else alpha
    b = db if beta is None else beta
    if key == "Relu":
        return lambda x: P("relu", x)
    if key == "Tanh":
        return lambda x: P("tanh", x)
    if key == "Sigmoid":
        return lambda x: P("sigmoid", x)
    if key == "Softsign":
        return lambda x: P("div", x, P("add", P("abs", x), scalar(x, 1)))
    if key == "Softplus":
        return lambda x: P("softplus", x, beta=1.0, threshold=20.0)
    if key == "Affine":
        return lambda x: P("add", P("mul", x, scalar(x, a)), scalar(x, b))
    if key == "LeakyRelu":
        return lambda x: P("leaky_relu", x, negative_slope=float(a))
    if key == "ThresholdedRelu":
        return lambda x: P("where", P("gt", x, scalar(x, a)), x, scalar(x, 0))
    if key == "ScaledTanh":
        return lambda x: P("mul", P("tanh", P("mul", x, scalar(x, b))), scalar(x, a))
    if key == "HardSigmoid":
        return lambda x: P("clamp", P("add", P("mul", x, scalar(x, a)), scalar(x, b)), scalar(x, 0), scalar(x, 1))
    return lambda x: P("elu", x, alpha=float(a), scale=1.0, input_scale=1.0)       # Elu


def _activations(ctx, defaults: Sequence[str], n_dirs: int) -> list[list[Act]]:
    """Per direction, the gate activations; alpha/beta are consumed by the activations that take them."""
    names = [n.decode() if isinstance(n, bytes) else n for n in (ctx.get("activations") or [])]
    if not names:
        names = list(defaults) * n_dirs
    if len(names) != len(defaults) * n_dirs:
        raise onnx_error(ctx.where, "wrong number of activations",
                         expect=f"{len(defaults)} per direction x {n_dirs} direction(s)", actual=str(names))
    alphas = list(ctx.get("activation_alpha") or [])
    betas = list(ctx.get("activation_beta") or [])
    acts = []
    for name in names:
        key = {k.lower(): k for k in _ACT_PARAMS}.get(name.lower(), name)
        ua, ub, _, _ = _ACT_PARAMS.get(key, (False, False, None, None))
        alpha = alphas.pop(0) if ua and alphas else None
        beta = betas.pop(0) if ub and betas else None
        acts.append(activation(name, alpha, beta))
    k = len(defaults)
    return [acts[d * k:(d + 1) * k] for d in range(n_dirs)]


def _slice_dir(t: Tensor | None, d: int) -> Tensor | None:
    """Direction ``d`` of a ``(num_directions, ...)`` tensor."""
    if t is None:
        return None
    return reshape(P("slice", t, key=((d, d + 1, 1),) + tuple((0, n, 1) for n in t.shape[1:])), t.shape[1:])


def _cols(t: Tensor, i: int, n: int) -> Tensor:
    """Block ``i`` (width ``n``) of the last axis."""
    return P("slice", t, key=tuple((0, s, 1) for s in t.shape[:-1]) + ((i * n, (i + 1) * n, 1),))


class _Seq:
    """Time bookkeeping of one direction: step order, per-batch masks, reversal within each length."""

    def __init__(self, seq_len: int, batch: int, lens: np.ndarray | None, reverse: bool) -> None:
        self.T, self.reverse = seq_len, reverse
        self.lens = None if lens is None or (lens >= seq_len).all() else lens
        self.reverse_idx = None
        if reverse and self.lens is not None:
            # step t of the reversed sequence of batch b reads input L_b - 1 - t (or pads past L_b)
            t = np.arange(seq_len)[:, None]
            self.reverse_idx = np.where(t < self.lens[None, :], self.lens[None, :] - 1 - t, t)

    def order(self, x: Tensor) -> Tensor:
        """(T, B, F) in processing order."""
        if not self.reverse:
            return x
        if self.reverse_idx is None:
            return P("flip", x, dims=(0,))
        idx = np.broadcast_to(self.reverse_idx[:, :, None], x.shape)
        return P("gather", x, const(np.ascontiguousarray(idx, np.int64)), dim=0)

    def valid(self, t: int) -> np.ndarray | None:
        """(B, 1) bool: batch entries still inside their sequence at step t (None: all)."""
        return None if self.lens is None else (t < self.lens)[:, None]


def _run(x_proj: Tensor, seq: _Seq, state: list[Tensor], step) -> tuple[Tensor, list[Tensor]]:
    """Unroll ``step(x_t, state) -> new state`` (state[0] is H); returns Y (T, B, H) and the last state."""
    xs = seq.order(x_proj)
    ys = []
    for t in range(seq.T):
        x_t = reshape(P("slice", xs, key=((t, t + 1, 1),) + tuple((0, n, 1) for n in xs.shape[1:])), xs.shape[1:])
        new = step(x_t, state)
        ok = seq.valid(t)
        if ok is not None:                       # finished entries keep their state and emit zeros
            keep = const(ok)
            new = [P("where", keep, n, s) for n, s in zip(new, state)]
            ys.append(P("where", keep, new[0], scalar(new[0], 0)))
        else:
            ys.append(new[0])
        state = new
    y = P("cat", *[S.unsqueeze(h, 0) for h in ys], axis=0)
    if seq.reverse:
        y = seq.order(y)                         # the reversal is its own inverse
    return y, state


def _clip(ctx) -> Callable[[Tensor], Tensor]:
    c = ctx.get("clip")
    if c is None:
        return lambda x: x
    return lambda x: P("clamp", x, scalar(x, -c), scalar(x, c))


def _recurrent(ctx, kind: str, n_gates: int, x, w, r, b, seq_lens, init: list[Tensor | None], p=None):
    """Shared driver: layout, directions, biases, initial states; ``kind`` picks the cell."""
    direction = ctx.get("direction", "forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    n_dirs = 2 if direction == "bidirectional" else 1
    if direction not in ("forward", "reverse", "bidirectional") or w.shape[0] != n_dirs:
        raise onnx_error(ctx.where, f"direction {direction!r} does not match W's first dim",
                         expect="forward/reverse: W (1, ...); bidirectional: W (2, ...)", actual=f"W {w.shape}")
    layout = ctx.get("layout", 0)
    if layout:
        x = permute(x, (1, 0, 2))
        init = [None if s is None else permute(s, (1, 0, 2)) for s in init]
    T, B, _ = x.shape
    hidden = r.shape[-1]
    if x.shape[-1] != w.shape[-1] or w.shape[1] != n_gates * hidden:
        raise onnx_error(ctx.where, "X, W and R shapes disagree",
                         expect=f"W (dirs, {n_gates}*hidden, input={x.shape[-1]}), R (dirs, {n_gates}*hidden, hidden)",
                         actual=f"X {x.shape}, W {w.shape}, R {r.shape}")
    lens = None if seq_lens is None else np.asarray(seq_lens._data).astype(np.int64).reshape(-1)
    defaults = {"RNN": ["Tanh"], "GRU": ["Sigmoid", "Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"]}[kind]
    acts = _activations(ctx, defaults, n_dirs)
    clip = _clip(ctx)
    zeros = const(np.zeros((B, hidden), x.dtype))

    ys, finals = [], []
    for d in range(n_dirs):
        wd, rd = _slice_dir(w, d), _slice_dir(r, d)
        bd = _slice_dir(b, d)
        x_proj = P("matmul", x, permute(wd, (1, 0)))                       # (T, B, gates*H)
        if bd is not None:
            if kind == "GRU":        # the recurrent bias of the h gate sits inside the reset product
                rb = P("mul", _cols(bd, 1, n_gates * hidden),
                       const(np.r_[np.ones(2 * hidden), np.zeros(hidden)].astype(x.dtype)))
                x_proj = P("add", x_proj, P("add", _cols(bd, 0, n_gates * hidden), rb))
            else:
                x_proj = P("add", x_proj, P("add", _cols(bd, 0, n_gates * hidden), _cols(bd, 1, n_gates * hidden)))
        state = [zeros if s is None else _slice_dir(s, d) for s in init]
        seq = _Seq(T, B, lens, reverse=(direction == "reverse" or d == 1))
        r_t = permute(rd, (1, 0))
        if kind == "RNN":
            step = _rnn_cell(r_t, acts[d], clip)
        elif kind == "GRU":
            rbh = _cols(_cols(bd, 1, 3 * hidden), 2, hidden) if bd is not None else None
            step = _gru_cell(r_t, rbh, hidden, acts[d], clip, ctx.get("linear_before_reset", 0))
        else:
            step = _lstm_cell(r_t, _slice_dir(p, d), hidden, acts[d], clip, ctx.get("input_forget", 0))
        y, state = _run(x_proj, seq, state, step)
        ys.append(S.unsqueeze(y, 1))
        finals.append([S.unsqueeze(s, 0) for s in state])

    y = ys[0] if n_dirs == 1 else P("cat", *ys, axis=1)                      # (T, dirs, B, H)
    outs = [P("cat", *f, axis=0) if n_dirs > 1 else f[0] for f in zip(*finals)]  # (dirs, B, H) each
    if layout:
        y = permute(y, (2, 0, 1, 3))
        outs = [permute(o, (1, 0, 2)) for o in outs]
    return (y, *outs)


def _rnn_cell(r_t, acts, clip):
    f, = acts

    def step(x_t, state):
        return [f(clip(P("add", x_t, P("matmul", state[0], r_t))))]
    return step


def _gru_cell(r_t, rbh, hidden, acts, clip, linear_before_reset):
    f, g = acts

    def step(x_t, state):
        h_prev = state[0]
        rz = P("add", _cols(x_t, 0, 2 * hidden), P("matmul", h_prev, _cols(r_t, 0, 2 * hidden)))
        z, rr = f(clip(_cols(rz, 0, hidden))), f(clip(_cols(rz, 1, hidden)))
        r_h = _cols(r_t, 2, hidden)
        if linear_before_reset:
            rec = P("matmul", h_prev, r_h)
            if rbh is not None:
                rec = P("add", rec, rbh)
            pre = P("add", _cols(x_t, 2, hidden), P("mul", rr, rec))
        else:
            pre = P("add", _cols(x_t, 2, hidden), P("matmul", P("mul", rr, h_prev), r_h))
            if rbh is not None:
                pre = P("add", pre, rbh)
        h = g(clip(pre))
        # H = (1 - z) * h + z * H_prev
        return [P("add", h, P("mul", z, P("sub", h_prev, h)))]
    return step


def _lstm_cell(r_t, peep, hidden, acts, clip, input_forget):
    f, g, h_act = acts
    p_i, p_o, p_f = ((None,) * 3 if peep is None else (_cols(peep, k, hidden) for k in range(3)))

    def step(x_t, state):
        h_prev, c_prev = state
        gates = P("add", x_t, P("matmul", h_prev, r_t))                   # order i, o, f, c
        gi, go, gf, gc = (_cols(gates, k, hidden) for k in range(4))
        if p_i is not None:
            gi = P("add", gi, P("mul", p_i, c_prev))
            gf = P("add", gf, P("mul", p_f, c_prev))
        i = f(clip(gi))
        fg = P("sub", scalar(i, 1), i) if input_forget else f(clip(gf))
        c = P("add", P("mul", fg, c_prev), P("mul", i, g(clip(gc))))
        if p_o is not None:
            go = P("add", go, P("mul", p_o, c))
        o = f(clip(go))
        return [P("mul", o, h_act(c)), c]
    return step


def _outputs(ctx, outs):
    return outs[:max(ctx.n_outputs, 1)]


@onnx_op("RNN")
def rnn(ctx, x, w, r, b=None, sequence_lens=None, initial_h=None):
    return _outputs(ctx, _recurrent(ctx, "RNN", 1, x, w, r, b, sequence_lens, [initial_h]))


@onnx_op("GRU")
def gru(ctx, x, w, r, b=None, sequence_lens=None, initial_h=None):
    return _outputs(ctx, _recurrent(ctx, "GRU", 3, x, w, r, b, sequence_lens, [initial_h]))


@onnx_op("LSTM")
def lstm(ctx, x, w, r, b=None, sequence_lens=None, initial_h=None, initial_c=None, p=None):
    return _outputs(ctx, _recurrent(ctx, "LSTM", 4, x, w, r, b, sequence_lens, [initial_h, initial_c], p))
