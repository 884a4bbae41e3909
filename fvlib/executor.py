"""Executors of the record store: which one runs a study's units (`get`), and `Ray`, which runs them
on a Ray cluster (docs/cluster.md).

`records.run` plans every missing record of a study as units — one (method, batch of splits) system
build plus the records it yields — and hands all of them at once to `Experiment.executor`.
`records.Serial` (the default) runs them in this process; `Ray` submits them as Ray tasks, so that
every GPU (or CPU) of a cluster is busy. Both yield (unit, split index, item, record fields) as each
record completes, and the driver (`records.run`) writes every record.

On Ray:
* θ_o (its state dict) and the data reach the workers once, through the object store (no shared
  filesystem needed); a worker process rebuilds θ_o once and checks its fingerprint.
* A baseline's unit is one task per split; a forget-vector unit's batched solve of K vectors is one
  task, split into chunks over the GPUs (CPU slots) that the other tasks leave idle (the vectors of a
  batch are independent: chunked, they equal one batch to float tolerance). A task asks for 1 GPU
  on a CUDA cluster, `unit_cpus` CPUs elsewhere.
* One writer: a task (`fvlib.worker`) builds its systems in a private scratch cache, seeded with the
  files of `systems.artifacts` that the driver's cache already holds, and returns the ones it made (vectors,
  unlearned models, Retrain's models); the driver writes them atomically into its own cache, then
  the records, so a serial rerun reads everything the cluster computed. Two tasks never build the
  same missing file: the second waits for the first and is shipped its result.
* The MIA's SVC fits are 1-CPU tasks (`mia.run_job`, no torch) the driver submits as each system's
  features arrive (no process pool in any worker).
* Faults: a task whose worker dies (killed, out of memory) is re-run by Ray, up to `retries` times; a
  task that raises is not retried: the other units' records are still written, then one
  `UnitsFailed` names every failed method and split. A killed driver resumes from the records
  already written, as a serial run does.

Ray is the optional `ray` extra, imported only when a Ray executor is used.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from typing import TYPE_CHECKING, Any, Iterator, Sequence, TypeVar

from fvlib import mia, records, systems, worker
from fvlib.cache import atomic_write, cache_dir
from fvlib.runtime import environment

if TYPE_CHECKING:
    import ray as ray_module

    from fvlib.experiment import Experiment

T = TypeVar("T")
ENV = "FVLIB_EXECUTOR"  # the executor of `fvlib.setup(executor=None)`: how `fvlib.run --ray` reaches notebooks
SPECS = ("'serial', 'ray' (a local Ray instance), 'ray:auto' (the Ray cluster this machine belongs to) "
         "or 'ray:HOST:PORT' (a cluster's head node)")
INSTALL_HINT = 'Ray is an optional extra: pip install -e ".[ray]" (or pip install "ray>=2.10")'


class UnitsFailed(RuntimeError):
    """Some tasks raised (or their workers kept dying); every other record was written."""

    def __init__(self, failures: Sequence[tuple[str, BaseException]], total: int):
        self.failures = list(failures)
        lines = [f"  {label}: {type(e).__name__}: {e}" for label, e in self.failures]
        super().__init__(f"{len(self.failures)} of {total} tasks failed (the records of the others were "
                         "written; fix the cause and rerun: finished records are not recomputed):\n"
                         + "\n".join(lines))


def get(spec: Any = None) -> Any:
    """The executor of `spec`: one of SPECS, an executor object (anything with run(ex, units,
    progress)), or None: $FVLIB_EXECUTOR if set, else None (records.Serial, in this process)."""
    where = "executor"
    if spec is None:
        spec, where = os.environ.get(ENV) or None, f"the environment variable {ENV}"
        if spec is None:
            return None
    if not isinstance(spec, str):
        if not callable(getattr(spec, "run", None)):
            raise TypeError(f"an executor is a name ({SPECS}) or an object with run(ex, units, progress), "
                            f"not a {type(spec).__name__}")
        return spec
    kind, _, address = spec.partition(":")
    if spec == "serial":
        return records.Serial()
    if kind == "ray":
        return Ray(address or None)
    raise ValueError(f"{where} is {spec!r}, which names no executor; use {SPECS}")


def split_evenly(items: Sequence[T], parts: int) -> list[list[T]]:
    """items in at most `parts` contiguous, non-empty batches whose sizes differ by at most one
    (how a batched solve of K vectors is spread over the GPUs)."""
    if parts < 1:
        raise ValueError(f"parts must be >= 1, got {parts}")
    k = len(items)
    parts = min(parts, k)
    bounds = [j * k // parts for j in range(parts + 1)] if parts else [0]
    return [list(items[a:b]) for a, b in zip(bounds, bounds[1:])]


def _import_ray() -> "ray_module":
    try:
        import ray
    except ImportError as err:
        raise ImportError(f"executor 'ray' needs Ray, which is not installed. {INSTALL_HINT}") from err
    return ray


@contextlib.contextmanager
def session(address: str | None) -> Iterator[str | None]:
    """Point $FVLIB_EXECUTOR at Ray for the block, so every notebook kernel started in it runs its
    studies there: address None does nothing, "local" starts a local instance for the block (or uses
    the one this process is connected to), "auto" / "HOST:PORT" name a running cluster."""
    if address is None:
        yield None
        return
    ray, started = _import_ray(), False
    if address == "local":
        started = not ray.is_initialized()
        if started:
            ray.init(include_dashboard=False)
        address = ray.get_runtime_context().gcs_address
    try:
        with environment(**{ENV: f"ray:{address}"}):
            yield address
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- the driver's side

@dataclasses.dataclass
class _Task:
    """One Ray task: some splits (rows) of a unit, and the cache files their systems are made of."""
    unit: records.Unit
    rows: list[int]                    # indices into unit.splits
    files: list[str]                   # systems.artifacts, relative to the cache folder
    label: str                         # names the method and the split(s) in errors
    making: set[str] = dataclasses.field(default_factory=set)  # missing files it builds (submitted)


def _label(unit: records.Unit, rows: Sequence[int]) -> str:
    """'ft on classwise-3 (study records)': the method and the split(s) of a task."""
    names = ", ".join(unit.splits[r].name for r in rows)
    return f"{unit.grid.method} on {names} ({unit.grid.kind} records)"


def _portion(task: _Task) -> records.Unit:
    """The unit restricted to the task's splits, masks on the CPU (what a worker receives)."""
    u = task.unit
    splits = [worker.moved(u.splits[r], "cpu") for r in task.rows]
    grid = dataclasses.replace(u.grid, splits=splits)
    return records.Unit(grid, list(range(len(splits))), splits, [u.todo[r] for r in task.rows],
                        [u.keys[r] for r in task.rows])


