"""Read the tensors of a TorchScript archive (OpenAI's ``ViT-B-32.pt``) without running anything.

``torch.jit.load`` compiles the archive's ``code/`` and runs it (a scripted ``__setstate__`` runs
at load time), so a downloaded checkpoint could execute code. This reader never does: it opens
the zip, reads ``data.pkl`` with a restricted unpickler that builds only tensors (from the
archive's own ``data/<key>`` storages), plain containers and inert placeholders for the
``__torch__`` module objects, and refuses every other global by name. The code files are only
*parsed* (``ast``, never compiled) to learn which attributes of each module are parameters and
buffers, which is what ``ScriptModule.state_dict()`` returns.

A class whose code defines ``__setstate__`` restores itself by running that code; its state is
not plain attributes, so such an archive is refused rather than guessed at.

The pickle's ``BUILD`` opcode is accepted only on the module stand-ins: on a tensor it would call
``Tensor.__setstate__`` (``set_``), which re-points a checked tensor at any size and stride. Every
tensor handed out is checked once more against its storage (size, stride, offset) at the end.
"""

from __future__ import annotations

import ast
import io
import math
import pickle
import struct
import zipfile
from collections import OrderedDict
from typing import ClassVar

import torch

MAX_PICKLE_BYTES = 64 * 1024 * 1024  # data.pkl of ViT-L-14@336px is well under 1 MiB


class TorchScriptError(ValueError):
    """The archive is not one this reader accepts; the message names the file and the reason."""


# Storage class names in persistent ids (``torch.FloatStorage`` ...) -> dtype.
_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    """What ``torch.<X>Storage`` unpickles to here: only its dtype, never torch's class."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class ScriptObject:
    """Inert stand-in for one ``__torch__`` object: its class name and its attribute dict."""

    qualname = "?"

    def __init__(self, *args):
        self.state = None

    def __setstate__(self, state):  # BUILD: keep the attributes, run nothing
        self.state = state


def _is_int(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler (its opcodes can be overridden; data.pkl is small) with ``BUILD``
    restricted to :class:`ScriptObject` and only the globals of ``_ALLOWED``."""

    dispatch: ClassVar[dict] = dict(pickle._Unpickler.dispatch)

    def __init__(self, data: bytes, archive: _Archive):
        super().__init__(io.BytesIO(data))
        self.archive = archive
        self.classes: dict[str, type] = {}
        self.storages: dict[str, torch.Tensor] = {}

    def load_build(self):
        target = self.stack[-2] if len(self.stack) >= 2 else None
        if not isinstance(target, ScriptObject):
            raise TorchScriptError(
                f"{self.archive.path}: data.pkl sets the state of a {type(target).__name__} (BUILD); only module "
                f"objects have a state; refused")
        super().load_build()

    dispatch[pickle.BUILD[0]] = load_build

    def find_class(self, module: str, name: str):
        if module == "__torch__" or module.startswith("__torch__."):
            qual = f"{module}.{name}"
            if qual not in self.classes:
                self.archive.check_class(qual)
                self.classes[qual] = type(name, (ScriptObject,), {"qualname": qual, "__slots__": ()})
            return self.classes[qual]
        allowed = _ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise TorchScriptError(
            f"{self.archive.path}: data.pkl names {module}.{name}, which is neither a tensor, a plain "
            f"container nor a module attribute; refused (nothing from the archive was run)"
        )

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchScriptError(f"{self.archive.path}: unexpected persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel):
            raise TorchScriptError(f"{self.archive.path}: malformed storage reference {str(pid)[:80]}")
        if key not in self.storages:
            self.storages[key] = self.archive.storage(key, storage_type.dtype, numel)
        return self.storages[key]


def _check_geometry(storage_numel: int, storage_offset, size, stride) -> None:
    """A view's geometry must fit its storage: no more elements than the storage holds (a
    stride-0 view of 10^12 elements would be cloned), and its last element inside it (as_strided
    would read past the end)."""
    if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_is_int(v) and v >= 0 for v in (storage_offset, *size, *stride))):
        raise pickle.UnpicklingError(f"malformed tensor geometry size={str(size)[:80]} stride={str(stride)[:80]}")
    if math.prod(size) > storage_numel:
        raise pickle.UnpicklingError(f"tensor of size {size} has more elements than its storage")
    if all(size):
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= storage_numel:
            raise pickle.UnpicklingError(f"tensor of size {size} reaches element {last} of a storage of {storage_numel}")


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    *rest):
    if not isinstance(storage, torch.Tensor):
        raise pickle.UnpicklingError("tensor rebuilt from something that is not a storage")
    _check_geometry(storage.numel(), storage_offset, size, stride)
    view = torch.as_strided(storage, size, stride, storage_offset)
    # a tensor that is its whole storage, laid out contiguously, needs no copy
    whole = storage_offset == 0 and math.prod(size) == storage.numel() and view.is_contiguous()
    return view if whole else view.clone()


