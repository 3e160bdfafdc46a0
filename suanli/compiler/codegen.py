"""Lower a :class:`~suanli.compiler.group.FusedGroup` to one C function.

Loop shape. The domain's dimensions are coalesced (neighbours merge when every input's strides allow
it, size-1 dims drop), leaving leading dims and one contiguous last dim ``L`` in which every input's
stride is 0 (broadcast) or 1. The loop runs over *tasks*, which the thread pool of :mod:`.kernels`
splits between threads: a task is a block of at most ``BLOCK`` elements of one row, or several whole
rows when rows are short, so a contiguous 1-D domain still splits across threads. Per row the leading indices are unravelled once (index math
for broadcast inputs); the inner loop is a ``#pragma omp simd`` loop over ``j`` with every value a
local variable -- no temporaries in memory.

Reductions. A last-axis reduction runs one row per iteration, in blocks of ``BLOCK`` values kept in a
stack buffer and summed pairwise (NumPy's algorithm: 8 accumulators below 128 elements, halving
above), the block sums added in order. An all-axes reduction writes one partial per task into a
scratch array and combines the partials once every task is done (``symbol_finish``), so the result does not depend on
the thread count (deterministic).

Numerics. Arithmetic is written in the order of the primitive's NumPy impl and compiled without FMA
contraction or fast-math, so +, -, *, /, sqrt, comparisons and selects round exactly as NumPy;
transcendental functions come from libm (with ``vector_math``, glibc's libmvec SIMD variants, at most a
few ulp from NumPy's). The erf kernels replay the registry's formulas with its coefficients.

>>> from suanli.compiler.group import FusedGroup
>>> g = FusedGroup("axpy")
>>> x = g.input((1000,), "float64")
>>> g.output(g.call("add", g.call("mul", x, 2.0), 1.0))
>>> src = generate(g)
>>> "#pragma omp simd" in src and "v1 = (in0v * 0x1.0000000000000p+1)" in src
True
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..ops.elementwise import _ERF32_P, _ERF32_Q, _ERF_COEFFS, _ERF_END, _ERF_SPLIT
from .group import Const, FusedGroup, Node, Value

__all__ = ["generate", "plan_loops", "LoopPlan", "BLOCK", "VECTOR_MATH_FUNCS"]

BLOCK = 4096                 # elements per task / per reduction buffer (32 KiB of float64)
_CTYPE = {"float32": "float", "float64": "double", "bool": "int"}
_MEMTYPE = {"float32": "float", "float64": "double", "bool": "unsigned char"}
_SUFFIX = {"float32": "f", "float64": ""}
VECTOR_MATH_FUNCS = ("exp", "log", "log1p", "expm1", "tanh", "sin", "cos")   # libmvec has SIMD variants


# ----------------------------------------------------------------------------------- loop plan
@dataclass(frozen=True)
class LoopPlan:
    """Coalesced loop nest: ``lead`` dims (outer, unravelled per row) and the inner length ``L``;
    ``strides[k]`` are input k's element strides for ``lead + (L,)``."""

    lead: tuple[int, ...]
    L: int
    strides: tuple[tuple[int, ...], ...]

    @property
    def outer(self) -> int:
        return math.prod(self.lead)

    def tasks(self) -> tuple[int, int, int]:
        """(tasks, rows per task, inner blocks per row) of the parallel loop."""
        if self.L >= BLOCK:
            rpt, nb = 1, -(-self.L // BLOCK)
        else:
            rpt, nb = max(1, BLOCK // max(self.L, 1)), 1
        return -(-self.outer // rpt) * nb, rpt, nb


def _broadcast_strides(shape: tuple[int, ...], domain: tuple[int, ...]) -> list[int]:
    """Element strides of a C-contiguous ``shape`` read as ``domain`` (0 along broadcast dims)."""
    padded = (1,) * (len(domain) - len(shape)) + shape
    strides, step = [0] * len(domain), 1
    for d in range(len(domain) - 1, -1, -1):
        strides[d] = step if padded[d] != 1 else 0
        step *= padded[d]
    return strides


def plan_loops(group: FusedGroup) -> LoopPlan:
    """Coalesce the domain for ``group`` (keeping the reduced last axis apart for 'last' reductions).

    >>> from suanli.compiler.group import FusedGroup
    >>> g = FusedGroup()
    >>> a, b = g.input((4, 5, 6), "float32"), g.input((4, 1, 1), "float32")
    >>> g.output(g.call("add", a, b))
    >>> plan_loops(g)
    LoopPlan(lead=(4,), L=30, strides=((30, 1), (1, 0)))
    """
    domain = group.domain
    strides = [_broadcast_strides(v.shape, domain) for v in group.inputs]
    keep_last = group.reduction_axis == "last"
    dims = list(range(len(domain) - (1 if keep_last else 0)))
    dims = [d for d in dims if domain[d] != 1]
    merged: list[list[int]] = []            # groups of domain dims merged into one
    for d in dims:
        if merged:
            prev = merged[-1][-1]
            if all(s[prev] == s[d] * domain[d] for s in strides):
                merged[-1].append(d)
                continue
        merged.append([d])
    sizes = [math.prod(domain[d] for d in m) for m in merged]
    per_input = [[s[m[-1]] for m in merged] for s in strides]
    if keep_last:
        L = domain[-1]
        per_input = [p + [s[-1]] for p, s in zip(per_input, strides)]
    elif sizes:
        L = sizes.pop()
    else:
        L, per_input = 1, [p + [0] for p in per_input]
    return LoopPlan(tuple(sizes), L, tuple(tuple(p) for p in per_input))


# ----------------------------------------------------------------------------------- literals
def _literal(value: float | bool, dtype: np.dtype) -> str:
    """An exact C literal of ``value`` rounded to ``dtype``."""
    if dtype == np.bool_:
        return "1" if value else "0"
    v = float(dtype.type(value))
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    return f"{v.hex()}{'f' if dtype == np.float32 else ''}"


# ----------------------------------------------------------------------------------- op templates
def _c(dtype: np.dtype, value: float) -> str:
    return _literal(value, dtype)


def _fn(name: str, dtype: np.dtype) -> str:
    return name + _SUFFIX[dtype.name]


def _emit_pow(n: Node, a: list[str], t: np.dtype) -> str:
    exponent = n.args[1]
    if not isinstance(exponent, Const):
        raise ValueError(f"codegen: pow needs a constant exponent, got a tensor ({exponent})")
    e, x, one = exponent.value, a[0], _c(t, 1)
    shortcuts = {2: f"({x} * {x})", 3: f"(({x} * {x}) * {x})", 0.5: f"{_fn('sqrt', t)}({x})",
                 -0.5: f"({one} / {_fn('sqrt', t)}({x}))", -1: f"({one} / {x})", -2: f"({one} / ({x} * {x}))"}
    return shortcuts.get(e, f"{_fn('pow', t)}({x}, {a[1]})")     # the registry impl's shortcuts


def _emit_cast(n: Node, a: list[str], t: np.dtype) -> str:
    target, source = n.out.dtype, n.args[0].dtype
    if target == source:
        return a[0]
    if target == np.bool_:
        return f"({a[0]} != 0)"
    return f"(({_CTYPE[target.name]}){a[0]})"


def _max(x: str, y: str) -> str:      # np.maximum: NaN propagates; on ties the second operand
    return f"(({x} > {y} || {x} != {x}) ? {x} : {y})"


def _min(x: str, y: str) -> str:
    return f"(({x} < {y} || {x} != {x}) ? {x} : {y})"


Emitter = Callable[[Node, list, np.dtype], str]
_BINARY = {"add": "+", "sub": "-", "mul": "*", "div": "/", "eq": "==", "ne": "!=", "lt": "<", "le": "<=",
           "gt": ">", "ge": ">="}
_LIBM = {"exp": "exp", "log": "log", "log1p": "log1p", "expm1": "expm1", "tanh": "tanh", "sin": "sin",
         "cos": "cos", "sqrt": "sqrt", "abs": "fabs"}
_TEMPLATES: dict[str, Emitter] = {
    **{op: (lambda sym: lambda n, a, t: f"({a[0]} {sym} {a[1]})")(sym) for op, sym in _BINARY.items()},
    **{op: (lambda f: lambda n, a, t: f"{_fn(f, t)}({a[0]})")(f) for op, f in _LIBM.items()},
    "neg": lambda n, a, t: f"(-{a[0]})",
    "rsqrt": lambda n, a, t: f"({_c(t, 1)} / {_fn('sqrt', t)}({a[0]}))",
    "reciprocal": lambda n, a, t: f"({_c(t, 1)} / {a[0]})",
    "sigmoid": lambda n, a, t: f"sigmoid_{t.name}({a[0]})",
    "silu": lambda n, a, t: f"({a[0]} * sigmoid_{t.name}({a[0]}))",
    "erf": lambda n, a, t: f"erf_{t.name}({a[0]})",
    "relu": lambda n, a, t: _max(a[0], _c(t, 0)),
    "maximum": lambda n, a, t: _max(a[0], a[1]),
    "minimum": lambda n, a, t: _min(a[0], a[1]),
    "clamp_min": lambda n, a, t: _max(a[0], a[1]),
    "clamp_max": lambda n, a, t: _min(a[0], a[1]),
    "leaky_relu": lambda n, a, t: f"({a[0]} > 0 ? {a[0]} : {a[0]} * {_c(t, dict(n.attrs)['negative_slope'])})",
    "where": lambda n, a, t: f"({a[0]} ? {a[1]} : {a[2]})",
    "logical_not": lambda n, a, t: f"({a[0]} == 0)",
    "logical_and": lambda n, a, t: f"(({a[0]} != 0) & ({a[1]} != 0))",
    "logical_or": lambda n, a, t: f"(({a[0]} != 0) | ({a[1]} != 0))",
    "pow": _emit_pow,
    "cast": _emit_cast,
}


def _emit_gelu(n: Node, a: list[str], t: np.dtype) -> str:
    x = a[0]
    if dict(n.attrs).get("approximate", "none") == "tanh":   # 0.5 * x * (1 + tanh(c * (x + k * x^3)))
        inner = f"({_c(t, math.sqrt(2 / math.pi))} * ({x} + {_c(t, 0.044715)} * (({x} * {x}) * {x})))"
        return f"(({_c(t, 0.5)} * {x}) * ({_c(t, 1)} + {_fn('tanh', t)}{inner}))"
    # ((erf(x / sqrt 2) + 1) * 0.5) * x, the NumPy path's order
    return f"(((erf_{t.name}({x} * {_c(t, math.sqrt(0.5))}) + {_c(t, 1)}) * {_c(t, 0.5)}) * {x})"


_TEMPLATES["gelu"] = _emit_gelu


def _operand_dtype(n: Node) -> np.dtype:
    """The dtype the op computes in: its float operand's (comparisons/where return another)."""
    floats = [a.dtype for a in n.args if a.dtype != np.bool_]
    return floats[0] if floats else n.args[0].dtype


# ----------------------------------------------------------------------------------- helpers (C)
def _horner(coeffs: list, var: str, dtype: np.dtype) -> str:
    """Horner's rule, highest coefficient first, one rounding per step (as the NumPy loop)."""
    expr = _literal(coeffs[0], dtype)
    for c in coeffs[1:]:
        expr = f"({expr} * {var} + {_literal(c, dtype)})"
    return expr


def _helpers(dtypes: set[str]) -> str:
    f32, f64 = np.dtype(np.float32), np.dtype(np.float64)
    out = []
    if "float32" in dtypes:
        out.append(f"""
static inline float sigmoid_float32(float x) {{
    float e = expf(-fabsf(x));
    return x >= 0 ? 1.0f / (1.0f + e) : e / (1.0f + e);
}}
static inline float erf_float32(float x) {{  /* x P(x^2) / Q(x^2) on x clipped to [-4, 4] */
    float c = x < -4.0f ? -4.0f : (x > 4.0f ? 4.0f : x);
    c = x != x ? x : c;
    float x2 = c * c;
    return (c * {_horner(_ERF32_P, 'x2', f32)}) / {_horner(_ERF32_Q, 'x2', f32)};
}}""")
    if "float64" in dtypes:
        p, q, t_scale, u_scale, u_shift = _ERF_COEFFS[f64]
        split, end = _literal(_ERF_SPLIT, f64), _literal(_ERF_END, f64)
        out.append(f"""
static inline double sigmoid_float64(double x) {{
    double e = exp(-fabs(x));
    return x >= 0 ? 1.0 / (1.0 + e) : e / (1.0 + e);
}}
static inline double erf_float64(double x) {{  /* two-piece fit of suanli.ops.elementwise._erf_impl */
    double a = fabs(x);
    double s = (a < {split} || a != a) ? a : {split};
    s = (s * s) * {_literal(t_scale, f64)} - 1.0;
    double small = {_horner(list(p[::-1]), 's', f64)} * x;
    double b = a < {split} ? {split} : (a > {end} ? {end} : a);
    b = a != a ? a : b;
    double u = {_literal(u_scale, f64)} / b - {_literal(u_shift, f64)};
    double large = {_horner(list(q[::-1]), 'u', f64)} * exp(-(b * b));
    large = copysign(1.0 - large, x);
    return a < {split} ? small : large;
}}""")
    for name in sorted(dtypes - {"bool"}):
        ct = _CTYPE[name]
        out.append(f"""
static {ct} pairwise_sum_{name}(const {ct} *a, long n) {{  /* NumPy's pairwise summation */
    if (n < 8) {{
        {ct} res = 0;
        for (long i = 0; i < n; i++) res += a[i];
        return res;
    }}
    if (n <= 128) {{
        {ct} r[8];
        for (int k = 0; k < 8; k++) r[k] = a[k];
        long i;
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + k];
        {ct} res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }}
    long n2 = n / 2;
    n2 -= n2 % 8;
    return pairwise_sum_{name}(a, n2) + pairwise_sum_{name}(a + n2, n - n2);
}}
static {ct} block_max_{name}(const {ct} *a, long n, {ct} m) {{  /* NaN propagates, as np.amax */
    for (long i = 0; i < n; i++) m = (a[i] > m || a[i] != a[i]) ? a[i] : m;
    return m;
}}""")
    return "\n".join(out)


def _preamble(dtypes: set[str], vector_math: bool) -> str:
    lines = ["/* generated by suanli.compiler.codegen */", "#include <math.h>"]
    if vector_math:            # let the vectorizer call glibc's libmvec (_ZGV*_exp...) inside simd loops
        for f in VECTOR_MATH_FUNCS:
            for name in sorted(dtypes - {"bool"}):
                ct, sfx = _CTYPE[name], _SUFFIX[name]
                lines += ["#pragma omp declare simd notinbranch", f"{ct} {f}{sfx}({ct});"]
        for name in sorted(dtypes - {"bool"}):
            ct, sfx = _CTYPE[name], _SUFFIX[name]
            lines += ["#pragma omp declare simd notinbranch", f"{ct} pow{sfx}({ct}, {ct});"]
    return "\n".join(lines) + "\n" + _helpers(dtypes) + "\n"


# ----------------------------------------------------------------------------------- the kernel
def _body(group: FusedGroup, plan: LoopPlan, indent: str) -> tuple[list[str], dict[int, str]]:
    """Statements computing every elementwise value at inner index ``j``; returns (lines, names)."""
    names: dict[int, str] = {}
    lines = []
    for k, v in enumerate(group.inputs):
        s = plan.strides[k][-1]
        idx = "j" if s == 1 else ("0" if s == 0 else f"j * {s}")
        src = "q0" if (group.inplace and k == 0) else f"p{k}"
        names[v.id] = f"in{k}v"
        lines.append(f"{indent}{_CTYPE[v.dtype.name]} in{k}v = {src}[{idx}];")
    for n in group.nodes:
        if n.reduce:
            continue
        args = [_literal(a.value, a.dtype) if isinstance(a, Const) else names[a.id] for a in n.args]
        expr = _TEMPLATES[n.op](n, args, _operand_dtype(n))
        names[n.out.id] = n.out.name
        lines.append(f"{indent}{_CTYPE[n.out.dtype.name]} {n.out.name} = {expr};")
    return lines, names


def _store(v: Value, expr: str) -> str:
    return f"({_MEMTYPE[v.dtype.name]})({expr} != 0)" if v.dtype == np.bool_ else expr


def generate(group: FusedGroup, *, symbol: str = "kernel", vector_math: bool = True) -> str:
    """C source of ``void symbol(void **arrays, long t0, long t1)`` for ``group``: runs tasks
    ``[t0, t1)`` of the loop (see :meth:`LoopPlan.tasks`; rows for a last-axis reduction), so that
    the thread pool (``native/kernels/fused_pool.c``) can split the tasks between threads.

    ``arrays``: one pointer per input (input 0 doubles as output 0 when ``group.inplace``), one per
    output (a reduction writes rows or one scalar), one scratch array of ``tasks`` elements per
    reduction of an all-axes group. An all-axes reduction also gets ``void symbol_finish(void **arrays)``,
    to be called once every task is done: it combines the partials in task order.
    """
    group.validate()
    plan = plan_loops(group)
    dtypes = {v.dtype.name for v in group.inputs} | {n.out.dtype.name for n in group.nodes}
    reductions = [n for n in group.nodes if n.reduce]
    elementwise_outs = [(i, v) for i, v in enumerate(group.outputs) if not any(r.out.id == v.id for r in reductions)]
    red_out = {n.out.id: i for i, v in enumerate(group.outputs) for n in reductions if n.out.id == v.id}

    decls, slot = [], 0        # the arrays arrive as one void* vector (the pool's calling convention)
    for k, v in enumerate(group.inputs):
        const = "" if (group.inplace and k == 0) else "const "
        mt = _MEMTYPE[v.dtype.name]
        decls.append(f"    {const}{mt} *restrict in{k} = ({const}{mt} *)a_[{slot}];")
        slot += 1
    for i, v in enumerate(group.outputs):
        if not (group.inplace and i == 0):
            mt = _MEMTYPE[v.dtype.name]
            decls.append(f"    {mt} *restrict out{i} = ({mt} *)a_[{slot}];")
            slot += 1
    if group.reduction_axis == "all":
        for r, n in enumerate(reductions):
            ct = _CTYPE[n.out.dtype.name]
            decls.append(f"    {ct} *restrict part{r} = ({ct} *)a_[{slot}];")
            slot += 1
    out_ptr = {i: ("in0" if (group.inplace and i == 0) else f"out{i}") for i in range(len(group.outputs))}

    src = [_preamble(dtypes, vector_math), f"void {symbol}(void **a_, long t0, long t1) {{", *decls]
    if group.reduction_axis == "last":
        src += _last_axis_loop(group, plan, reductions, elementwise_outs, red_out, out_ptr)
        src.append("}")
    else:
        body, finish = _flat_loop(group, plan, reductions, elementwise_outs, red_out, out_ptr)
        src += body
        src.append("}")
        if finish:        # combine the per-task partials once every task is done (fixed order)
            src += [f"void {symbol}_finish(void **a_) {{", *decls, *finish, "}"]
    return "\n".join(src) + "\n"


def _row_setup(group: FusedGroup, plan: LoopPlan, indent: str, row: str) -> list[str]:
    """Unravel row index ``row`` over the lead dims into each input's offset (broadcast index math)."""
    lines = [f"{indent}long r_ = {row};"] if plan.lead else []
    offs = ["0"] * len(group.inputs)
    terms: list[list[str]] = [[] for _ in group.inputs]
    for d in range(len(plan.lead) - 1, -1, -1):
        size = plan.lead[d]
        lines.append(f"{indent}long c{d} = r_ % {size}; r_ /= {size};")
        for k in range(len(group.inputs)):
            if plan.strides[k][d]:
                terms[k].append(f"c{d} * {plan.strides[k][d]}")
    for k, v in enumerate(group.inputs):
        offs[k] = " + ".join(terms[k]) or "0"
        if not (group.inplace and k == 0):
            lines.append(f"{indent}const {_MEMTYPE[v.dtype.name]} *restrict p{k} = in{k} + {offs[k]};")
    return lines


def _flat_loop(group, plan, reductions, elementwise_outs, red_out, out_ptr) -> tuple[list[str], list[str]]:
    ntasks, rpt, nb = plan.tasks()
    L = plan.L
    ind = "    "
    lines = [f"{ind}for (long t = t0; t < t1; t++) {{",
             f"{ind*2}long ob = (t / {nb}) * {rpt}, oe = ob + {rpt} < {plan.outer} ? ob + {rpt} : {plan.outer};",
             f"{ind*2}long jb = (t % {nb}) * {BLOCK}, je = jb + {BLOCK} < {L} ? jb + {BLOCK} : {L};"]
    for r, n in enumerate(reductions):
        lines.append(f"{ind*2}{_CTYPE[n.out.dtype.name]} buf{r}[{BLOCK}];")
    if reductions:
        lines.append(f"{ind*2}long pos = 0;")
    lines.append(f"{ind*2}for (long o = ob; o < oe; o++) {{")
    lines += _row_setup(group, plan, ind * 3, "o")
    for i, v in elementwise_outs:
        lines.append(f"{ind*3}{_MEMTYPE[v.dtype.name]} *restrict q{i} = {out_ptr[i]} + o * {L};")
    if group.inplace and not any(i == 0 for i, _ in elementwise_outs):
        lines.append(f"{ind*3}{_MEMTYPE[group.outputs[0].dtype.name]} *restrict q0 = in0 + o * {L};")
    body, names = _body(group, plan, ind * 4)
    lines += [f"{ind*3}#pragma omp simd", f"{ind*3}for (long j = jb; j < je; j++) {{", *body]
    for i, v in elementwise_outs:
        lines.append(f"{ind*4}q{i}[j] = {_store(v, names[v.id])};")
    for r, n in enumerate(reductions):
        lines.append(f"{ind*4}buf{r}[pos + j - jb] = {names[n.args[0].id]};")
    lines.append(f"{ind*3}}}")
    if reductions:
        lines.append(f"{ind*3}pos += je - jb;")
    lines.append(f"{ind*2}}}")
    for r, n in enumerate(reductions):
        name = n.out.dtype.name
        combine = f"pairwise_sum_{name}(buf{r}, pos)" if n.op != "max" else f"block_max_{name}(buf{r}, pos, -INFINITY)"
        lines.append(f"{ind*2}part{r}[t] = {combine};")
    lines.append(f"{ind}}}")
    count = plan.outer * L
    finish: list[str] = []
    for r, n in enumerate(reductions):
        name, ct = n.out.dtype.name, _CTYPE[n.out.dtype.name]
        if n.op == "max":
            total = f"block_max_{name}(part{r}, {ntasks}, -INFINITY)"
        else:
            total = f"pairwise_sum_{name}(part{r}, {ntasks})"
            if n.op == "mean":
                total = f"{total} / ({ct}){count}"
        finish.append(f"{ind}{out_ptr[red_out[n.out.id]]}[0] = {total};")
    return lines, finish


def _last_axis_loop(group, plan, reductions, elementwise_outs, red_out, out_ptr) -> list[str]:
    L = plan.L
    ind = "    "
    lines = [f"{ind}for (long o = t0; o < t1; o++) {{"]
    lines += _row_setup(group, plan, ind * 2, "o")
    for i, v in elementwise_outs:
        lines.append(f"{ind*2}{_MEMTYPE[v.dtype.name]} *restrict q{i} = {out_ptr[i]} + o * {L};")
    for r, n in enumerate(reductions):
        ct = _CTYPE[n.out.dtype.name]
        lines += [f"{ind*2}{ct} buf{r}[{BLOCK}];", f"{ind*2}{ct} acc{r} = {'-INFINITY' if n.op == 'max' else '0'};"]
    lines.append(f"{ind*2}for (long jb = 0; jb < {L}; jb += {BLOCK}) {{")
    lines.append(f"{ind*3}long je = jb + {BLOCK} < {L} ? jb + {BLOCK} : {L};")
    body, names = _body(group, plan, ind * 4)
    lines += [f"{ind*3}#pragma omp simd", f"{ind*3}for (long j = jb; j < je; j++) {{", *body]
    for i, v in elementwise_outs:
        lines.append(f"{ind*4}q{i}[j] = {_store(v, names[v.id])};")
    for r, n in enumerate(reductions):
        lines.append(f"{ind*4}buf{r}[j - jb] = {names[n.args[0].id]};")
    lines.append(f"{ind*3}}}")
    for r, n in enumerate(reductions):
        name = n.out.dtype.name
        if n.op == "max":
            lines.append(f"{ind*3}acc{r} = block_max_{name}(buf{r}, je - jb, acc{r});")
        else:       # the first block's sum is exact (0 + s); later blocks add in order
            lines.append(f"{ind*3}acc{r} = jb ? acc{r} + pairwise_sum_{name}(buf{r}, je - jb) "
                         f": pairwise_sum_{name}(buf{r}, je - jb);")
    lines.append(f"{ind*2}}}")
    for r, n in enumerate(reductions):
        ct = _CTYPE[n.out.dtype.name]
        value = f"acc{r} / ({ct}){L}" if n.op == "mean" else f"acc{r}"
        lines.append(f"{ind*2}{out_ptr[red_out[n.out.id]]}[o] = {value};")
    lines.append(f"{ind}}}")
    return lines
