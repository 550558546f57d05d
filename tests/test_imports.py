"""The import structure a newcomer can rely on, read from the source with ``ast``:

* a stage module (one row of distill.stages' table) never imports another stage module,
  directly or through the non-stage modules it imports: stages share code only through the
  data layer (distill.querysets, distill.candidates, distill.labels_io, distill.retrieval,
  teachers.scoring, teachers.precision, ...), so a stage can be read, changed and tested alone;
* the project's modules import each other without a cycle, counting every import: the ones
  at module level and the ones inside functions (none is exempted).

Only the modules under distill/, teachers/ and students/ count; an ``import a.b`` or ``from a
import b`` is an edge to ``a.b`` when that is a project module, else to ``a``.
"""

from __future__ import annotations

import ast
from pathlib import Path

from distill import stages

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("distill", "teachers", "students")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """Project modules ``name`` imports, anywhere in its source (functions included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]).strip(".")
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def test_stage_modules_are_the_tables():
    """Prevents the checks below missing a stage: every table module is a project module."""
    assert set(stages.stage_modules()) <= set(MODULES), set(stages.stage_modules()) - set(MODULES)


def test_no_stage_imports_another_stage():
    """Prevents stages growing into each other (label reaching into mine for the candidates
    reader, evaluate into label for the teacher's precision): a stage that needs another's
    code means that code belongs in the data layer."""
    stage_modules = set(stages.stage_modules())
    for stage in sorted(stage_modules):
        seen, todo, path = {stage}, [stage], {stage: [stage]}
        while todo:
            current = todo.pop()
            for target in sorted(GRAPH[current]):
                if target in seen:
                    continue
                seen.add(target)
                path[target] = [*path[current], target]
                assert target not in stage_modules, (
                    f"stage {stage} imports stage {target}: {' -> '.join(path[target])}"
                )
                todo.append(target)


def test_no_import_cycle():
    """Prevents modules that import each other (teachers.scoring and teachers.members did):
    neither can be read, or loaded, without the other, and a top-level import turned
    function-level to dodge the cycle hides it."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(name: str, trail: list[str]) -> None:
        state[name] = 1
        for target in sorted(GRAPH[name]):
            if state.get(target) == 1:
                cycle = [*trail[trail.index(target) :], target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, [*trail, target])
        state[name] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name, [name])
