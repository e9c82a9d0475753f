"""Imports: the layering (a module imports only modules of its own layer or lower ones, never against the flow:
data never imports tasks, tasks never import training, the library never imports the CLI, ...), and no side
effects at import (importing any stepstone module changes no logger level, warnings filter, environment
variable or torch setting).

Every `import` / `from ... import` in src/stepstone and cli/stepstone_cli counts, also those inside functions
and under `if TYPE_CHECKING:`: a function-level import is still a dependency (it only runs later), and hiding a
backwards one in a function is how cycles creep in. Imports by string (importlib) are not seen.
"""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"stepstone": ROOT / "src" / "stepstone", "stepstone_cli": ROOT / "cli" / "stepstone_cli"}

# Lowest first. An entry names a module or package prefix: "stepstone.tasks" covers stepstone.tasks and every
# module under it; the longest matching entry wins, so a submodule can sit in another layer than its package.
# "stepstone" alone is the package's __init__ (only `__version__`), not a prefix. A new module gets a line here.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("foundation", ("stepstone", "stepstone.errors", "stepstone.registry", "stepstone.progress",
                    "stepstone.interrupts", "stepstone.metrics")),
    ("specs", ("stepstone.config", "stepstone.specs", "stepstone.methods.base", "stepstone.provenance", "stepstone.toy", "stepstone.tiny",
               "stepstone.languages")),
    ("data", ("stepstone.data",)),  # file formats only
    ("tasks", ("stepstone.tasks",)),  # registrations, dataset converters, load_examples
    ("formats", ("stepstone.formats", "stepstone.health", "stepstone.perturb")),  # perturb: label-aligned noise
    # tokenized sits here, not with formats: its cache is written through artifacts.atomic_dir
    ("model", ("stepstone.methods", "stepstone.composition", "stepstone.lora_fusion", "stepstone.manifest", "stepstone.backbone",
               "stepstone.precision", "stepstone.distributed", "stepstone.artifacts", "stepstone.locks",
               "stepstone.integrity", "stepstone.checkpoint", "stepstone.zoo", "stepstone.tracking",
               "stepstone.tokenized")),
    ("evaluation", ("stepstone.evaluation", "stepstone.retrieval")),
    ("training", ("stepstone.training",)),
    ("pipelines", ("stepstone.pipelines", "stepstone.interop", "stepstone.merge", "stepstone.ranking")),
    ("experiments", ("stepstone.experiments", "stepstone.grid", "stepstone.report", "stepstone.summary",
                     "stepstone.demo")),
    ("cli", ("stepstone_cli",)),
)


def layer_of(module: str) -> int | None:
    """The index in LAYERS of the longest entry that names `module` or a package above it."""
    best, rank = None, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != "stepstone" and module.startswith(entry + "."))
            if covers and len(entry) > rank:
                best, rank = index, len(entry)
    return best


def modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = (package, *path.relative_to(folder).with_suffix("").parts)
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(module: str, path: Path, known: set[str]) -> list[tuple[int, str]]:
    """(line, imported stepstone module) for every import in the file; `from pkg import name` counts as
    pkg.name when that is a module, else as pkg."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            found += [(node.lineno, f"{source}.{a.name}" if f"{source}.{a.name}" in known else source)
                      for a in node.names]
    return sorted({(line, name) for line, name in found if name.split(".")[0] in PACKAGES})


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in modules() if layer_of(m) is None)
    assert not unplaced, f"modules without a layer (add them to LAYERS in {Path(__file__).name}): {unplaced}"


def test_no_import_against_the_flow():
    found = modules()
    known = set(found)
    against = []
    for module, path in found.items():
        mine = layer_of(module)
        for line, target in imports(module, path, known):
            theirs = layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                against.append(f"{path.relative_to(ROOT)}:{line}: {module} ({LAYERS[mine][0]}) imports "
                               f"{target} ({LAYERS[theirs][0]})")
    assert not against, "imports against the flow (a lower layer importing a higher one):\n" + "\n".join(against)


def test_every_stepstone_import_names_a_module():
    """A relative import one level off (`from .methods import X` inside a subpackage) names a module that does
    not exist: it fails only when that line runs, which may be a rarely taken error path."""
    found = modules()
    known = set(found)
    missing = [f"{path.relative_to(ROOT)}:{line}: {target}" for module, path in found.items()
               for line, target in imports(module, path, known) if target not in known]
    assert not missing, "imports of stepstone modules that do not exist:\n" + "\n".join(missing)


def test_the_checker_sees_what_it_should(tmp_path):
    """The resolution the checks rely on: relative imports, submodules named in `from . import`, prefixes."""
    package = tmp_path / "stepstone" / "data"
    package.mkdir(parents=True)
    (package / "x.py").write_text("from .. import tasks\nfrom ..tasks.base import Split\n"
                                  "def f():\n    from . import readers\n    import stepstone_cli.main\n")
    known = {"stepstone.tasks", "stepstone.tasks.base", "stepstone.data.readers"}
    assert imports("stepstone.data.x", package / "x.py", known) == [
        (1, "stepstone.tasks"), (2, "stepstone.tasks.base"), (4, "stepstone.data.readers"), (5, "stepstone_cli.main")]
    names = [name for name, _ in LAYERS]
    assert [names[layer_of(m)] for m in ("stepstone", "stepstone.tasks.rows", "stepstone.data.readers",
                                         "stepstone_cli.main", "stepstone.methods.lora")] == [
        "foundation", "tasks", "data", "cli", "model"]
    assert layer_of("stepstone.unheard_of") is None  # "stepstone" is not a prefix: a new module must be placed


# ---------------------------------------------------------------------------------- side effects at import
# The third-party modules the stepstone modules import at module level are imported before the first
# snapshot: what importing torch or transformers does to logging is theirs, not stepstone's. NOT_CHECKED would
# name stepstone modules exempt from the check; none is (methods quiets the libraries when a model is built).
NOT_CHECKED: tuple[str, ...] = ()

_PROBE = r"""
import json, logging, os, sys, warnings

