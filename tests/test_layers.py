"""The library's layers, as docs/development.md lists them, against the imports of the code: every module listed once,
each importing only from its own layer and those below, no circle of imports, nothing of the project below layer 1,
and neither the library nor one stage script importing a stage script. An import inside a function counts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.conftest import ROOT

LIB = ROOT / "stages" / "lib"


def documented_layers() -> dict[str, int]:
    """{module: layer} of the layout block in docs/development.md: `  <n> <what>` heads a layer, `    <module>` lists
    one (a file, or a package as `name/`)."""
    text = (ROOT / "docs" / "development.md").read_text()
    block = text[text.index("\nstages/lib/") :]
    block = block[: re.search(r"\n\S", block[1:]).start() + 1]
    layers: dict[str, int] = {}
    layer = None
    for line in block.splitlines():
        if heading := re.match(r"  (\d) \S", line):
            layer = int(heading.group(1))
        elif listed := re.match(r"    (\w+(?:\.py|/))(?:\s|$)", line):
            assert layer is not None and listed.group(1) not in layers, line
            layers[listed.group(1)] = layer
    return layers


def module_of(dotted: str) -> str | None:
    """The entry of the layout a dotted stages.lib name is in (`sample/` for the package and what is in it)."""
    if not dotted.startswith("stages.lib."):
        return None
    first = dotted.removeprefix("stages.lib.").split(".")[0]
    return f"{first}/" if (LIB / first).is_dir() else f"{first}.py"


def imported(path: Path) -> set[str]:
    """The dotted names of everything `path` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from stages.lib import files`
    return names


def library() -> dict[str, set[str]]:
    """{layout entry: the entries of the library it imports}, a package's files together."""
    graph: dict[str, set[str]] = {}
    for path in LIB.rglob("*.py"):
        if path == LIB / "__init__.py":
            continue
        entry = module_of("stages.lib." + ".".join(path.relative_to(LIB).with_suffix("").parts))
        targets = {module_of(name) for name in imported(path)}
        graph.setdefault(entry, set()).update(t for t in targets if t and t != entry and (LIB / t).exists())
    return graph


LAYERS = documented_layers()
GRAPH = library()


def test_every_module_of_the_library_is_in_one_layer_and_every_entry_is_a_module():
    assert sorted(LAYERS) == sorted(GRAPH)
    assert set(LAYERS.values()) == set(range(1, max(LAYERS.values()) + 1))


def upward(graph: dict[str, set[str]], layers: dict[str, int]) -> dict[str, set[str]]:
    """{module: the modules of higher layers it imports}, for the modules that import any."""
    found = {module: {t for t in targets if layers[t] > layers[module]} for module, targets in graph.items()}
    return {module: targets for module, targets in found.items() if targets}


def circles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """Every circle of imports found by walking from each module, as the modules it passes."""

    def circle_from(module: str, path: tuple[str, ...]) -> tuple[str, ...] | None:
        for target in sorted(graph[module]):
            if target in path:
                return (*path[path.index(target) :], target)
            if found := circle_from(target, (*path, target)):
                return found
        return None

    return [circle for module in sorted(graph) if (circle := circle_from(module, (module,)))]


def test_a_module_imports_only_from_its_layer_and_those_below():
    assert upward(GRAPH, LAYERS) == {}


def test_the_first_layer_imports_nothing_of_the_project():
    first = {module: GRAPH[module] for module in GRAPH if LAYERS[module] == 1}
    assert {module: targets for module, targets in first.items() if targets} == {}


def test_no_modules_import_each_other_in_a_circle():
    assert circles(GRAPH) == []


def test_no_stage_script_is_imported_by_the_library_or_by_another_stage_script():
    scripts = {path.stem for path in (ROOT / "stages").glob("*.py") if path.stem != "__init__"}

    def scripts_imported(path: Path) -> set[str]:
        return {name.split(".")[1] for name in imported(path) if name.split(".")[:1] == ["stages"]} & scripts

    importers = [*LIB.rglob("*.py"), *((ROOT / "stages") / f"{name}.py" for name in scripts)]
    found = {path.relative_to(ROOT).as_posix(): scripts_imported(path) - {path.stem} for path in importers}
    assert {path: names for path, names in found.items() if names} == {}


def test_the_checks_find_an_upward_import_and_a_circle():
    """A made-up graph with one of each breaks them; the real graph is read from the code, lazy imports included."""
    graph, layers = {"a.py": {"b.py"}, "b.py": {"a.py"}, "c.py": {"a.py"}}, {"a.py": 1, "b.py": 2, "c.py": 2}
    assert upward(graph, layers) == {"a.py": {"b.py"}}
    assert circles(graph) == [("a.py", "b.py", "a.py"), ("b.py", "a.py", "b.py"), ("a.py", "b.py", "a.py")]
    assert circles({"a.py": {"b.py"}, "b.py": set()}) == []
    assert GRAPH["cli.py"] >= {"files.py", "lifecycle.py", "errors.py", "params_file.py"}  # `from stages.lib import x`
    assert "serving.py" in GRAPH["prediction.py"]  # imported inside a function
    assert GRAPH["sample/"] == {"files.py"}  # the package's own files are one entry
