"""The rule expression language, as the rest of the service uses it (a face; the work is done in
mecc.language: syntax, check, functions, nodes, evaluate, expression).

    expression = compile_expression("smoking_status == 'current' && age >= 16", catalogue)
    expression.evaluate(context)  # True, False or None (unknown: the rule does not match)
"""

from __future__ import annotations

from mecc.language.expression import (
    CompiledExpression,
    Explanation,
    RuleCompileError,
    check_expression,
    compile_expression,
)
from mecc.language.syntax import MAX_DEPTH, MAX_LENGTH, MAX_NODES, Diagnostic

__all__ = [
    "MAX_DEPTH", "MAX_LENGTH", "MAX_NODES", "CompiledExpression", "Diagnostic", "Explanation",
    "RuleCompileError", "check_expression", "compile_expression",
]
