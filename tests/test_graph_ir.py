"""Graph IR: printer, helpers, and the verifier catching hand-broken graphs (errors name the node)."""
import numpy as np
import pytest

import suanli
from suanli.graph import Graph, GraphError, Node, Sym, Value, interpret, trace, verify


def _traced():
    return trace(lambda x, y: (x @ y).tanh().sum(dim=1), (suanli.ones(2, 3, dtype=suanli.float64),
                                                          suanli.ones(3, 4, dtype=suanli.float64))).graph


def test_printer_and_helpers():
    g = _traced()
    text = str(g)
    assert "%2: float64[2,4] = matmul(%0, %1)" in text
    assert "sum(%3, axes=(1,), keepdims=False)" in text and text.endswith("return %4\n}")
    mm = g.nodes[0].output
    assert [n.op for n in g.users(mm)] == ["tanh"]
    c = g.copy()
    assert str(c) == text and {v.id for v in c.values()}.isdisjoint({v.id for v in g.values()})
    a, b = np.random.default_rng(0).standard_normal((2, 3)), np.random.default_rng(1).standard_normal((3, 4))
    np.testing.assert_allclose(interpret(c, a, b)[0], np.tanh(a @ b).sum(1), rtol=1e-14)
    # replace_all_uses: read exp(matmul) instead of tanh(matmul)
    e = Value(mm.shape, mm.dtype)
    c2 = g.copy()
    mm2 = c2.nodes[0].output
    c2.nodes.insert(1, Node("exp", [mm2], {}, [e]))
    c2.replace_all_uses(c2.nodes[2].output, e)
    verify(c2)
    np.testing.assert_allclose(interpret(c2, a, b)[0], np.exp(a @ b).sum(1), rtol=1e-14)


def test_sym_dims():
    b = Sym("B")
    assert str(b * 4 + 2) == "4*B+2" and (b * 4 + 2).evaluate({"B": 3}) == 14
    g = Graph()
    x = g.add_input((b, 3), np.float32)
    g.outputs = [g.add_node("reshape", [x], {"shape": (b * 3,)}, shape=(b * 3,), dtype=np.float32)]
    verify(g, {"B": 5})
    assert interpret(g, np.ones((4, 3), np.float32))[0].shape == (12,)
    with pytest.raises(Exception, match="wrong shape|rank"):
        interpret(g, np.ones((4, 2), np.float32))


def _expect(g, pattern):
    with pytest.raises(GraphError, match=pattern):
        verify(g)


def test_verifier_catches_broken_graphs():
    g = _traced()
    g.nodes[0], g.nodes[1] = g.nodes[1], g.nodes[0]                 # out of topological order
    _expect(g, r"node #0 tanh.*used before it is defined")

    g = _traced()
    g.nodes[1].inputs = [Value((2, 4), np.float64)]                 # dangling value
    _expect(g, r"node #1 tanh.*dangling")

    g = _traced()
    g.nodes[0].outputs[0].shape = (2, 5)                            # wrong shape
    _expect(g, r"node #0 matmul -> %2: the shape rule says float64\[2,4\], the node says float64\[2,5\]")

    g = _traced()
    g.nodes[1].outputs[0].dtype = np.dtype(np.float32)              # wrong dtype
    _expect(g, r"node #1 tanh.*float64\[2,4\].*float32\[2,4\]")

    g = _traced()
    g.nodes[0].op = "no_such_op"
    _expect(g, "unknown op 'no_such_op'")

    g = _traced()
    g.nodes[0].attrs["bogus"] = 1                                    # rule rejects the attrs
    _expect(g, "node #0 matmul.*shape rule")

    g = _traced()
    g.outputs = [Value((2,), np.float64)]
    _expect(g, "output 0.*not defined")

    g = _traced()
    g.nodes.append(g.nodes[0])                                       # defined twice
    _expect(g, "defined twice")

    g = Graph()
    c = g.add_constant(np.ones(3))
    c.shape = (4,)
    _expect(g, r"constant.*float64\[3\]")


def test_verifier_checks_control_flow_subgraphs():
    x = suanli.ones(2, dtype=suanli.float64)
    g = trace(lambda v: suanli.cond(v.sum() > 0, lambda a: a.exp(), lambda a: a * 2, v), (x,)).graph
    verify(g)
    node = next(n for n in g.nodes if n.op == "cond")
    mul = node.subgraphs["else"].nodes[-1]
    mul.inputs = [Value((2,), np.float64), mul.inputs[1]]            # broken inside a branch
    with pytest.raises(GraphError, match=r"cond.*\[else\].*mul.*dangling"):
        verify(g)
    g = trace(lambda v: suanli.cond(v.sum() > 0, lambda a: a.exp(), lambda a: a * 2, v), (x,)).graph
    node = next(n for n in g.nodes if n.op == "cond")
    node.subgraphs["then"].outputs = [node.subgraphs["then"].inputs[0], node.subgraphs["then"].inputs[0]]
    with pytest.raises(GraphError, match="outputs and the 'then' branch's outputs differ"):
        verify(g)
