"""Exact ground truth (SPEC §6): tabular autoregressive policy pairs, fully enumerated.

A tabular policy over vocabulary ``V`` and horizon ``T`` stores a next-token
distribution for every prefix. ``roll[t]`` has shape ``(V**t, V)``: row ``p`` is
``π(·|prefix p)`` at position ``t + 1``, where a prefix ``(y_1..y_t)`` has index
``sum_j y_j V**(t-j)`` (base-V digits). Enumerating all ``V**T`` responses gives every
statistic of SPEC §2 and the worst-case surrogate error exactly, by definitions that do
not share code with the library.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exact:
    kl_max: float  # max over all contexts of KL(roll || theta)
    tv_max: float  # max over all contexts of TV
    kl_seq: float  # KL(P_roll || P_theta) over whole responses
    tv_seq: float  # TV(P_roll, P_theta) over whole responses
    per_position: np.ndarray  # D̄_t = E_{c_t ~ d_t^roll} TV(c_t), t = 1..T
    kl_per_position: np.ndarray  # E_{c_t ~ d_t^roll} KL(c_t)
    worst_error: float  # max over R in [0,1]^Y of |J(θ) - J(roll) - L(θ)|


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class TabularPair:
    """Rollout policy ``roll`` and trained policy ``theta``, both tabular."""

    def __init__(self, roll: list[np.ndarray], theta: list[np.ndarray]):
        self.roll = roll
        self.theta = theta
        self.T = len(roll)
        self.V = roll[0].shape[1]

    # --------------------------------------------------------------- enumeration
    def responses(self) -> np.ndarray:
        """All V**T responses, shape (V**T, T), in base-V order."""
        V, T = self.V, self.T
        idx = np.arange(V**T)
        digits = [(idx // V ** (T - 1 - t)) % V for t in range(T)]
        return np.stack(digits, axis=1)

    def _token_probs(self, ys: np.ndarray):
        """π_roll(y_t|c_t) and π_θ(y_t|c_t) for each response and position."""
        n, T = ys.shape
        pr = np.empty((n, T))
        pt = np.empty((n, T))
        prefix = np.zeros(n, dtype=np.int64)
        for t in range(T):
            pr[:, t] = self.roll[t][prefix, ys[:, t]]
            pt[:, t] = self.theta[t][prefix, ys[:, t]]
            prefix = prefix * self.V + ys[:, t]
        return pr, pt

    def exact(self) -> Exact:
        ys = self.responses()
        pr, pt = self._token_probs(ys)
        P_roll = pr.prod(axis=1)
        P_theta = pt.prod(axis=1)
        rho = pt / pr

        # Per-context divergences, straight from the definitions.
        kl_ctx = [np.sum(r * np.log(r / q), axis=1) for r, q in zip(self.roll, self.theta)]
        tv_ctx = [0.5 * np.abs(r - q).sum(axis=1) for r, q in zip(self.roll, self.theta)]
        # d_t^roll: probability of each prefix of length t under roll, by summing
        # whole-response probabilities (not the chain rule).
        per_pos = np.empty(self.T)
        kl_pos = np.empty(self.T)
        for t in range(self.T):
            prefix = (
                ys[:, :t] @ (self.V ** np.arange(t - 1, -1, -1)) if t else np.zeros(len(ys), int)
            )
            d_t = np.bincount(prefix, weights=P_roll, minlength=self.V**t)
            per_pos[t] = d_t @ tv_ctx[t]
            kl_pos[t] = d_t @ kl_ctx[t]

        # Error(R) = sum_y R(y) coef(y), linear in R; worst R in [0,1]^Y.
        coef = P_theta - P_roll - P_roll * (rho - 1.0).sum(axis=1)
        worst = max(coef[coef > 0].sum(), -coef[coef < 0].sum())
        return Exact(
            kl_max=float(max(k.max() for k in kl_ctx)),
            tv_max=float(max(v.max() for v in tv_ctx)),
            kl_seq=float(np.sum(P_roll * np.log(P_roll / P_theta))),
            tv_seq=float(0.5 * np.abs(P_theta - P_roll).sum()),
            per_position=per_pos,
            kl_per_position=kl_pos,
            worst_error=float(worst),
        )

    def error_coefficients(self) -> np.ndarray:
        """coef(y) with Error(R) = sum_y R(y) coef(y)."""
        ys = self.responses()
        pr, pt = self._token_probs(ys)
        P_roll, P_theta = pr.prod(axis=1), pt.prod(axis=1)
        return P_theta - P_roll - P_roll * (pt / pr - 1.0).sum(axis=1)

    # --------------------------------------------------------------- sampling
    def sample(self, n: int, rng: np.random.Generator):
        """n responses from π_roll: tokens (n, T) and the sampled tokens' log-probs."""
        T, V = self.T, self.V
        toks = np.empty((n, T), dtype=np.int64)
        lr = np.empty((n, T))
        lt = np.empty((n, T))
        prefix = np.zeros(n, dtype=np.int64)
        for t in range(T):
            p = self.roll[t][prefix]  # (n, V)
            u = rng.random(n)[:, None]
            y = np.minimum((u > np.cumsum(p, axis=1)).sum(axis=1), V - 1)
            toks[:, t] = y
            lr[:, t] = np.log(p[np.arange(n), y])
            lt[:, t] = np.log(self.theta[t][prefix, y])
            prefix = prefix * V + y
        return toks, lr, lt


def random_pair(
    V: int,
    T: int,
    rng: np.random.Generator,
    mode: str = "uniform",
    scale: float = 0.3,
    temperature: float = 1.0,
) -> TabularPair:
    """A random pair with full support.

    ``mode="uniform"``: θ's logits are roll's plus Gaussian noise of size ``scale`` at
    every context. ``mode="concentrated"``: the noise is tiny except at a few contexts
    (about one in five, at least one), where it has size ``scale`` — the divergence
    concentrates, as when an MoE routing flips on a few tokens.
    """
    roll, theta = [], []
    for t in range(T):
        z = rng.normal(size=(V**t, V)) / temperature
        if mode == "uniform":
            noise = scale * rng.normal(size=z.shape)
        elif mode == "concentrated":
            noise = 1e-3 * scale * rng.normal(size=z.shape)
            hot = rng.random(V**t) < 0.2
            if t == 0 or not hot.any():
                hot[rng.integers(V**t)] = True
            noise[hot] = scale * rng.normal(size=(hot.sum(), V))
        else:
            raise ValueError(mode)
        roll.append(_softmax(z))
        theta.append(_softmax(z + noise))
    return TabularPair(roll, theta)
