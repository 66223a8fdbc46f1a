r"""Error bounds of Trust Region Masking, as pure numpy formulas.

Every function returns an upper bound on the surrogate error

.. math::

    |\mathrm{Error}| = |J(\pi_\theta) - J(\pi_{roll}) - L(\pi_\theta)|

for responses of length :math:`T`, where
:math:`L(\pi_\theta) = E_{roll}[R \sum_t (\rho_t - 1)]`. Values are in reward units:
they scale linearly in the advantage range ``adv_range`` :math:`a = r_{max} - r_{min}`
(the paper takes :math:`a = 1`).

All functions broadcast their arguments like numpy ufuncs and return a float for
scalar input, an array otherwise. Sums over positions use closed forms, so the cost
does not grow with :math:`T` (except for an explicit per-position array).

``constants="paper"`` (default) reproduces Li et al. (2026); ``constants="sharp"``
halves every leading constant and uses :math:`T-1` in the Mixed bounds
(``docs/theory.md`` proves this; it needs full support, as the paper's do).

References
----------
Li, Liu, Xu, Tong, Li, Liu, Wang. *Trust Region Masking for Long-Horizon LLM
Reinforcement Learning*. arXiv:2512.23075 (ICML 2026).
"""

from __future__ import annotations

import numpy as np

from .errors import TrmboundsError

__all__ = [
    "NAMES",
    "CONSTANTS",
    "classical_tv",
    "classical_kl",
    "linear",
    "pm_kl",
    "pm_tv",
    "pm_kl_closed_form",
    "pm_tv_closed_form",
    "mix_kl",
    "mix_tv",
    "coupling",
    "adaptive_kl",
    "adaptive_tv",
    "adaptive",
    "unified",
    "capped_sqrt_sum",
    "capped_linear_sum",
    "capped_hybrid_sum",
    "position_weights",
]

#: The two sets of constants: the paper's, and the halved ones of ``docs/theory.md``.
CONSTANTS = ("paper", "sharp")

# zeta(-1/2), the constant of the Euler-Maclaurin expansion of sum_{k<=M} sqrt(k).
_ZETA_M_HALF = -0.20788622497735456602
# Below this M the sum of square roots is read from an exactly summed table.
_CUT = 256
_SQRT_TABLE = np.cumsum(np.sqrt(np.arange(_CUT, dtype=np.float64)))  # [M] = sum_{k<=M} sqrt(k)


#: The display names of every bound, defined once for tables, plots and messages:
#: key -> (name, short name).
NAMES: dict[str, tuple[str, str]] = {
    "classical_tv": ("Classical (TV)", "Classical TV"),
    "classical_kl": ("Classical (KL)", "Classical KL"),
    "linear": ("Linear", "Linear"),
    "pm_kl": ("Pinsker-Marginal KL", "PM-KL"),
    "pm_tv": ("Pinsker-Marginal TV", "PM-TV"),
    "mix_kl": ("Mixed KL", "Mixed KL"),
    "mix_tv": ("Mixed TV", "Mixed TV"),
    "coupling": ("Coupling", "Coupling"),
    "adaptive_kl": ("Adaptive KL", "Adaptive KL"),
    "adaptive_tv": ("Adaptive TV", "Adaptive TV"),
    "adaptive": ("Adaptive hybrid", "Adaptive"),
    "unified": ("Unified B*", "B*"),
}


def _lead(constants: str) -> float:
    if constants == "paper":
        return 4.0
    if constants == "sharp":
        return 2.0
    raise TrmboundsError(f"unknown constants {constants!r}: choose 'paper' or 'sharp'")


