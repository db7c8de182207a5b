"""Decode image files into batches of model input on every core: worker threads, or worker processes.

One job: turn a sequence of decoding tasks into batches of pixels, in the
tasks' order, skipping each file that cannot be decoded with its reason.

Why processes.  PIL and NumPy release the GIL for the bulk of a decode and a
resize, but not for the Python around them, so threads in one process stop
scaling after a few cores however many the machine has; processes go on
scaling with the cores (docs/performance.md has the measurements).  Processes
cost a start-up (a fresh interpreter each) and, where pixels travel back by
pickling, a copy through a pipe per image, which is why a two-core machine
decodes faster on threads.  Here no pixels travel: the parent owns a ring of
batch buffers in shared memory and hands each task a place in it (slot, row);
the worker decodes straight into that row and answers with the task's number
and, for a file it could not use, the reason.  Only a path and a few numbers
cross between processes per image.

``choose_workers`` makes the choice (``AUTO``): processes where the machine has
at least ``PROCESSES_FROM_CORES`` usable cores and the run has at least
``PROCESSES_FROM_IMAGES`` images to repay the workers' start, threads
otherwise; ``THREADS`` and ``PROCESSES`` force either.

Batches are filled in the tasks' order whichever workers decode them, so the
pixels, the batches and the vectors computed from them are the same on
threads and on processes.  A batch is short by the images of its stretch that
could not be decoded.

The processes are started with 'spawn', never forked: the parent usually holds
TensorFlow, whose threads and locks a fork would copy half-way.  A worker
imports the decoder only (PIL and NumPy).  The shared memory is an anonymous
file (``memfd``) handed to the workers as a descriptor: it has no name, so
nothing is left in /dev/shm whatever ends the run.  A worker that dies (a
decoder that crashes on a file, a worker killed for memory) costs only the
image it was decoding, which is skipped with ``CRASHED``; the images queued
behind it go to the other workers and a new worker takes its place.  Workers
ignore Ctrl-C (the terminal sends it to the whole process group; the parent
decides), are terminated when the pool is left by any way, Ctrl-C and SIGTERM
included, and end by themselves when their parent is killed outright (their
pipe closes).
"""
from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import queue
import selectors
import signal
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing import connection
from typing import NamedTuple

import numpy as np

from .images import BadImage, load_for_model

AUTO, THREADS, PROCESSES = "auto", "threads", "processes"
WORKER_KINDS = (AUTO, THREADS, PROCESSES)

# From this many usable cores worker processes decode faster than threads: below it the GIL is not yet what
# limits decoding, and the processes' start and their memory buy nothing.
PROCESSES_FROM_CORES = 4
# Starting the processes takes about as long as threads need to decode this many small photos on such a
# machine; a run with fewer images to decode is done sooner on threads.
PROCESSES_FROM_IMAGES = 500

CHANGED_WHILE_READ = "the file changed while it was being read; it will be used on the next run"
CRASHED = "the decoder crashed on this image"

RING_SLOTS = 4  # one batch with the network, the next ones filling: decoding never waits for the network
TASKS_PER_PROCESS = 4  # the one being decoded and the next ones, so a worker never waits for the parent's thread
_STARTS_BEFORE_GIVING_UP = 3  # workers in a row that die before they are ready: processes cannot run here


class FileTask(NamedTuple):
    """One image file to decode; a tuple, so that sending it to a worker costs little."""

    path: str
    digest: str | None = None  # when given, the bytes decoded must have this SHA-256 (the cache's key)
    copy: int | None = None  # a distorted copy's number (the decoder's distortion); None for the image itself


