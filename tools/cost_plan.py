"""Cost plan of a full `paper` run on a cluster: GPU-hours and wall time on 1, 8 and 32 GPUs.

python tools/cost_plan.py [--gpus 1 8 32] [--cpus-per-gpu 4] [--write docs/cost_plan.md]

Builds the task graph of the paper's protocol for both halves (CIFAR-10 / ResNet-18, profile
`paper`; ImageNet-10 / VGG-16-BN, profile `paper_imagenet10`): θ_o once per dataset; per scenario
(class-wise, random) 10 trials × {Retrain, FT, RL, GA, NegGrad+, SalUn, SCRUB}, each one GPU unit
(build + evaluation); the forget vectors of a config as one batched solve of K = 10, split into
chunks that run on different GPUs; one MIA SVC fit per evaluated system as a CPU task; notebook 06's
sweeps (τ grid, λ1 × λ2 grid, Beta) and notebook 07's development split (its θ_o and Retrains, the
greedy rounds, the Beta stage, FV+ on Table 1's θ_o, the ablation). Grid sizes come from fvlib
(config, sensitivity, selection); vectors of equal configs are solved once (the τ = 1 and Beta = 1
points are Table 1's vectors), as fvlib's vector cache does.

Each unit's cost has a source, one of: measured (a benchmark JSON of a CUDA device in
benchmarks/results/, else the H200 numbers quoted in benchmarks/results/README.md), an estimate
derived from a measurement (stated), or the paper's Table A1 (minutes on an A6000, authors' code).
Basis `fvlib` takes the first that exists; basis `table_a1` takes Table A1 for every training and
solve unit (an upper bound: the authors' loop is several times slower than fvlib's). Wall times
come from list scheduling of the graph (ready tasks by longest remaining path) on G GPU slots and
cpus-per-gpu × G CPU slots; each FV chunk size is simulated and the fastest reported.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import heapq
import json
import math
import sys
from pathlib import Path
from typing import Callable, Iterable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BASELINES = ("retrain", "ft", "rl", "ga", "neggrad_plus", "salun", "scrub")
SCENARIOS = ("classwise", "random")
PROFILES = {"cifar10": "paper", "imagenet10": "paper_imagenet10"}
TRAIN_IMAGES = {"cifar10": 50_000, "imagenet10": 13_000}   # ImageNet-10: 10 classes × 1,300
TEST_IMAGES = {"cifar10": 10_000, "imagenet10": 500}
CHUNKS = (10, 5, 2, 1)                                      # FV vectors per GPU task, simulated
QUOTED = "[Q]"  # the H200 numbers of the speed issue, quoted in benchmarks/results/README.md
H200 = {"train_images_per_s": 45_000.0, "fv_k1_seconds": 72.3, "fv_k10_seconds": 287.0}
ESTIMATES = {  # (seconds, why): not measured on a GPU
    "eval": {"cifar10": (1.0, "estimate: a forward pass over 60,000 images at ~3× the training "
                              "throughput (~0.45 s) plus transfers"),
             "imagenet10": (5.0, "estimate: a forward pass over 13,500 images at 224 px")},
    "mia": {"cifar10": (5.0, "estimate [M]: RBF-SVC on 2 × 9,000–10,000 points, one CPU core"),
            "imagenet10": (0.5, "estimate [M]: RBF-SVC on 2 × 500 points, one CPU core")},
}


@dataclasses.dataclass(frozen=True)
class Cost:
    """Seconds of one unit and where the number comes from."""
    seconds: float
    source: str


# ----------------------------------------------------------------------------- unit costs

def table_a1() -> dict:
    """Table A1 in minutes: {method: {dataset: {scenario: minutes}}} (fvlib/paper_results.json)."""
    return json.loads((ROOT / "fvlib" / "paper_results.json").read_text())["tableA1_minutes"]


def measured(results: Path = ROOT / "benchmarks" / "results") -> dict:
    """GPU numbers: from GPU benchmark JSONs (profile quick/paper) when present, else QUOTED.

    {"train_images_per_s", "fv_k1_seconds", "fv_k10_seconds": (value, source), "baselines":
    {method: (seconds, source)} (only from a `baseline_speed paper` JSON: the paper's epochs)}."""
    out = {**{k: (v, QUOTED) for k, v in H200.items()}, "baselines": {}}
    for path in sorted(results.glob("*.json")):
        rec = json.loads(path.read_text())
        if rec.get("profile") not in ("quick", "paper") or str(rec.get("device", "cpu")).startswith("cpu"):
            continue
        src, kind = f"{path.name}, {rec['device']}", rec.get("benchmark")
        if kind == "train_speed":
            out["train_images_per_s"] = (float(rec["train_images_per_s"]), src)
        elif kind == "forget_vector_speed":  # seconds per epoch × the profile's 40 epochs
            out["fv_k1_seconds"] = (float(rec["single"]["est_seconds_full"]), src)
            if rec["batched"]["k"] == 10:
                out["fv_k10_seconds"] = (float(rec["batched"]["est_seconds_full"]), src)
        elif kind == "baseline_speed" and rec["profile"] == "paper":
            out["baselines"].update({m: (float(r["seconds"]), f"{src}, {rec['scenario']} trial {rec['trial']}")
                                     for m, r in rec["methods"].items()})
    return out


def images(method: str, dataset: str) -> int:
    """Training images one run of a baseline visits (fvlib's epoch plans, 10 % forgotten)."""
    from benchmarks.baseline_speed import images_visited
    from fvlib import baselines, config
    n = TRAIN_IMAGES[dataset]
    cfg = baselines.get(method).config_for(config.get_profile(PROFILES[dataset]))
    seen = images_visited(method, cfg, n // 10, n - n // 10)
    if not seen:
        raise ValueError(f"no epoch plan for {method!r} in benchmarks/baseline_speed.images_visited")
    return seen


def fvlib_costs(dataset: str) -> dict[str, Cost]:
    """CIFAR-10 from GPU measurements (or estimates derived from them); ImageNet-10 (no VGG-16
    measurement yet) from Table A1."""
    if dataset != "cifar10":
        return a1_costs(dataset)
    m = measured()
    ips, src = m["train_images_per_s"]
    est = lambda n: Cost(n / ips, f"estimate: {n:,} training images at {ips:,.0f} img/s ({src})")  # noqa: E731
    out = {"theta_o": est(160 * TRAIN_IMAGES[dataset])}
    for sc in SCENARIOS:
        for b in BASELINES:
            sec = m["baselines"].get(b)
            out[f"{b}/{sc}"] = Cost(sec[0], f"measured: {sec[1]}") if sec else est(images(b, dataset))
        out[f"fv1/{sc}"] = Cost(m["fv_k1_seconds"][0], f"measured: one solve, 40 epochs ({m['fv_k1_seconds'][1]})")
        out[f"fv10/{sc}"] = Cost(m["fv_k10_seconds"][0], f"measured: K = 10 batched ({m['fv_k10_seconds'][1]})")
    return {**out, **common_costs(dataset)}


def a1_costs(dataset: str) -> dict[str, Cost]:
    """Table A1 (A6000, authors' code) for every training and solve unit; K vectors cost K solves."""
    a1, n = table_a1(), TRAIN_IMAGES[dataset]
    ref = a1["retrain"][dataset]["classwise"]
    out = {"theta_o": Cost(60 * ref * n / (n - n // 10), "Table A1 Retrain (class-wise) × 10/9 (all images)")}
    for sc in SCENARIOS:
        out.update({f"{b}/{sc}": Cost(60 * a1[b][dataset][sc], f"Table A1 ({dataset}, {sc})") for b in BASELINES})
        one = 60 * a1["fv"][dataset][sc]
        out[f"fv1/{sc}"] = Cost(one, f"Table A1 'Ours' ({dataset}, {sc})")
        out[f"fv10/{sc}"] = Cost(10 * one, "Table A1 × 10 (no batching gain known)")
    return {**out, **common_costs(dataset)}


def common_costs(dataset: str) -> dict[str, Cost]:
    """Evaluation (GPU) and MIA fit (CPU): estimates in both bases."""
    return {k: Cost(*ESTIMATES[k][dataset]) for k in ("eval", "mia")}


def chunk_seconds(costs: dict[str, Cost], scenario: str, k: int) -> float:
    """A batched solve of k vectors: linear between the measured K = 1 and K = 10 solves."""
    one, ten = costs[f"fv1/{scenario}"].seconds, costs[f"fv10/{scenario}"].seconds
    return one + (ten - one) * (k - 1) / 9


# ----------------------------------------------------------------------------- the task graph

@dataclasses.dataclass
class Task:
    name: str
    component: str
    gpu: bool
    seconds: float
    deps: tuple[int, ...] = ()


class Graph:
    """Tasks (GPU or CPU) and their dependencies, built stage by stage."""

    def __init__(self, costs: Callable[[str], dict[str, Cost]], chunk: int):
        self.tasks: list[Task] = []
        self.costs, self.chunk = costs, chunk

    def add(self, name: str, component: str, gpu: bool, seconds: float, deps: Iterable[int] = ()) -> int:
        self.tasks.append(Task(name, component, gpu, seconds, tuple(deps)))
        return len(self.tasks) - 1

    def evaluated(self, ds: str, name: str, comp: str, seconds: float, deps: Iterable[int]) -> list[int]:
        """A GPU unit that builds and evaluates a system, then its MIA fit on a CPU: [gpu, cpu]."""
        c = self.costs(ds)
        g = self.add(name, comp, True, seconds + c["eval"].seconds, deps)
        return [g, self.add(f"{name} MIA", comp, False, c["mia"].seconds, [g])]

    def solve(self, ds: str, sc: str, label: str, comp: str, deps: Iterable[int], scale: float = 1.0,
              trials: int = 10) -> list[int]:
        """One config's vectors for `trials` splits in chunks; returns the MIA fits' ids (its end)."""
        c, ends, deps = self.costs(ds), [], list(deps)
        for start in range(0, trials, self.chunk):
            k = min(self.chunk, trials - start)
            g = self.add(f"{ds} {sc} {label} FV ×{k}", comp, True,
                         scale * chunk_seconds(c, sc, k) + k * c["eval"].seconds, deps)
            ends += [self.add(f"{ds} {sc} {label} MIA", comp, False, c["mia"].seconds, [g]) for _ in range(k)]
        return ends


def table1(g: Graph, ds: str) -> dict:
    """θ_o, then every baseline and FV trial of both scenarios; returns θ_o's task id."""
    c = g.costs(ds)
    theta = g.add(f"{ds} θ_o", "θ_o", True, c["theta_o"].seconds)
    for sc in SCENARIOS:
        for t in range(10):
            for b in BASELINES:  # Retrain trains from scratch: it need not wait for θ_o
                g.evaluated(ds, f"{ds} {sc} {b} trial {t}", "Table 1 baselines", c[f"{b}/{sc}"].seconds,
                            [] if b == "retrain" else [theta])
        g.solve(ds, sc, "table1", "Table 1 FV", [theta])
    return {"theta": theta}


def sweep_points(ds: str) -> dict[str, list]:
    """Notebook 06's configs per scenario that are not Table 1's (fvlib's grids, deduplicated)."""
    import types
    from fvlib import config, sensitivity
    prof = config.get_profile(PROFILES[ds])
    ex = types.SimpleNamespace(profile=prof)  # the point builders read only ex.profile
    out = {}
    for sc in SCENARIOS:
        pts = sensitivity.tau_points(ex, sc) + sensitivity.lambda_points(ex, sc, objective="paper")
        if sc == "random":
            pts += sensitivity.beta_points(ex, sc)
        out[sc] = list(dict.fromkeys(cfg for _lab, cfg in pts if cfg != prof.fv_for(sc)))
    return out


def sweeps(g: Graph, ds: str, ids: dict) -> None:
    """Every new sweep point: a batched solve of 10 trials on Table 1's θ_o."""
    for sc, cfgs in sweep_points(ds).items():
        for i, _cfg in enumerate(cfgs):
            g.solve(ds, sc, f"sweep {i}", "sweeps (nb 06)", [ids["theta"]])


def fv_plus_stages(scenario: str) -> list[int]:
    """New configs per sequential stage of notebook 07 on the development split, an upper bound:
    the base, every greedy round improving with the smallest group taken first (so later rounds are
    largest), the Beta stage (BETA_GRID plus the current Beta) and, class-wise, the per-class table.
    From fvlib.selection's ingredient groups and Beta grid."""
    from fvlib import selection
    from fvlib.solve import FVConfig
    sizes = sorted(len(v) for v in selection.ingredient_groups(FVConfig(), 1.0).values())
    stages = [1]
    while sizes:
        stages.append(sum(sizes))
        sizes.pop(0)
    stages.append(len(selection.BETA_GRID) + 1)
    return stages + ([1] if scenario == "classwise" else [])


def ablation_configs() -> int:
    """Notebook 07's ablation beyond the paper's and the chosen config (both solved elsewhere):
    each ingredient alone and the chosen one without it, with every group and Beta taken (an upper bound)."""
    from fvlib import selection
    from fvlib.solve import FVConfig
    return 2 * (len(selection.ingredient_groups(FVConfig(), 1.0)) + 1)


def fv_plus(g: Graph, ds: str, ids: dict) -> None:
    """Notebook 07: development θ_o and Retrains, greedy stages, then FV+ and its ablation on θ_o."""
    from fvlib import config
    from fvlib.experiment import Development
    c, n = g.costs(ds), TRAIN_IMAGES[ds]
    held = round(config.get_profile(PROFILES[ds]).sizes("development", Development).fraction * n)
    scale = (n - held) / n  # the development training set
    dev = g.add(f"{ds} dev θ_o", "FV+ (nb 07)", True, scale * c["theta_o"].seconds)
    for sc in SCENARIOS:
        prev = [dev] + [x for t in range(10) for x in g.evaluated(
            ds, f"{ds} dev {sc} retrain {t}", "FV+ (nb 07)", scale * c[f"retrain/{sc}"].seconds, [])]
        for r, size in enumerate(fv_plus_stages(sc)):  # each stage needs the previous one's gaps
            prev = [x for i in range(size) for x in g.solve(ds, sc, f"dev stage {r}.{i}", "FV+ (nb 07)", prev, scale)]
        for i in range(1 + ablation_configs()):  # FV+ itself, then the ablation, on Table 1's θ_o
            g.solve(ds, sc, f"FV+ config {i}", "FV+ (nb 07)", prev + [ids["theta"]])


# ----------------------------------------------------------------------------- scheduling

def bottom_levels(tasks: list[Task]) -> list[float]:
    """Longest path from each task to the end of the graph (its own seconds included)."""
    level = [t.seconds for t in tasks]
    for i in reversed(range(len(tasks))):  # dependencies always have smaller ids
        for d in tasks[i].deps:
            level[d] = max(level[d], tasks[d].seconds + level[i])
    return level


def schedule(tasks: list[Task], gpus: int, cpus: int, level: list[float] | None = None) -> float:
    """Makespan (s) of list scheduling: a free slot takes the ready task with the longest path
    (level: bottom_levels(tasks), when the caller has it)."""
    level = level or bottom_levels(tasks)
    waiting = [len(t.deps) for t in tasks]
    users: list[list[int]] = [[] for _ in tasks]
    for i, t in enumerate(tasks):
        for d in t.deps:
            users[d].append(i)
    ready = {True: [], False: []}
    for i, t in enumerate(tasks):
        if not t.deps:
            heapq.heappush(ready[t.gpu], (-level[i], i))
    free, running, now = {True: gpus, False: cpus}, [], 0.0
    while ready[True] or ready[False] or running:
        for kind in (True, False):
            while free[kind] and ready[kind]:
                _, i = heapq.heappop(ready[kind])
                free[kind] -= 1
                heapq.heappush(running, (now + tasks[i].seconds, i))
        now, i = heapq.heappop(running)
        free[tasks[i].gpu] += 1
        for u in users[i]:
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready[tasks[u].gpu], (-level[u], u))
    return now


SCOPES = {  # name: (datasets, whole run or Table 1 only)
    "CIFAR-10, Table 1": (("cifar10",), False), "CIFAR-10, all": (("cifar10",), True),
    "ImageNet-10, Table 1": (("imagenet10",), False), "ImageNet-10, all": (("imagenet10",), True),
    "both, all": (("cifar10", "imagenet10"), True),
}
BASES = {"fvlib": "measured where it exists, else derived estimate, else Table A1",
         "table_a1": "Table A1 (A6000, authors' code) for every training and solve unit"}


@functools.cache
def costs_of(basis: str, dataset: str) -> dict[str, Cost]:
    return {"fvlib": fvlib_costs, "table_a1": a1_costs}[basis](dataset)


@functools.cache
def build(basis: str, scope: str, chunk: int) -> Graph:
    """The task graph of a scope (a key of SCOPES) under a cost basis (a key of BASES)."""
    g = Graph(functools.partial(costs_of, basis), chunk)
    datasets, whole = SCOPES[scope]
    for ds in datasets:
        ids = table1(g, ds)
        if whole:
            sweeps(g, ds, ids)
            fv_plus(g, ds, ids)
    return g


def plan(basis: str, scope: str, gpus: int, cpus_per_gpu: int) -> dict:
    """The fastest FV chunk size's schedule (ties: fewer GPU-hours): hours, bound, utilisation."""
    best = None
    for chunk in CHUNKS if gpus > 1 else CHUNKS[:1]:  # one GPU: whole batches cost least and are fastest
        tasks = build(basis, scope, chunk).tasks
        level = bottom_levels(tasks)
        work = sum(t.seconds for t in tasks if t.gpu)
        wall = schedule(tasks, gpus, cpus_per_gpu * gpus, level)
        row = {"wall_h": wall / 3600, "gpu_h": work / 3600, "chunk": chunk, "util": work / (wall * gpus),
               "bound_h": max(max(level), work / gpus) / 3600}
        if best is None or (round(row["wall_h"], 6), row["gpu_h"]) < (round(best["wall_h"], 6), best["gpu_h"]):
            best = row
    return best


# ----------------------------------------------------------------------------- report

def _fmt(x: float) -> str:
    return f"{x:,.2f}" if x < 100 else f"{x:,.0f}"


def unit_table() -> list[str]:
    """Markdown rows: every unit's seconds and source in both bases."""
    rows = ["| dataset | unit | seconds (fvlib basis) | source | seconds (Table A1 basis) |",
            "|---|---|---|---|---|"]
    for ds in PROFILES:
        fv, a1 = costs_of("fvlib", ds), costs_of("table_a1", ds)
        for key, c in fv.items():
            rows.append(f"| {ds} | {key} | {_fmt(c.seconds)} | {c.source} | {_fmt(a1[key].seconds)} |")
    return rows


def work_table() -> list[str]:
    """Markdown rows: GPU-hours and units per component and dataset (whole batches of 10)."""
    rows = ["| dataset | component | GPU tasks | GPU-hours (fvlib) | GPU-hours (Table A1) | CPU-hours (MIA) |",
            "|---|---|---|---|---|---|"]
    for ds, scope in (("cifar10", "CIFAR-10, all"), ("imagenet10", "ImageNet-10, all")):
        graphs = {b: build(b, scope, 10).tasks for b in BASES}
        for comp in dict.fromkeys(t.component for t in graphs["fvlib"]):
            pick = {b: [t for t in ts if t.component == comp] for b, ts in graphs.items()}
            gpu = {b: sum(t.seconds for t in ts if t.gpu) / 3600 for b, ts in pick.items()}
            cpu = sum(t.seconds for t in pick["fvlib"] if not t.gpu) / 3600
            n = sum(t.gpu for t in pick["fvlib"])
            rows.append(f"| {ds} | {comp} | {n} | {_fmt(gpu['fvlib'])} | {_fmt(gpu['table_a1'])} | {_fmt(cpu)} |")
    return rows


def schedule_table(gpu_counts: Iterable[int], cpus_per_gpu: int) -> list[str]:
    """Markdown rows: wall time and GPU-hours per scope, basis and GPU count."""
    rows = ["| scope | basis | GPUs | wall (h) | GPU-hours | lower bound (h) | FV vectors per task | GPU busy |",
            "|---|---|---|---|---|---|---|---|"]
    for scope, (datasets, _whole) in SCOPES.items():
        for basis in BASES if "cifar10" in datasets else ["fvlib"]:  # ImageNet-10: Table A1 in both
            for n in gpu_counts:
                r = plan(basis, scope, n, cpus_per_gpu)
                rows.append(f"| {scope} | {basis} | {n} | {_fmt(r['wall_h'])} | {_fmt(r['gpu_h'])} | "
                            f"{_fmt(r['bound_h'])} | {r['chunk']} | {100 * r['util']:.0f} % |")
    return rows


def report(gpu_counts: Iterable[int], cpus_per_gpu: int) -> str:
    """The whole Markdown report."""
    gpu_counts = list(gpu_counts)
    sweep_sizes = "; ".join(f"{ds} " + ", ".join(f"{len(v)} {sc}" for sc, v in sweep_points(ds).items())
                            for ds in PROFILES)
    m = measured()
    parts = [HEADER.format(gpus=", ".join(map(str, gpu_counts)), cpus=cpus_per_gpu, sweeps=sweep_sizes,
                           ips=m["train_images_per_s"][0], fv1=m["fv_k1_seconds"][0], fv10=m["fv_k10_seconds"][0],
                           stages=", ".join(map(str, fv_plus_stages("classwise"))), ablation=ablation_configs()),
             "## Wall time and GPU-hours (list scheduling)", "", *schedule_table(gpu_counts, cpus_per_gpu), "",
             "## Work per component (whole batches of 10 vectors)", "", *work_table(), "",
             "## Cost of one unit, and where it comes from", "", *unit_table(), "", FOOTER]
    return "\n".join(parts)


HEADER = """# Cost plan: a full `paper` run on a cluster

Generated by `python tools/cost_plan.py --write docs/cost_plan.md` (GPUs {gpus}; {cpus} CPU slots per
GPU for the MIA fits); a test checks that this file is what the script writes. Rerun it when a
benchmark JSON of a GPU lands in benchmarks/results/: the `fvlib` basis picks it up.

**What is modelled.** Both halves of the paper: CIFAR-10 / ResNet-18 (profile `paper`) and
ImageNet-10 / VGG-16-BN (`paper_imagenet10`). Per dataset: θ_o once; per scenario (class-wise,
random) 10 trials × {{Retrain, FT, RL, GA, NegGrad+, SalUn, SCRUB}}, each one GPU task (build +
evaluation, Retrain without waiting for θ_o: it trains from scratch); the 10 forget vectors of a
config as one batched solve, split into tasks of 10, 5, 2 or 1 vectors (each simulated; the fastest
is shown); one MIA SVC fit per evaluated system as a CPU task; notebook 06's sweeps (new configs
per scenario, Table 1's τ = 1 / Beta = 1 vectors reused: {sweeps}); notebook 07 on the development
split: its θ_o and 10 Retrains per scenario, then sequential stages of {stages} new configs (an
upper bound: every greedy round improves, smallest group first; then the Beta stage and, class-wise,
the per-class table), then FV+ and {ablation} ablation configs on Table 1's θ_o, 10 trials each.

Sources: the GPU benchmark JSONs in benchmarks/results/ where they exist (named per unit below;
now: training at {ips:,.0f} images/s, one 40-epoch forget vector {fv1:.0f} s, ten batched {fv10:.0f} s),
else [Q] = the H200 numbers of the speed issue as quoted in benchmarks/results/README.md (profile
`quick`: θ_o at ~45,000 training images/s; one forget vector in 72.3 s; ten batched in 287 s).
Baselines are estimated from the images they visit at θ_o's training throughput unless a
`baseline_speed paper` JSON exists (the measured `quick` unlearning trials ran at 19–27k images/s,
batch 256: these estimates are 1.9–2.6× optimistic for them; Retrain ran at 47k). [M] = benchmarks/results/README.md estimates
~5 s per CIFAR-10 SVC fit on a 2-core CPU; checked here on synthetic features (2 × 9,000 points:
18.9 s, 2 × 500: 0.43 s, one core of a 2-core machine at load average 11, so slow). A forget vector's
solve costs the same on any θ_o of one architecture, so `quick` measurements hold for `paper`.

**Cost bases.** `fvlib`: measured where a measurement exists, an estimate derived from one where
not (stated per unit), Table A1 otherwise; `table_a1`: the paper's Table A1 minutes (A6000, the
authors' code, one vector at a time) for every training and solve unit. No fvlib run of VGG-16 has
been measured yet, so ImageNet-10 is Table A1 in both bases (its rows are shown once, as `fvlib`) and
dominates the totals: read them as an upper bound.

**Scheduling.** List scheduling of the task graph: whenever a GPU (or CPU) slot is free, it takes the
ready task with the longest remaining path. "Lower bound" is max(critical path, GPU work / GPUs);
"GPU busy" is GPU work / (wall × GPUs). Splitting a batch of 10 vectors over more GPUs costs more
GPU time (one solve of 1 vector takes {fv1:.0f} s, of 10 vectors {fv10:.0f} s on an H200) and pays off only when
GPUs would otherwise idle.
"""

FOOTER = """## Not modelled

- Notebooks 01 (Table 1's systems under 5 shifts and PGD), 03 (transfer, white-box restore attack),
  04 (CU-FV weights; its class-wise basis is Table 1's vectors) and 05 (Grad-CAM): evaluations and
  small solves on cached systems.
- Data decoding and loading per worker, Ray's start-up (a local instance or node: 15–35 s measured
  on a loaded 2-core CPU, benchmarks/ray_overhead.py), shipping θ_o through the object store (ResNet-18,
  43 MB: a fraction of a second), each worker's first torch/CUDA initialisation, retries.
- Different GPUs: the `fvlib` basis is H200 throughput; the `table_a1` basis A6000 (authors' code).
"""


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--cpus-per-gpu", type=int, default=4, help="CPU slots for MIA fits per GPU")
    p.add_argument("--write", type=Path, help="write the Markdown report here (else print it)")
    args = p.parse_args(argv)
    text = report(args.gpus, args.cpus_per_gpu)
    if args.write:
        from fvlib.cache import atomic_write
        atomic_write(args.write, lambda tmp: tmp.write_text(text))
    else:
        print(text)


if __name__ == "__main__":
    main()
