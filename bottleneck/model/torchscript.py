"""Read the parameters of a TorchScript archive without importing torch.

A TorchScript file is a zip archive: ``data.pkl`` pickles the module tree and
every tensor's bytes live in ``data/<key>``.  We unpickle the tree with stand-in
classes so that the project never needs torch at run time.
"""
from __future__ import annotations

import pickle
import zipfile

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class ScriptModule:
    """One node of the pickled module tree: its TorchScript class and attributes."""

    type_name = "ScriptModule"

    def __init__(self):
        self.attributes = {}

    def __setstate__(self, state):
        self.attributes = dict(state)

    def children(self):
        return {k: v for k, v in self.attributes.items() if isinstance(v, ScriptModule)}

    def tensors(self):
        return {k: v for k, v in self.attributes.items() if isinstance(v, np.ndarray)}


def _module_class(type_name: str):
    # The pickle uses NEWOBJ, which needs a real class; one subclass per TorchScript type.
    return type(type_name.rsplit(".", 1)[-1], (ScriptModule,), {"type_name": type_name})


def _rebuild_tensor(storage, offset, shape, strides, *_ignored):
    itemsize = storage.itemsize
    return np.lib.stride_tricks.as_strided(
        storage[offset:], shape=tuple(shape), strides=tuple(s * itemsize for s in strides)
    ).copy()


def _identity(value):
    return value


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, archive: zipfile.ZipFile, prefix: str):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix

    def find_class(self, module, name):
        if module.startswith("__torch__"):
            return _module_class(f"{module}.{name}")
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return dict
        if module == "torch.jit._pickle" and name.startswith("build_"):
            return _identity  # typed-list wrappers such as build_intlist
        if module == "torch" and name in _STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected object in TorchScript archive: {module}.{name}")

    def persistent_load(self, pid):
        kind, storage_type, key, _location, _numel = pid
        if kind != "storage":
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        raw = self._archive.read(f"{self._prefix}data/{key}")
        return np.frombuffer(raw, dtype=_STORAGE_DTYPES[storage_type])


def load_module_tree(path) -> ScriptModule:
    """Return the root of the module tree stored in a TorchScript archive."""
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pickles:
            raise ValueError(f"{path} is not a TorchScript archive (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as f:
            return _Unpickler(f, archive, prefix).load()
