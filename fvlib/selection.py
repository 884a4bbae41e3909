"""Beyond the paper: a forget-vector variant ("FV+") chosen on a development split, and its ablation
(docs/protocol.md E1-E5).

The rule, fixed before any CIFAR-10 run:
  * E1 Data. Every choice is made on a development experiment, `fvlib.setup(profile,
    development=True)`: a seeded share of the training images (experiment.Development) is its test
    set and its own θ_o and Retrain are trained on the rest. `select` refuses an experiment that
    is not one.
  * E2 Ingredients, greedy forward selection. Start from the paper's config (the profile's). Each
    round solves every remaining ingredient added to the current config (at most one per group:
    the retain target, a ball on δ, the schedule) for the development trials and keeps the one of
    lowest Avg.Gap to the development Retrain (Table 1's Avg.Gap of the means; a tie goes to the
    cheaper) if it lowers the current Avg.Gap; stop when none does. Candidates that cost more than
    COST_CAP × the paper's solve (counted in forward-pass units, `relative_cost`) are not tried.
  * E3 Beta. Then the forget weight, from BETA_GRID plus the current one: class-wise, each class
    takes the Beta with the smallest gap to that class's Retrain among the grid and the class's
    current Beta (its entry of a per-class table; ties: the smaller Beta); random forgetting takes
    the one Beta of lowest Avg.Gap among the grid and the current Beta. It is kept only if it
    lowers the Avg.Gap on those trials.
  * The choice is made ONCE: `choose` writes it to a committed file (fvlib/choices/, with the
    development θ_o's fingerprint and the rule's settings) and every later run reuses it; it
    re-selects only when told to (`reselect=True`), which rewrites the file for git to show.
  * E4 The chosen config runs once on the Table-1 θ_o as method "fv_plus": the same splits, records
    and MIA as every other row of Table 1 (`study.table(..., configs={"fv_plus": cfg})`).
  * E5 Ablation: the paper's config, each ingredient alone, the chosen config without each one,
    and the chosen config, on the same trials. Every FV+ config evaluated on the final θ_o (the
    test set) is counted (`test_evaluations`) and shown.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from fvlib import metrics, records, sensitivity, study
from fvlib.cache import write_json
from fvlib.provenance import to_jsonable
from fvlib.solve import FVConfig

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

Ingredient = tuple[str, dict]  # (name, the FVConfig fields it changes)
BETA_GRID = (1.0, 2.0, 3.0, 5.0, 8.0)
NORM_FACTORS = (0.5, 0.75)     # ℓ2 radius as a share of the paper config's mean ‖δ‖₂ on the dev trials
COST_CAP = 1.5                 # E2: the variant costs at most 1.5× the paper's solve (FLOP model)
BASE = "paper default"
COLUMNS = ("UA", "MIA", "RA", "TA")
KIND = "fv_plus"               # the record kind of every FV+ evaluation (development and ablation)
CHOICES = Path(__file__).with_name("choices")  # committed: one file per (profile, scenario)


@dataclasses.dataclass(frozen=True)
class SelectionSizes:
    """Trials of each stage (Profile.studies["selection"]); None: E2 the sweep trials, E3 every
    trial, E5 the sweep trials."""
    trials: int | None = None          # E2 greedy rounds, development trials
    beta_trials: int | None = None     # E3 Beta stage (class-wise needs every class that gets a Beta)
    ablation_trials: int | None = None  # E5 ablation on the final θ_o


@dataclasses.dataclass
class Selection:
    """What `select` chose: the config, the ingredients in the order taken, and every round's rows
    (plus, for a stored choice, what it was chosen on and its file)."""
    scenario: str
    base: FVConfig
    steps: list[Ingredient]
    config: FVConfig
    history: pd.DataFrame
    development: dict | None = None   # the development θ_o's and data's fingerprints
    path: str | None = None           # the committed file it came from


def relative_cost(cfg: FVConfig, base: FVConfig) -> float:
    """Solve FLOPs of cfg over base's, per training image: a step is a forward and an input-gradient
    backward (≈ 2 forward units); per-step distillation targets add one forward, un-augmented targets one
    forward per image once."""
    def units(c: FVConfig) -> float:
        per_epoch = 3.0 if c.objective == "distill" and c.distill_targets == "view" else 2.0
        once = 1.0 if c.objective == "distill" and c.distill_targets == "unaugmented" else 0.0
        return c.epochs * per_epoch + once
    return units(cfg) / units(base)


def apply(base: FVConfig, steps: Sequence[Ingredient]) -> FVConfig:
    """base with every ingredient's field changes, in order."""
    changes: dict = {}
    for _name, fields in steps:
        changes.update(fields)
    return dataclasses.replace(base, **changes)