def _out(x: np.ndarray) -> float | np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return float(x) if x.ndim == 0 else x


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _sum_sqrt(m: np.ndarray) -> np.ndarray:
    r"""Exact-to-rounding :math:`\sum_{k=1}^{M} \sqrt{k}` for integer-valued ``M >= 0``."""
    m = np.asarray(m, dtype=np.float64)
    out = np.empty(m.shape, dtype=np.float64)
    small = m < _CUT
    out[small] = _SQRT_TABLE[m[small].astype(np.int64)]
    big = ~small
    if np.any(big):
        mb = m[big]
        r = np.sqrt(mb)
        # Euler-Maclaurin: zeta(-1/2) + 2/3 M^{3/2} + 1/2 M^{1/2} + 1/24 M^{-1/2}
        #                  - 1/1920 M^{-5/2} + 1/9216 M^{-9/2} (next term < 1e-18 relative)
        inv = 1.0 / (mb * mb)
        out[big] = (
            (2.0 / 3.0) * mb * r
            + 0.5 * r
            + _ZETA_M_HALF
            + (1.0 / 24.0 - inv / 1920.0 + inv * inv / 9216.0) / r
        )
    return out


def capped_sqrt_sum(T, c):
    r"""Closed form of :math:`\sum_{k=0}^{T-1} \min(1, c\sqrt{k})`.

    The sum is split at the cap: the first :math:`n = \min(T, \lceil 1/c^2 \rceil)`
    terms are :math:`c \sum_{k<n} \sqrt{k}` (an exact table below 256, the
    Euler-Maclaurin expansion with :math:`\zeta(-1/2)` above, relative error below
    1e-15), the remaining :math:`T - n` terms are 1.

    Parameters
    ----------
    T : int or array_like
        Number of terms (a response length).
    c : float or array_like
        Non-negative slope; :math:`c = \sqrt{\delta/2}` in the Pinsker-Marginal bounds.

    Examples
    --------
    >>> round(capped_sqrt_sum(5, 0.5), 5)   # 0 + .5 + .70711 + .86603 + 1
    3.07313
    """
    T, c = np.broadcast_arrays(_f(T), _f(c))
    with np.errstate(divide="ignore", over="ignore"):
        ncap = np.where(c > 0, np.ceil(1.0 / (c * c)), np.inf)
    n = np.minimum(T, ncap)
    n = np.maximum(n, 0.0)
    s = np.where(n > 0, c * _sum_sqrt(np.maximum(n - 1.0, 0.0)), 0.0)
    return _out(s + (T - n))


def capped_linear_sum(T, eps):
    r"""Closed form of :math:`\sum_{k=0}^{T-1} \min(1, k\varepsilon)`.

    With :math:`n = \min(T, \lceil 1/\varepsilon \rceil)` uncapped terms the sum is
    :math:`\varepsilon\, n(n-1)/2 + (T - n)`.

    Examples
    --------
    >>> capped_linear_sum(5, 0.3)   # 0 + .3 + .6 + .9 + 1
    2.8
    """
    T, eps = np.broadcast_arrays(_f(T), _f(eps))
    with np.errstate(divide="ignore", over="ignore"):
        ncap = np.where(eps > 0, np.ceil(1.0 / eps), np.inf)
    n = np.maximum(np.minimum(T, ncap), 0.0)
    return _out(eps * n * (n - 1.0) / 2.0 + (T - n))


def capped_hybrid_sum(T, eps, c):
    r"""Closed form of :math:`\sum_{k=0}^{T-1} \min(1, k\varepsilon, c\sqrt{k})`.

    :math:`k\varepsilon \le c\sqrt{k}` exactly when :math:`k \le k^* = (c/\varepsilon)^2`
    (the KL-vs-TV route crossover, :math:`k^* = \delta/(2\varepsilon^2)` for
    :math:`c = \sqrt{\delta/2}`), so the sum is the linear prefix sum up to
    :math:`k^*` plus the square-root sum after it.

    Examples
    --------
    >>> round(capped_hybrid_sum(6, 0.3, 0.4), 5)  # 0, .3, .56569, .69282, .8, .89443
    3.25293
    """
    T, eps, c = np.broadcast_arrays(_f(T), _f(eps), _f(c))
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        kstar = np.where(eps > 0, (c / np.where(eps > 0, eps, 1.0)) ** 2, np.inf)
    m = np.minimum(T, np.floor(kstar) + 1.0)
    lin = capped_linear_sum(m, eps)
    sq = capped_sqrt_sum(T, c) - capped_sqrt_sum(m, c)
    return _out(lin + sq)


