"""Import layers of trapdoor_trainer, and no import cycles between its modules.

Every module is parsed with `ast`; every import counts, at module level, inside functions
(lazy imports) and under `if TYPE_CHECKING:`. A module may import its own layer and the layers
below it, never one above. A module's layer is that of the longest entry in LAYERS naming it or
a package above it. `__main__` (the command line) sits on top and may import anything.

Importing `a.b.c` also runs the `__init__` of `a` and `a.b`; those implicit package imports are
not edges here, only what the statement names (a package's own `__init__.py` is a module with
its own imports). `defenses.registry` finds the method modules with importlib at run time,
which the graph does not see.
"""

from __future__ import annotations

import ast
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional

PACKAGE = "trapdoor_trainer"
PACKAGE_ROOT = Path(__file__).resolve().parents[1] / PACKAGE

# Lowest first. Module names are relative to the package; a package name covers its submodules.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # Exceptions and exit codes; the package's __init__ holds only its version.
    ("base", ("errors", "__init__")),
    # Self-contained helpers: file formats, the event protocol, the privacy accountant, the
    # parameter schemas' validator, parameter tables, the registry type, the checkpoint file, the
    # process group of a job on several processes.
    ("utilities", ("schema_check", "hyperparams", "registry", "png", "safetensors", "idx", "events", "privacy", "checkpoint", "distributed")),
    # Datasets (on disk and on the device) and the network architectures.
    ("data and models", ("data", "models")),
    # What works on a model or a dataset without a job: evaluation, the exported model format,
    # the model card and bundle, triggers and poisoning.
    ("model tools", ("metrics", "export", "model_card", "attacks", "model_check")),
    # The method registry (spec validation looks methods up in it) and the catalog built from
    # the method, attack and architecture registries.
    ("method catalogue", ("defenses.registry", "catalog")),
    # spec.json -> RunSpec; validation asks the attack and method catalogues. Below the job
    # context, which holds a RunSpec.
    ("spec", ("spec",)),
    # One job's context, the training loop (with its optimiser recipes) and the phase runner.
    ("training", ("context", "training", "recipes", "phases")),
    # The methods and the steps they share.
    ("defenses", ("defenses",)),
    # Commands: a whole job, poisoning and sanitizing a dataset, the export fixture script.
    ("commands", ("runner", "poison_command", "sanitize_command", "export_fixture")),
    # The command line, and torchrun's launcher for several processes.
    ("entry point", ("__main__", "torchrun")),
]


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. "defenses.tnr"
    target: str  # the imported module, e.g. "training"
    file: str  # the importing file, e.g. "trapdoor_trainer/defenses/tnr.py"
    line: int
    statement: str  # as written, for messages

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: `{self.statement}`"


def file_of(module: str, is_package: bool) -> str:
    if module == "__init__":
        return f"{PACKAGE}/__init__.py"
    return f"{PACKAGE}/{module.replace('.', '/')}" + ("/__init__.py" if is_package else ".py")


