r"""Confidence intervals, once: normal, Wilson, and the empirical-Bernstein lower bound.

Every interval trmbounds reports comes from here (:mod:`trmbounds.logs` for training
logs, :mod:`trmbounds.measure` for model runs), with one behaviour at small counts:

* :func:`normal` -- :math:`\bar x \pm z\,s/\sqrt n` from sums; with fewer than two values
  there is **no** interval (NaN ends: JSON ``null``);
* :func:`wilson` / :func:`bounded` -- the Wilson score interval, for proportions and for
  means of values in [0, 1] (with the largest variance such a mean allows, so it stays
  valid when rare values carry the mean); defined from one value on (no value: NaN);
* :func:`bernstein_lower` -- the distribution-free one-sided lower bound of Maurer &
  Pontil (2009, Thm. 4) on the mean of a [0, 1] variable; with fewer than two values it
  is :math:`-\infty` (nothing can be guaranteed).

All are vectorised over numpy arrays. numpy only: importing this module costs nothing.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

__all__ = ["Z95", "z_of", "normal", "wilson", "bounded", "bernstein_lower"]

#: The 97.5 % quantile of the standard normal (two-sided 95 % intervals).
Z95 = 1.959963984540054


def z_of(confidence: float, sided: int = 2) -> float:
    """The normal quantile of a two-sided (``sided=2``) or one-sided interval.

    Examples
    --------
    >>> round(z_of(0.95), 6), round(z_of(0.95, sided=1), 6)
    (1.959964, 1.644854)
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / sided
    return NormalDist().inv_cdf(1.0 - tail)


def normal(s, ss, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean and normal interval from sums ``s``, sums of squares ``ss`` and counts ``n``.

    The sample variance has ``n - 1`` in the denominator; with fewer than two values the
    ends are NaN (no interval). An infinite mean (a value beyond float64) has infinite ends.

    Examples
    --------
    >>> m, lo, hi = normal(np.array(6.0), np.array(14.0), 3)   # data 1, 2, 3: sd 1
    >>> float(m), round(float(hi - m), 4)                        # 1.96 / sqrt(3)
    (2.0, 1.1316)
    >>> [bool(np.isnan(x)) for x in normal(np.array(2.0), np.array(4.0), 1)[1:]]
    [True, True]
    """
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        m = np.asarray(s, dtype=np.float64) / n
        var = np.maximum(np.asarray(ss, dtype=np.float64) / n - m * m, 0.0) * n / (n - 1.0)
        h = np.where(n > 1, z * np.sqrt(var / n), np.nan)
        lo, hi = m - h, m + h
    inf = np.isinf(m)  # a sample beyond float64 (overflow): the mean is infinite too
    return m, np.where(inf, m, lo), np.where(inf, m, hi)


def wilson(k, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Proportion ``k/n`` and its Wilson score interval.

    Centre :math:`(\hat p + z^2/2n)/(1 + z^2/n)`, half-width
    :math:`z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}/(1 + z^2/n)`: unlike the normal interval
    it has positive width at :math:`\hat p \in \{0, 1\}` and keeps its coverage near them.
    ``n = 0``: NaN.

    Examples
    --------
    >>> p, lo, hi = wilson(20, 20)
    >>> float(p), round(float(lo), 4), float(hi)
    (1.0, 0.8389, 1.0)
    """
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    z2 = z * z
    with np.errstate(invalid="ignore", divide="ignore"):
        ph = k / n
        den = 1.0 + z2 / n
        centre = (ph + z2 / (2.0 * n)) / den
        half = z * np.sqrt(np.clip(ph * (1.0 - ph), 0.0, 0.25) / n + z2 / (4.0 * n * n)) / den
    return ph, np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def bounded(m, n, z: float = Z95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The interval of a mean ``m`` of ``n`` values in [0, 1]: the Wilson score interval
    with the largest variance a [0, 1] variable of that mean can have, ``m (1 - m)``.

    The normal interval with the sample variance under-covers when a few rare values
    carry the mean -- an unsampled rare branch gives it zero width (an independent review
    measured 0.42-0.65 coverage at N = 100-1000 on exact pairs); this one is
    conservative for any [0, 1] variable.

    Examples
    --------
    >>> m, lo, hi = bounded(np.array(0.0), 100)
    >>> float(m), round(float(lo), 4), round(float(hi), 4)   # no event in 100: [0, 0.037]
    (0.0, 0.0, 0.037)
    """
    n = np.asarray(n, dtype=np.float64)
    _, lo, hi = wilson(np.clip(m, 0.0, 1.0) * n, n, z)
    return np.asarray(m, dtype=np.float64), lo, hi


def bernstein_lower(zbar, var, n, confidence: float = 0.95) -> np.ndarray:
    r"""A one-sided lower confidence bound on the mean of a variable in [0, 1], valid
    whatever its distribution (Maurer & Pontil 2009, Theorem 4):

    .. math:: \bar Z - \sqrt{2 V \ln(2/\alpha) / n} - \frac{7 \ln(2/\alpha)}{3 (n - 1)}

    with ``var`` = :math:`V` the sample variance (``n - 1`` denominator) and
    :math:`\alpha = 1 -` ``confidence``. Fewer than two values: :math:`-\infty`.

    Examples
    --------
    >>> round(float(bernstein_lower(0.5, 0.0, 1000)), 4)   # 0.5 - 7 ln 40 / 2997
    0.4914
    """
    lg = math.log(2.0 / (1.0 - confidence))
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = (
            np.asarray(zbar)
            - np.sqrt(2.0 * np.asarray(var) * lg / n)
            - 7.0 * lg / (3.0 * (n - 1.0))
        )
    return np.where(n > 1, lo, -np.inf)
