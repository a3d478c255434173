"""Reads pipecat's STT, TTS and LLM service modules as source (``ast``), never importing them.

For each service class it finds: its constructor's keyword parameters with
their annotations, defaults and docstring descriptions (deprecated ones
left out), the fields of its ``Settings`` dataclass (bases followed across
modules), the pip extra its module asks for when its SDK is missing (the
``pipecat-ai[EXTRA]`` in the module's ``except ModuleNotFoundError`` message)
and the modules imported in that ``try`` (what must be installed).

Used by :mod:`processors.services.generate` to write the catalogue file; the
registry reads that file, so no command pays for parsing 1.8 MB of source.
"""

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import docstring_parser

KINDS = ("stt", "tts", "llm")
_SUFFIX = {"stt": "STTService", "tts": "TTSService", "llm": "LLMService"}
_EXTRA = re.compile(r"pipecat-ai\[([a-z0-9_-]+)\]")
#: Constructor parameters every catalogue type handles itself, or that take Python objects.
_HANDLED = {"self", "settings", "api_key", "name"}
#: Providers whose ``api_key`` defaults to None in pipecat but whose client SDK refuses to start
#: without one (the OpenAI SDK, which both use, raises "Missing credentials" even for a local base_url):
#: for them an unset key is a validation error, as ``framegraph check`` would find it when building.
CLIENT_NEEDS_KEY = frozenset({"openai", "perplexity"})


@dataclass
class Param:
    """One constructor keyword parameter."""

    name: str
    annotation: str
    default: str | None  # source text; None when required
    description: str = ""


@dataclass
class ServiceInfo:
    """What the catalogue records about one service class."""

    module: str
    cls: str
    kind: str
    provider: str
    params: list[Param] = field(default_factory=list)
    settings: dict[str, str] = field(default_factory=dict)  # field name -> annotation source
    settings_docs: dict[str, str] = field(default_factory=dict)
    extra: str | None = None
    requires: list[str] = field(default_factory=list)
    takes_api_key: bool = False
    api_key_required: bool = False
    summary: str = ""
    deprecated: bool = False
    accepts_kwargs: bool = True


def services_root() -> Path:
    """pipecat's ``services`` package folder, found without importing it."""
    spec = find_spec("pipecat.services")
    return Path(spec.submodule_search_locations[0])


@cache
def _tree(module: str) -> ast.Module | None:
    """The parsed source of a ``pipecat.*`` module, or None when it has no source file."""
    root = services_root().parent  # .../pipecat
    relative = module.split(".")[1:]
    for path in (root.joinpath(*relative).with_suffix(".py"), root.joinpath(*relative, "__init__.py")):
        if path.is_file():
            return ast.parse(path.read_text(encoding="utf-8"))
    return None


def _classes(module: str) -> dict[str, ast.ClassDef]:
    tree = _tree(module)
    return {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)} if tree else {}


def _imported_names(module: str) -> dict[str, str]:
    """Top-level ``from X import Name`` in ``module``: name -> X (pipecat modules only)."""
    tree = _tree(module)
    names: dict[str, str] = {}
    for node in tree.body if tree else ():
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipecat"):
            for alias in node.names:
                names[alias.asname or alias.name] = node.module
    return names


def _resolve_class(module: str, expr: ast.expr) -> tuple[str, ast.ClassDef] | None:
    """The class an expression names in ``module``: ``Name``, or ``Cls.Settings`` (a class attribute)."""
    if isinstance(expr, ast.Name):
        if expr.id in _classes(module):
            return module, _classes(module)[expr.id]
        source = _imported_names(module).get(expr.id)
        if source and expr.id in _classes(source):
            return source, _classes(source)[expr.id]
        return None
    if isinstance(expr, ast.Attribute):
        owner = _resolve_class(module, expr.value)
        if owner is None:
            return None
        owner_module, owner_cls = owner
        for node in owner_cls.body:
            if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == expr.attr for t in node.targets)):
                return _resolve_class(owner_module, node.value)
        for base in owner_cls.bases:  # inherited class attribute
            if (found := _resolve_class(owner_module, ast.Attribute(value=base, attr=expr.attr))) is not None:
                return found
    return None


def _is_deprecated(node: ast.AST) -> bool:
    doc = ast.get_docstring(node) or ""
    decorated = any("deprecated" in ast.unparse(d) for d in getattr(node, "decorator_list", ()))
    return decorated or ".. deprecated::" in doc


