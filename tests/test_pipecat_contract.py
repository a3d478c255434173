"""The seam to pipecat: every private member it relies on exists, and no other module names one.

``pipelines/pipecat_compat.py`` is the one module allowed to touch pipecat's
private state. The first test fails naming each member the installed pipecat
lacks; the others read the repository's source and fail naming each place
outside the seam that touches a pipecat private attribute.
"""

import ast
import re
import sys
from functools import cache
from importlib import import_module
from pathlib import Path

import pipecat
from pipecat.frames.frames import TextFrame
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor

from pipelines import pipecat_compat as compat

ROOT = Path(__file__).resolve().parents[1]
SEAM = ROOT / "pipelines" / "pipecat_compat.py"
SCANNED = ("pipelines", "processors", "transports", "bench", "tests")
#: pipecat's name mangling: _ClassName__attribute.
MANGLED = re.compile(r"\b_[A-Z][A-Za-z0-9]*__[A-Za-z_]\w*")
#: Private attributes of other libraries that happen to share a pipecat name, by expression.
NOT_PIPECAT = {"ice.iceGatherer._connection": "aiortc's RTCIceGatherer (the WebRTC client closes its sockets)"}


def test_every_private_member_the_seam_relies_on_exists():
    missing = compat.missing_members()
    assert not missing, f"pipecat {compat.PIPECAT_VERSION} lacks what pipelines/pipecat_compat.py relies on: {missing}"


def test_the_seam_asserts_the_pipecat_series():
    assert compat.PIPECAT_VERSION.startswith(compat.PIPECAT_SERIES + ".")
    source = SEAM.read_text()
    assert "raise ImportError" in source and "PIPECAT_SERIES" in source


async def test_the_seam_reads_a_live_processors_queue_and_intercepts_it():
    processor = FrameProcessor(name="p")
    assert compat.queued_frames(processor) == [] and compat.current_frame(processor) is None
    pushed = []

    async def push(frame, direction=FrameDirection.DOWNSTREAM):
        pushed.append(frame)

    own = compat.intercept(processor, process_frame=processor.process_frame, push_frame=push,
                           start_interruption=processor._start_interruption)  # noqa: SLF001 (the seam's own test)
    frame = TextFrame("x")
    await processor.push_frame(frame)
    assert pushed == [frame] and callable(own.push_frame)
    compat.rename_processor(processor, "renamed")
    assert processor.name == "renamed"