def _u(kl_max):
    return np.minimum(1.0, np.sqrt(_f(kl_max) / 2.0))


def classical_tv(T, tv_max, *, adv_range=1.0, constants="paper"):
    r"""Classical trust-region bound in total variation, :math:`O(T^2)`.

    .. math:: B = 2\,T(T-1)\,\varepsilon^2 \quad (\text{no caps})

    (``sharp``: :math:`T(T-1)\varepsilon^2`). The paper's motivating bound: vacuous
    for long responses.

    Examples
    --------
    >>> round(classical_tv(4096, 5e-3), 3)   # 2*4096*4095*2.5e-5; paper: 839
    838.656
    """
    k = _lead(constants) / 2.0
    T = _f(T)
    return _out(adv_range * k * T * (T - 1.0) * _f(tv_max) ** 2)


def classical_kl(T, kl_max, *, adv_range=1.0, constants="paper"):
    r"""Classical trust-region bound in KL, :math:`O(T^2)`.

    .. math:: B = T(T-1)\,\delta

    (``sharp``: :math:`T(T-1)\delta/2`). It is :func:`classical_tv` with Pinsker's
    :math:`\varepsilon^2 \le \delta/2`.

    Examples
    --------
    >>> round(classical_kl(4096, 1e-4), 1)   # paper, T = 4096: 1677
    1677.3
    """
    k = _lead(constants) / 4.0
    T = _f(T)
    return _out(adv_range * k * T * (T - 1.0) * _f(kl_max))


def linear(T, tv_max, *, adv_range=1.0, constants="paper"):
    r"""Linear bound :math:`B = 4T\varepsilon` (``sharp``: :math:`2T\varepsilon`).

    Examples
    --------
    >>> round(linear(4096, 0.5 ** 0.5))   # paper, large divergence: 11 585
    11585
    """
    return _out(adv_range * _lead(constants) * _f(T) * _f(tv_max))


def pm_kl(T, kl_max, *, adv_range=1.0, constants="paper"):
    r"""Pinsker-Marginal bound in KL, :math:`O(T^{3/2})`.

    .. math::

        B = 4\,u \sum_{t=1}^{T} s_t,\qquad u = \min(1, \sqrt{\delta/2}),\quad
        s_t = \min\!\left(1, \sqrt{(t-1)\delta/2}\right)

    Evaluated exactly in O(1) per point (:func:`capped_sqrt_sum`). For
    :math:`\delta \le 2/T` it is at most :math:`\tfrac43 T^{3/2}\delta`
    (:func:`pm_kl_closed_form`, the value the paper tabulates).

    Examples
    --------
    >>> round(pm_kl(4096, 1e-4), 4)   # paper's table: 35.0 (closed form 34.9525)
    34.9461
    """
    u = _u(kl_max)
    s = capped_sqrt_sum(T, np.sqrt(_f(kl_max) / 2.0))
    return _out(adv_range * _lead(constants) * u * s)


def pm_tv(T, kl_max, tv_max, *, adv_range=1.0, constants="paper"):
    r"""Pinsker-Marginal bound with the TV maximum, :math:`O(T^{3/2})`.

    .. math:: B = 4\,\min(1,\varepsilon) \sum_{t=1}^{T} \min\!\left(1, \sqrt{(t-1)\delta/2}\right)

    Small-divergence regime: :math:`\le \tfrac83 T^{3/2}\varepsilon\sqrt{\delta/2}`.

    Examples
    --------
    >>> round(pm_tv(4096, 1e-4, 5e-3), 4)   # paper's table: 24.7 (closed form 24.7152)
    24.7106
    """
    e = np.minimum(1.0, _f(tv_max))
    s = capped_sqrt_sum(T, np.sqrt(_f(kl_max) / 2.0))
    return _out(adv_range * _lead(constants) * e * s)