def _settings_fields(module: str, cls: ast.ClassDef, seen=None) -> tuple[dict[str, str], dict[str, str]]:
    """A settings dataclass's fields (bases first) with their annotations and documentation."""
    seen = seen or set()
    if (module, cls.name) in seen:
        return {}, {}
    seen.add((module, cls.name))
    fields: dict[str, str] = {}
    docs: dict[str, str] = {}
    for base in cls.bases:
        if (found := _resolve_class(module, base)) is not None:
            base_fields, base_docs = _settings_fields(*found, seen)
            fields.update(base_fields)
            docs.update(base_docs)
    for node in cls.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            name, annotation = node.target.id, ast.unparse(node.annotation)
            if not name.startswith("_") and "ClassVar" not in annotation:
                fields[name] = annotation
    parsed = docstring_parser.parse(ast.get_docstring(cls) or "")
    docs.update({p.arg_name: _one_line(p.description) for p in parsed.params if p.arg_name in fields})
    return fields, docs


def _one_line(text: str | None) -> str:
    return " ".join((text or "").split())


def _service_class_settings(module: str, cls: ast.ClassDef) -> tuple[dict[str, str], dict[str, str]]:
    """The fields of ``cls.Settings`` (own or inherited), or none."""
    found = _resolve_class(module, ast.Attribute(value=ast.Name(cls.name), attr="Settings"))
    return _settings_fields(*found) if found else ({}, {})


def _is_provider_module(module: str) -> bool:
    """``pipecat.services.PROVIDER.X``: a provider's module, not a core base like ``llm_service``."""
    return module.startswith("pipecat.services.") and module.count(".") >= 3


def _inits(module: str, cls: ast.ClassDef) -> list[tuple[str, ast.FunctionDef]]:
    """The ``__init__`` chain that builds ``cls``: the nearest one, then the base's while ``**kwargs`` passes on.

    Only provider modules count: the core bases' parameters (``LLMService``'s
    and the like) are pipecat plumbing, not provider options.
    """
    for node in cls.body:
        if isinstance(node, ast.FunctionDef) and node.name == "__init__":
            chain = [(module, node)]
            if node.args.kwarg is not None:
                for base in cls.bases:
                    found = _resolve_class(module, base)
                    if found is not None and _is_provider_module(found[0]):
                        chain += _inits(*found)
                        break
            return chain
    for base in cls.bases:
        found = _resolve_class(module, base)
        if found is not None and _is_provider_module(found[0]):
            return _inits(*found)
    return []


def _params(inits: list[tuple[str, ast.FunctionDef]]) -> list[Param]:
    """The constructor chain's keyword parameters (nearest first), without deprecated ones and those handled elsewhere."""
    params: dict[str, Param] = {}
    for _, init in inits:
        for param in _init_params(init):
            params.setdefault(param.name, param)
    return list(params.values())


def _init_params(init: ast.FunctionDef) -> list[Param]:
    parsed = {p.arg_name: p.description or "" for p in docstring_parser.parse(ast.get_docstring(init) or "").params}
    params = []
    for arg, default in _arguments(init):
        description = parsed.get(arg.arg, "")
        if arg.arg in _HANDLED or ".. deprecated::" in description or "deprecated" in description.lower()[:80]:
            continue
        params.append(Param(
            name=arg.arg,
            annotation=ast.unparse(arg.annotation) if arg.annotation else "Any",
            default=ast.unparse(default) if default is not None else None,
            description=_one_line(description.split(".. ")[0]),
        ))
    return params


def _arguments(init: ast.FunctionDef) -> list[tuple[ast.arg, ast.expr | None]]:
    """(argument, default or None) for every named parameter of ``init``."""
    args = init.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    return list(zip(positional, defaults, strict=False)) + list(zip(args.kwonlyargs, args.kw_defaults, strict=False))


def _api_key(inits: list[tuple[str, ast.FunctionDef]]) -> tuple[bool, bool]:
    """(takes ``api_key``, must be given): the first ``__init__`` in the chain that names it decides."""
    for _, init in inits:
        for arg, default in _arguments(init):
            if arg.arg == "api_key":
                return True, default is None
    return False, False


