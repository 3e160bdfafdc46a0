"""The compiler: trace to a graph IR, run named passes, execute plans (with generated native kernels).

``suanli.compile`` lives in :mod:`suanli.compiler.compile`; passes (:mod:`suanli.compiler.passes`)
register with :func:`register_pass`, executors are factories ``graph -> run(arrays)``.
"""
from .compile import (EXPLAIN_HOOKS, CompiledFunction, Plan, compile, default_passes, interpreter_executor,
                      register_pass)
from . import passes

passes.register_all()


def _memory_section(plan: Plan) -> str | None:
    memory = plan.graph.meta.get("memory_plan")
    return None if memory is None else "=== memory ===\n" + memory.summary()


EXPLAIN_HOOKS.append(_memory_section)

__all__ = ["compile", "CompiledFunction", "Plan", "register_pass", "default_passes", "interpreter_executor",
           "EXPLAIN_HOOKS", "passes"]
