"""The package's shape, checked by ``make lint``: at most ``MAX_ENTRIES`` entries at
the top of ``bridge/`` (the path at a glance), no import cycle between its modules
(type-only imports count too), no module over the size limit, no more than a
budget of places in ``bridge/`` that repeat each other, and delivery built by
composition: no class in ``bridge/delivery/`` subclasses a concrete class of the
bridge (protocols and abstract bases are contracts, and may be implemented).

A *repeat* is a run of at least ``RUN`` consecutive significant lines that
stands, to the letter but for indentation, in two places. Blank lines, comments
and lines of punctuation alone do not count; imports and ``__all__`` neither,
they declare what a module uses and offers. Each pair of files sharing one or
more runs counts once (a file can pair with itself). The budget only goes down.

Usage: ``python -m tests.support.layout bridge`` (exit status 1 over a limit).
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "FORMER_PATHS",
    "MAX_ENTRIES",
    "MAX_LINES",
    "PAIR_BUDGET",
    "RUN",
    "Repeat",
    "concrete_subclasses",
    "entries",
    "import_cycles",
    "oversized",
    "repeats",
]

MAX_ENTRIES = 14
# Plugins written against the paths before the package was reshaped keep working:
# these modules only re-export bridge.plugin, and are not counted as entries.
FORMER_PATHS = frozenset({"events.py", "formats.py", "plugins.py", "profiles.py"})
MAX_LINES = 500
PAIR_BUDGET = 2
RUN = 6

_TRIVIAL = re.compile(r"^[\s()\[\]{},:;.]*$")
_SKIPPED = ("#", "import ", "from ")


@dataclass(frozen=True, slots=True)
class Repeat:
    """Two files that share at least one run; ``lines`` are 1-based starts of one run."""

    first: str
    second: str
    lines: tuple[int, int]


def _significant(path: Path) -> list[tuple[int, str]]:
    kept: list[tuple[int, str]] = []
    in_declaration = False  # a parenthesised import, or the __all__ list
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if in_declaration:
            in_declaration = not line.startswith((")", "]"))
            continue
        if line.startswith(_SKIPPED) or line.startswith("__all__ ="):
            in_declaration = line.endswith(("(", "["))
            continue
        if line and not _TRIVIAL.match(line):
            kept.append((number, line))
    return kept


def _sources(root: Path) -> Iterable[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def repeats(root: Path, *, run: int = RUN) -> list[Repeat]:
    """Each pair of files under ``root`` that shares a run, with one run's place."""
    windows: dict[bytes, list[tuple[str, int, int]]] = defaultdict(list)
    for path in _sources(root):
        name = path.relative_to(root).as_posix()
        lines = _significant(path)
        for i in range(len(lines) - run + 1):
            text = "\n".join(line for _, line in lines[i : i + run])
            key = hashlib.blake2b(text.encode(), digest_size=16).digest()
            windows[key].append((name, i, lines[i][0]))
    found: dict[tuple[str, str], Repeat] = {}
    for places in windows.values():
        for a, (file_a, index_a, line_a) in enumerate(places):
            for file_b, index_b, line_b in places[a + 1 :]:
                if file_a == file_b and abs(index_a - index_b) < run:
                    continue  # a run overlapping itself (a repeated line) is no repeat
                pair = (file_a, file_b) if file_a <= file_b else (file_b, file_a)
                found.setdefault(pair, Repeat(pair[0], pair[1], (line_a, line_b)))
    return sorted(found.values(), key=lambda r: (r.first, r.second))


def entries(root: Path) -> list[str]:
    """What the top of the package holds, packages and modules alike (caches and the
    former plugin paths left out)."""
    return sorted(
        p.name
        for p in root.iterdir()
        if p.name != "__pycache__" and not p.name.startswith(".") and p.name not in FORMER_PATHS
    )


def import_cycles(package: str) -> list[list[str]]:
    """Groups of modules of ``package`` that import each other, directly or in a ring
    (strongly connected components of the import graph, ``TYPE_CHECKING`` imports
    included); empty when the imports form no cycle."""
    import grimp  # the import graph import-linter reads; only this check needs it

    graph = grimp.build_graph(package, cache_dir=None)
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph.modules):
        if start in order:
            continue
        # Tarjan's algorithm, iteratively: (module, the imports still to visit).
        work = [(start, iter(sorted(graph.find_modules_directly_imported_by(start))))]
        order[start] = low[start] = len(order)
        stack.append(start)
        on_stack.add(start)
        while work:
            module, pending = work[-1]
            target = next(pending, None)
            if target is not None:
                if target not in order:
                    order[target] = low[target] = len(order)
                    stack.append(target)
                    on_stack.add(target)
                    imported = sorted(graph.find_modules_directly_imported_by(target))
                    work.append((target, iter(imported)))
                elif target in on_stack:
                    low[module] = min(low[module], order[target])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[module])
            if low[module] == order[module]:
                group: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == module:
                        break
                if len(group) > 1:
                    found.append(sorted(group))
    return found


def concrete_subclasses(package: str) -> list[str]:
    """``module.Class(Base)`` for each class defined in ``package`` that inherits from a
    concrete class of the bridge (not a ``Protocol``, not abstract)."""
    import importlib
    import inspect
    import pkgutil

    found: list[str] = []
    root = importlib.import_module(package)
    names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, prefix=f"{package}.")]
    for name in names:
        module = importlib.import_module(name)
        for cls_name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name:
                continue  # imported here, defined elsewhere
            for base in cls.__mro__[1:]:
                ours = base.__module__.split(".")[0] == package.split(".", maxsplit=1)[0]
                contract = getattr(base, "_is_protocol", False) or inspect.isabstract(base)
                if ours and not contract:
                    found.append(f"{name}.{cls_name}({base.__module__}.{base.__qualname__})")
    return found


def oversized(root: Path, *, limit: int = MAX_LINES) -> list[tuple[str, int]]:
    """Modules over ``limit`` lines."""
    sizes = [
        (p.relative_to(root).as_posix(), len(p.read_bytes().splitlines())) for p in _sources(root)
    ]
    return [(name, size) for name, size in sizes if size > limit]


def main(argv: list[str]) -> int:
    root = Path(argv[0] if argv else "bridge")
    problems = [
        f"{name}: {size} lines (the limit is {MAX_LINES})" for name, size in oversized(root)
    ]
    top = entries(root)
    if len(top) > MAX_ENTRIES:
        problems.append(f"{len(top)} entries at the top (the limit is {MAX_ENTRIES}): {top}")
    problems += [f"import cycle: {' -> '.join(group)}" for group in import_cycles(root.name)]
    problems += [
        f"concrete subclassing in delivery (compose instead): {found}"
        for found in concrete_subclasses(f"{root.name}.delivery")
    ]
    found = repeats(root)
    if len(found) > PAIR_BUDGET:
        problems.append(
            f"{len(found)} pairs of files repeat {RUN}+ lines (the budget is {PAIR_BUDGET}):"
        )
        problems += [f"  {r.first}:{r.lines[0]} ~ {r.second}:{r.lines[1]}" for r in found]
    for problem in problems:
        print(problem)
    if not problems:
        print(f"layout ok: no module over {MAX_LINES} lines, {len(found)} repeated pairs")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