class Ray:
    """Runs the record store's units as Ray tasks (see the module docstring).

    address: None starts a local Ray instance at the first run (or uses the one this process is
    connected to), "auto" joins the cluster this machine belongs to, "HOST:PORT" a head node.
    unit_cpus: CPUs per unit task (default: 1 beside its GPU on a CUDA cluster; elsewhere the torch
    threads of this process, at most a node's CPUs: a CPU worker runs with as many threads as the
    serial path). window: unit tasks submitted but not finished, at most (default: one more than
    run at once, so the MIA fits, submitted as features arrive, are not queued behind every unit and
    records are written as the study goes; raise it for an autoscaling cluster to see the demand).
    retries: re-runs of a task whose worker died. init: more ray.init arguments.
    """
    kind = "ray"

    def __init__(self, address: str | None = None, *, unit_cpus: int | None = None, window: int | None = None,
                 retries: int = 3, **init: Any):
        self._ray = _import_ray()
        self.address, self.unit_cpus, self.window, self.retries = address, unit_cpus, window, retries
        self.init, self._owns, self._shared = init, False, {}

    def __repr__(self) -> str:
        return (f"Ray(address={self.address!r}, unit_cpus={self.unit_cpus!r}, window={self.window!r}, "
                f"retries={self.retries})")

    def _connect(self) -> "ray_module":
        ray = self._ray
        if not ray.is_initialized():
            ray.init(address=self.address, **self.init)
            self._owns = True
        return ray

    def close(self) -> None:
        """Shut down the Ray instance if this executor started it."""
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False

    def _share(self, ex: "Experiment") -> "ray_module.ObjectRef":
        """θ_o's state dict and the data (on the CPU) in the object store, once per experiment."""
        key = (self._ray.get_runtime_context().get_job_id(), ex.identity, ex.development)
        if key not in self._shared:
            state = {k: v.detach().cpu().contiguous() for k, v in ex.original.state_dict().items()}
            self._shared[key] = self._ray.put({
                "profile": ex.profile, "data": ex.data.to("cpu"), "state": state, "info": ex.info,
                "development": ex.development, "identity": ex.identity})
        return self._shared[key]

    def _shape(self) -> tuple[dict, int]:
        """(Ray options of a unit task, how many run at once); refuses what no node could run."""
        nodes = [n["Resources"] for n in self._ray.nodes() if n.get("Alive")]
        gpus = int(sum(n.get("GPU", 0) for n in nodes))
        if gpus:
            cpus = self.unit_cpus or 1
        else:
            import torch
            cpus = self.unit_cpus or max(1, min(torch.get_num_threads(), int(max(n.get("CPU", 0) for n in nodes))))
        if not any(n.get("CPU", 0) >= cpus and n.get("GPU", 0) >= (1 if gpus else 0) for n in nodes):
            have = ", ".join(f"{{CPU: {n.get('CPU', 0):g}, GPU: {n.get('GPU', 0):g}}}" for n in nodes)
            raise ValueError(f"a unit asks for {cpus} CPU{' and 1 GPU' if gpus else ''}, but no node of the Ray "
                             f"cluster has that much (nodes: {have}); lower unit_cpus, or add such a node")
        slots = gpus or int(sum(n.get("CPU", 0) // cpus for n in nodes))
        return {"num_cpus": cpus, "num_gpus": 1 if gpus else 0}, max(1, slots)

    @staticmethod
    def _tasks(ex: "Experiment", units: Sequence[records.Unit], slots: int) -> list[_Task]:
        """Other methods: a task per split; a vector method's batch: one task, or chunks over the
        slots the other tasks leave free (a batch of K vectors costs less than K solves of one)."""
        vectors = [u for u in units if u.grid.method in systems.VECTOR_METHODS]
        others = sum(len(u.splits) for u in units) - sum(len(u.splits) for u in vectors)
        parts, root = max(1, (slots - others) // max(1, len(vectors))), cache_dir()
        tasks = []
        for u in units:
            rows = list(range(len(u.splits)))
            groups = split_evenly(rows, parts) if u.grid.method in systems.VECTOR_METHODS else [[r] for r in rows]
            for g in groups:
                paths = systems.artifacts(ex, u.grid.method, [u.splits[r] for r in g], u.grid.cfg)
                tasks.append(_Task(u, g, [str(p.relative_to(root)) for p in paths], _label(u, g)))
        return tasks

    def run(self, ex: "Experiment", units: Sequence[records.Unit], progress: bool
            ) -> Iterator[tuple[records.Unit, int, Any, dict]]:
        """(unit, split index, item, record fields) for every missing record, as each completes."""
        if not units:
            return
        from tqdm.auto import tqdm
        ray = self._connect()
        opts, slots = self._shape()
        run = _Run(self, ex, [self._share(ex)], opts, self._tasks(ex, units, slots), self.window or slots + 1)
        bar = tqdm(total=sum(len(t) for u in units for t in u.todo), desc="records (Ray)", disable=not progress)
        try:
            for out in run.results():
                bar.update()
                yield out
        finally:
            bar.close()
            for ref in run.pending:  # the driver stops: leave no task of it running on the cluster
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)
        if run.failures:
            raise UnitsFailed(run.failures, run.submitted) from run.failures[0][1]


class _Run:
    """One executor call: tasks waiting for a file another task builds, tasks in flight, failures."""

    def __init__(self, executor: Ray, ex: "Experiment", box: list, opts: dict, tasks: list[_Task], window: int):
        ray = executor._ray
        self.window, self.building = window, 0
        self.ray, self.ex, self.box, self.root = ray, ex, box, cache_dir()
        self.build, self.fit = ray.remote(worker.build), ray.remote(mia.run_job)
        self.opts = {**opts, "max_retries": executor.retries, "retry_exceptions": False}
        self.cpus, self.retries = opts["num_cpus"], executor.retries
        self.waiting, self.pending, self.busy = tasks, {}, set()
        self.failures: list[tuple[str, BaseException]] = []
        self.submitted = 0

    def _start(self) -> None:
        """Submit waiting tasks, in order, up to the window; not one whose missing files another task
        is building (it waits, then is shipped them)."""
        still = []
        for k, task in enumerate(self.waiting):
            if self.building >= self.window:
                still += self.waiting[k:]
                break
            missing = {f for f in task.files if not (self.root / f).exists()}
            if missing & self.busy:
                still.append(task)
                continue
            have = {f: (self.root / f).read_bytes() for f in task.files if f not in missing}
            task.making = missing
            self.busy |= missing
            ref = self.build.options(name=task.label[:200], **self.opts).remote(
                self.box, _portion(task), have, sorted(missing), self.cpus)
            self.pending[ref], self.submitted, self.building = ("build", task), self.submitted + 1, self.building + 1
        self.waiting = still

    def results(self) -> Iterator[tuple[records.Unit, int, Any, dict]]:
        """Records as their tasks finish; failures are collected, not raised."""
        while True:
            self._start()
            if not self.pending:
                return
            (ref,), _ = self.ray.wait(list(self.pending), num_returns=1)
            kind, what = self.pending.pop(ref)
            self.building -= kind == "build"
            try:
                out = self.ray.get(ref)
            except self.ray.exceptions.RayError as err:
                label = what.label if kind == "build" else f"MIA fit of {what[4]}"
                self.failures.append((label, self._cause(err)))
                if kind == "build":
                    self.busy -= what.making
                continue
            if kind == "build":
                yield from self._built(what, *out)
            else:
                unit, i, item, fields, _label_ = what
                yield unit, i, item, {**fields, **out}

    def _built(self, task: _Task, made: dict[str, bytes], outs: list) -> Iterator[tuple]:
        """Write what the task built into the driver's cache, then its records (fits: submitted)."""
        for rel, blob in made.items():
            path = self.root / rel
            if not path.exists():
                atomic_write(path, lambda p, b=blob: p.write_bytes(b))
        self.busy -= task.making
        for i, item, fields, job in outs:
            unit, row = task.unit, task.rows[i]
            if job is None:
                yield unit, row, item, fields
            else:
                ref = self.fit.options(name=f"MIA fit of {task.label}"[:200],
                                       **{**self.opts, "num_cpus": 1, "num_gpus": 0}).remote(job)
                self.pending[ref], self.submitted = ("fit", (unit, row, item, fields, task.label)), self.submitted + 1

    def _cause(self, err: Exception) -> BaseException:
        """The error to report: the task's own exception, or what happened to its worker."""
        ray = self.ray
        if isinstance(err, ray.exceptions.RayTaskError) and err.cause is not None:
            return err.cause
        if isinstance(err, ray.exceptions.WorkerCrashedError):
            return RuntimeError(f"its worker process died {self.retries + 1} times (killed, or out of "
                                "memory); the last attempt was not retried")
        return err