def module_files(root: Path = PACKAGE_ROOT) -> dict[str, tuple[str, bool]]:
    """{module name: (source, is a package __init__)} for every .py file under `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1] or ["__init__"]
        out[".".join(parts)] = (path.read_text(), is_package)
    return out


def _resolve(name: str, known: Iterable[str]) -> Optional[str]:
    """The module a dotted name inside the package refers to (the longest known prefix)."""
    known = set(known)
    parts = name.split(".") if name else []
    while parts:
        candidate = ".".join(parts)
        if candidate in known:
            return candidate
        parts.pop()
    return "__init__" if "__init__" in known else None


def imports_of(module: str, source: str, is_package: bool, known: Iterable[str]) -> list[Import]:
    """Every import of a package module in `source`, wherever it stands in the file."""
    known = set(known)
    package = module.split(".") if is_package and module != "__init__" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
            targets = [n[len(PACKAGE) + 1 :] if n != PACKAGE else "" for n in names if n == PACKAGE or n.startswith(PACKAGE + ".")]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module != PACKAGE and not (node.module or "").startswith(PACKAGE + "."):
                    continue
                base = (node.module or "")[len(PACKAGE) + 1 :]
            else:
                if node.level - 1 > len(package):
                    raise ValueError(f"{module}:{node.lineno}: relative import beyond the package")
                up = package[: len(package) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            # `from . import x` names a submodule when x is one, else a name in the package
            targets = [f"{base}.{alias.name}" if base else alias.name for alias in node.names]
            targets = [t if t in known else base for t in targets]
        else:
            continue
        statement = ast.get_source_segment(source, node) or ast.dump(node)
        for target in targets:
            resolved = _resolve(target, known)
            if resolved is not None and resolved != module:
                found.append(Import(module, resolved, file_of(module, is_package), node.lineno, " ".join(statement.split())))
    return found


def import_graph(files: Mapping[str, tuple[str, bool]]) -> list[Import]:
    return [imp for module, (source, is_package) in files.items() for imp in imports_of(module, source, is_package, files)]


def layer_of(module: str, layers=LAYERS) -> Optional[int]:
    best = None
    for index, (_, names) in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > len(best[1])):
                best = (index, name)
    return None if best is None else best[0]


def layer_violations(imports: Iterable[Import], modules: Iterable[str], layers=LAYERS) -> list[str]:
    problems = [f"{m}: not in any layer of LAYERS; add it where its imports put it" for m in sorted(modules) if layer_of(m, layers) is None]
    for imp in imports:
        low, high = layer_of(imp.module, layers), layer_of(imp.target, layers)
        if low is not None and high is not None and high > low:
            problems.append(
                f"{imp}: {imp.module} (layer {layers[low][0]!r}) imports {imp.target} (layer {layers[high][0]!r}); "
                "a layer may import only itself and the layers below it"
            )
    return problems


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """One cycle (as its import statements) for every strongly connected group of modules."""
    edges: dict[str, dict[str, Import]] = {}
    for imp in imports:
        edges.setdefault(imp.module, {}).setdefault(imp.target, imp)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, {}):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(edges):
        if node not in index:
            connect(node)

    return [_cycle_through(min(group), set(group), edges) for group in groups]


def _cycle_through(start: str, members: set, edges: dict) -> list[Import]:
    """A shortest cycle from `start` back to it inside its group (breadth-first)."""
    parents: dict[str, Optional[str]] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for nxt in sorted(edges.get(node, {})):
            if nxt == start:
                path = [edges[node][start]]
                while parents[node] is not None:
                    path.append(edges[parents[node]][node])
                    node = parents[node]
                return path[::-1]
            if nxt in members and nxt not in parents:
                parents[nxt] = node
                queue.append(nxt)
    raise AssertionError(f"{start} is in a strongly connected group but on no cycle")


def describe_cycle(path: list[Import]) -> str:
    chain = " -> ".join([path[0].module] + [imp.target for imp in path])
    return f"import cycle {chain}: " + "; ".join(str(imp) for imp in path)


# --- the package ------------------------------------------------------------------------------


def test_every_import_respects_the_layers():
    files = module_files()
    problems = layer_violations(import_graph(files), files)
    assert not problems, "layer rules broken:\n" + "\n".join(problems)


def test_no_import_cycles_between_modules():
    found = cycles(import_graph(module_files()))
    assert not found, "\n".join(describe_cycle(path) for path in found)


def test_the_checker_sees_the_package():
    files = module_files()
    graph = import_graph(files)
    assert {"errors", "defenses.tnr", "models", "__main__", "__init__"} <= set(files)
    edges = {(imp.module, imp.target) for imp in graph}
    assert ("defenses.tnr", "training") in edges  # relative, two dots
    assert ("runner", "attacks") in edges  # inside a function
    assert ("runner", "__init__") in edges  # `from . import __version__`
    assert ("hyperparams", "schema_check") in edges  # `from . import schema_check` names a submodule


# --- the checker, on made-up sources ----------------------------------------------------------


def fake_package(sources: dict[str, str]) -> dict[str, tuple[str, bool]]:
    return {name: (source, name == "__init__" or name in ("models", "defenses")) for name, source in sources.items()}


def test_an_upward_import_is_reported_with_file_line_and_rule():
    files = fake_package({
        "errors": "from __future__ import annotations\n\n\ndef hint():\n    from .training import Phase  # lazy, still counts\n",
        "training": "from .errors import SpecError\n",
    })
    problems = layer_violations(import_graph(files), files)
    assert len(problems) == 1
    assert problems[0].startswith("trapdoor_trainer/errors.py:5: `from .training import Phase`: errors (layer 'base') imports training (layer 'training')")


def test_type_checking_imports_count_and_the_entry_point_imports_anything():
    files = fake_package({
        "data": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from trapdoor_trainer.defenses.common import build_model\n",
        "defenses": "",
        "defenses.common": "from ..data import DeviceData\n",
        "__main__": "from .runner import run_job\n",
        "runner": "",
    })
    problems = layer_violations(import_graph(files), files)
    assert len(problems) == 1 and "data (layer 'data and models') imports defenses.common (layer 'defenses')" in problems[0]


def test_a_module_outside_the_table_is_reported():
    files = fake_package({"errors": "", "gadgets": "from .errors import SpecError\n"})
    assert layer_violations(import_graph(files), files) == ["gadgets: not in any layer of LAYERS; add it where its imports put it"]


def test_a_cycle_through_a_lazy_import_is_found_and_spelled_out():
    files = fake_package({
        "spec": "from . import hyperparams\n\n\ndef check():\n    from .attacks import resolve_params\n",
        "attacks": "from .hyperparams import Param\n",
        "hyperparams": "def late():\n    import trapdoor_trainer.spec\n",
        "errors": "",
    })
    found = cycles(import_graph(files))
    assert len(found) == 1
    message = describe_cycle(found[0])
    assert message.startswith("import cycle attacks -> hyperparams -> spec -> attacks")
    assert "trapdoor_trainer/hyperparams.py:2: `import trapdoor_trainer.spec`" in message
    assert cycles(import_graph(fake_package({"a": "from . import b\n", "b": ""}))) == []
