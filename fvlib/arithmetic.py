"""Forget-vector arithmetic studies: the two-vector grid of Fig. 3 and its optimised weights (§5)."""
from __future__ import annotations

import numpy as np
from torch import nn

from fvlib import metrics, splits
from fvlib.data import ImageData
from fvlib.forget_vector import ForgetVector
from fvlib.solve import FVConfig, compose

GRID = tuple(round(0.2 * i, 1) for i in range(6))  # w ∈ {0, 0.2, ..., 1.0} (Fig. 3)


def pair_grid(model: nn.Module, data: ImageData, fv_a: ForgetVector, fv_b: ForgetVector,
              class_a: int, class_b: int, weights=GRID, batch_size: int = 1024) -> dict:
    """Fig. 3: δ = w1·δ_a + w2·δ_b over the grid -> UA_a, UA_b (train images of a, b), TA on the
    test images of the other classes, and their mean; each a (len(w1), len(w2)) array in [0, 1]."""
    xa, xb = data.train_x[data.train_y == class_a], data.train_x[data.train_y == class_b]
    ya, yb = data.train_y[data.train_y == class_a], data.train_y[data.train_y == class_b]
    keep = (data.test_y != class_a) & (data.test_y != class_b)
    xt, yt = data.test_x[keep], data.test_y[keep]
    n = len(weights)
    out = {k: np.zeros((n, n)) for k in ("UA_a", "UA_b", "TA")}
    for i, w1 in enumerate(weights):
        for j, w2 in enumerate(weights):
            delta = (w1 * fv_a + w2 * fv_b).delta.to(data.device)
            out["UA_a"][i, j] = 1 - metrics.accuracy(model, xa, ya, delta, batch_size=batch_size)
            out["UA_b"][i, j] = 1 - metrics.accuracy(model, xb, yb, delta, batch_size=batch_size)
            out["TA"][i, j] = metrics.accuracy(model, xt, yt, delta, batch_size=batch_size)
    out["avg"] = (out["UA_a"] + out["UA_b"] + out["TA"]) / 3
    out["weights"] = list(weights)
    return out


def optimal_pair(model: nn.Module, data: ImageData, fv_a: ForgetVector, fv_b: ForgetVector,
                 class_a: int, class_b: int, cfg: FVConfig) -> tuple[ForgetVector, np.ndarray]:
    """The star of Fig. 3: (w1, w2) minimising Eq. 4 over w with D_f = class a ∪ class b."""
    split = splits.forget_classes(data, [class_a, class_b])
    fv, w = compose(model, data, [split], [fv_a, fv_b], cfg, progress=False)[0]
    return fv, w.cpu().numpy()


def nearest_cell(w: np.ndarray, weights=GRID) -> tuple[int, int]:
    """Grid cell closest to optimised weights (w1, w2) (for marking the star)."""
    grid = np.asarray(weights)
    return int(np.abs(grid - w[0]).argmin()), int(np.abs(grid - w[1]).argmin())


def cu_fv_records(profile, data: ImageData, original: nn.Module, trials=None,
                  progress: bool = True) -> list[dict]:
    """Table 3: CU-FV on random forgetting — weights over all class-wise vectors, per trial (cached)."""
    from fvlib import study
    trials = list(range(profile.trials)) if trials is None else list(trials)
    split_list = [splits.random(data, t, profile.percent) for t in trials]
    keys = [study.record_key(profile, data, original, "cu_fv", s) for s in split_list]
    done = {k: r for k in keys if (r := study.read_record(k)) is not None}
    todo = [(k, s) for k, s in zip(keys, split_list) if k not in done]
    if todo:
        basis = study.forget_vectors(original, data, [splits.classwise(data, c)
                                                      for c in range(data.num_classes)], profile, progress)
        solved = compose(original, data, [s for _, s in todo], basis, profile.fv_random, progress)
        for (k, s), (fv, w) in zip(todo, solved):
            res = metrics.evaluate(original, data, s, fv.delta, batch_size=profile.eval_batch_size)
            done[k] = study.write_record("cu_fv", s, res, fv.meta["seconds"], k, profile, data,
                                         weights=w.tolist())
    return [done[k] for k in keys]


def slider(model: nn.Module, data: ImageData, fv_a: ForgetVector, fv_b: ForgetVector,
           class_a: int, class_b: int):
    """Interactive (w1, w2) sliders showing UA on both classes and TA live (Jupyter only)."""
    import ipywidgets as widgets

    def show(w1: float, w2: float) -> None:
        g = pair_grid(model, data, w1 * fv_a, w2 * fv_b, class_a, class_b, weights=(1.0,))
        print(f"w1={w1:.2f} w2={w2:.2f}: UA{class_a}={100 * g['UA_a'][0, 0]:.1f} %  "
              f"UA{class_b}={100 * g['UA_b'][0, 0]:.1f} %  TA={100 * g['TA'][0, 0]:.1f} %")
    step = dict(min=0.0, max=1.5, step=0.05, value=0.5, continuous_update=False)
    return widgets.interactive(show, w1=widgets.FloatSlider(**step), w2=widgets.FloatSlider(**step))
