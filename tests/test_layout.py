"""The codebase's shape, checked: tasks stay behind their protocol, the training loop stays
readable."""

import ast
from pathlib import Path

from selfexplain.tasks import TASK_NAMES

PACKAGE = Path(__file__).resolve().parents[1] / "selfexplain"


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes (prose may name a task; code may not)."""
    found = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
        # attribute docstrings: a bare string right after an assignment
        for body in (getattr(node, "body", None), getattr(node, "orelse", None)):
            if isinstance(body, list):
                for statement in body:
                    if isinstance(statement, ast.Expr) and isinstance(
                        statement.value, ast.Constant
                    ):
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
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in prose
            ):
                if node.value in TASK_NAMES:
                    offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {node.value!r}")
    assert not offenders, "task names outside selfexplain/tasks/: " + ", ".join(offenders)


def test_every_function_is_at_most_60_lines():
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > 60:
                    where = f"{path.relative_to(PACKAGE)}:{node.lineno}"
                    long.append(f"{where} {node.name} ({length} lines)")
    assert not long, "functions over 60 lines: " + ", ".join(long)


# The package's layers, bottom first: a module may import from its own layer and the ones below,
# never from above. A name is a subpackage or a top-level module of selfexplain.
LAYERS = (
    ("errors", "provenance", "internals", "interrupts", "yaml_values"),
    ("inputs", "storage"),
    ("places",),
    ("data",),
    ("models",),
    ("corpus",),
    ("explainer",),
    ("features",),
    ("scoring",),
    ("tasks",),
    ("config",),
    ("jobs", "train"),
    ("evaluate",),
    ("preflight", "pipeline", "explain"),
    ("study",),
    ("configpage", "cli", "__main__", "__init__"),
)
LAYER_OF = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every selfexplain module ``path`` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] != "selfexplain":
                continue
            for alias in node.names:  # `from selfexplain import pipeline` names a module
                candidate = f"{node.module}.{alias.name}"
                file = (PACKAGE.parent / Path(*candidate.split("."))).with_suffix(".py")
                found.add(candidate if file.exists() else node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "selfexplain"}
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYER_OF[parts[1] if len(parts) > 1 else "__init__"]


def _import_graph() -> dict[str, set[str]]:
    return {_module_name(path): _imports(path) for path in sorted(PACKAGE.rglob("*.py"))}


def test_imports_only_point_down_the_layers():
    graph = _import_graph()
    unknown = {m.split(".")[1] for m in graph if "." in m} - set(LAYER_OF)
    assert not unknown, f"modules in no layer: {sorted(unknown)}; add them to LAYERS"
    upward = [
        f"{source} -> {target}"
        for source, targets in graph.items()
        for target in sorted(targets)
        if _layer(target) > _layer(source)
    ]
    assert not upward, "imports that run back up the layers: " + ", ".join(upward)


def test_no_modules_import_each_other_in_a_circle():
    graph = _import_graph()

    def reaches(start: str, goal: str) -> bool:
        stack, visited = [start], set()
        while stack:
            module = stack.pop()
            if module == goal:
                return True
            if module not in visited:
                visited.add(module)
                stack.extend(graph.get(module, ()))
        return False

    circles = sorted(
        " <-> ".join(sorted((source, target)))
        for source, targets in graph.items()
        for target in targets
        if target != source and reaches(target, source)
    )
    assert not circles, "modules that import each other, directly or not: " + ", ".join(
        dict.fromkeys(circles)
    )


def test_every_import_inside_a_function_says_why():
    """A function-local import defers something (a heavy package, Ray before a session, an
    optional package); a comment on its line or just above its block says what."""
    silent = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text().split("\n")
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            imports = [s for s in node.body if isinstance(s, (ast.Import, ast.ImportFrom))]
            for statement in imports:
                above = range(imports[0].lineno - 3, statement.lineno - 1)
                if "#" not in lines[statement.lineno - 1] and not any(
                    lines[k].strip().startswith("#") for k in above
                ):
                    silent.append(f"{path.relative_to(PACKAGE)}:{statement.lineno}")
    assert not silent, "function-local imports without a reason: " + ", ".join(silent)