@dataclass(frozen=True)
class FileDecoder:
    """What a worker does with a FileTask: float32 [height, width, 3] pixels, or BadImage with the reason.

    With a digest, the very bytes that are decoded are hashed: a file replaced since it was hashed must not
    store the new content's vector under the old content's key.  Without one, the file is decoded from its
    path, with the decoder's own reasons for a file that cannot be read.
    """

    height: int
    width: int
    distortion: object = None  # distort.Distortion, for tasks with a copy number

    def __call__(self, task: FileTask) -> np.ndarray:
        if task.digest is None:
            return load_for_model(task.path, self.height, self.width)
        with open(task.path, "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != task.digest:
            raise BadImage(CHANGED_WHILE_READ)
        if task.copy is not None:
            return self.distortion.load(data, task.digest, task.copy, self.height, self.width)
        return load_for_model(data, self.height, self.width)


@dataclass(frozen=True)
class Workers:
    """How decoding runs: ``kind`` THREADS or PROCESSES, ``count`` of them, and ``why`` in a few words."""

    kind: str
    count: int
    why: str


def usable_cores() -> int:
    """The cores this process may run on (a container's or a taskset's share, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def processes_available() -> bool:
    """Whether worker processes can share batch buffers here: they need anonymous shared memory (Linux)."""
    return hasattr(os, "memfd_create")


def choose_workers(kind: str = AUTO, images: int | None = None, cores: int | None = None,
                   count: int | None = None) -> Workers:
    """The workers that decode ``images`` images on ``cores`` cores (this process's own by default).

    ``count`` overrides how many: by default threads are as many as the cores (at least two, so that one decodes
    while another reads a file) and processes as many as the cores.
    """
    if kind not in WORKER_KINDS:
        raise ValueError(f"kind must be one of {', '.join(WORKER_KINDS)}, not {kind!r}")
    cores = cores or usable_cores()
    if kind == AUTO:
        if cores < PROCESSES_FROM_CORES:
            kind, why = THREADS, f"{cores} cores: too few for processes to pay"
        elif images is not None and images < PROCESSES_FROM_IMAGES:
            kind, why = THREADS, f"{images} images: too few to repay starting processes"
        else:
            kind, why = PROCESSES, f"{cores} cores"
    else:
        why = "as asked"
    if kind == PROCESSES and not processes_available():
        kind, why = THREADS, "this system has no anonymous shared memory for processes"
    if count is None:
        count = cores if kind == PROCESSES else max(2, cores)
    if images is not None:
        count = max(1, min(count, images))
    return Workers(kind, count, why)


@dataclass
class Batch:
    """Decoded pixels of a stretch of consecutive tasks.

    ``pixels`` is valid until the next batch is asked for (its memory is reused then).
    """

    pixels: np.ndarray  # float32 [len(decoded), height, width, 3]
    decoded: list[int]  # each row's task, by its position in the tasks given
    failed: list[tuple[int, str]]  # the stretch's tasks that could not be decoded: (position, reason)


@dataclass
class _Slot:
    """One batch buffer of the ring while tasks are decoded into it."""

    index: int
    positions: list[int] = field(default_factory=list)  # each row's task position
    reasons: list = field(default_factory=list)  # each row's outcome: _PENDING, None (decoded) or a reason
    pending: int = 0


_PENDING = object()  # an outcome not in yet
_END = object()  # the last batch has been passed on
_WAKE = object()  # the pool's thread has something to look at besides the workers


class DecodingPool:
    """Workers that decode tasks into a ring of batch buffers; use it as a context manager.

    ``decoder`` is called on each task (in a worker process it must be picklable: a module-level callable or a
    dataclass such as FileDecoder) and returns [height, width, 3] pixels or raises BadImage; an OSError counts
    as a file that cannot be read.

    A thread of the pool's own hands out the tasks and collects the outcomes, so the workers go on decoding
    while the caller runs the network on a batch; the caller's thread only takes finished batches.
    """

    def __init__(self, decoder, height: int, width: int, batch_size: int, workers: Workers):
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.decoder, self.batch_size, self.workers = decoder, batch_size, workers
        self._shape = (RING_SLOTS, batch_size, height, width, 3)
        self._backend = None
        self._dispatcher: threading.Thread | None = None
        self._stop = False
        self._released: queue.SimpleQueue = queue.SimpleQueue()  # slots the caller is done with
        if workers.kind == PROCESSES:
            try:
                self._backend = _Processes(workers.count, decoder, self._shape)
            except (OSError, CannotStart) as exc:
                self._to_threads(exc)
        else:
            self._backend = _Threads(workers.count, decoder, self._shape)
        self.ring = self._backend.ring

    def _to_threads(self, why: BaseException, ring: np.ndarray | None = None) -> None:
        """Decode on threads from now on: processes cannot run here (``workers`` says why)."""
        if self._backend is not None:
            self._backend.close(abort=True)
        count = max(2, usable_cores())
        self.workers = Workers(THREADS, count, f"processes cannot start here: {why}")
        self._backend = _Threads(count, self.decoder, self._shape, ring)

    def __enter__(self) -> DecodingPool:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close(abort=exc_type is not None)

    def close(self, abort: bool = False) -> None:
        """Stop the workers (at once when ``abort``) and release the shared memory."""
        self._stop_dispatcher()
        self.ring = None
        self._backend.close(abort)

    def _stop_dispatcher(self) -> None:
        dispatcher, self._dispatcher = self._dispatcher, None
        if dispatcher is not None:
            self._stop = True
            self._backend.wake()
            dispatcher.join()

    def batches(self, tasks: Iterable) -> Iterator[Batch]:
        """The decoded batches of ``tasks``, in order; positions in them count from 0.

        One pass at a time: a pass left before its end leaves the pool to be closed.
        """
        if self._stop:
            raise RuntimeError("a pass over this pool was left before its end; use a new pool")
        ready: queue.SimpleQueue = queue.SimpleQueue()
        self._dispatcher = threading.Thread(target=self._dispatch, args=(iter(tasks), ready), daemon=True,
                                            name="decode-dispatch")
        self._dispatcher.start()
        to_the_end = False
        try:
            while (item := ready.get()) is not _END:
                if isinstance(item, BaseException):
                    raise item
                slot, batch = item
                yield batch
                del batch, item
                self._released.put(slot)
                self._backend.wake()
            to_the_end = True
        finally:
            self._stop_dispatcher()
            self._stop = not to_the_end

    def _dispatch(self, source: Iterator, ready: queue.SimpleQueue) -> None:
        """The pool's thread: place tasks in rows, hand them to workers, and pass on every slot that is done."""
        try:
            self._place_and_collect(source, ready)
        except BaseException as exc:  # the caller raises it
            ready.put(exc)

    def _place_and_collect(self, source: Iterator, ready: queue.SimpleQueue) -> None:
        backend, size = self._backend, self.batch_size
        free = deque(range(RING_SLOTS))
        filling: deque[_Slot] = deque()  # slots holding tasks, oldest first
        placed: dict[int, tuple[_Slot, int]] = {}  # task number -> (slot, row), until its outcome is in
        waiting: deque[tuple[int, object]] = deque()  # (task number, task) placed but not yet given to a worker
        task_of: dict[int, object] = {}
        numbered = enumerate(source)
        exhausted = False
        while not self._stop:
            with contextlib.suppress(queue.Empty):
                while True:
                    free.append(self._released.get_nowait())
            # Place the next tasks into rows while the ring has room, and give workers what they can take.
            while not exhausted and (filling and len(filling[-1].positions) < size or free):
                if not filling or len(filling[-1].positions) == size:
                    filling.append(_Slot(free.popleft()))
                slot = filling[-1]
                nxt = next(numbered, None)
                if nxt is None:
                    exhausted = True
                    if not slot.positions:
                        free.appendleft(filling.pop().index)
                    break
                number, task = nxt
                placed[number] = (slot, len(slot.positions))
                slot.positions.append(number)
                slot.reasons.append(_PENDING)
                slot.pending += 1
                task_of[number] = task
                waiting.append((number, task))
            while waiting and backend.has_room():
                number, task = waiting.popleft()
                slot, row = placed[number]
                backend.submit(number, slot.index, row, task)
            while filling and filling[0].pending == 0 and (len(filling[0].positions) == size or exhausted):
                head = filling.popleft()
                ready.put((head.index, self._compact(head)))
            if exhausted and not filling:
                ready.put(_END)
                return
            try:
                finished, again = backend.wait()
            except CannotStart as exc:  # every task not yet decoded goes to threads, into the same ring
                self._to_threads(exc, self.ring)
                backend = self._backend
                waiting = deque((number, task_of[number]) for number in sorted(placed))
                continue
            for number, reason in finished:
                slot, row = placed.pop(number)
                del task_of[number]
                slot.reasons[row] = reason
                slot.pending -= 1
            # A dead worker's queued tasks go to the others first, ahead of tasks placed later.
            waiting.extendleft((number, task_of[number]) for number in reversed(again))

    def _compact(self, slot: _Slot) -> Batch:
        """The slot's decoded rows moved together, in order, as one batch."""
        pixels = self.ring[slot.index]
        decoded, failed = [], []
        for row, (position, reason) in enumerate(zip(slot.positions, slot.reasons)):
            if reason is not None:
                failed.append((position, reason))
                continue
            if row != len(decoded):
                pixels[len(decoded)] = pixels[row]
            decoded.append(position)
        return Batch(pixels[: len(decoded)], decoded, failed)


def _decode_into(decoder, task, out: np.ndarray) -> str | None:
    """Decode ``task`` into ``out``; None when done, else the reason the file cannot be used."""
    try:
        np.copyto(out, decoder(task), casting="same_kind")
    except BadImage as exc:
        return str(exc)
    except OSError as exc:  # a vanished or unreadable file
        return exc.strerror or str(exc)
    return None


class _Threads:
    """Worker threads in this process, decoding into a ring in its own memory."""

    def __init__(self, count: int, decoder, shape, ring: np.ndarray | None = None):
        self.ring = np.empty(shape, np.float32) if ring is None else ring
        self._decoder = decoder
        self._tasks: queue.SimpleQueue = queue.SimpleQueue()
        self._results: queue.SimpleQueue = queue.SimpleQueue()
        self._in_flight = 0
        self._limit = RING_SLOTS * shape[1]
        self._threads = [threading.Thread(target=self._work, name=f"decode-{i}", daemon=True) for i in range(count)]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (item := self._tasks.get()) is not None:
            number, slot, row, task = item
            try:
                outcome = _decode_into(self._decoder, task, self.ring[slot, row])
            except BaseException as exc:  # a bug, not a bad file: raised again in the parent
                outcome = exc
            self._results.put((number, outcome))

    def has_room(self) -> bool:
        return self._in_flight < self._limit

    def submit(self, number: int, slot: int, row: int, task) -> None:
        self._tasks.put((number, slot, row, task))
        self._in_flight += 1

    def wake(self) -> None:
        self._results.put(_WAKE)

    def wait(self):
        """Block until some task is done or the pool is woken: (finished (number, reason) pairs, [])."""
        outcomes = [self._results.get()]
        with contextlib.suppress(queue.Empty):
            while True:
                outcomes.append(self._results.get_nowait())
        finished = [outcome for outcome in outcomes if outcome is not _WAKE]
        self._in_flight -= len(finished)
        for _number, outcome in finished:
            if isinstance(outcome, BaseException):
                raise outcome
        return finished, []

    def close(self, abort: bool) -> None:
        if abort:  # drop what has not started: a thread cannot be stopped, but it need not go on
            with contextlib.suppress(queue.Empty):
                while True:
                    self._tasks.get_nowait()
        for _thread in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()


class CannotStart(RuntimeError):
    """Worker processes die before they are ready: this system cannot run them."""


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: connection.Connection
    in_flight: deque = field(default_factory=deque)  # task numbers sent, in the order it decodes them
    ready: bool = False


# Decoding allocates a few arrays of about a megabyte per image.  glibc's malloc serves allocations that size
# with a fresh mmap each time (page faults, zeroed pages) until its adaptive threshold has risen, which a young
# worker process has not yet seen happen; a fixed threshold keeps them on the heap, which makes decoding a small
# photo markedly cheaper.  Other C libraries ignore these variables, and a user's own setting wins.
_MALLOC_SETTINGS = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(128 << 20)}

# A worker's first statements: ignore Ctrl-C at once (the parent ends the workers), take the parent's import path,
# then serve.  Nothing else of the parent is imported, its main script least of all.
_BOOT = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path[:] = sys.argv[3:]; "
         "from bottleneck.data.decoding import _process_main; _process_main(int(sys.argv[1]), int(sys.argv[2]))")


