"""A timeline plot of a check: the bound, the budget and the acceptance rate per step.

matplotlib is imported inside :func:`plot_timeline` only.
"""

from __future__ import annotations

import numpy as np

from .check import ACCEPT_TARGET, STATES, CheckResult

__all__ = ["plot_timeline"]


def plot_timeline(result: CheckResult, ax=None):
    """Plot :math:`B^*` per step against the budget :math:`a`, and the acceptance rate.

    Parameters
    ----------
    result : CheckResult
    ax : matplotlib Axes, optional
        Created (with its figure) when not given.

    Returns
    -------
    matplotlib.axes.Axes
        The bound axes; the acceptance rate is on a twin axis.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(9, 4.5), layout="constrained")
    x = result.step
    a = result.assumption.adv_range
    if result.assumption.given:
        ax.plot(x, result.bound, color="C0", lw=1.5, label="B* under the assumption")
    ax.plot(x, result.bound_est, color="C1", lw=1, ls="--", label="B* under the estimates")
    ax.axhline(a, color="k", lw=1, ls=":", label=f"budget a = {a:g} (vacuous above)")
    ref = result.state == STATES.index("refuted")
    if ref.any():
        y = np.where(np.isnan(result.unified[ref]), a, result.unified[ref])
        ax.scatter(x[ref], y, color="red", marker="x", zorder=3, label="refuted")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("unified bound B* (reward units)")
    acc = result.acceptance
    handles, labels = ax.get_legend_handles_labels()
    if acc is not None and np.any(~np.isnan(acc)):
        ax2 = ax.twinx()
        ax2.plot(x, acc, color="C2", lw=1, label="acceptance rate")
        ax2.axhline(ACCEPT_TARGET, color="C2", lw=0.8, ls=":", label="70 % target")
        ax2.set_ylim(0, 1.02)
        ax2.set_ylabel("acceptance rate")
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="best", fontsize="small")
    ax.set_title(f"trmbounds check: {result.path}", fontsize="small")
    return ax
