"""The house (issue 12): its layers, one-way imports, no cycles, size limits.

Pure: it reads engine/ and tui/ with :mod:`ast` (tests/support/architecture.py) and imports
none of what it checks. The layering below is the map of the code; a new module must be placed
in it (a module in no layer fails the test), and an import from a layer to one above it fails.

Which imports count:
- at module level and inside functions (a lazy import runs too, later): both, for layers and
  cycles;
- under ``if TYPE_CHECKING:``: for the layers and for "engine never imports textual or tui", but
  not for cycles. Every module here has ``from __future__ import annotations``, so such an import
  is never run: it cannot load a module at import time nor make an import cycle; it lets two
  modules of one layer name each other's types (a manager entry and the requests it makes), which
  is the point of the guard. Across layers it is held to the same direction as any import.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.architecture import (
    Import,
    Layer,
    Module,
    import_cycles,
    imports_in,
    layer_index,
    long_classes,
    long_modules,
    read_tree,
    upward_imports,
)

REPO = Path(__file__).resolve().parents[2]
MODULE_LINES = 500
CLASS_LINES = 250

#: The house, lowest layer first: a module imports only from its own layer or the ones before.
LAYERS: tuple[Layer, ...] = (
    Layer("names: the shared vocabulary, errors, RFC timing (pure)", (
        "engine.protocols", "engine.codes", "engine.wire.addresses", "engine.types",
        "engine.device_info",
        "engine.lazy_exports",
        "engine.errors", "engine.epochs", "engine.timing",
    )),
    Layer("wire: NAT-PMP and PCP messages, the one request type (pure)", (
        "engine.wire.*", "engine.request",
    )),
    Layer("sans-IO core: exchange, window, negotiation, dialects (pure)", (
        "engine.exchange", "engine.window", "engine.negotiation", "engine.dialects.*",
    )),
    Layer("I/O: UDP transport, the announcement listener, discovery, UPnP over HTTP", (
        "engine.transport", "engine.timer_heap", "engine.udp", "engine.announce",
        "engine.discovery", "engine.upnp.*",
    )),
    Layer("client: the link to a gateway, GatewayClient, PortMapping, one-shot calls, and the "
          "same client driven without an event loop (BlockingClient)", (
        "engine.link", "engine.mapping", "engine.probe_result", "engine.igd_scout",
        "engine.client", "engine.oneshot", "engine.blocking", "engine.unrecorded_delete",
    )),
    Layer("manager: events, the mapping state table and its glue, records, the router view", (
        "engine.events", "engine.manager.*", "engine.mapping_record", "engine.statefile",
        "engine.router_view", "engine.router_source",
    )),
    Layer("public API: what `import engine` re-exports", ("engine",)),
    Layer("simulator: the simulated gateway for tests and the demo", ("engine.simulator.*",)),
    Layer("tui: the Textual app, its screens and widgets", ("tui.*",)),
    Layer("entry points: the command line, and the launch of the app from it", (
        "tui.cli.*", "tui.launch", "tui.__main__",
    )),
)

#: Violations in files other helpers are editing now: each is reported, and is removed by the
#: coordinator after the merge (a listed exception that no longer happens fails the test, so
#: it cannot outlive its fix).
KNOWN_LONG_MODULES: dict[str, str] = {}
KNOWN_LONG_CLASSES: dict[str, str] = {}
KNOWN_CYCLES: dict[tuple[str, ...], str] = {}
KNOWN_UPWARD: dict[tuple[str, str], str] = {}


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return read_tree(REPO, ["engine", "tui"])


@pytest.fixture(scope="module")
def imports(tree: dict[str, Module]) -> list[Import]:
    return [edge for module in tree.values() for edge in imports_in(module, tree)]


def _inner(imports: list[Import], tree: dict[str, Module]) -> list[Import]:
    return [edge for edge in imports if edge.imported in tree]


def test_every_module_has_a_layer(tree: dict[str, Module]) -> None:
    assert [name for name in tree if layer_index(name, LAYERS) is None] == []


def test_imports_run_one_way(tree: dict[str, Module], imports: list[Import]) -> None:
    upward = upward_imports(_inner(imports, tree), LAYERS)
    unexpected = [str(edge) for edge in upward
                  if (edge.importer, edge.imported) not in KNOWN_UPWARD]
    assert unexpected == []
    fixed = set(KNOWN_UPWARD) - {(edge.importer, edge.imported) for edge in upward}
    assert fixed == set(), "fixed: remove these from KNOWN_UPWARD"


def test_no_import_cycles(tree: dict[str, Module], imports: list[Import]) -> None:
    runtime = [edge for edge in _inner(imports, tree) if edge.where != "type_checking"]
    cycles = {tuple(group) for group in import_cycles(runtime)}
    assert sorted(cycles - set(KNOWN_CYCLES)) == []
    assert set(KNOWN_CYCLES) - cycles == set(), "fixed: remove these from KNOWN_CYCLES"


def test_engine_never_imports_textual_or_tui(imports: list[Import]) -> None:
    wrong = [str(edge) for edge in imports if edge.importer.split(".")[0] == "engine"
             and edge.imported.split(".")[0] in ("textual", "tui")]
    assert wrong == []


def test_modules_are_short(tree: dict[str, Module]) -> None:
    long = long_modules(tree, MODULE_LINES)
    assert {name: n for name, n in long.items() if name not in KNOWN_LONG_MODULES} == {}
    assert set(KNOWN_LONG_MODULES) - set(long) == set(), "fixed: remove from KNOWN_LONG_MODULES"


def test_classes_are_short(tree: dict[str, Module]) -> None:
    long = long_classes(tree, CLASS_LINES)
    assert {name: n for name, n in long.items() if name not in KNOWN_LONG_CLASSES} == {}
    assert set(KNOWN_LONG_CLASSES) - set(long) == set(), "fixed: remove from KNOWN_LONG_CLASSES"


# The checker itself, on small synthetic trees: each rule fails on a deliberate violation.

TOY_LAYERS = (Layer("low", ("pkg.low", "pkg.wire.*")), Layer("high", ("pkg.high", "pkg")))


def _toy(**sources: str) -> dict[str, Module]:
    modules = {}
    for dotted, text in sources.items():
        name = dotted.replace("__", ".")
        modules[name] = Module(name, text, is_package=name == "pkg")
    return modules


def _edges(modules: dict[str, Module]) -> list[Import]:
    return [edge for module in modules.values() for edge in imports_in(module, modules)]


def test_checker_resolves_relative_absolute_and_submodule_imports() -> None:
    toy = _toy(pkg="", pkg__low="from . import high\nfrom .wire.codec import x\n",
               pkg__high="import pkg.low\nfrom pkg import wire\n", pkg__wire="",
               pkg__wire__codec="from .. import low as lower\nimport textual.app\n")
    found = {(edge.importer, edge.imported) for edge in _edges(toy)}
    assert found == {("pkg.low", "pkg.high"), ("pkg.low", "pkg.wire.codec"),
                     ("pkg.high", "pkg.low"), ("pkg.high", "pkg.wire"),
                     ("pkg.wire.codec", "pkg.low"), ("pkg.wire.codec", "textual")}


def test_checker_marks_lazy_and_type_checking_imports() -> None:
    toy = _toy(pkg="", pkg__high="", pkg__low=(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .high import A\n"
        "def f():\n    from . import high\n"))
    where = sorted(edge.where for edge in _edges(toy) if edge.imported == "pkg.high")
    assert where == ["function", "type_checking"]


def test_checker_finds_an_upward_import_and_places_by_the_most_specific_entry() -> None:
    toy = _toy(pkg="", pkg__low="from .high import A\n", pkg__high="from .low import B\n",
               pkg__wire="", pkg__wire__codec="from pkg import high\n")
    assert layer_index("pkg.wire.codec", TOY_LAYERS) == 0
    assert layer_index("pkg", TOY_LAYERS) == 1
    assert layer_index("other", TOY_LAYERS) is None
    upward = {(edge.importer, edge.imported) for edge in upward_imports(_edges(toy), TOY_LAYERS)}
    assert upward == {("pkg.low", "pkg.high"), ("pkg.wire.codec", "pkg.high")}


def test_checker_finds_a_cycle_through_three_modules_and_none_in_a_chain() -> None:
    ring = _toy(pkg="", pkg__a="from . import b\n", pkg__b="from . import c\n",
                pkg__c="def f():\n    from . import a\n", pkg__d="from . import a\n")
    assert import_cycles(_edges(ring)) == [["pkg.a", "pkg.b", "pkg.c"]]
    chain = _toy(pkg="", pkg__a="from . import b\n", pkg__b="from . import c\n", pkg__c="")
    assert import_cycles(_edges(chain)) == []


def test_checker_measures_modules_and_classes() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(5))
    toy = _toy(pkg__big="class Big:\n" + body + "\n\nclass Small:\n    pass\n")
    assert long_modules(toy, 8) == {"pkg.big": 9}
    assert long_modules(toy, 9) == {}
    assert long_classes(toy, 5) == {"pkg.big.Big": 6}