class _Processes:
    """Worker processes writing into a ring of batch buffers in anonymous shared memory.

    Each worker is a fresh interpreter (the way multiprocessing's 'spawn' starts one, without importing the
    parent's main script again) that is handed two descriptors: its end of a pipe and the ring's memory.  The
    pipe carries tasks one way and outcomes the other; it closes when either side ends, which is how each
    learns that the other has gone.
    """

    def __init__(self, count: int, decoder, shape):
        self._decoder, self._shape = decoder, shape
        self._workers: list[_Worker] = []
        self._failed_starts = 0
        self._last_death = ""
        self._woken, self._wake = connection.Pipe(duplex=False)
        # Registered once and kept up to date: building a selector for every wait would cost more than the rest
        # of an image's handling in this process.
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._woken, selectors.EVENT_READ)
        size = int(np.prod(shape)) * 4
        self._fd = os.memfd_create("bottleneck-decoding", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self._fd, size)
            self.ring = np.frombuffer(mmap.mmap(self._fd, size), np.float32).reshape(shape)
            for _ in range(count):
                self._start()
        except BaseException:
            self.close(abort=True)
            raise

    def _start(self) -> None:
        parent_end, child_end = connection.Pipe()
        try:
            process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(child_end.fileno()), str(self._fd), *sys.path],
                pass_fds=(child_end.fileno(), self._fd), stdin=subprocess.DEVNULL,
                env={**_MALLOC_SETTINGS, **os.environ})
        except BaseException:
            parent_end.close()
            raise
        finally:
            child_end.close()  # the worker's end lives in the worker only, so that it sees this process go
        worker = _Worker(process, parent_end)
        self._workers.append(worker)
        self._selector.register(parent_end, selectors.EVENT_READ, worker)
        with contextlib.suppress(OSError):  # a worker that is gone already is found by the next wait
            parent_end.send((self._shape, self._decoder))

    def has_room(self) -> bool:
        return any(len(w.in_flight) < TASKS_PER_PROCESS for w in self._workers)

    def submit(self, number: int, slot: int, row: int, task) -> None:
        worker = min(self._workers, key=lambda w: len(w.in_flight))
        with contextlib.suppress(OSError):  # it has died: the next wait finds it, and the task goes with its queue
            worker.conn.send((number, slot, row, task))
        worker.in_flight.append(number)

    def wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake.send_bytes(b"")

    def wait(self):
        """Block until some task is done, some worker died or the pool is woken: (finished (number, reason)
        pairs, numbers of the tasks to give to another worker)."""
        finished, again = [], []
        while not finished and not again:
            ready = [key.data for key, _events in self._selector.select()]
            for worker in ready:
                if worker is not None and self._receive(worker, finished):
                    self._bury(worker, finished, again)
            if None in ready:
                self._woken.recv_bytes()
                break
        return finished, again

    def _receive(self, worker: _Worker, finished: list) -> bool:
        """Take the next message of a worker whose pipe is readable; True when the pipe has closed (the worker has
        ended, after every message it sent has been taken: the pipe keeps their order)."""
        try:
            kind, number, detail = worker.conn.recv()
        except (EOFError, OSError):
            return True
        if kind == "ready":
            worker.ready = True
            self._failed_starts = 0
        elif kind == "done":
            worker.in_flight.remove(number)
            finished.append((number, detail))
        else:  # "bug": an exception that is not about the file, raised here as the thread pool would
            raise RuntimeError(f"decoding failed in a worker process:\n{detail}")
        return False

    def _bury(self, worker: _Worker, finished: list, again: list) -> None:
        """A worker has ended: skip the image it was decoding, hand on its queue, start a replacement."""
        self._workers.remove(worker)
        self._selector.unregister(worker.conn)
        worker.conn.close()
        try:
            worker.process.wait(5)
        except subprocess.TimeoutExpired:  # its pipe broke but it runs on: end it
            worker.process.kill()
            worker.process.wait()
        self._last_death = _how_it_ended(worker.process.returncode)
        if worker.ready and worker.in_flight:
            finished.append((worker.in_flight.popleft(), f"{CRASHED} ({self._last_death})"))
        elif not worker.ready:
            self._failed_starts += 1
        again.extend(worker.in_flight)
        if self._failed_starts >= _STARTS_BEFORE_GIVING_UP:
            raise CannotStart(f"{self._failed_starts} workers in a row ended ({self._last_death}) before they were "
                              "ready")
        try:
            self._start()
        except OSError as exc:  # no process can be started any more (a limit on processes or files)
            raise CannotStart(f"a new worker cannot start ({exc})") from exc

    def close(self, abort: bool) -> None:
        workers, self._workers = getattr(self, "_workers", []), []
        if not abort:
            for worker in workers:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
            for worker in workers:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.process.wait(5)
        for worker in workers:
            if worker.process.poll() is None:
                worker.process.terminate()
        for worker in workers:
            try:
                worker.process.wait(2)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()
        self.ring = None  # the memory goes with the last view of it
        if hasattr(self, "_selector"):
            self._selector.close()
        for end in (self._woken, self._wake):
            end.close()
        if getattr(self, "_fd", None) is not None:
            os.close(self._fd)
            self._fd = None


def _how_it_ended(returncode: int | None) -> str:
    if returncode is not None and returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit code {returncode}"


def _process_main(conn_fd: int, ring_fd: int) -> None:
    """A worker process: decode each task it is sent into its row of the ring, answer, and repeat."""
    conn = connection.Connection(conn_fd)
    try:
        shape, decoder = conn.recv()
    except (EOFError, OSError):
        return
    size = int(np.prod(shape)) * 4
    ring = np.frombuffer(mmap.mmap(ring_fd, size), np.float32).reshape(shape)
    os.close(ring_fd)
    conn.send(("ready", None, None))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent has gone
            return
        if message is None:
            return
        number, slot, row, task = message
        try:
            outcome = ("done", number, _decode_into(decoder, task, ring[slot, row]))
        except Exception:
            import traceback

            outcome = ("bug", number, traceback.format_exc())
        try:
            conn.send(outcome)
        except OSError:
            return