def _identity(value, *_):
    return value


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _identity,
    ("collections", "OrderedDict"): OrderedDict,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch.jit._pickle", "restore_type_tag"): _identity,
}


class _Archive:
    """The zip: its folder prefix, its storages and the parsed (never compiled) class definitions."""

    def __init__(self, path, zf: zipfile.ZipFile):
        self.path = path
        self.zf = zf
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(pkl) != 1:
            raise TorchScriptError(f"{path}: not a TorchScript archive (no <name>/data.pkl)")
        self.prefix = pkl[0][: -len("data.pkl")]
        self.names = set(names)
        byteorder = self.prefix + "byteorder"
        if byteorder in self.names and zf.read(byteorder).strip() not in (b"little", b""):
            raise TorchScriptError(f"{path}: big-endian archives are not supported")
        self._classes: dict[str, ast.ClassDef | None] = {}

    def storage(self, key: str, dtype: torch.dtype, numel: int) -> torch.Tensor:
        name = f"{self.prefix}data/{key}"
        if name not in self.names:
            raise TorchScriptError(f"{self.path}: storage {key!r} is referenced but not in the archive")
        info = self.zf.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED and info.file_size > 100 * max(info.compress_size, 1024):
            raise TorchScriptError(f"{self.path}: storage {key!r} would expand {info.file_size} bytes from "
                                   f"{info.compress_size}; refused")
        itemsize = torch.empty(0, dtype=dtype).element_size()
        if info.file_size != numel * itemsize:
            raise TorchScriptError(
                f"{self.path}: storage {key!r} holds {info.file_size} bytes, {numel} x {itemsize} expected"
            )
        if not info.file_size:
            return torch.empty(0, dtype=dtype)
        raw = bytearray(info.file_size)
        with self.zf.open(name) as f:  # read straight into one buffer (no second copy of the bytes)
            if f.readinto(raw) != info.file_size:
                raise TorchScriptError(f"{self.path}: storage {key!r} is shorter than its zip entry says")
        return torch.frombuffer(raw, dtype=dtype)

    def class_def(self, qualname: str) -> ast.ClassDef | None:
        """The ``class`` statement of ``__torch__.a.b.C`` in ``code/__torch__/a/b.py`` (parsed only)."""
        if qualname not in self._classes:
            module, _, name = qualname.rpartition(".")
            found = None
            for candidate in (module, qualname):  # mangled names live in their own file or the module's
                file = f"{self.prefix}code/{candidate.replace('.', '/')}.py"
                if file in self.names:
                    try:
                        tree = ast.parse(self.zf.read(file).decode("utf-8"))
                    except (SyntaxError, UnicodeDecodeError, ValueError, RecursionError, MemoryError):
                        raise TorchScriptError(f"{self.path}: {file} is not readable code") from None
                    found = next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name), None)
                    if found is not None:
                        break
            self._classes[qualname] = found
        return self._classes[qualname]

    def check_class(self, qualname: str) -> None:
        cls = self.class_def(qualname)
        if cls is None:
            return
        for node in cls.body:
            if isinstance(node, ast.FunctionDef) and node.name == "__setstate__":
                raise TorchScriptError(
                    f"{self.path}: class {qualname} defines __setstate__, code that would run at load; "
                    f"refused (nothing from the archive was run)"
                )

    def tensor_attributes(self, qualname: str) -> set[str] | None:
        """Names in the class's ``__parameters__`` and ``__buffers__`` lists; None when unknown."""
        cls = self.class_def(qualname)
        if cls is None:
            return None
        names: set[str] = set()
        seen = False
        for node in cls.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
            if isinstance(target, ast.Name) and target.id in ("__parameters__", "__buffers__"):
                seen = True
                try:
                    names.update(str(v) for v in ast.literal_eval(node.value))
                except (ValueError, TypeError, SyntaxError):
                    raise TorchScriptError(f"{self.path}: malformed {target.id} in {qualname}") from None
        return names if seen else None


