"""One record store: (kind, identity) -> a JSON result record, with provenance written in one place.

Every study is a set of grids: systems (method × split) × conditions (items: a shift, an ε, a sweep
point, or just one evaluation). `run` plans every grid's missing records as units — one (method,
batch of splits) system build plus the records it yields — and hands ALL of them at once to the
experiment's executor (`Serial` here; `fvlib.executor.Ray` keeps every GPU of a cluster busy), so
only missing records are computed, each is written atomically as soon as it is complete, and an
interrupted study resumes where it stopped. A damaged record (truncated, empty, `{}`, a key that is
not its file's, a missing result field) is recomputed with a warning naming its file. A record's
identity hashes the data, θ_o, the architecture, the method and its config, the split and the
item's settings. The MIA's SVC fits are deferred CPU jobs (`mia.Job`) that the executor runs
inline or in processes beside the GPU.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Iterator, Sequence

from tqdm.auto import tqdm

from fvlib import mia, systems
from fvlib.cache import cache_dir, config_hash, ensure_writable, read_json, write_json
from fvlib.runtime import timer
from fvlib.splits import Split

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

REQUIRED = ("kind", "key", "method", "trial", "provenance")
DELTA_LINF_LIMIT = 2.0  # a δ moving some pixel by more than twice the pixel range has diverged
# compute(ex, system, split, item) -> result fields, or (fields now, a deferred MIA job or None).
# The experiment is an argument, not a closure, so a compute function ships to other processes
# without the data and θ_o inside it.
Compute = Callable[["Experiment", systems.System, Split, Any], "dict | tuple[dict, mia.Job | None]"]


@dataclasses.dataclass
class Grid:
    """What a study asks for: records of `kind` for one method over splits × items."""
    kind: str
    method: str
    splits: Sequence[Split]
    items: Sequence[Hashable]
    compute: Compute
    key_extra: Callable[[Any], tuple] = lambda it: (it,)  # an item's settings for the key
    cfg: Any = None                     # the method's config (None: the profile's)
    fields: tuple[str, ...] = ()        # result fields every record of this grid must hold


@dataclasses.dataclass
class Unit:
    """One (method, batch of splits) system build and the missing records it yields."""
    grid: Grid
    rows: list[int]                     # which of the grid's splits have something missing
    splits: list[Split]                 # those splits
    todo: list[list]                    # per split: its missing items
    keys: list[dict]                    # per split: item -> record key


def path(kind: str, key: str) -> Path:
    """Where the record (kind, key) lives: cache_dir()/records/<kind>/<key>.json."""
    return cache_dir() / "records" / kind / f"{key}.json"


def key(ex: "Experiment", kind: str, method: str, split: Split, cfg: Any = None, *extra: Any) -> str:
    """Identity of one record: data, θ_o, architecture, kind, method and its config, split, extras."""
    mcfg = cfg if cfg is not None else systems.method_config(ex.profile, method, split.scenario)
    return config_hash(f"{kind}-record", ex.identity, method, mcfg, split.hash, *extra)


def read(kind: str, key_: str, fields: Sequence[str] = ()) -> dict | None:
    """The stored record, or None when missing or damaged (a warning names a damaged file)."""
    rec = read_json(path(kind, key_), (*REQUIRED, *fields))
    if rec is not None and (rec["kind"], rec["key"]) != (kind, key_):
        import warnings
        warnings.warn(f"{path(kind, key_)}: holds the record {rec['kind']}/{rec['key']}, not its file's; "
                      "ignoring it, so the record is recomputed", stacklevel=2)
        return None
    return rec


def write(ex: "Experiment", kind: str, key_: str, rec: dict) -> dict:
    """Store rec atomically with the experiment's provenance; returns the stored record."""
    full = {**rec, "kind": kind, "key": key_, "provenance": ex.provenance()}
    write_json(path(kind, key_), full)
    return full


def plan(ex: "Experiment", g: Grid) -> tuple[list[dict], Unit | None]:
    """(per split: item -> stored record; the unit that computes the missing ones, or None)."""
    keys = [{it: key(ex, g.kind, g.method, s, g.cfg, *g.key_extra(it)) for it in g.items} for s in g.splits]
    done = [{it: r for it, k in ks.items() if (r := read(g.kind, k, g.fields)) is not None} for ks in keys]
    todo = [i for i, d in enumerate(done) if len(d) < len(g.items)]
    if not todo:
        return done, None
    return done, Unit(g, todo, [g.splits[i] for i in todo],
                      [[it for it in g.items if it not in done[i]] for i in todo], [keys[i] for i in todo])


