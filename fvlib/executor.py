"""Executors: run independent units of work in this process or on a Ray cluster; every result comes
back to the driver, which alone writes the cache.

A `Unit` is one call fn(*args), a label that names it in errors ("retrain, classwise trial 3") and
the resources it asks for. `run(units, done)` submits every unit at once and calls done(unit,
result) in the driver as each one finishes: that is where records, vectors and models are written
(one writer, no lock needed). done may return follow-up units (e.g. the CPU fit of a membership
attack on features a GPU unit returned); they are submitted at once. A unit that raises is not
retried: the other units still finish and reach done, then one `UnitsFailed` names every unit that
failed and why. On Ray, a unit whose worker process dies (killed, out of memory) is re-run by Ray
up to `Unit.retries` times.

Objects that many units read (θ_o's weights, the data) go through `share(obj)` once: Ray's object
store (no shared filesystem needed), or the object itself in this process. Ray is optional (the
`ray` extra) and imported only when a Ray executor is asked for.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol, Sequence, TypeVar

if TYPE_CHECKING:
    import ray as ray_module

T = TypeVar("T")
KINDS = ("serial", "ray")
INSTALL_HINT = 'Ray is an optional extra: pip install -e ".[ray]" (or pip install "ray>=2.10")'


@dataclasses.dataclass(frozen=True)
class Unit:
    """One piece of work: fn(*args), named by label; what it asks of a node; re-runs if its worker dies."""
    label: str
    fn: Callable[..., Any]
    args: tuple = ()
    cpus: float = 1.0
    gpus: float = 0.0
    retries: int = 3   # re-runs after the worker process died (never after an exception in fn)


Done = Callable[[Unit, Any], "Iterable[Unit] | None"]


class UnitsFailed(RuntimeError):
    """Some units raised (or their workers kept dying); every other unit finished and reached done."""

    def __init__(self, failures: Sequence[tuple[Unit, BaseException]], total: int):
        self.failures = list(failures)
        lines = [f"  {u.label}: {type(e).__name__}: {e}" for u, e in self.failures]
        super().__init__(f"{len(self.failures)} of {total} units failed (the others' results were "
                         "kept; fix the cause and rerun: finished units are not recomputed):\n"
                         + "\n".join(lines))


class Executor(Protocol):
    """What a study needs from an executor."""
    kind: str

    def share(self, obj: T) -> Any: ...
    def gpus(self) -> int: ...
    def run(self, units: Sequence[Unit], done: Done | None = None) -> list[Any]: ...
    def close(self) -> None: ...


def _follow_ups(done: Done | None, unit: Unit, result: Any) -> list[Unit]:
    """done's follow-up units for a finished unit (none without done)."""
    if done is None:
        return []
    return list(done(unit, result) or ())


class SerialExecutor:
    """Every unit in this process, in order (the default: what fvlib did before executors)."""
    kind = "serial"

    def share(self, obj: T) -> T:
        return obj

    def gpus(self) -> int:
        import torch
        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def run(self, units: Sequence[Unit], done: Done | None = None) -> list[Any]:
        """Results of units in their order (None for a failed one); follow-ups only reach done."""
        queue, results, failures, n = deque(enumerate(units)), [None] * len(units), [], len(units)
        while queue:
            i, unit = queue.popleft()
            try:
                out = unit.fn(*unit.args)
            except Exception as err:  # noqa: BLE001 (reported together in UnitsFailed)
                failures.append((unit, err))
                continue
            if i is not None:
                results[i] = out
            more = _follow_ups(done, unit, out)
            queue.extend((None, u) for u in more)
            n += len(more)
        if failures:
            raise UnitsFailed(failures, n) from failures[0][1]
        return results

    def close(self) -> None:
        pass


def _import_ray() -> "ray_module":
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"executor 'ray' needs Ray, which is not installed. {INSTALL_HINT}") from err
    return ray


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """The Ray task behind every unit (ObjectRef arguments arrive resolved)."""
    return fn(*args)


