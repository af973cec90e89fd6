"""The codebase's shape, checked: tasks stay behind their protocol, the training loop stays readable."""

import ast
from pathlib import Path

from selfexplain.tasks import TASK_NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "selfexplain"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name a task; code may not)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
        # attribute docstrings: a bare string right after an assignment
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if isinstance(body, list):
                for statement in body:
                    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
                        found.add(id(statement.value))
    return found


def test_no_module_outside_tasks_names_a_task():
    """Adding a task touches tasks/ and the registry only: no code elsewhere compares with, looks
    up or branches on a task's name (a string constant equal to one)."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "tasks" in path.relative_to(PACKAGE).parts:
            continue
        tree = ast.parse(path.read_text())
        prose = _docstrings(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
                if node.value in TASK_NAMES:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not offenders, "task names outside selfexplain/tasks/: " + ", ".join(offenders)


def test_training_loop_functions_are_short():
    tree = ast.parse((PACKAGE / "train" / "loop.py").read_text())
    lengths = {node.name: node.end_lineno - node.lineno + 1 for node in ast.walk(tree)
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert max(lengths.values()) < 60, lengths
