"""Forget-vector arithmetic: the two-vector grid of Fig. 3 and its optimised weights (P5).

Table 3 (CU-FV) needs nothing here: "cu_fv" is a method of the study (fvlib.systems).
"""
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
    """Fig. 3: systems (w1·δ_a + w2·δ_b).wrap(θ_o) over the grid -> UA_a, UA_b (train images of a,
    b), TA on the test images of the other classes, and their mean; each (len(w1), len(w2)) in [0, 1]."""
    xa, xb = data.train_x[data.train_y == class_a], data.train_x[data.train_y == class_b]
    ya, yb = data.train_y[data.train_y == class_a], data.train_y[data.train_y == class_b]
    keep = (data.test_y != class_a) & (data.test_y != class_b)
    xt, yt = data.test_x[keep], data.test_y[keep]
    n = len(weights)
    out = {k: np.zeros((n, n)) for k in ("UA_a", "UA_b", "TA")}
    for i, w1 in enumerate(weights):
        for j, w2 in enumerate(weights):
            system = (w1 * fv_a + w2 * fv_b).wrap(model)
            out["UA_a"][i, j] = 1 - metrics.accuracy(system, xa, ya, batch_size=batch_size)
            out["UA_b"][i, j] = 1 - metrics.accuracy(system, xb, yb, batch_size=batch_size)
            out["TA"][i, j] = metrics.accuracy(system, xt, yt, batch_size=batch_size)
    out["avg"] = (out["UA_a"] + out["UA_b"] + out["TA"]) / 3
    out["weights"] = list(weights)
    return out


def optimal_pair(model: nn.Module, data: ImageData, fv_a: ForgetVector, fv_b: ForgetVector,
                 class_a: int, class_b: int, cfg: FVConfig) -> tuple[ForgetVector, np.ndarray]:
    """The star of Fig. 3: (w1, w2) minimising Eq. 4 over w with D_f = class a ∪ class b."""
    split = splits.forget_classes(data, [class_a, class_b])
    fv, w = compose(model, data, [split], [fv_a, fv_b], cfg, progress=False)[0]
    return fv, w.cpu().numpy()


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
