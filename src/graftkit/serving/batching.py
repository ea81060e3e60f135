"""Dynamic micro-batching: concurrent requests for one model are merged into one forward pass.

The first waiting request opens a batch; requests already queued join at once, and more are awaited until the
batch holds ``max_batch_rows`` rows or ``max_wait_ms`` has passed (Triton's "max queue delay"). A request's rows
are never split across batches. Inference runs on the server's one inference thread (an executor), so the event
loop keeps accepting and validating requests meanwhile. When a merged batch fails on bad input, each request is
run alone so that only the request at fault gets the error.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass

from graftkit.errors import GraftkitError

logger = logging.getLogger(__name__)


class Busy(Exception):
    """More rows are waiting for this model than the queue allows."""


@dataclass
class Job:
    inputs: list
    options: dict
    future: asyncio.Future


class MicroBatcher:
    def __init__(self, predict, executor: Executor, *, enabled: bool = True, max_batch_rows: int = 64,
                 max_wait_ms: float = 5.0, max_queue_rows: int = 4096):
        self.predict = predict  # (inputs, options) -> records, called on the executor's thread
        self.executor = executor
        self.enabled = enabled
        self.max_batch_rows = max_batch_rows
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue_rows = max_queue_rows
        self.queue: asyncio.Queue[Job] = asyncio.Queue()
        self.queued_rows = 0
        self.batches = 0   # forward passes run (for the access log and the benchmarks)
        self._held: Job | None = None  # a job that did not fit the last batch: it opens the next one
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def submit(self, inputs: list, options: dict) -> list[dict]:
        if self.queued_rows + len(inputs) > self.max_queue_rows:
            raise Busy(f"{self.queued_rows} rows are already waiting for this model")
        job = Job(list(inputs), dict(options), asyncio.get_running_loop().create_future())
        self.queued_rows += len(job.inputs)
        await self.queue.put(job)
        return await job.future

    async def _next(self, timeout: float | None) -> Job | None:
        if self._held is not None:
            job, self._held = self._held, None
            return job
        if timeout is None:
            return await self.queue.get()
        if not self.queue.empty():
            return self.queue.get_nowait()
        if timeout <= 0:
            return None
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    async def _collect(self) -> list[Job]:
        first = await self._next(None)
        jobs, rows = [first], len(first.inputs)
        if not self.enabled:
            return jobs
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while rows < self.max_batch_rows:
            job = await self._next(deadline - loop.time())
            if job is None:
                break
            if rows + len(job.inputs) > self.max_batch_rows or job.options != first.options:
                self._held = job
                break
            jobs.append(job)
            rows += len(job.inputs)
        return jobs

    async def _run_forever(self) -> None:
        while True:
            jobs = await self._collect()
            self.queued_rows -= sum(len(j.inputs) for j in jobs)
            live = [j for j in jobs if not j.future.done()]  # a request that timed out is not computed
            if live:
                await self._run(live)

    async def _run(self, jobs: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        inputs = [item for job in jobs for item in job.inputs]
        try:
            self.batches += 1
            records = await loop.run_in_executor(self.executor, self.predict, inputs, jobs[0].options)
        except GraftkitError as exc:
            if len(jobs) == 1:
                _settle(jobs[0], exc=exc)
            else:  # bad input somewhere: find the request it came from
                for job in jobs:
                    await self._run([job])
            return
        except Exception as exc:  # a bug: the request gets a 500 without details, the log gets the traceback
            logger.exception("inference failed on a batch of %d rows", len(inputs))
            for job in jobs:
                _settle(job, exc=exc)
            return
        start = 0
        for job in jobs:
            _settle(job, result=records[start:start + len(job.inputs)])
            start += len(job.inputs)


def _settle(job: Job, result=None, exc: BaseException | None = None) -> None:
    if job.future.done():  # timed out (cancelled) meanwhile
        return
    if exc is not None:
        job.future.set_exception(exc)
    else:
        job.future.set_result(result)