def pm_kl_closed_form(T, kl_max, *, adv_range=1.0, constants="paper"):
    r"""The paper's small-divergence approximation :math:`\tfrac43 T^{3/2}\delta` of :func:`pm_kl`.

    An upper bound on :func:`pm_kl` when no cap binds (:math:`\delta \le 2/T`).

    Examples
    --------
    >>> round(pm_kl_closed_form(4096, 1e-4), 4)
    34.9525
    """
    k = _lead(constants) / 3.0
    return _out(adv_range * k * _f(T) ** 1.5 * _f(kl_max))


def pm_tv_closed_form(T, kl_max, tv_max, *, adv_range=1.0, constants="paper"):
    r"""The paper's small-divergence approximation :math:`\tfrac83 T^{3/2}\varepsilon\sqrt{\delta/2}`.

    Examples
    --------
    >>> round(pm_tv_closed_form(4096, 1e-4, 5e-3), 4)
    24.7152
    """
    k = 2.0 * _lead(constants) / 3.0
    return _out(adv_range * k * _f(T) ** 1.5 * _f(tv_max) * np.sqrt(_f(kl_max) / 2.0))


def _mix_len(T, constants):
    T = _f(T)
    return T if constants == "paper" else T - 1.0


def mix_kl(T, kl_max, kl_seq, *, adv_range=1.0, constants="paper"):
    r"""Mixed bound in KL, :math:`O(T)`.

    .. math:: B = 4\,T\,u\,\min\!\left(1, \sqrt{D_{KL}^{seq}/2}\right),\qquad u = \min(1, \sqrt{\delta/2})

    Uncapped it equals :math:`2T\sqrt{\delta\, D_{KL}^{seq}}`. ``sharp``: constant 2
    and :math:`T-1` in place of :math:`T`.

    Examples
    --------
    >>> round(mix_kl(4096, 1e-4, 0.01), 3)   # paper's table: 8.2
    8.192
    """
    _lead(constants)
    u = _u(kl_max)
    d = np.minimum(1.0, np.sqrt(_f(kl_seq) / 2.0))
    return _out(adv_range * _lead(constants) * _mix_len(T, constants) * u * d)


def mix_tv(T, tv_max, tv_seq, *, adv_range=1.0, constants="paper"):
    r"""Mixed bound in TV, :math:`O(T)`.

    .. math:: B = 4\,T\,\min(1,\varepsilon)\,\min(1, D_{TV}^{seq})

    ``sharp``: constant 2 and :math:`T-1` in place of :math:`T`.

    Examples
    --------
    >>> round(mix_tv(4096, 5e-3, 0.05), 3)   # paper's table, column B: 4.1
    4.096
    """
    e = np.minimum(1.0, _f(tv_max))
    d = np.minimum(1.0, _f(tv_seq))
    return _out(adv_range * _lead(constants) * _mix_len(T, constants) * e * d)


def coupling(T, tv_max, *, adv_range=1.0, constants="paper"):
    r"""Coupling bound, :math:`O(T)` once capped.

    .. math:: B = 4\,\min(1,\varepsilon) \sum_{t=1}^{T} \min\!\left(1, (t-1)\varepsilon\right)

    It equals :math:`2T(T-1)\varepsilon^2` when :math:`T\varepsilon \le 1`.

    Examples
    --------
    >>> round(coupling(4096, 5e-3), 1)   # paper's table, column B: 79.9
    79.9
    """
    e = np.minimum(1.0, _f(tv_max))
    return _out(adv_range * _lead(constants) * e * capped_linear_sum(T, _f(tv_max)))


def _weights(T, eps, c, n: int | None = None) -> np.ndarray:
    """w_t = min(1, (T-t) eps, c sqrt(T-t)) for t = 1..n (default T); eps or c = inf: route off."""
    n = int(T) if n is None else int(n)
    j = (float(T) - 1.0) - np.arange(n, dtype=np.float64)  # T - t
    eps = _f(eps)[..., None]
    c = _f(c)[..., None]
    with np.errstate(invalid="ignore"):
        lin = np.where(np.isinf(eps), np.inf, j * eps)
        sq = np.where(np.isinf(c), np.inf, c * np.sqrt(j))
    return np.minimum(1.0, np.minimum(lin, sq))


