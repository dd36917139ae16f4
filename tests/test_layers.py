"""The package's layers only point down, and no module imports itself back: every `olmoflow` import in olmoflow/
(at the top of a module or inside a function; not under `if TYPE_CHECKING:`, which never runs) goes to the same
layer or a lower one, and the module import graph has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "olmoflow"

LAYERS = (
    ("olmoflow", "olmoflow._base", "olmoflow.registry"),  # the version, the config base, the stage registry
    ("olmoflow.storage",),  # where bytes live: a folder or s3://
    ("olmoflow.artifacts",),  # the artifact contract: fingerprint, manifest, store
    ("olmoflow.contract",),  # what a stage's run(ctx) sees: StageContext, WorkDir, its report files
    ("olmoflow.model",),  # the library, bottom to top
    ("olmoflow.data",),
    ("olmoflow.train",),
    ("olmoflow.post",),
    ("olmoflow.evals",),
    ("olmoflow.trace",),  # OlmoTrace: an infini-gram index of the training data, spans, the trace-ui page
    ("olmoflow.config", "olmoflow.tracking", "olmoflow.importer"),  # the flow's config, MLflow, import-hf
    ("olmoflow.stages",),  # the eight stages
    ("olmoflow.cluster",),  # pods, jobs and registration on Kubernetes
    ("olmoflow.flow",),  # runner, task, plan, preflight, pipeline, local runner, submit
    ("olmoflow.cli",),
)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> int | None:
    """The layer of a module: that of the entry it is or sits in (the package itself only as `olmoflow`)."""
    for i, names in enumerate(LAYERS):
        if any(module == e or (e != "olmoflow" and module.startswith(e + ".")) for e in names):
            return i
    return None


def imports(path: Path) -> set[str]:
    """The olmoflow modules `path` imports when it runs (`from olmoflow.x import y` counts y when it is a module)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING" for n in ast.walk(node)}
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "olmoflow"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "olmoflow":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if _is_module(sub) else node.module)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_has_a_layer():
    assert [m for m in graph() if layer(m) is None] == [], "place each new module in LAYERS"


def test_imports_point_down():
    up = [f"{m} (layer {layer(m)}) imports {d} (layer {layer(d)})"
          for m, deps in graph().items() for d in sorted(deps) if layer(d) > layer(m)]
    assert not up, "\n".join(up)


def test_no_import_cycles():
    g = graph()
    # a package imports its own __init__ on the way to any of its modules; that edge is not a dependency
    g = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in g.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if state.get(d) == 1:
                cycles.append(" -> ".join(path[path.index(d):] + [d]))
            elif d not in state:
                visit(d, path + [d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    assert not cycles, "\n".join(cycles)
