"""The package's shape: the checks ``make lint`` runs (tests.support.layout), and the
store's one list of operations every backend must provide."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from bridge.store import base
from bridge.store.sqlite import ops as sqlite_ops
from tests.support.layout import (
    MAX_ENTRIES,
    MAX_LINES,
    PAIR_BUDGET,
    concrete_subclasses,
    entries,
    import_cycles,
    oversized,
    repeats,
)

ROOT = Path(__file__).resolve().parents[1] / "bridge"

_BLOCK = """def handle(request):
    query = request.query
    cursor = query.get("cursor")
    page = store.list(cursor=cursor, limit=limit)
    if page.more:
        cursor = page.cursor
    return json_response(page, cursor)
"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    return tmp_path


def test_a_block_written_twice_is_one_pair_whatever_its_indentation(tmp_path: Path) -> None:
    indented = "".join("    " + line + "\n" for line in _BLOCK.splitlines())
    root = _tree(tmp_path, {"a.py": _BLOCK, "b.py": "class C:\n" + indented, "c.py": "x = 1\n"})
    found = repeats(root)
    assert [(r.first, r.second) for r in found] == [("a.py", "b.py")]
    assert found[0].lines == (1, 2)


def test_imports_all_lists_comments_and_punctuation_are_no_repeats(tmp_path: Path) -> None:
    declarations = (
        "from x import (\n    a,\n    b,\n    c,\n    d,\n    e,\n    f,\n)\n"
        '__all__ = [\n    "a",\n    "b",\n    "c",\n    "d",\n    "e",\n    "f",\n]\n'
        + "# same\n" * 8
        + ")\n" * 8
    )
    root = _tree(tmp_path, {"a.py": declarations, "b.py": declarations})
    assert repeats(root) == []


def test_a_run_overlapping_itself_is_not_a_repeat(tmp_path: Path) -> None:
    # Nine equal lines hold windows of six at 0..3: each overlaps the others.
    root = _tree(tmp_path, {"a.py": "total += 1\n" * 9})
    assert repeats(root) == []


def test_a_module_over_the_limit_is_named(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"big.py": "x = 1\n" * (MAX_LINES + 1), "ok.py": "x = 1\n"})
    assert oversized(root) == [("big.py", MAX_LINES + 1)]


def test_the_package_keeps_its_limits() -> None:
    assert len(entries(ROOT)) <= MAX_ENTRIES, entries(ROOT)
    assert import_cycles("bridge") == []
    assert concrete_subclasses("bridge.delivery") == []
    assert oversized(ROOT) == []
    assert len(repeats(ROOT)) <= PAIR_BUDGET


def test_a_backend_without_every_operation_is_refused_when_defined() -> None:
    partial = ModuleType("partial")
    for name in base.OPERATIONS - {"ingest"}:
        setattr(partial, name, getattr(sqlite_ops, name, None) or (lambda *_: None))

    with pytest.raises(TypeError, match="ingest"):

        class Incomplete(base.Store):
            _sources: ClassVar[tuple[ModuleType, ...]] = (partial,)

            async def _run(self, work: Any, *, action: str, write: bool = True) -> Any: ...

            async def open(self) -> None: ...

            async def close(self) -> None: ...


def test_a_ring_of_imports_is_a_cycle_even_when_type_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ring").mkdir()
    _tree(
        tmp_path,
        {
            "ring/__init__.py": "",
            "ring/a.py": "from ring import b\n",
            "ring/b.py": "import typing\nif typing.TYPE_CHECKING:\n    from ring import c\n",
            "ring/c.py": "import ring.a\n",
            "ring/d.py": "from ring import a\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles("ring") == [["ring.a", "ring.b", "ring.c"]]


def test_delivery_composes_it_never_subclasses_a_concrete_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "shop").mkdir()
    (tmp_path / "shop" / "parts").mkdir()
    _tree(
        tmp_path,
        {
            "shop/__init__.py": "",
            "shop/base.py": (
                "import abc, typing\n"
                "class Engine:\n    pass\n"
                "class Sending(typing.Protocol):\n    def start(self) -> None: ...\n"
                "class Shape(abc.ABC):\n    @abc.abstractmethod\n    def draw(self) -> None: ...\n"
            ),
            "shop/parts/__init__.py": "",
            "shop/parts/cars.py": (
                "from shop.base import Engine, Sending, Shape\n"
                "class Car(Engine):\n    pass\n"
                "class Single:\n    def start(self) -> None: ...\n"
                "class Sends(Sending):\n    def start(self) -> None: ...\n"
                "class Circle(Shape):\n    def draw(self) -> None: ...\n"
                "class Fault(ValueError):\n    pass\n"
            ),
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert concrete_subclasses("shop.parts") == ["shop.parts.cars.Car(shop.base.Engine)"]
