"""Beyond the paper: a forget-vector variant ("FV+") chosen on a development split, and its ablation
(docs/protocol.md E1-E5).

The rule, fixed before any CIFAR-10 run:
  * E1 Data. Every choice is made on a development experiment, `fvlib.setup(profile,
    development=True)`: `profile.dev_holdout` seeded training images are its test set and its own
    θ_o and Retrain are trained on the rest. `select` refuses an experiment that is not one.
  * E2 Ingredients, greedy forward selection. Start from the paper's config (the profile's). Each
    round solves every remaining ingredient added to the current config (at most one per group:
    the retain target, a ball on δ, the schedule) for the development trials and keeps the one of
    lowest Avg.Gap to the development Retrain (Table 1's Avg.Gap of the means; a tie goes to the
    cheaper) if it lowers the current Avg.Gap; stop when none does. Candidates that cost more than
    COST_CAP × the paper's solve (counted in forward-pass units, `relative_cost`) are not tried.
  * E3 Beta. Then the forget weight, from BETA_GRID plus the current Beta: class-wise, each class
    takes the Beta with the smallest gap to that class's Retrain (ties: the smaller Beta); random
    forgetting takes the one Beta of lowest Avg.Gap. It is kept only if it lowers the Avg.Gap on
    those trials.
  * E4 The chosen config runs once on the Table-1 θ_o as method "fv_plus": the same splits, records
    and MIA as every other row of Table 1 (`study.run_study(..., configs={"fv_plus": cfg})`).
  * E5 Ablation: the paper's config, each ingredient alone, the chosen config without each one,
    and the chosen config, on the same trials.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from fvlib import metrics, sensitivity, study
from fvlib.solve import FVConfig

if TYPE_CHECKING:
    from fvlib.experiment import Experiment

Ingredient = tuple[str, dict]  # (name, the FVConfig fields it changes)
BETA_GRID = (1.0, 2.0, 3.0, 5.0, 8.0)
NORM_FACTORS = (0.5, 0.75)     # ℓ2 radius as a share of the paper config's mean ‖δ‖₂ on the dev trials
COST_CAP = 1.5                 # issue 13: the variant costs at most 1.5× the paper's solve
BASE = "paper default"
COLUMNS = ("UA", "MIA", "RA", "TA")


@dataclasses.dataclass
class Selection:
    """What `select` chose: the config, the ingredients in the order taken, and every round's rows."""
    scenario: str
    base: FVConfig
    steps: list[Ingredient]
    config: FVConfig
    history: pd.DataFrame


def relative_cost(cfg: FVConfig, base: FVConfig) -> float:
    """Solve FLOPs of cfg over base's, per training image: a step is a forward and an input-gradient
    backward (≈ 2 forward units); per-step distillation targets add one forward, clean targets one
    forward per image once."""
    def units(c: FVConfig) -> float:
        per_epoch = 3.0 if c.objective == "distill" and c.distill_targets == "view" else 2.0
        once = 1.0 if c.objective == "distill" and c.distill_targets == "clean" else 0.0
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
        "retain target": [("distill to θ_o (clean)", {"objective": "distill", "distill_targets": "clean"}),
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
    rows = sensitivity.sweep(ex, scenario, points, list(trials), name="selection", progress=progress)
    ref = retrain.loc[rows["trial"], list(COLUMNS)].to_numpy()
    rows["gap"] = np.abs(rows[list(COLUMNS)].to_numpy() - ref).mean(axis=1) * 100
    return rows


def summarize(rows: pd.DataFrame, configs: dict[str, FVConfig], retrain: pd.DataFrame,
              base: FVConfig) -> pd.DataFrame:
    """One row per named config: means (%) of UA, MIA, RA, TA, Avg.Gap to Retrain's means on the
    same trials, mean per-trial gap, mean ‖δ‖₂, seconds per vector, relative cost."""
    out = []
    for name, cfg in configs.items():
        sub = rows[rows["variant"] == name]
        means = (sub[list(COLUMNS)].mean() * 100).to_dict()
        ref = (retrain.loc[sub["trial"]].mean() * 100).to_dict()
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

    trials: E2's trials (default: the profile's sweep trials); beta_trials: E3's (default: all
    trials; class-wise needs every class that should get its own Beta).
    """
    _check_development(ex)
    base = base if base is not None else ex.profile.fv_for(scenario)
    trials = sensitivity.trial_ids(ex, trials)
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
    grid = {f"{label(steps)} | Beta {b:g}": (b, dataclasses.replace(current, beta=b, beta_per_class=None))
            for b in sorted({*BETA_GRID, current.beta})}  # the current Beta is always a candidate
    configs = {label(steps): current, **{n: c for n, (_b, c) in grid.items()}}
    rows = scored(ex, scenario, configs, trials, retrain, progress)
    res = summarize(rows, configs, retrain, base)
    now = float(res.loc[res["variant"] == label(steps), "Avg.Gap"].iloc[0])
    if scenario == "classwise":
        table = _per_class_betas(rows, grid, ex.data.num_classes, current)
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


def _per_class_betas(rows: pd.DataFrame, grid: dict, num_classes: int, current: FVConfig) -> tuple[float, ...]:
    """Per class (trial): the grid Beta of smallest gap to that class's Retrain (ties: the smaller
    Beta), from `scored` rows; classes outside the trials keep the current config's Beta."""
    table = list(current.beta_per_class) if current.beta_per_class is not None else [current.beta] * num_classes
    on_grid = rows[rows["variant"].isin(grid)].assign(beta=lambda d: [grid[v][0] for v in d["variant"]])
    for t, sub in on_grid.groupby("trial"):
        table[int(t)] = float(sub.sort_values(["gap", "beta"])["beta"].iloc[0])
    return tuple(table)


def ablation(ex: "Experiment", scenario: str, sel: Selection, trials: Sequence[int] | None = None,
             progress: bool = False) -> pd.DataFrame:
    """E5 on ex (any experiment; the final θ_o for the report): the paper's config, each ingredient
    alone, the chosen config without each one, and the chosen config; indexed by variant."""
    trials = list(trials) if trials is not None else ex.trials()
    configs = {BASE: sel.base}
    for ing in sel.steps:
        configs.setdefault(f"{BASE} + {ing[0]}", apply(sel.base, [ing]))
    for i, ing in enumerate(sel.steps):
        rest = [s for j, s in enumerate(sel.steps) if j != i]
        configs.setdefault(f"FV+ − {ing[0]}", apply(sel.base, rest))
    configs[f"FV+ ({label(sel.steps)})"] = sel.config
    res = evaluate(ex, scenario, configs, trials, retrain_means(ex, scenario, trials), sel.base, progress)
    return res.set_index("variant")
