"""One attempt's progress reports: handed over from any thread, coalesced, written now and then.

A handler may report progress as often as it likes (a loop over a million
rows may report every row) from the event loop or from a thread of the pool,
and a report must never make it wait. So a report only replaces the latest
one under a lock, and the first report after a quiet spell asks the event
loop (``call_soon_threadsafe``, once) to start a writer. The writer, on the
loop, writes the latest report at most once per ``interval_s``, one write at
a time, and goes quiet when no report is left.

The first write comes ``interval_s`` after the attempt started, not at the
first report: a task that finishes sooner writes no progress at all, and its
last report goes with its verdict (``close`` hands it over). So progress
costs writes in proportion to how long tasks run, not to how many there are
or how often they report: at most ``duration / interval_s`` of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable

from taskcore.model.progress import Progress

log = logging.getLogger("taskcore.progress")

Write = Callable[[Progress], Awaitable[bool]]
"""Store a report; ``False`` if it was not stored and may be tried again."""


class ProgressReporter:
    """Latest report wins; at most one write per ``interval_s``, none after ``close``."""

    def __init__(self, write: Write, *, interval_s: float) -> None:
        """Made on the event loop the writes belong to, when the attempt starts."""
        self._write = write
        self._interval_s = interval_s
        self._loop = asyncio.get_running_loop()
        self._next_at = self._loop.time() + interval_s
        self._lock = threading.Lock()  # guards the three fields below, across threads
        self._latest: Progress | None = None  # reported, not yet taken by a write
        self._awake = False  # a writer runs, or was asked to start: no need to ask again
        self._closed = False
        self._stopped = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.writes = 0  # writes attempted, for tests and logs

    def report(self, progress: Progress) -> None:
        """From any thread; never blocks beyond taking a lock no one holds long."""
        with self._lock:
            if self._closed:
                return
            self._latest = progress
            if self._awake:
                return
            self._awake = True
        # A closed loop: a handler's thread outlived its worker; nothing to write.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._start)

    def _start(self) -> None:
        if not self._stopped.is_set():
            self._writer = self._loop.create_task(self._run(), name="taskcore-progress")

    async def _run(self) -> None:
        while not self._stopped.is_set():
            delay = self._next_at - self._loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stopped.wait(), delay)
                    return  # closed while waiting: what is left goes with the verdict
                except TimeoutError:
                    pass
            with self._lock:
                progress, self._latest = self._latest, None
                if progress is None:
                    self._awake = False  # quiet: the next report starts a writer again
                    return
            self._next_at = self._loop.time() + self._interval_s
            self.writes += 1
            try:
                stored = await self._write(progress)
            except Exception:
                # A bug, not an outage (the writer reports those): the report is
                # dropped, and the handler and its verdict carry on regardless.
                log.exception("a progress report could not be written")
                stored = True
            if not stored:
                with self._lock:
                    if self._latest is None:  # nothing newer: try it again next time
                        self._latest = progress

    async def close(self) -> Progress | None:
        """No more writes: wait for one under way, then hand over the latest
        report not written yet (for the verdict), if any."""
        with self._lock:
            self._closed = True
        self._stopped.set()
        if self._writer is not None:
            # Shielded: a write cut off half-way would leave the attempt unsure
            # of the version it holds. Cancelled here, the write still ends.
            await asyncio.shield(self._writer)
        with self._lock:
            latest, self._latest = self._latest, None
        return latest
