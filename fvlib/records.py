"""One record store: (kind, identity) -> a JSON result record, with provenance written in one place.

Every study is a grid: systems (method × split) × conditions (items: a shift, an ε, a sweep point,
or just one evaluation). `grid` computes only the records that are missing, builds a system only
for splits with something missing, and writes each record atomically as soon as it is complete, so
an interrupted study resumes where it stopped. A damaged record (truncated, empty, `{}`) is
recomputed with a warning naming its file. A record's identity hashes the data, θ_o, the
architecture, the method and its config, the split and the item's settings.
"""
from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Hashable, Sequence

from tqdm.auto import tqdm

from fvlib import systems
from fvlib.cache import cache_dir, config_hash, ensure_writable, read_json, write_json
from fvlib.runtime import timer
from fvlib.splits import Split

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

REQUIRED = ("kind", "key", "method", "trial", "provenance")
# compute(system, split, item) -> result fields, or (fields now, a Future of more fields or None)
Compute = Callable[[systems.System, Split, Any], "dict | tuple[dict, Future | None]"]


def path(kind: str, key: str) -> Path:
    """Where the record (kind, key) lives: cache_dir()/records/<kind>/<key>.json."""
    return cache_dir() / "records" / kind / f"{key}.json"


def key(ex: "Experiment", kind: str, method: str, split: Split, cfg: Any = None, *extra: Any) -> str:
    """Identity of one record: data, θ_o, architecture, kind, method and its config, split, extras."""
    mcfg = cfg if cfg is not None else systems.method_config(ex.profile, method, split.scenario)
    return config_hash(f"{kind}-record", ex.identity, method, mcfg, split.hash, *extra)


def read(kind: str, key_: str) -> dict | None:
    """The stored record, or None when missing or damaged (a warning names a damaged file)."""
    return read_json(path(kind, key_), REQUIRED)


def write(ex: "Experiment", kind: str, key_: str, rec: dict) -> dict:
    """Store rec atomically with the experiment's provenance; returns the stored record."""
    full = {**rec, "kind": kind, "key": key_, "provenance": ex.provenance()}
    write_json(path(kind, key_), full)
    return full


def _base(system: systems.System, split: Split, eval_seconds: float) -> dict:
    """Fields every record has: which system, which split, what they cost."""
    return {"method": system.method, "scenario": split.scenario, "trial": split.trial,
            "classes": list(split.classes), "split_hash": split.hash, "seconds": system.seconds,
            "eval_seconds": eval_seconds, **system.info}


def grid(ex: "Experiment", kind: str, method: str, split_list: Sequence[Split], items: Sequence[Hashable],
         compute: Compute, key_extra: Callable[[Any], tuple] = lambda it: (it,), cfg: Any = None,
         progress: bool = False) -> list[dict]:
    """Records of one method over splits × items (split-major order), computing only missing ones.

    cfg overrides the method's profile config (e.g. a sweep point's FVConfig); key_extra(item)
    gives the item's settings for the key. A compute that returns a Future (the MIA fits) is
    resolved after the other systems' GPU work, then written.
    """
    keys = [{it: key(ex, kind, method, s, cfg, *key_extra(it)) for it in items} for s in split_list]
    done = [{it: r for it, k in ks.items() if (r := read(kind, k)) is not None} for ks in keys]
    todo = [i for i, d in enumerate(done) if len(d) < len(items)]
    if todo:
        ensure_writable(cache_dir())
    built = systems.build(ex, method, [split_list[i] for i in todo], cfg, progress)
    pending = []
    for i, system in tqdm(list(zip(todo, built)), desc=f"{kind}: {method}", disable=not (progress and todo),
                          leave=False):
        for it in (it for it in items if it not in done[i]):
            with timer(ex.data.device) as t:
                out = compute(system, split_list[i], it)
            fields, fut = out if isinstance(out, tuple) else (out, None)
            rec = {**_base(system, split_list[i], t["seconds"]), **fields}
            if fut is None:
                done[i][it] = write(ex, kind, keys[i][it], rec)
            else:
                pending.append((i, it, rec, fut))
    for i, it, rec, fut in pending:
        done[i][it] = write(ex, kind, keys[i][it], {**rec, **fut.result()})
    return [d[it] for d in done for it in items]
