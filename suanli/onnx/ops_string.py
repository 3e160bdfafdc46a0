"""ONNX string ops: StringConcat, StringSplit, RegexFullMatch, StringNormalizer.

Strings are data, not numbers: these ops work on the NumPy object arrays held by the Tensors and
return constants (nothing to differentiate).

>>> import numpy as np
>>> from suanli.onnx.ops_string import split_padded
>>> parts, counts = split_padded(np.array(["a,b", "c"], dtype=object), ",", None)
>>> parts.tolist(), counts.tolist()
([['a', 'b'], ['c', '']], [2, 1])
"""
from __future__ import annotations

import re

import numpy as np

from ..tensor import Tensor
from ._util import const
from .errors import onnx_error
from .table import onnx_op


def _strings(ctx, *xs: Tensor) -> list[np.ndarray]:
    arrays = [np.asarray(x._data) for x in xs]
    bad = [a.dtype for a in arrays if a.dtype.kind not in "UO"]
    if bad:
        raise onnx_error(ctx.where, "expects string tensors", actual=f"dtypes {bad}",
                         hint="Cast the input to STRING first")
    return arrays


@onnx_op("StringConcat", since=20)
def string_concat(ctx, x, y):
    a, b = _strings(ctx, x, y)
    return const(np.char.add(a.astype(np.str_), b.astype(np.str_)).astype(object))


def split_padded(x: np.ndarray, sep: str | None, maxsplit: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Split every string; pad the pieces with ``""`` to the longest; also return the piece counts."""
    flat = [str(s).split(sep, -1 if maxsplit is None else maxsplit) for s in x.reshape(-1)]
    counts = np.array([len(p) for p in flat], np.int64).reshape(x.shape)
    width = int(counts.max(initial=0))
    out = np.empty((len(flat), width), object)
    for i, pieces in enumerate(flat):
        out[i] = pieces + [""] * (width - len(pieces))
    return out.reshape(x.shape + (width,)), counts


@onnx_op("StringSplit", since=20)
def string_split(ctx, x):
    (a,) = _strings(ctx, x)
    sep = ctx.get("delimiter") or None           # "" or absent: split on runs of whitespace
    parts, counts = split_padded(a, sep, ctx.get("maxsplit"))
    return const(parts), const(counts)


@onnx_op("RegexFullMatch", since=20)
def regex_full_match(ctx, x):
    (a,) = _strings(ctx, x)
    try:
        regex = re.compile(ctx.get("pattern"))
    except (re.error, TypeError) as exc:
        raise onnx_error(ctx.where, f"invalid pattern {ctx.get('pattern')!r}: {exc}",
                         hint="the pattern is RE2 syntax; use the subset Python's re understands") from None
    match = np.vectorize(lambda s: regex.fullmatch(str(s)) is not None, otypes=[np.bool_])
    return const(match(a) if a.size else np.zeros(a.shape, bool))


@onnx_op("StringNormalizer", since=10)
def string_normalizer(ctx, x):
    """Drop stop words (whole elements), then change case. An all-dropped input gives ``[""]``."""
    (a,) = _strings(ctx, x)
    if a.ndim not in (1, 2) or (a.ndim == 2 and a.shape[0] != 1):
        raise onnx_error(ctx.where, "input must be (C,) or (1, C)", actual=f"{a.shape}")
    sensitive = bool(ctx.get("is_case_sensitive", 0))
    stops = set(ctx.get("stopwords") or [])
    key = (lambda s: s) if sensitive else str.lower
    stops = {key(s) for s in stops}
    kept = [str(s) for s in a.reshape(-1) if key(str(s)) not in stops]
    action = ctx.get("case_change_action", "NONE")
    change = {"LOWER": str.lower, "UPPER": str.upper, "NONE": lambda s: s}.get(action)
    if change is None:
        raise onnx_error(ctx.where, f"unknown case_change_action {action!r}", expect="LOWER, UPPER or NONE")
    kept = [change(s) for s in kept] or [""]
    out = np.array(kept, dtype=object)
    return const(out.reshape(1, -1) if a.ndim == 2 else out)


def _pool_ngrams(ctx) -> dict[tuple, int]:
    """n-gram (a tuple of tokens) -> output column, from the pool / ngram_counts / ngram_indexes attributes."""
    pool = ctx.get("pool_int64s")
    if pool is None:
        pool = [s.decode() if isinstance(s, bytes) else s for s in (ctx.get("pool_strings") or [])]
    pool = list(pool)
    starts = list(ctx.get("ngram_counts")) + [len(pool)]
    columns = list(ctx.get("ngram_indexes"))
    table, g = {}, 0
    for n, (lo, hi) in enumerate(zip(starts[:-1], starts[1:]), start=1):
        for p in range(lo, hi, n):
            table[tuple(pool[p:p + n])] = columns[g]
            g += 1
    return table


@onnx_op("TfIdfVectorizer", since=9)
def tfidf_vectorizer(ctx, x):
    """Count pooled n-grams (tokens ``skip + 1`` apart, up to max_skip_count) per row; TF, IDF or TFIDF."""
    a = np.asarray(x._data)
    if a.ndim not in (1, 2):
        raise onnx_error(ctx.where, "input must be (C,) or (N, C)", actual=f"{a.shape}")
    table = _pool_ngrams(ctx)
    width = max(table.values(), default=-1) + 1
    lo_n, hi_n = ctx.get("min_gram_length"), ctx.get("max_gram_length")
    max_skip = ctx.get("max_skip_count", 0)
    rows = a.reshape(-1, a.shape[-1]) if a.ndim == 2 else a.reshape(1, -1)
    counts = np.zeros((rows.shape[0], width), np.float32)
    for r, row in enumerate(rows):
        tokens = [t.item() if hasattr(t, "item") else t for t in row]
        for n in range(lo_n, hi_n + 1):
            for skip in range(max_skip + 1 if n > 1 else 1):     # unigrams are counted once
                step = skip + 1
                for p in range(len(tokens) - (n - 1) * step):
                    col = table.get(tuple(tokens[p:p + (n - 1) * step + 1:step]))
                    if col is not None:
                        counts[r, col] += 1
    weights = np.asarray(ctx.get("weights") if ctx.get("weights") is not None else np.ones(width), np.float32)
    mode = ctx.get("mode")
    if mode == "IDF":
        counts = (counts > 0) * weights
    elif mode == "TFIDF":
        counts = counts * weights
    elif mode != "TF":
        raise onnx_error(ctx.where, f"unknown mode {mode!r}", expect="TF, IDF or TFIDF")
    return const(counts.astype(np.float32) if a.ndim == 2 else counts[0].astype(np.float32))
