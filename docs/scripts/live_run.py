"""The README's "Monitor a run live" figure: a GRPO run's B* next to its loss.

    python docs/scripts/live_run.py                      # writes docs/figures/live_run.png
    python docs/scripts/live_run.py --steps 10 -o /tmp/x.png

Trains TRL's real ``GRPOTrainer`` on CPU (a tiny random Qwen2, ``trl_sim.py``) with
``TRMCallback(kl_max=DELTA, length=max_completion_length)``. vLLM is simulated: the
completions are sampled from a copy of the policy whose weights are perturbed by
N(0, sigma^2), sigma growing geometrically over the run, so that the rollout/training
mismatch TRL logs grows. The figure is drawn from ``trainer.state.log_history`` alone:
the loss, TRL's detector ``max k2 = (sampling_logp_difference/max)^2 / 2`` against the
assumed delta, ``trm/B_star`` with the flagged steps (``trm/flagged``), and -- the same
entries fed to ``trmbounds.monitor.Monitor`` without an assumption -- B* with max k2
plugged in as delta (a proxy, not a bound). Needs the ``trl`` extra and matplotlib
(``pip install -e ".[trl,logs]"``); about a minute of CPU for 40 steps.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DELTA = 1e-3  # the assumed trust region: max_t KL(pi_roll || pi_theta)(c_t) <= DELTA
SIGMA = (3e-4, 1e-2)  # the engine's weight noise at the first and the last step
DETECTOR = "sampling/sampling_logp_difference/max"


def sigma_schedule(steps: int):
    """sigma at weight sync k (= training step k; sync 0 is at construction)."""
    lo, hi = SIGMA

    def sigma(k: int) -> float:
        f = min(max(k - 1, 0) / max(steps - 1, 1), 1.0)
        return lo * (hi / lo) ** f

    return sigma


def train(steps: int, workdir: Path) -> list[dict]:
    """The run's ``log_history`` (the entries of its logging steps)."""
    import trl.trainer.grpo_trainer as G
    import trl_sim
    from transformers import PrinterCallback

    from trmbounds.integrations.trl import TRMCallback

    engine = type(
        "RampedVLLM", (trl_sim.PerturbedVLLM,), {"sigma": staticmethod(sigma_schedule(steps))}
    )
    G.VLLMGeneration = engine  # vLLM simulated (trl_sim.py)
    cb = TRMCallback(kl_max=DELTA, length=trl_sim.MAX_COMPLETION_LENGTH,
                     reward_range=trl_sim.REWARD_RANGE)  # fmt: skip
    t = trl_sim.grpo_trainer(workdir, steps, callbacks=[cb])
    t.remove_callback(PrinterCallback)  # transformers prints every log without tqdm
    t.train()
    return [e for e in t.state.log_history if DETECTOR in e]


def spans(steps, mask):
    """(first, last) of each run of consecutive masked steps."""
    out: list[list[int]] = []
    for s, m in zip(steps, mask):
        if m and out and out[-1][1] == s - 1:
            out[-1][1] = s
        elif m:
            out.append([s, s])
    return out


def plot(hist: list[dict], out: Path, steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import trl_sim

    from trmbounds.monitor import Monitor

    step = np.array([e["step"] for e in hist])
    loss = np.array([e["loss"] for e in hist])
    k2 = np.array([e[DETECTOR] ** 2 / 2 for e in hist])
    b_star = np.array([e["trm/B_star"] for e in hist])
    flagged = np.array([e["trm/flagged"] for e in hist], dtype=bool)
    # the same entries through a Monitor without an assumption: B* with the detector
    # plugged in as delta: a proxy, not a bound (max k2 is a detector, not an estimate of delta)
    m = Monitor(length=trl_sim.MAX_COMPLETION_LENGTH, reward_range=trl_sim.REWARD_RANGE)
    b_est = np.array([m.update(e["step"], e).unified for e in hist])
    a = trl_sim.REWARD_RANGE[1] - trl_sim.REWARD_RANGE[0]

    from matplotlib.patches import Patch

    fig, (ax0, ax1, ax2) = plt.subplots(3, 1, figsize=(6.4, 7.4), sharex=True, layout="constrained",
                                        height_ratios=(1, 1, 1.25))  # fmt: skip
    for lo, hi in spans(step, flagged):
        for ax in (ax0, ax1, ax2):
            ax.axvspan(lo - 0.5, hi + 0.5, color="C3", alpha=0.08, lw=0)
    ax0.plot(step, loss, color="C0", lw=1.3)
    ax0.axhline(0, color="0.6", lw=0.6)
    ax0.set_ylabel("loss")
    ax0.set_title("(a) GRPO training loss", loc="left", fontsize=10)

    ax1.semilogy(step, k2, color="C1", marker="o", ms=2.5, lw=1.1,
                 label=r"TRL's detector: max $k_2$ over sampled tokens")  # fmt: skip
    ax1.axhline(DELTA, color="k", ls="--", lw=1, label=rf"assumed $\delta$ = {DELTA:g}")
    ax1.set_ylabel(r"max $k_2 = \frac{1}{2}(\log\rho_t)^2$")
    ax1.set_title("(b) rollout/training mismatch", loc="left", fontsize=10)
    ax1.legend(loc="upper left", fontsize=8, frameon=False)

    ax2.semilogy(step, b_star, color="C2", lw=1.6,
                 label=r"$B^*$ under the assumed $\delta$ (trm/B_star)")  # fmt: skip
    ax2.semilogy(step, b_est, color="C4", lw=1.1, ls="-.",
                 label=r"$B^*$ at $\delta$ = max $k_2$ (a proxy, not a bound)")  # fmt: skip
    ax2.axhline(a, color="k", ls="--", lw=1, label=f"advantage range a = {a:g} (vacuous above)")
    ax2.set_ylabel(r"$B^*$ (reward units)")
    ax2.set_xlabel("training step")
    ax2.set_title(r"(c) the TRM bound $B^*$ logged by TRMCallback", loc="left", fontsize=10)
    shade = Patch(color="C3", alpha=0.15, lw=0, label="flagged steps (shaded in every panel)")
    h, _ = ax2.get_legend_handles_labels()
    ax2.legend(handles=[*h, shade], loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2,
               fontsize=8, frameon=False)  # fmt: skip
    ax2.set_xlim(0.5, steps + 0.5)
    fig.suptitle(
        f"TRL GRPOTrainer with TRMCallback(kl_max={DELTA:g}, length="
        f"{trl_sim.MAX_COMPLETION_LENGTH}); simulated rollout\nengine whose weight noise grows "
        f"over the run (tiny random Qwen2, CPU)",
        fontsize=10,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=150)
    plt.close(fig)
    # a 128-colour palette: a third of the size, no visible change for line art
    from PIL import Image

    Image.open(buf).convert("RGB").quantize(colors=128).save(out, optimize=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=40, help="training steps (default 40)")
    ap.add_argument("-o", "--out", type=Path, default=HERE.parent / "figures" / "live_run.png",
                    help="the PNG to write (default docs/figures/live_run.png)")  # fmt: skip
    a = ap.parse_args(argv)
    if a.steps < 1:
        ap.error("--steps must be >= 1")
    sys.path.insert(0, str(HERE))  # trl_sim, when this file is imported rather than run
    with tempfile.TemporaryDirectory() as d:
        hist = train(a.steps, Path(d))
    plot(hist, a.out, a.steps)
    print(f"Wrote {a.out}")


if __name__ == "__main__":
    main()