def _sdk_requirements(module: str) -> tuple[str | None, list[str]]:
    """(pip extra, third-party top-level modules) from the module's guarded SDK import."""
    tree = _tree(module)
    for node in tree.body if tree else ():
        if not isinstance(node, ast.Try):
            continue
        message = " ".join(ast.unparse(h) for h in node.handlers)
        if (match := _EXTRA.search(message)) is None:
            continue
        modules = set()
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.module and statement.level == 0:
                modules.add(statement.module)
            elif isinstance(statement, ast.Import):
                modules.update(alias.name for alias in statement.names)
        # Two levels are enough to tell a namespace package's parts apart (google.cloud, google.genai).
        prefixes = {".".join(m.split(".")[:2]) for m in modules if m.split(".")[0] != "pipecat"}
        return match.group(1), sorted(prefixes)
    return None, []


def _unguarded_sdk(module: str, provider: str) -> list[str]:
    """Top-level imports of the provider's own SDK outside a guarded ``try`` (``from camb.client import ...``)."""
    tree = _tree(module)
    modules = set()
    for node in tree.body if tree else ():
        names = [node.module] if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 else (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [])
        modules.update(n.split(".")[0] for n in names if n.split(".")[0].startswith(provider))
    return sorted(modules)


def _requirements(module: str, seen: set[str] | None = None) -> tuple[str | None, list[str]]:
    """The extra and SDK modules of ``module`` and of the pipecat service modules it builds on."""
    seen = seen if seen is not None else set()
    seen.add(module)
    extra, modules = _sdk_requirements(module)
    for source in sorted(set(_imported_names(module).values())):
        if _is_provider_module(source) and source not in seen:
            base_extra, base_modules = _requirements(source, seen)
            extra = extra or base_extra
            modules = sorted(set(modules) | set(base_modules))
    return extra, modules


def module_deprecated(module: str) -> bool:
    """Whether a module's docstring marks the whole module deprecated."""
    tree = _tree(module)
    return tree is not None and ".. deprecated::" in (ast.get_docstring(tree) or "")


def service_modules() -> list[tuple[str, str, str]]:
    """(provider, kind, dotted module) for every ``services/PROVIDER/{stt,tts,llm}.py``."""
    root = services_root()
    found = []
    for kind in KINDS:
        for path in sorted(root.glob(f"*/{kind}.py")):
            found.append((path.parent.name, kind, f"pipecat.services.{path.parent.name}.{kind}"))
    return found


def read_module(provider: str, kind: str, module: str) -> list[ServiceInfo]:
    """The public service classes ``module`` defines for ``kind``."""
    services = []
    extra, requires = _requirements(module)
    if not extra and (unguarded := _unguarded_sdk(module, provider)):
        extra, requires = provider, unguarded
    for name, cls in _classes(module).items():
        if name.startswith("_") or not name.endswith(_SUFFIX[kind]):
            continue
        inits = _inits(module, cls)
        if not inits:
            continue
        takes_key, key_required = _api_key(inits)
        key_required = key_required or (takes_key and provider in CLIENT_NEEDS_KEY)
        settings, settings_docs = _service_class_settings(module, cls)
        services.append(ServiceInfo(
            module=module,
            cls=name,
            kind=kind,
            provider=provider,
            params=_params(inits),
            accepts_kwargs=all(init.args.kwarg is not None for _, init in inits[-1:]),
            settings=settings,
            settings_docs=settings_docs,
            extra=extra,
            requires=requires,
            takes_api_key=takes_key,
            api_key_required=key_required,
            summary=_one_line((ast.get_docstring(cls) or name).split("\n\n")[0]),
            deprecated=_is_deprecated(cls),
        ))
    return services


def api_key_env(entry: dict) -> str:
    """The environment variable holding a catalogue type's API key: ``PROVIDER_API_KEY``."""
    return f"{entry['provider'].upper()}_API_KEY"


def to_json(info: ServiceInfo) -> dict[str, Any]:
    """The catalogue entry of one service (JSON-ready)."""
    return {
        "module": info.module,
        "class": info.cls,
        "kind": info.kind,
        "provider": info.provider,
        "summary": info.summary,
        "extra": info.extra,
        "requires": info.requires,
        "api_key": "required" if info.api_key_required else ("optional" if info.takes_api_key else None),
        "accepts_kwargs": info.accepts_kwargs,
        "params": [vars(p) for p in info.params],
        "settings": [{"name": k, "annotation": v, "description": info.settings_docs.get(k, "")}
                     for k, v in info.settings.items()],
    }