def position_weights(T, kl_max=None, tv_max=None, n=None) -> np.ndarray:
    r"""Position weights of the Adaptive bound and of LN-TRM, for :math:`t = 1..n`.

    .. math:: w_t = \min\!\left(1, (T-t)\varepsilon, \sqrt{(T-t)\delta/2}\right)

    A route whose statistic is ``None`` is dropped from the minimum. ``n`` (default
    ``T``) limits the positions computed, so a long ``T`` with divergence only in the
    first ``n`` positions needs no array of length ``T``.

    Examples
    --------
    >>> position_weights(4, kl_max=0.02, tv_max=0.1)   # T - t = 3, 2, 1, 0
    array([0.17320508, 0.14142136, 0.1       , 0.        ])
    """
    if kl_max is None and tv_max is None:
        raise TrmboundsError("position weights need kl_max or tv_max")
    c = np.inf if kl_max is None else np.sqrt(_f(kl_max) / 2.0)
    eps = np.inf if tv_max is None else _f(tv_max)
    return _weights(T, eps, c, n)


def _adaptive(T, eps, c, per_position, adv_range, constants):
    """4 sum_t Dbar_t min(1, (T-t) eps, c sqrt(T-t)); eps or c = inf switches a route off."""
    lead = _lead(constants)
    if per_position is None or np.ndim(per_position) == 0:
        # Uniform Dbar: O(1) closed forms.
        T, eps, c = np.broadcast_arrays(_f(T), _f(eps), _f(c))
        both = np.isfinite(eps) & np.isfinite(c)
        with np.errstate(invalid="ignore"):
            s = np.where(
                both,
                capped_hybrid_sum(T, np.where(both, eps, 0), np.where(both, c, 0)),
                np.where(
                    np.isfinite(eps),
                    capped_linear_sum(T, np.where(np.isfinite(eps), eps, 0)),
                    capped_sqrt_sum(T, np.where(np.isfinite(c), c, 0)),
                ),
            )
        if per_position is None:
            dbar = np.minimum(1.0, np.minimum(eps, c))
        else:
            dbar = _f(per_position)
        return _out(adv_range * lead * dbar * s)
    d = _f(per_position)
    T_arr = np.unique(_f(T))
    if T_arr.size != 1 or T_arr[0] != d.shape[-1]:
        raise TrmboundsError(
            f"per-position array has length {d.shape[-1]}, expected T = {T_arr.tolist()}"
        )
    w = _weights(d.shape[-1], eps, c)
    res = adv_range * lead * np.sum(d * w, axis=-1)
    # Broadcast like the closed forms do: against the shape of T too.
    return _out(np.broadcast_to(res, np.broadcast_shapes(np.shape(res), np.shape(T))).copy())


def adaptive_kl(T, kl_max, per_position=None, *, adv_range=1.0, constants="paper"):
    r"""Adaptive bound, KL route (data-dependent).

    .. math:: B = 4 \sum_{t=1}^{T} \bar D_t \min\!\left(1, \sqrt{(T-t)\delta/2}\right)

    Parameters
    ----------
    T : int or array_like
        Response length.
    kl_max : float or array_like
        :math:`\delta`, the maximum token-level KL(roll ‖ θ).
    per_position : None, float or array_like of shape (..., T)
        :math:`\bar D_t = E_{c_t \sim d_t^{roll}}[TV(c_t)]`. ``None`` uses the
        conservative uniform fill :math:`\min(1, \sqrt{\delta/2})`, with which this
        bound equals :func:`pm_kl` exactly.

    Examples
    --------
    >>> round(adaptive_kl(4096, 1e-4), 4) == round(pm_kl(4096, 1e-4), 4)
    True
    """
    return _adaptive(T, np.inf, np.sqrt(_f(kl_max) / 2.0), per_position, adv_range, constants)


