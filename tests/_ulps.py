"""Distances in units in the last place (ulps): how far two floating-point arrays are apart
when a compiler, not the formula, decides the rounding.

``ulp_distance`` counts the representable numbers between two values of one dtype: the bit
patterns are mapped to integers that are monotone in the value (negative numbers mirrored), so
the distance between 1.0 and ``nextafter(1.0, 2)`` is 1, between -0.0 and +0.0 is 0, and across
zero the steps on both sides add up. NaNs must sit at the same places in both arrays.
"""

import numpy as np

_INT_OF = {2: np.int16, 4: np.int32, 8: np.int64}


def _ordered(x):
    bits = x.view(_INT_OF[x.dtype.itemsize]).astype(np.int64)
    sign_bit = np.int64(1) << (8 * x.dtype.itemsize - 1)
    return np.where(bits < 0, -(bits & (sign_bit - 1)), bits)  # -0.0 and +0.0 both map to 0


def ulp_distance(have, want):
    """The element-wise distance in ulps of ``have``'s dtype (int64 array)."""
    have, want = np.asarray(have), np.asarray(want)
    assert have.dtype == want.dtype and have.shape == want.shape, (have.dtype, have.shape, want.dtype, want.shape)
    nan = np.isnan(have.astype(np.float64))
    assert np.array_equal(nan, np.isnan(want.astype(np.float64))), "NaNs at different places"
    return np.where(nan, 0, np.abs(_ordered(have) - _ordered(want)))


def assert_within_ulps(have, want, max_ulps, what):
    """Fails, naming ``what``, the largest distance and how many elements differ, where any
    element of ``have`` is more than ``max_ulps`` ulps from ``want``."""
    d = ulp_distance(have, want)
    if d.size and d.max() > max_ulps:
        i = np.unravel_index(int(np.argmax(d)), d.shape)
        raise AssertionError(
            f"{what}: {int((d > 0).sum())} of {d.size} elements differ, the largest by {int(d.max())} ulps "
            f"(bound {max_ulps}) at {i}: {np.asarray(have)[i]!r} vs {np.asarray(want)[i]!r}"
        )


def ulp_of(x, dtype):
    """The spacing of ``dtype``'s numbers at ``|x|`` (float64 array): one ulp of each element."""
    return np.spacing(np.abs(np.asarray(x, np.float64)).astype(dtype)).astype(np.float64)


def grow_drift(bound, before, after, ulps_per_step):
    """One step of a trajectory's rounding budget: ``bound`` (float64, per element) grows by
    ``ulps_per_step`` ulps of the larger of ``|θ_{t-1}|`` and ``|θ_t|``. Two trajectories that
    round each step within that many ulps of the step's operands stay within the sum."""
    dtype = np.asarray(after).dtype
    scale = np.maximum(np.abs(np.asarray(before, np.float64)), np.abs(np.asarray(after, np.float64)))
    return bound + ulps_per_step * ulp_of(scale, dtype)


def assert_within_drift(have, want, bound, what):
    """Fails, naming ``what`` and the worst element, where ``|have - want|`` exceeds ``bound``."""
    have, want = np.asarray(have), np.asarray(want)
    assert have.dtype == want.dtype and have.shape == want.shape, what
    excess = np.abs(have.astype(np.float64) - want.astype(np.float64)) - bound
    if excess.size and excess.max() > 0:
        i = np.unravel_index(int(np.argmax(excess)), excess.shape)
        raise AssertionError(
            f"{what}: {int((excess > 0).sum())} of {excess.size} elements beyond the rounding budget; "
            f"worst at {i}: {have[i]!r} vs {want[i]!r}, budget {bound[i]:.3g}"
        )
