"""The registry is explicit and complete: every differentiable primitive has VJP and JVP rules."""
import suanli
from suanli.ops import registry


def test_every_differentiable_primitive_has_vjp_and_jvp(capsys):
    print(registry.table())            # shown with -s; the table is the inventory of primitives
    missing = registry.missing_rules()
    assert not missing, f"differentiable primitives without VJP/JVP: {missing}"


def test_registry_is_inspectable_and_covers_the_core():
    names = set(registry.names())
    for core in ("add", "mul", "div", "exp", "sum", "reshape", "expand", "cast"):
        assert core in names
    assert len(registry) == len(names)
    p = registry["exp"]
    assert p.has_vjp and p.has_jvp and p.impl is not None and p.infer is not None
    assert "exp" in registry.table()


def test_every_primitive_has_a_shape_rule_and_impl():
    for p in registry:
        assert callable(p.impl) and callable(p.infer), p.name


def test_unknown_primitive_error_names_it():
    import pytest
    with pytest.raises(KeyError, match="no primitive named 'nope'"):
        registry["nope"]