def run(ex: "Experiment", grids: Sequence[Grid], progress: bool = False) -> list[list[dict]]:
    """Every record of every grid (per grid: split-major, then items), computing only missing ones."""
    planned = [plan(ex, g) for g in grids]
    units = [u for _, u in planned if u is not None]
    for kind in {u.grid.kind for u in units}:  # fail before any compute, not after it
        ensure_writable(path(kind, "x").parent)
    done_of = {id(u): done for done, u in planned if u is not None}
    for unit, i, item, rec in (ex.executor or Serial()).run(ex, units, progress):
        done_of[id(unit)][unit.rows[i]][item] = write(ex, unit.grid.kind, unit.keys[i][item], rec)
    return [[d[it] for d in done for it in g.items] for (done, _), g in zip(planned, grids)]


def grid(ex: "Experiment", kind: str, method: str, split_list: Sequence[Split], items: Sequence[Hashable],
         compute: Compute, key_extra: Callable[[Any], tuple] = lambda it: (it,), cfg: Any = None,
         progress: bool = False) -> list[dict]:
    """Records of one grid (see Grid): `run` for a single method."""
    return run(ex, [Grid(kind, method, split_list, items, compute, key_extra, cfg)], progress)[0]


# ----------------------------------------------------------------------------- executing units

def base_fields(ex: "Experiment", system: systems.System, split: Split, eval_seconds: float) -> dict:
    """Fields every record has: which system, which split, what they cost, and any warnings."""
    rec = {"method": system.method, "scenario": split.scenario, "trial": split.trial,
           "classes": list(split.classes), "split_hash": split.hash, "seconds": system.seconds,
           "eval_seconds": eval_seconds, **system.info}
    vector = system.vector
    if vector is not None and vector.delta.abs().max().item() > DELTA_LINF_LIMIT:
        rec["warnings"] = [f"δ has ℓ∞ {vector.delta.abs().max().item():.3g} on [0, 1] pixels: the solve "
                           "diverged (lower its lr)"]
    return rec


def flag(rec: dict, num_classes: int) -> dict:
    """rec with a warning when its RA is near chance (a diverged method is still a record)."""
    ra = rec.get("RA")
    if ra is not None and ra < 2.0 / num_classes:
        rec = {**rec, "warnings": [*rec.get("warnings", []),
                                   f"RA {100 * ra:.1f} % is near chance ({100 / num_classes:.1f} %): the "
                                   "method diverged (lower its learning rate)"]}
    return rec


class Serial:
    """Executes units one after another in this process. The MIA fits run inline on a CPU and in
    `mia_workers` spawned processes beside a GPU (None: 0 on a CPU, up to 8 on CUDA)."""

    def __init__(self, mia_workers: int | None = None):
        self.mia_workers = mia_workers

    def workers(self, ex: "Experiment") -> int:
        """Processes for the SVC fits."""
        if self.mia_workers is not None:
            return self.mia_workers
        import os
        return 0 if ex.data.device.type == "cpu" else max(0, min(8, (os.cpu_count() or 1) - 2))

    def run(self, ex: "Experiment", units: Sequence[Unit], progress: bool) -> Iterator[tuple[Unit, int, Any, dict]]:
        """(unit, split index, item, record fields) for every missing record, as each completes."""
        with mia.Runner(self.workers(ex)) as fits:
            pending = []
            for unit in units:
                for unit_, i, it, rec, job in execute(ex, unit, progress):
                    if job is None:
                        yield unit_, i, it, rec
                    else:
                        pending.append((unit_, i, it, rec, fits.submit(job)))
                yield from _finished(pending, block=False)  # written as soon as their fits are done
            yield from _finished(pending, block=True)


def execute(ex: "Experiment", unit: Unit, progress: bool = False) -> Iterator[tuple]:
    """Build the unit's systems, then (unit, split index, item, record fields, MIA job or None) for
    each of its missing records: the work of one unit, wherever an executor runs it."""
    g = unit.grid
    built = systems.build(ex, g.method, unit.splits, g.cfg, progress)
    bar = tqdm(list(enumerate(built)), desc=f"{g.kind}: {g.method}", disable=not progress, leave=False)
    for i, system in bar:
        for it in unit.todo[i]:
            with timer(ex.data.device) as t:
                out = g.compute(ex, system, unit.splits[i], it)
            fields, job = out if isinstance(out, tuple) else (out, None)
            rec = {**base_fields(ex, system, unit.splits[i], t["seconds"]),
                   **({"config": g.cfg} if g.cfg is not None else {}), **fields}
            yield unit, i, it, flag(rec, ex.data.num_classes), job


def _finished(pending: list, block: bool) -> Iterator[tuple[Unit, int, Any, dict]]:
    """Records whose MIA fits are done (all of them when block), removed from pending."""
    for entry in [e for e in pending if block or e[-1].done()]:
        pending.remove(entry)
        unit, i, it, rec, fut = entry
        yield unit, i, it, {**rec, **fut.result()}