def state():
    import torch
    loggers = {name: [logger.level, logger.disabled, logger.propagate]
               for name, logger in logging.root.manager.loggerDict.items() if isinstance(logger, logging.Logger)}
    return {"loggers": {"": [logging.root.level, False, True], **loggers}, "disable": logging.root.manager.disable,
            "filters": [repr(f) for f in warnings.filters], "environ": dict(os.environ),
            "torch": [torch.get_num_threads(), str(torch.get_default_dtype()),
                      torch.are_deterministic_algorithms_enabled(), torch.get_float32_matmul_precision()]}

baseline, checked = json.loads(sys.argv[1]), json.loads(sys.argv[2])
for statement in baseline:
    try:
        exec(statement, {})
    except Exception:  # an optional dependency: the stepstone import below meets the same
        pass
preloaded = sorted(m for m in sys.modules if m.split(".")[0] in ("stepstone", "stepstone_cli"))
before = state()
for module in checked:
    __import__(module)
after = state()
changed = {}
for key in before:
    if key == "loggers":
        old, new = before[key], after[key]
        diff = {n: [old.get(n), v] for n, v in new.items()
                if old.get(n, [logging.NOTSET, False, True]) != v}  # a new logger must keep the defaults
        if diff:
            changed[key] = diff
    elif key == "filters" and before[key] != after[key]:
        changed[key] = {"added": [f for f in after[key] if f not in before[key]],
                        "removed": [f for f in before[key] if f not in after[key]], "order": "changed"}
    elif before[key] != after[key]:
        changed[key] = ({k: [before[key].get(k), after[key].get(k)] for k in set(before[key]) | set(after[key])
                         if before[key].get(k) != after[key].get(k)} if key == "environ" else [before[key], after[key]])
print(json.dumps({"changed": changed, "preloaded": preloaded}, sort_keys=True, default=str))
"""


def module_level_imports(path: Path) -> list[str]:
    """The file's third-party import statements that run at import (module level, also under if / try)."""
    statements, body = [], list(ast.parse(path.read_text(encoding="utf-8")).body)
    while body:
        node = body.pop(0)
        if isinstance(node, ast.Import):
            statements += [f"import {a.name}" for a in node.names if a.name.split(".")[0] not in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            if not node.level and node.module.split(".")[0] not in (*PACKAGES, "__future__"):
                statements.append(ast.unparse(node))
        elif isinstance(node, (ast.If, ast.Try)):
            body += node.body + node.orelse + getattr(node, "handlers", []) + getattr(node, "finalbody", [])
        elif isinstance(node, ast.ExceptHandler):
            body += node.body
    return statements


def _probe(baseline: list[str], checked: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(p.parent) for p in PACKAGES.values())}
    run = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(baseline), json.dumps(checked)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_importing_stepstone_has_no_side_effects():
    """In a fresh interpreter: import what the modules import from elsewhere (and NOT_CHECKED), snapshot,
    import every other stepstone module, compare. The stepstone modules NOT_CHECKED pulled in before the
    snapshot are checked by a second run without NOT_CHECKED."""
    found = modules()
    checked = sorted(m for m in found if not m.startswith(NOT_CHECKED))
    third_party = sorted({s for path in found.values() for s in module_level_imports(path)})
    first = _probe(third_party + [f"import {m}" for m in NOT_CHECKED], checked)
    assert first["changed"] == {}, f"importing {len(checked)} stepstone modules changed global state: {first}"
    hidden = [m for m in first["preloaded"] if m in found and not m.startswith(NOT_CHECKED)]
    second = _probe(third_party, hidden)
    assert second["changed"] == {}, f"importing {hidden} changed global state: {second}"
