"""The layers, kept: which package may import which, and no import loops.

``pipelines/`` is the framework (the ground floor): it never imports the
processor library (``processors/``) or the transports (``transports/``),
which reach it only through the registry. Processors and transports never
import each other. The agent server (``pipelines/server/``) is the top:
nothing else imports it but the commands that start a server. Every import
counts, those inside functions and ``TYPE_CHECKING`` blocks too; a failure
names the file and line of each import that breaks a rule.

No two modules import each other, directly or through others: the second
test reads module-level imports and finds every cycle; the third reads
every import that can run (inside functions too: a loop closed by a lazy
import is still a loop) and finds none either.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERED = ("pipelines", "processors", "transports")
SERVER = "pipelines.server"
#: Modules outside the server that may import it: the commands that start one.
STARTS_A_SERVER = ("pipelines.serve_command", "pipelines.eval_command", "pipelines.run_command")


def _modules() -> dict[str, Path]:
    """Every module of the layered packages by dotted name (a package by its ``__init__``)."""
    found = {}
    for top in LAYERED:
        for path in sorted((ROOT / top).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(module: str, path: Path, *, top_level_only: bool, runtime: bool = False) -> list[tuple[str, int]]:
    """(imported module, line) for each import in ``path``; relative imports resolved against ``module``.

    Every import, or (``top_level_only``) those that run on import, or
    (``runtime``) those that can run at all (``TYPE_CHECKING`` ones left out).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    nodes = _top_level(tree.body) if top_level_only else _runtime(tree) if runtime else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def _runtime(tree: ast.Module):
    """Every import statement that can run: in functions too, never under ``TYPE_CHECKING``."""
    def walk(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                yield from walk(node.orelse)
                continue
            yield node
            yield from walk(ast.iter_child_nodes(node))
    return walk(tree.body)


def _top_level(body: list[ast.stmt]):
    """Statements that run when the module is imported: not in functions or classes' methods, not under ``TYPE_CHECKING``."""
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from _top_level(node.orelse)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from _top_level(getattr(node, block, []))
            for handler in getattr(node, "handlers", []):
                yield from _top_level(handler.body)
        elif isinstance(node, ast.ClassDef):
            yield from _top_level(node.body)
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module ``name`` imports: itself, or the longest module prefix (``from m import a_name``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _broken_rule(importer: str, imported: str) -> str | None:
    """Why ``importer`` may not import ``imported``; None when it may."""
    low, high = importer.split(".")[0], imported.split(".")[0]
    if low == "pipelines" and high in ("processors", "transports"):
        return f"pipelines/ never imports {high}/ (reach it through the registry)"
    if {low, high} == {"processors", "transports"}:
        return "processors/ and transports/ never import each other"
    if _within(imported, SERVER) and not _within(importer, SERVER) and importer not in STARTS_A_SERVER:
        return "the server is the top: only it and the commands that start it import pipelines.server"
    return None


def test_no_import_crosses_a_layer():
    modules = _modules()
    broken = []
    for module, path in modules.items():
        for name, line in _imports(module, path, top_level_only=False):
            if name.split(".")[0] not in LAYERED:
                continue
            why = _broken_rule(module, name)
            if why:
                broken.append(f"{path.relative_to(ROOT)}:{line}: imports {name}: {why}")
    assert not broken, "imports that break the layers:\n" + "\n".join(broken)


def test_no_import_loops_at_module_level():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(name, modules) for name, _ in _imports(module, path, top_level_only=True)}
        graph[module] = {t for t in targets if t and t != module and not _within(module, t)}
    cycles = _cycles(graph)
    assert not cycles, "import loops at module level:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def test_no_loop_is_closed_by_an_import_inside_a_function():
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        targets = {_resolve(name, modules) for name, _ in _imports(module, path, top_level_only=False, runtime=True)}
        graph[module] = {t for t in targets if t and t != module and not _within(module, t)}
    cycles = _cycles(graph)
    assert not cycles, "import loops closed inside functions:\n" + "\n".join(" -> ".join([*c, c[0]]) for c in cycles)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_rules_catch_what_they_forbid():
    """The rule itself: each forbidden direction is named, each allowed one passes."""
    assert _broken_rule("pipelines.builder", "processors.tone")
    assert _broken_rule("pipelines.server.manager", "transports.client_messages")
    assert _broken_rule("transports.file.output", "processors.avatar.wire")
    assert _broken_rule("processors.tts.say", "transports.local")
    assert _broken_rule("pipelines.builder", "pipelines.server.app")
    assert _broken_rule("transports.webrtc", "pipelines.server.served")
    assert _broken_rule("processors.tone", "pipelines.registry") is None
    assert _broken_rule("pipelines.server.sessions_routes", "pipelines.registry") is None
    assert _broken_rule("pipelines.serve_command", "pipelines.server.app") is None
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