def label(steps: Sequence[Ingredient]) -> str:
    """A config's display name: 'paper default' or the ingredients joined by ' + '."""
    return " + ".join(name for name, _ in steps) if steps else BASE


def ingredient_groups(base: FVConfig, base_norm: float) -> dict[str, list[Ingredient]]:
    """E2's candidates by group; at most one ingredient per group is taken."""
    return {
        "retain target": [("distill to θ_o (un-augmented)", {"objective": "distill", "distill_targets": "unaugmented"}),
                          ("distill to θ_o (view)", {"objective": "distill", "distill_targets": "view"})],
        "ball": [(f"ℓ2 ball {f:g}×‖δ‖", {"radius": round(f * base_norm, 4), "ball": "l2"})
                 for f in NORM_FACTORS],
        "schedule": [("half epochs", {"epochs": max(1, base.epochs // 2), "gamma": base.gamma ** 2})],
    }


def retrain_means(ex: "Experiment", scenario: str, trials: Sequence[int]) -> pd.DataFrame:
    """Retrain's records of these trials (Table 1's, from the store), indexed by trial."""
    recs = study.run_study(ex, scenario, ["retrain"], trials, progress=False)
    return recs.set_index("trial")[list(COLUMNS)]


def scored(ex: "Experiment", scenario: str, configs: dict[str, FVConfig], trials: Sequence[int],
           retrain: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
    """One row per (named config, trial) from the store's "sweep" records, with "gap": that trial's
    mean |metric − Retrain's on the same trial| in %."""
    points = [({"variant": name}, cfg) for name, cfg in configs.items()]
    rows = sensitivity.sweep(ex, scenario, points, list(trials), name="selection", progress=progress,
                             kind=KIND)
    ref = retrain.loc[rows["trial"], list(COLUMNS)].to_numpy()
    rows["gap"] = metrics.percent(np.abs(rows[list(COLUMNS)].to_numpy() - ref).mean(axis=1))
    return rows


def summarize(rows: pd.DataFrame, configs: dict[str, FVConfig], retrain: pd.DataFrame,
              base: FVConfig) -> pd.DataFrame:
    """One row per named config: means (%) of UA, MIA, RA, TA, Avg.Gap to Retrain's means on the
    same trials, mean per-trial gap, mean ‖δ‖₂, seconds per vector, relative cost."""
    out = []
    for name, cfg in configs.items():
        sub = rows[rows["variant"] == name]
        means = metrics.percent(sub[list(COLUMNS)].mean()).to_dict()
        ref = metrics.percent(retrain.loc[sub["trial"]].mean()).to_dict()
        out.append({"variant": name, **means, "Avg.Gap": metrics.avg_gap(means, ref),
                    "trial_gap": float(sub["gap"].mean()), "delta_l2": float(sub["delta_l2"].mean()),
                    "seconds": float(sub["seconds"].mean()), "cost": relative_cost(cfg, base),
                    "trials": len(sub), "config": cfg})
    return pd.DataFrame(out)


def evaluate(ex: "Experiment", scenario: str, configs: dict[str, FVConfig], trials: Sequence[int],
             retrain: pd.DataFrame, base: FVConfig, progress: bool = False) -> pd.DataFrame:
    """`summarize` of `scored`: one row per named config."""
    return summarize(scored(ex, scenario, configs, trials, retrain, progress), configs, retrain, base)


def _check_development(ex: "Experiment") -> None:
    if not ex.development:
        raise ValueError("select() makes choices, so it must not see the test set: pass the development "
                         "experiment, fvlib.setup(PROFILE, DATA_ROOT, development=True)")


def select(ex: "Experiment", scenario: str, trials: Sequence[int] | None = None,
           beta_trials: Sequence[int] | None = None, base: FVConfig | None = None,
           progress: bool = False) -> Selection:
    """E2 + E3 on a development experiment: the chosen config and every evaluated row.

    trials: E2's trials; beta_trials: E3's (defaults: SelectionSizes; class-wise E3 needs every
    class that should get its own Beta).
    """
    _check_development(ex)
    sizes = ex.profile.sizes("selection", SelectionSizes)
    base = base if base is not None else ex.profile.fv_for(scenario)
    trials = sensitivity.trial_ids(ex, trials if trials is not None else sizes.trials)
    if beta_trials is None and sizes.beta_trials is not None:
        beta_trials = ex.trials(sizes.beta_trials)
    retrain = retrain_means(ex, scenario, trials)
    history = [evaluate(ex, scenario, {BASE: base}, trials, retrain, base, progress).assign(round=0)]
    best = float(history[0]["Avg.Gap"].iloc[0])
    groups = ingredient_groups(base, float(history[0]["delta_l2"].iloc[0]))
    steps: list[Ingredient] = []
    while groups:
        cands = {label([*steps, ing]): (g, ing) for g, ings in groups.items() for ing in ings
                 if relative_cost(apply(base, [*steps, ing]), base) <= COST_CAP + 1e-9}
        if not cands:
            break
        res = evaluate(ex, scenario, {n: apply(base, [*steps, ing]) for n, (_g, ing) in cands.items()},
                       trials, retrain, base, progress).assign(round=len(history))
        history.append(res)
        top = res.sort_values(["Avg.Gap", "cost"]).iloc[0]
        if top["Avg.Gap"] >= best - 1e-9:
            break
        group, ing = cands[top["variant"]]
        steps.append(ing)
        del groups[group]
        best = float(top["Avg.Gap"])
    beta_step, beta_rows = _beta_stage(ex, scenario, base, steps, beta_trials, progress)
    history.append(beta_rows.assign(round=len(history)))
    if beta_step is not None:
        steps.append(beta_step)
    hist = pd.concat(history, ignore_index=True)
    chosen = label(steps)
    hist["chosen"] = False  # the chosen config's last evaluation (E3's trials) is its row
    hist.loc[hist.index[hist["variant"] == chosen][-1], "chosen"] = True
    return Selection(scenario, base, steps, apply(base, steps), hist)


def _beta_stage(ex: "Experiment", scenario: str, base: FVConfig, steps: list[Ingredient],
                trials: Sequence[int] | None, progress: bool) -> tuple[Ingredient | None, pd.DataFrame]:
    """E3: the Beta ingredient (or None when it does not lower the Avg.Gap) and the rows it evaluated."""
    current = apply(base, steps)
    if current.objective == "paper":  # Eq. 4 has no Beta
        return None, pd.DataFrame()
    trials = list(trials) if trials is not None else ex.trials()
    retrain = retrain_means(ex, scenario, trials)
    # uniform Betas; the current config (its Beta, or each class's entry of its per-class table) is
    # the other candidate of every trial
    grid = {f"{label(steps)} | Beta {b:g}": (b, dataclasses.replace(current, beta=b, beta_per_class=None))
            for b in sorted({*BETA_GRID, current.beta})}
    configs = {label(steps): current, **{n: c for n, (_b, c) in grid.items()}}
    rows = scored(ex, scenario, configs, trials, retrain, progress)
    res = summarize(rows, configs, retrain, base)
    now = float(res.loc[res["variant"] == label(steps), "Avg.Gap"].iloc[0])
    if scenario == "classwise":
        table = _per_class_betas(rows, grid, ex.data.num_classes, current, label(steps))
        step: Ingredient = ("per-class Beta (dev)", {"beta_per_class": table})
        res = pd.concat([res, evaluate(ex, scenario, {label([*steps, step]): apply(current, [step])},
                                       trials, retrain, base, progress)], ignore_index=True)
    else:
        top = res[res["variant"].isin(grid)].sort_values(["Avg.Gap"]).iloc[0]
        b = grid[top["variant"]][0]
        step = (f"Beta {b:g} (dev)", {"beta": b, "beta_per_class": None})
        res.loc[res["variant"] == top["variant"], "variant"] = label([*steps, step])
    gap = float(res.loc[res["variant"] == label([*steps, step]), "Avg.Gap"].iloc[0])
    return (step if gap < now - 1e-9 else None), res


def _per_class_betas(rows: pd.DataFrame, grid: dict, num_classes: int, current: FVConfig,
                     now: str) -> tuple[float, ...]:
    """Per class (trial): the Beta of smallest gap to that class's Retrain among the grid and the
    class's current Beta (the `now` rows; ties: the smaller Beta), from `scored` rows; classes
    outside the trials keep the current config's Beta."""
    table = list(current.beta_per_class) if current.beta_per_class is not None else [current.beta] * num_classes
    cands = rows[rows["variant"].isin([*grid, now])].assign(
        beta=lambda d: [grid[v][0] if v in grid else table[int(t)] for v, t in zip(d["variant"], d["trial"])])
    for t, sub in cands.groupby("trial"):
        table[int(t)] = float(sub.sort_values(["gap", "beta"])["beta"].iloc[0])
    return tuple(table)


def ablation(ex: "Experiment", scenario: str, sel: Selection, trials: Sequence[int] | None = None,
             progress: bool = False) -> pd.DataFrame:
    """E5 on ex (any experiment; the final θ_o for the report): the paper's config, each ingredient
    alone, the chosen config without each one, and the chosen config; indexed by variant.
    trials: default SelectionSizes.ablation_trials (else the sweep trials)."""
    if trials is None:
        trials = sensitivity.trial_ids(ex, ex.profile.sizes("selection", SelectionSizes).ablation_trials)
    configs = {BASE: sel.base}
    for ing in sel.steps:
        configs.setdefault(f"{BASE} + {ing[0]}", apply(sel.base, [ing]))
    for i, ing in enumerate(sel.steps):
        rest = [s for j, s in enumerate(sel.steps) if j != i]
        configs.setdefault(f"FV+ − {ing[0]}", apply(sel.base, rest))
    configs[f"FV+ ({label(sel.steps)})"] = sel.config
    res = evaluate(ex, scenario, configs, list(trials), retrain_means(ex, scenario, trials), sel.base, progress)
    return res.set_index("variant")


# ----------------------------------------------------------------------------- the choice, once

def choice_path(profile: str, scenario: str) -> Path:
    """The committed file of a profile's choice for one scenario."""
    return CHOICES / f"{profile}-{scenario}.json"


def choose(ex: "Experiment", scenario: str, reselect: bool = False, progress: bool = False) -> Selection:
    """FV+ for ex's profile and a scenario, chosen ONCE on the development split and then reused.

    The first call trains the development θ_o, runs `select` and writes the choice (config, steps,
    every evaluated row, the development θ_o's fingerprint, the rule's settings) to a committed
    file; later calls read it. reselect=True chooses again and rewrites the file.
    """
    path = choice_path(ex.profile.name, scenario)
    if path.exists() and not reselect:
        sel = load_choice(path)
        if sel.base != ex.profile.fv_for(scenario):
            raise ValueError(f"{path} was chosen from another base config than the profile's {scenario} "
                             "forget-vector config; choose again with reselect=True (RESELECT = True)")
        return sel
    from fvlib.experiment import setup
    dev = setup(ex.profile, development=True, executor=ex.executor, progress=progress)
    sel = select(dev, scenario, progress=progress)
    save_choice(path, sel, dev)
    return dataclasses.replace(sel, development={"fingerprint": dev.identity[1], "data": dev.data.fingerprint},
                               path=str(path))


def save_choice(path: Path, sel: Selection, dev: "Experiment") -> None:
    """Write the choice and what it was chosen on and by (atomically)."""
    write_json(path, {"scenario": sel.scenario, "profile": dev.profile.name, "base": sel.base,
                      "steps": sel.steps, "config": sel.config,
                      "development": {"fingerprint": dev.identity[1], "data": dev.data.fingerprint,
                                      "theta_o": dev.original_info()},
                      "rule": {"beta_grid": BETA_GRID, "norm_factors": NORM_FACTORS, "cost_cap": COST_CAP,
                               "sizes": dev.profile.sizes("selection", SelectionSizes)},
                      "history": sel.history, "provenance": dev.provenance()})


def load_choice(path: Path) -> Selection:
    """A choice written by save_choice."""
    doc = json.loads(Path(path).read_text())
    steps = [(name, _tuples(fields)) for name, fields in doc["steps"]]
    history = pd.DataFrame(doc["history"])
    return Selection(doc["scenario"], _config(doc["base"]), steps, _config(doc["config"]),
                     history.drop(columns=["index"], errors="ignore"), doc["development"], str(path))


def _tuples(fields: dict) -> dict:
    """JSON lists back to the tuples of a frozen config."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}


def _config(d: dict) -> FVConfig:
    return FVConfig(**_tuples(d))


def test_evaluations(ex: "Experiment", scenario: str) -> int:
    """How many FV+ configs (variants of the ablation and the chosen one) were ever evaluated on
    ex's test set: distinct configs in the record store on ex's θ_o and data, this scenario."""
    if ex.development:
        return 0
    seen = set()
    for kind in (KIND, "study"):
        for path in sorted((records.path(kind, "x").parent).glob("*.json")):
            rec = json.loads(path.read_text())
            prov = rec.get("provenance", {})
            if (rec.get("method") in ("fv", "fv_plus") and rec.get("config") is not None
                    and rec.get("scenario") == scenario and (kind == KIND or rec["method"] == "fv_plus")
                    and prov.get("data_fingerprint") == ex.data.fingerprint
                    and prov.get("theta_o", {}).get("fingerprint") == ex.identity[1]):
                seen.add(json.dumps(rec["config"], sort_keys=True))
    return len(seen)


def history_table(ex: "Experiment", sel: Selection) -> pd.DataFrame:
    """Every development round of a choice (one row per evaluated config), saved as
    figures/<profile>/fv_plus_selection_<scenario> with the choice and what it was chosen on."""
    table = sel.history.drop(columns=["config"], errors="ignore").set_index("variant").round(3)
    ex.save_table(table, f"fv_plus_selection_{sel.scenario}",
                  numbers={"steps": sel.steps, "config": sel.config, "development": sel.development,
                           "file": sel.path}, settings={"base": sel.base, "rule": __doc__})
    return table


def ablation_table(ex: "Experiment", sel: Selection, progress: bool = False) -> pd.DataFrame:
    """E5 on ex (see `ablation`), saved as figures/<profile>/fv_plus_ablation_<scenario>."""
    table = ablation(ex, sel.scenario, sel, progress=progress).drop(columns=["config"])
    ex.save_table(table.round(3), f"fv_plus_ablation_{sel.scenario}", numbers={"steps": sel.steps},
                  settings={"base": sel.base, "fv_plus": sel.config})
    return table


def verdicts(ex: "Experiment", summaries: dict[str, pd.DataFrame], choices: dict[str, Selection]) -> pd.DataFrame:
    """One `verdict` per scenario as a table, saved as figures/<profile>/fv_plus_verdict."""
    table = pd.DataFrame([verdict(ex, summaries[sc], choices[sc]) for sc in choices]).set_index("scenario")
    ex.save_table(table, "fv_plus_verdict", settings={"cost_cap": COST_CAP})
    return table


def verdict(ex: "Experiment", summary: pd.DataFrame, sel: Selection) -> dict:
    """What Table 1 with FV+ says: its Avg.Gap, FV's, the best model-based method's, whether FV+
    beats all of them, its measured solve time over FV's (the cap is on this), the FLOP model's
    ratio, and how many FV+ configs have been evaluated on the test set."""
    gaps = summary[("gap", "Avg.Gap")]
    model_based = gaps.drop(["retrain", "fv", "fv_plus"], errors="ignore")
    minutes = summary[("time", "minutes")]
    ratio = float(minutes["fv_plus"] / minutes["fv"])
    return {"scenario": sel.scenario, "chosen": label(sel.steps), "FV+ Avg.Gap": float(gaps["fv_plus"]),
            "FV Avg.Gap": float(gaps["fv"]), "best model-based": str(model_based.idxmin()),
            "best model-based Avg.Gap": float(model_based.min()),
            "beats every model-based method": bool(gaps["fv_plus"] < model_based.min()),
            "measured time ratio": ratio, "FLOP ratio": relative_cost(sel.config, sel.base),
            "within cost cap": bool(ratio <= COST_CAP), "test-set evaluations": test_evaluations(ex, sel.scenario)}