def is_torchscript(path) -> bool:
    """A zip with a ``<name>/code/`` folder (a plain ``torch.save`` zip has none)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in name or name.startswith("code/") for name in z.namelist())


def read_torchscript_state(path) -> dict[str, torch.Tensor]:
    """``state_dict()`` of the scripted module in ``path`` (parameters and buffers, by dotted name),
    read without compiling or running any of the archive's code."""
    try:
        with zipfile.ZipFile(path) as zf:
            archive = _Archive(path, zf)
            info = zf.getinfo(archive.prefix + "data.pkl")
            if info.file_size > MAX_PICKLE_BYTES:
                raise TorchScriptError(f"{path}: data.pkl is {info.file_size} bytes; refusing over {MAX_PICKLE_BYTES}")
            root = _Unpickler(zf.read(info), archive).load()
            state: dict[str, torch.Tensor] = {}
            if isinstance(root, ScriptObject):
                _collect(root, "", archive, state, depth=0)
    except TorchScriptError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, pickle.UnpicklingError, KeyError, IndexError, TypeError,
            AttributeError, RuntimeError, OverflowError, MemoryError, RecursionError, struct.error) as err:
        raise TorchScriptError(f"{path}: corrupt TorchScript archive ({type(err).__name__}: {err})") from None
    if not isinstance(root, ScriptObject):
        raise TorchScriptError(f"{path}: data.pkl does not hold a module")
    return state


def _collect(obj: ScriptObject, prefix: str, archive: _Archive, out: dict, depth: int) -> None:
    if depth > 200:
        raise TorchScriptError(f"{archive.path}: modules nested over 200 deep")
    state = getattr(obj, "state", None)
    if not isinstance(state, dict):
        raise TorchScriptError(
            f"{archive.path}: {obj.qualname} was saved with a custom state ({type(state).__name__}), "
            f"not plain attributes; refused"
        )
    wanted = archive.tensor_attributes(obj.qualname)
    for name, value in state.items():
        if not isinstance(name, str):
            raise TorchScriptError(f"{archive.path}: attribute name {name!r} of {obj.qualname} is not a string")
        if isinstance(value, ScriptObject):
            _collect(value, f"{prefix}{name}.", archive, out, depth + 1)
        elif isinstance(value, torch.Tensor) and (wanted is None or name in wanted):
            # whatever happened to it after _rebuild_tensor, the tensor must still fit its storage
            storage_numel = value.untyped_storage().nbytes() // value.element_size()
            try:
                _check_geometry(storage_numel, value.storage_offset(), tuple(value.shape), value.stride())
            except pickle.UnpicklingError as err:
                raise TorchScriptError(f"{archive.path}: {prefix + name}: {err}") from None
            out[prefix + name] = value


__all__ = ["TorchScriptError", "is_torchscript", "read_torchscript_state"]
