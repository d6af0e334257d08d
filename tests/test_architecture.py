"""The import graph of sr_bench has one direction: no cycles (function-local imports count, so a
hidden cycle fails too), no function-local import of an sr_bench module without a stated reason,
every module in one layer and no module importing a layer above its own; docs/architecture.md
shows the graph as it is. The graph is read from the source (see tests/import_graph.py)."""

from __future__ import annotations

import textwrap

import pytest
from import_graph import (
    ALLOWED_LOCAL_IMPORTS,
    DOC,
    LAYERS,
    edges,
    find_cycle,
    import_graph,
    imports_of,
    layer_of,
    render_layers,
)


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_graph_sees_the_package(graph):
    """A reader that found nothing would pass every check below: pin a few known edges."""
    adjacency = edges(graph)
    assert len(graph) > 50
    assert "sr_bench.models.registry" in adjacency["sr_bench.models.external"]
    assert {"sr_bench.scoring", "sr_bench.sr_folder"} <= adjacency["sr_bench.evaluate"]
    assert "sr_bench.errors" in adjacency["sr_bench.paths"]
    # importing sr_bench.train.config runs sr_bench/train/__init__.py first
    assert "sr_bench.train" in adjacency["sr_bench.reproduce"]


def test_no_import_cycles(graph):
    cycle = find_cycle(edges(graph))
    assert cycle is None, (
        "import cycle " + " -> ".join(cycle) + ": move what both modules need into a module below both "
        "(see docs/architecture.md), a function-local import only hides the cycle"
    )


def test_function_local_imports_are_allowed_only_with_a_reason(graph):
    local = {(i.importer, i.imported): i.line for imports in graph.values() for i in imports
             if i.local and not i.implicit}
    unexplained = sorted(f"{a} line {line} imports {b}" for (a, b), line in local.items()
                         if (a, b) not in ALLOWED_LOCAL_IMPORTS)
    assert not unexplained, (
        "function-local imports of sr_bench modules: " + "; ".join(unexplained) + ". Import them at module "
        "level; if that makes a cycle, fix the layering; if a heavy optional dependency is the reason, add "
        "the pair with its reason to ALLOWED_LOCAL_IMPORTS in tests/import_graph.py"
    )
    stale = sorted(set(ALLOWED_LOCAL_IMPORTS) - set(local))
    assert not stale, f"ALLOWED_LOCAL_IMPORTS lists imports that are gone: {stale}"
    assert all(reason.strip() for reason in ALLOWED_LOCAL_IMPORTS.values())


def test_every_module_has_one_layer(graph):
    homeless = sorted(m for m in graph if layer_of(m) is None)
    assert not homeless, f"put {homeless} in one layer of LAYERS in tests/import_graph.py (docs/architecture.md)"


def test_imports_point_down_the_layers(graph):
    layer = {m: layer_of(m) for m in graph}  # a module without a layer fails the test above, not this one
    upward = sorted(
        f"{i.importer} ({LAYERS[layer[i.importer]][0]}) imports {i.imported} ({LAYERS[layer[i.imported]][0]})"
        for imports in graph.values() for i in imports
        if layer[i.importer] is not None and layer[i.imported] is not None and layer[i.imported] > layer[i.importer]
    )
    assert not upward, "imports against the layers: " + "; ".join(upward)


def test_docs_show_the_real_graph(graph):
    text = DOC.read_text(encoding="utf-8")
    assert render_layers(graph) in text, (
        "docs/architecture.md's layer listing is not the import graph: run python tests/import_graph.py --write"
    )


# ----------------------------------------------------------------------------------------------
# The reader itself, on a throwaway package: the cases the checks above depend on


def _write(root, files):
    for name, source in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))


def test_reader_finds_hidden_cycles_relative_and_parent_imports(tmp_path):
    pkg = tmp_path / "sr_bench"
    _write(pkg, {
        "__init__.py": "",
        "a.py": "from sr_bench import b\n",
        "b.py": "def f():\n    from sr_bench.a import thing\n",  # the hidden half of a cycle
        "sub/__init__.py": "from . import leaf\n",
        "sub/leaf.py": "from ..a import thing\nfrom .other import x\n",
        "sub/other.py": "",
        "c.py": "import sr_bench.sub.leaf\nclass K:\n    import sr_bench.b\n",
    })
    graph = import_graph(pkg)
    adjacency = edges(graph)
    assert adjacency["sr_bench.a"] == {"sr_bench.b"}
    (hidden,) = graph["sr_bench.b"]
    assert (hidden.imported, hidden.local, hidden.line) == ("sr_bench.a", True, 2)
    assert find_cycle(adjacency) == ["sr_bench.a", "sr_bench.b", "sr_bench.a"]
    assert adjacency["sr_bench.sub"] == {"sr_bench.sub.leaf"}
    assert adjacency["sr_bench.sub.leaf"] == {"sr_bench.a", "sr_bench.sub.other"}  # own package: no edge up
    assert adjacency["sr_bench.c"] == {"sr_bench.sub.leaf", "sr_bench.sub", "sr_bench.b"}
    assert not any(i.local for i in graph["sr_bench.c"])  # a class body runs at import time


def test_find_cycle_on_an_acyclic_graph():
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_imports_of_ignores_other_packages(tmp_path):
    _write(tmp_path / "sr_bench", {"m.py": "import os\nimport sr_benchmark\nfrom torch import nn\n"})
    modules = {"sr_bench.m": tmp_path / "sr_bench" / "m.py"}
    assert imports_of("sr_bench.m", modules["sr_bench.m"], modules) == []
