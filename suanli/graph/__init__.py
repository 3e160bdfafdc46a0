"""The graph IR (values, nodes, subgraphs), its verifier, printer, reference interpreter and tracer.

One IR for the whole system: tracing (``suanli.compile``) produces it, passes rewrite it
(``Graph -> Graph`` functions), executors run it, ONNX import/export read and write it.

>>> import suanli
>>> from suanli.graph import trace, interpret, verify
>>> t = trace(lambda x: x.tanh().sum(), (suanli.ones(2, 2, dtype=suanli.float64),))
>>> [n.op for n in verify(t.graph).nodes]
['tanh', 'sum']
>>> float(interpret(t.graph, suanli.zeros(2, 2, dtype=suanli.float64).numpy())[0])
0.0
"""
from .control_flow import cond, scan, while_loop
from .interpret import InterpretError, interpret, run_node, run_primitive
from .ir import STRUCTURAL_OPS, Graph, Node, Sym, Value, evaluate_attr, evaluate_dims, has_sym
from .printer import format_graph
from .trace import Traced, TraceError, Tracer, trace
from .verify import GraphError, verify

__all__ = ["cond", "while_loop", "scan", "Graph", "Node", "Value", "Sym", "STRUCTURAL_OPS", "verify", "GraphError", "interpret",
           "InterpretError", "run_node", "run_primitive", "format_graph", "trace", "Traced", "Tracer",
           "TraceError", "evaluate_dims", "evaluate_attr", "has_sym"]