class RayExecutor:
    """Units as Ray tasks, all submitted at once; Ray schedules them on the cluster's CPUs/GPUs.

    address: None starts a local instance (or uses the one this process is already connected to),
    "auto" joins the cluster this machine belongs to, "HOST:PORT" a given head node.
    """
    kind = "ray"

    def __init__(self, address: str | None = None, **init: Any):
        self._ray = _import_ray()
        self._owns = not self._ray.is_initialized()
        if self._owns:
            self._ray.init(address=address, **init)
        self._task = self._ray.remote(_call)

    def share(self, obj: Any) -> "ray_module.ObjectRef":
        return self._ray.put(obj)

    def gpus(self) -> int:
        return int(self._ray.cluster_resources().get("GPU", 0))

    def _nodes(self) -> list[dict]:
        """Resources of every alive node, e.g. [{"CPU": 16.0, "GPU": 8.0, ...}]."""
        return [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]

    @staticmethod
    def _check_feasible(unit: Unit, nodes: list[dict]) -> None:
        """Fail before submitting a unit that no node could ever run (Ray would wait for it forever)."""
        if not any(r.get("CPU", 0) >= unit.cpus and r.get("GPU", 0) >= unit.gpus for r in nodes):
            have = ", ".join(f"{{CPU: {r.get('CPU', 0):g}, GPU: {r.get('GPU', 0):g}}}" for r in nodes)
            raise ValueError(f"unit {unit.label!r} asks for {unit.cpus:g} CPU and {unit.gpus:g} GPU, but no "
                             f"node of the Ray cluster has that much (nodes: {have}); ask for less, or add "
                             "a node that has it")

    def _submit(self, unit: Unit, nodes: list[dict]) -> "ray_module.ObjectRef":
        self._check_feasible(unit, nodes)
        opts = dict(num_cpus=unit.cpus, num_gpus=unit.gpus, max_retries=unit.retries, retry_exceptions=False)
        return self._task.options(name=unit.label[:100], **opts).remote(unit.fn, *unit.args)

    def _cause(self, err: Exception, unit: Unit) -> BaseException:
        """The error to report: fn's own exception, or what happened to its worker."""
        ray = self._ray
        if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
            return err.cause
        if isinstance(err, ray.exceptions.WorkerCrashedError):
            return RuntimeError(f"its worker process died {unit.retries + 1} times (killed, or out of "
                                "memory); the last attempt was not retried")
        return err

    def run(self, units: Sequence[Unit], done: Done | None = None) -> list[Any]:
        """Results of units in their order (None for a failed one); follow-ups only reach done."""
        nodes = self._nodes()
        for u in units:  # all checked before any is submitted
            self._check_feasible(u, nodes)
        pending = {self._submit(u, nodes): (i, u) for i, u in enumerate(units)}
        results, failures, n = [None] * len(units), [], len(units)
        try:
            while pending:
                (ref,), _ = self._ray.wait(list(pending), num_returns=1)
                i, unit = pending.pop(ref)
                try:
                    out = self._ray.get(ref)
                except self._ray.exceptions.RayError as err:
                    failures.append((unit, self._cause(err, unit)))
                    continue
                if i is not None:
                    results[i] = out
                for u in _follow_ups(done, unit, out):
                    pending[self._submit(u, nodes)] = (None, u)
                    n += 1
        except BaseException:
            for ref in pending:  # the driver stops: do not leave its tasks running on the cluster
                self._ray.cancel(ref)
            raise
        if failures:
            raise UnitsFailed(failures, n) from failures[0][1]
        return results

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()


def get(kind: str | Executor | None = None, address: str | None = None) -> Executor:
    """An executor by name: "serial" (default) or "ray" (address: None, "auto" or HOST:PORT)."""
    if kind is None or kind == "serial":
        return SerialExecutor()
    if kind == "ray":
        return RayExecutor(address)
    if isinstance(kind, str):
        raise ValueError(f"unknown executor {kind!r}; valid: {', '.join(KINDS)}")
    return kind


def split_evenly(items: Sequence[T], parts: int) -> list[list[T]]:
    """items in at most `parts` contiguous, non-empty batches whose sizes differ by at most one
    (how a batched solve of K vectors is spread over the GPUs)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    k = len(items)
    parts = min(parts, k)
    bounds = [j * k // parts for j in range(parts + 1)] if parts else [0]
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:])]