@cache
def pipecat_private_names() -> frozenset[str]:
    """Every private (single-underscore, not dunder) attribute or method pipecat's source defines."""
    names: set[str] = set()
    for path in Path(pipecat.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_self(node.value):
                names.add(node.attr)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        names.add(item.name)
    return frozenset(n for n in names if n.startswith("_") and not n.startswith("__"))


def _is_self(node: ast.AST) -> bool:
    return isinstance(node, ast.Name) and node.id in ("self", "cls")


def _is_super(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"


def _sources() -> list[Path]:
    files = [p for folder in SCANNED for p in (ROOT / folder).rglob("*.py")]
    return sorted(p for p in files if p != SEAM and p != Path(__file__).resolve() and ".venv" not in p.parts)


@cache
def own_names(path: Path) -> frozenset[str]:
    """Private names a framegraph module's classes assign on ``self`` or define, and those of the framegraph modules it imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in SCANNED:
            imported = ROOT.joinpath(*node.module.split(".")).with_suffix(".py")
            if imported.is_file() and imported != path:
                names |= _defined(imported)
    return frozenset(names | _defined(path))


@cache
def _defined(path: Path) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_self(node.value):
            names.add(node.attr)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(node.name)
    return frozenset(names)


def test_no_module_outside_the_seam_names_a_pipecat_private_attribute_of_another_object():
    """``obj._member`` (obj not self) and getattr(obj, "_member") for pipecat's members, and mangled names.

    A module's own private names (what its classes assign on self or define)
    are its own, even when a pipecat class uses the same name.
    """
    found = []
    for path in _sources():
        text = path.read_text(encoding="utf-8")
        where = path.relative_to(ROOT)
        for match in MANGLED.finditer(text):
            found.append(f"{where}:{text.count(chr(10), 0, match.start()) + 1}: {match.group()}")
        foreign = pipecat_private_names() - own_names(path)
        for node in ast.walk(ast.parse(text)):
            if (isinstance(node, ast.Attribute) and node.attr in foreign and not _is_self(node.value)
                    and not _is_super(node.value) and ast.unparse(node) not in NOT_PIPECAT):
                found.append(f"{where}:{node.lineno}: .{node.attr}")
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                  and node.func.id in ("getattr", "setattr", "hasattr") and len(node.args) >= 2
                  and isinstance(node.args[1], ast.Constant) and node.args[1].value in foreign):
                found.append(f"{where}:{node.lineno}: {node.func.id}(..., {node.args[1].value!r})")
    assert not found, "pipecat private attributes outside pipelines/pipecat_compat.py:\n" + "\n".join(found)


def test_no_subclass_outside_the_seam_reads_the_private_state_the_seam_owns():
    """``self._member`` in a subclass of a class whose private ``_member`` the seam's CONTRACT lists."""
    owners: dict[str, list[type]] = {}
    for owner, member in compat.CONTRACT:
        owners.setdefault(member, []).append(owner if isinstance(owner, type) else owner())
    found = []
    for path, cls_node, cls in _framework_classes():
        for node in ast.walk(cls_node):
            if (isinstance(node, ast.Attribute) and _is_self(node.value) and node.attr in owners
                    and any(issubclass(cls, owner) for owner in owners[node.attr])):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {cls.__name__} reads self.{node.attr}")
    assert not found, "private pipecat state the seam owns, read outside it:\n" + "\n".join(found)


def test_every_protected_hook_a_framegraph_subclass_uses_is_declared_to_the_seam():
    """Overrides and reads of a pipecat base's protected members, so the contract test checks each of them."""
    declared = [(compat.hook_owner(path), set(members)) for path, members in compat.SUBCLASS_HOOKS.items()]
    undeclared = []
    for path, cls_node, cls in _pipecat_subclasses():
        assigned = {n.attr for n in ast.walk(cls_node)
                    if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and _is_self(n.value)}
        used = {n.attr for n in ast.walk(cls_node)
                if isinstance(n, ast.Attribute) and (_is_self(n.value) or _is_super(n.value))} - assigned
        used |= {n.name for n in cls_node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
        bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] == "pipecat"]
        for member in sorted(used & pipecat_private_names()):
            inherited = any(compat._defines(b, member) for b in bases)  # noqa: SLF001 (the seam's own helper)
            covered = any(issubclass(cls, owner) and member in members for owner, members in declared)
            if inherited and not covered:
                undeclared.append(f"{path.relative_to(ROOT)}: {cls.__name__} uses {member}")
    assert not undeclared, "add these to pipecat_compat.SUBCLASS_HOOKS:\n" + "\n".join(undeclared)


def _framework_classes():
    """(path, class node, class) for every class its module in pipelines/processors/transports defines."""
    for path in _sources():
        if path.parts[len(ROOT.parts)] not in ("pipelines", "processors", "transports"):
            continue
        module_name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        try:
            module = sys.modules.get(module_name) or import_module(module_name)
        except ImportError:  # an optional extra (daily, local) that is not installed here
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            cls = getattr(module, node.name, None) if isinstance(node, ast.ClassDef) else None
            if isinstance(cls, type):
                yield path, node, cls


def _pipecat_subclasses():
    """(path, class node, class) for every framework class with a pipecat base."""
    return ((path, node, cls) for path, node, cls in _framework_classes()
            if any(b.__module__.split(".")[0] == "pipecat" for b in cls.__mro__[1:]))


class _WithLongerName:
    def __init__(self):
        self._input_name = "in"


def test_a_member_is_defined_only_by_its_whole_name():
    """``self._input_name`` does not define ``_input`` (the seam's check matched substrings once)."""
    assert compat._defines(_WithLongerName, "_input_name")  # noqa: SLF001 (the seam's own helper)
    assert not compat._defines(_WithLongerName, "_input")  # noqa: SLF001


def test_no_framegraph_subclass_assigns_a_private_name_its_pipecat_base_owns():
    """A subclass's own state under a name pipecat's base also assigns would overwrite it (``FileInput._user_speaking`` did)."""
    declared = [(compat.hook_owner(path), set(members)) for path, members in compat.SUBCLASS_HOOKS.items()]
    shadowing = []
    for path, cls_node, cls in _pipecat_subclasses():
        assigned = {n.attr for n in ast.walk(cls_node)
                    if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and _is_self(n.value)
                    and n.attr.startswith("_") and not n.attr.startswith("__")}
        bases = [b for b in cls.__mro__[1:] if b.__module__.split(".")[0] == "pipecat"]
        for member in sorted(assigned):
            owned = any(compat._defines(b, member) for b in bases)  # noqa: SLF001 (the seam's own helper)
            covered = any(issubclass(cls, owner) and member in members for owner, members in declared)
            if owned and not covered:
                shadowing.append(f"{path.relative_to(ROOT)}: {cls.__name__} assigns self.{member}")
    assert not shadowing, "rename these (a pipecat base owns the name):\n" + "\n".join(shadowing)


async def test_answered_webrtc_audio_is_handed_on_one_packet_after_it_arrives():
    """``prompt_audio_receivers`` on an answered connection: its audio receiver releases each Opus packet when
    the next arrives; aiortc's own receiver waited for four more (80 ms of every word)."""
    from types import SimpleNamespace

    from aiortc import RTCPeerConnection
    from aiortc.rtp import RtpPacket

    def released(receiver) -> list[bool]:
        buffer = getattr(receiver, compat._AIORTC_JITTER_BUFFER)
        packets = [RtpPacket(sequence_number=n, timestamp=960 * n) for n in range(6)]
        for packet in packets:
            packet._data = b"opus"  # the depayloaded frame, as the receiver sets it before buffering
        return [buffer.add(packet)[1] is not None for packet in packets]

    pairs = []
    for _ in range(2):
        offerer, answerer = RTCPeerConnection(), RTCPeerConnection()
        offerer.addTransceiver("audio")
        await offerer.setLocalDescription(await offerer.createOffer())
        await answerer.setRemoteDescription(offerer.localDescription)
        pairs.append((offerer, answerer))
    try:
        (_, prompt), (_, default) = pairs
        assert compat.prompt_audio_receivers(SimpleNamespace(pc=prompt), 1) == 1
        assert released(prompt.getReceivers()[0]) == [False, True, True, True, True, True]
        assert released(default.getReceivers()[0]) == [False, False, False, False, True, True]
    finally:
        for pc in (pc for pair in pairs for pc in pair):
            await pc.close()