def adaptive_tv(T, tv_max, per_position=None, *, adv_range=1.0, constants="paper"):
    r"""Adaptive bound, TV route (data-dependent).

    .. math:: B = 4 \sum_{t=1}^{T} \bar D_t \min\!\left(1, (T-t)\varepsilon\right)

    With :math:`\bar D_t \equiv \varepsilon` (the default fill) it equals :func:`coupling`.

    Examples
    --------
    >>> round(adaptive_tv(4096, 5e-3), 1)
    79.9
    """
    return _adaptive(T, _f(tv_max), np.inf, per_position, adv_range, constants)


def adaptive(T, kl_max=None, tv_max=None, per_position=None, *, adv_range=1.0, constants="paper"):
    r"""Adaptive hybrid bound: the tighter route at every position.

    .. math::

        B = 4 \sum_{t=1}^{T} \bar D_t
            \min\!\left(1, (T-t)\varepsilon, \sqrt{(T-t)\delta/2}\right)

    The TV route is the tighter one for :math:`T - t \le \delta/(2\varepsilon^2)`, the KL
    route after. Either of ``kl_max`` and ``tv_max`` may be ``None`` (that route is
    dropped). Needs full support (``docs/theory.md``).

    Examples
    --------
    >>> round(adaptive(4096, 1e-4, 5e-3), 2)   # uniform fill Dbar = 5e-3
    24.71
    """
    if kl_max is None and tv_max is None:
        raise TrmboundsError("the adaptive bound needs kl_max or tv_max")
    c = np.inf if kl_max is None else np.sqrt(_f(kl_max) / 2.0)
    eps = np.inf if tv_max is None else _f(tv_max)
    return _adaptive(T, eps, c, per_position, adv_range, constants)


def unified(
    T,
    kl_max,
    tv_max=None,
    kl_seq=None,
    tv_seq=None,
    per_position=None,
    *,
    adv_range=1.0,
    constants="paper",
):
    r"""The unified bound :math:`B^*`: the minimum of the paper's bound families.

    .. math:: B^* = \min\{\text{PM-KL}, \text{PM-TV}, \text{Mix-KL}, \text{Mix-TV},
              \text{Coupling}, \text{Adaptive hybrid}\}

    Missing statistics are filled with the conservative relations of the paper
    (:math:`\varepsilon \le \min(1,\sqrt{\delta/2})`, :math:`D_{KL}^{seq} \le T\delta`,
    :math:`D_{TV}^{seq} \le \min(1, \sqrt{D_{KL}^{seq}/2}, T\varepsilon)`). This is the
    fast, broadcasting form; :func:`trmbounds.evaluate` validates inputs and reports
    which were derived.

    Examples
    --------
    >>> round(unified(4096, 1e-4, 5e-3, 0.01, 0.05), 3)   # paper's column B: <= 4.1
    4.096
    """
    T = _f(T)
    kl = _f(kl_max)
    eps = np.minimum(1.0, np.sqrt(kl / 2.0)) if tv_max is None else _f(tv_max)
    kseq = T * kl if kl_seq is None else _f(kl_seq)
    if tv_seq is None:
        tseq = np.minimum(1.0, np.minimum(np.sqrt(kseq / 2.0), T * eps))
        if per_position is not None and np.ndim(per_position) > 0:
            tseq = np.minimum(tseq, np.sum(_f(per_position), axis=-1))
    else:
        tseq = _f(tv_seq)
    kw = dict(adv_range=adv_range, constants=constants)
    members = [
        pm_kl(T, kl, **kw),
        pm_tv(T, kl, eps, **kw),
        mix_kl(T, kl, kseq, **kw),
        mix_tv(T, eps, tseq, **kw),
        coupling(T, eps, **kw),
        adaptive(T, kl, eps, per_position, **kw),
    ]
    return _out(np.minimum.reduce(np.broadcast_arrays(*[_f(m) for m in members])))
