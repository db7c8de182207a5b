"""Training vectors too many to hold in memory: rows in an unlinked temporary file, read a batch at a time.

Training touches a few hundred random rows per step, so reading them from
disk (the page cache, mostly) costs little, while holding a million 2,048-value
vectors would take gigabytes.  The file is created already unlinked, so it
disappears with the process whatever happens.  Reads use pread, not mmap: pages
read this way stay in the page cache, not in the process's resident memory.

Only what train.py and the evaluation use is supported: ``x[rows]`` for an
index array or a slice, ``x[i] = vector``, ``len``, ``shape``, ``dtype`` and
``astype`` (which reads every row: meant for a validation set).
"""
from __future__ import annotations

import os
import tempfile

import numpy as np


class DiskRows:
    def __init__(self, rows: int, dim: int, dtype=np.float16, directory=None):
        self.dtype = np.dtype(dtype)
        self.shape = (rows, dim)
        self._row_bytes = dim * self.dtype.itemsize
        self._file = tempfile.TemporaryFile(prefix="retrain-rows-", dir=directory)
        self._file.truncate(rows * self._row_bytes)
        self._fd = self._file.fileno()

    def __len__(self) -> int:
        return self.shape[0]

    def __setitem__(self, row: int, vector) -> None:
        data = np.ascontiguousarray(vector, dtype=self.dtype)
        os.pwrite(self._fd, data.tobytes(), int(row) * self._row_bytes)

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(self.shape[0])
            if step == 1:
                out = np.empty((max(0, stop - start), self.shape[1]), self.dtype)
                self._read_into(out, start)
                return out
            index = np.arange(start, stop, step)
        rows = np.asarray(index, dtype=np.int64)
        scalar = rows.ndim == 0
        rows = rows.reshape(-1)
        out = np.empty((len(rows), self.shape[1]), self.dtype)
        for k, row in enumerate(rows):
            if not 0 <= row < self.shape[0]:
                raise IndexError(f"row {row} is outside 0..{self.shape[0] - 1}")
            self._read_into(out[k : k + 1], int(row))
        return out[0] if scalar else out

    def _read_into(self, out: np.ndarray, first_row: int) -> None:
        view = memoryview(out).cast("B")
        done = 0
        while done < len(view):
            n = os.preadv(self._fd, [view[done:]], first_row * self._row_bytes + done)
            if n <= 0:
                raise OSError("short read from the temporary training rows")
            done += n

    def astype(self, dtype, copy: bool = True) -> np.ndarray:
        return self[:].astype(dtype, copy=False)

    def close(self) -> None:
        self._file.close()
