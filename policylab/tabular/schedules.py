"""Step-size and exploration schedules that work in Python and inside the compiled kernels.

A schedule is a value v(t, n) of the global step t = 0, 1, … and of a visit count n ≥ 1
(N(s, a) for a control step size, N(s) for prediction step sizes and for ε). It is stored as
a flat ``(5,) float64`` spec ``[kind, p0, p1, p2, floor]`` so a numba kernel can evaluate it
with :func:`schedule_value`; the :class:`Schedule` object is the friendly face of that spec.

    constant(v)                     v
    linear(start, end, steps)       start + (end − start) · min(t / steps, 1)
    exponential(start, end, decay)  end + (start − end) · decayᵗ
    inverse_count(power, scale)     scale / nᵖᵒʷᵉʳ         (α = 1/N(s, a) by default)

Compose with ``.with_floor(v)``: max(floor, schedule).  Example: GLIE exploration
``inverse_count(1.0).with_floor(0.01)`` is ε = max(0.01, 1/N(s)).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from policylab.errors import InputError

__all__ = [
    "Schedule",
    "as_schedule",
    "constant",
    "exponential",
    "inverse_count",
    "linear",
    "parse_schedule",
    "schedule_at",
    "schedule_constant",
    "schedule_value",
]

CONSTANT, LINEAR, EXPONENTIAL, INVERSE_COUNT = 0, 1, 2, 3
_KIND_NAMES = {CONSTANT: "constant", LINEAR: "linear", EXPONENTIAL: "exponential",
               INVERSE_COUNT: "inverse_count"}


@numba.njit(cache=True, inline="always")
def schedule_value(spec, t, n):
    """v(t, n) of a schedule spec [kind, p0, p1, p2, floor] at step t ≥ 0 and count n ≥ 1."""
    kind = int(spec[0])
    if kind == 0:  # constant
        v = spec[1]
    elif kind == 1:  # linear: start + (end − start)·min(t/steps, 1)
        frac = t / spec[3]
        v = spec[1] + (spec[2] - spec[1]) * (min(1.0, frac))
    elif kind == 2:  # exponential: end + (start − end)·decayᵗ
        v = spec[2] + (spec[1] - spec[2]) * spec[3] ** t
    else:  # inverse count: scale / nᵖ
        v = spec[2] / float(n) ** spec[1]
    return max(spec[4], v)


@numba.njit(cache=True, inline="always")
def schedule_constant(spec):
    """The value of a constant schedule spec (≥ 0 for α and ε), or −1 for any other kind:
    the kernels evaluate it once and skip :func:`schedule_value` per step (same numbers)."""
    return max(spec[4], spec[1]) if int(spec[0]) == 0 else -1.0


@numba.njit(cache=True, inline="always")
def schedule_at(const, spec, t, n):
    """v(t, n): ``const`` when it is ≥ 0 (from :func:`schedule_constant`), else the spec's value."""
    return const if const >= 0.0 else schedule_value(spec, t, n)


@dataclass(frozen=True)
class Schedule:
    """A schedule v(t, n); build with :func:`constant`, :func:`linear`, :func:`exponential`,
    :func:`inverse_count`. ``schedule(t, n)`` evaluates it; ``.spec`` is the kernel encoding."""

    kind: int
    p0: float
    p1: float = 0.0
    p2: float = 0.0
    floor: float = -np.inf

    @property
    def spec(self) -> np.ndarray:
        """(5,) float64 ``[kind, p0, p1, p2, floor]`` for :func:`schedule_value`."""
        return np.array([self.kind, self.p0, self.p1, self.p2, self.floor], dtype=np.float64)

    def __call__(self, t: int, n: int = 1) -> float:
        return float(schedule_value(self.spec, int(t), int(n)))

    def with_floor(self, floor: float) -> Schedule:
        """max(floor, v(t, n))."""
        return Schedule(self.kind, self.p0, self.p1, self.p2, max(float(floor), self.floor))

    def bounds(self) -> tuple[float, float, bool]:
        """(inf, sup, inf_attained) of v over all t ≥ 0, n ≥ 1."""
        if self.kind == CONSTANT:
            lo, hi, attained = self.p0, self.p0, True
        elif self.kind in (LINEAR, EXPONENTIAL):
            start, end = self.p0, self.p1
            lo, hi = min(start, end), max(start, end)
            # linear reaches `end`; exponential only approaches it (unless decay is 0 or 1)
            attained = self.kind == LINEAR or start <= end or self.p2 in (0.0, 1.0)
        else:  # inverse count: scale/nᵖ ∈ (0, scale]
            lo, hi, attained = 0.0, self.p1, False
        if self.floor >= lo:
            lo, attained = self.floor, True
            hi = max(hi, self.floor)
        return lo, hi, attained

    def __repr__(self) -> str:
        name = _KIND_NAMES[self.kind]
        args = {CONSTANT: f"{self.p0:g}", LINEAR: f"{self.p0:g}, {self.p1:g}, {self.p2:g}",
                EXPONENTIAL: f"{self.p0:g}, {self.p1:g}, {self.p2:g}",
                INVERSE_COUNT: f"power={self.p0:g}, scale={self.p1:g}"}[self.kind]
        floor = f".with_floor({self.floor:g})" if np.isfinite(self.floor) else ""
        return f"{name}({args}){floor}"


def _finite(name: str, **values: float) -> None:
    for key, v in values.items():
        if not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v):
            raise InputError(f"{name}: {key} must be a finite number, got {v!r}")


def constant(value: float) -> Schedule:
    """v(t, n) = value."""
    _finite("constant", value=value)
    return Schedule(CONSTANT, float(value))


def linear(start: float, end: float, steps: int) -> Schedule:
    """v(t) = start + (end − start) · min(t / steps, 1): linear interpolation, then constant."""
    _finite("linear", start=start, end=end, steps=steps)
    if steps <= 0:
        raise InputError(f"linear: steps must be > 0, got {steps!r}")
    return Schedule(LINEAR, float(start), float(end), float(steps))


def exponential(start: float, end: float, decay: float) -> Schedule:
    """v(t) = end + (start − end) · decayᵗ: geometric approach from start to end, decay ∈ [0, 1]."""
    _finite("exponential", start=start, end=end, decay=decay)
    if not 0.0 <= decay <= 1.0:
        raise InputError(f"exponential: decay must be in [0, 1], got {decay!r}")
    return Schedule(EXPONENTIAL, float(start), float(end), float(decay))


def inverse_count(power: float = 1.0, scale: float = 1.0) -> Schedule:
    """v(n) = scale / nᵖᵒʷᵉʳ with n the visit count: α = 1/N(s, a) is the sample mean.

    Robbins–Monro (Σα = ∞, Σα² < ∞) holds for power ∈ (0.5, 1]; as ε, 1/N(s) is GLIE.
    """
    _finite("inverse_count", power=power, scale=scale)
    if power <= 0 or scale <= 0:
        raise InputError(f"inverse_count: power and scale must be > 0, got {power!r}, {scale!r}")
    return Schedule(INVERSE_COUNT, float(power), float(scale))


def as_schedule(value, name: str, *, zero_ok: bool) -> Schedule:
    """Coerce a number or Schedule to a Schedule whose values lie in (0, 1] (``zero_ok=False``,
    a step size α) or [0, 1] (``zero_ok=True``, an exploration rate ε); the error names ``name``."""
    if isinstance(value, Schedule):
        sched = value
    elif isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if not np.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r}")
        sched = constant(float(value))
    else:
        raise InputError(
            f"{name} must be a number or a tabular Schedule, got {type(value).__name__}")
    lo, hi, attained = sched.bounds()
    interval = "[0, 1]" if zero_ok else "(0, 1]"
    too_low = lo < 0 or (lo == 0 and attained and not zero_ok)
    if too_low or hi > 1:
        if not isinstance(value, Schedule):
            shown = value
        elif value.kind == CONSTANT:
            shown = f"{value.p0:g}"
        else:
            shown = f"{value!r}, which takes values in [{lo:g}, {hi:g}]"
        raise InputError(f"{name} must be in {interval}, got {shown}")
    return sched


def parse_schedule(text: str) -> Schedule:
    """Parse the command-line form of a schedule:

        0.1                    constant(0.1)
        1/n                    inverse_count()            (α = 1/N)
        inv:POWER[,SCALE]      inverse_count(POWER, SCALE)
        linear:START,END,STEPS linear(START, END, STEPS)
        exp:START,END,DECAY    exponential(START, END, DECAY)

    Any form may end in ``@FLOOR`` for ``.with_floor(FLOOR)``, e.g. ``1/n@0.01``.
    """
    raw = str(text).strip()
    body, _, floor = raw.partition("@")
    kind, _, args = body.partition(":")
    try:
        nums = [float(x) for x in args.split(",")] if args else []
        if body.lower() in ("1/n", "inv"):
            sched = inverse_count()
        elif not args:
            sched = constant(float(body))
        elif kind == "inv" and len(nums) in (1, 2):
            sched = inverse_count(*nums)
        elif kind == "linear" and len(nums) == 3:
            sched = linear(nums[0], nums[1], nums[2])
        elif kind == "exp" and len(nums) == 3:
            sched = exponential(*nums)
        else:
            raise ValueError
        return sched.with_floor(float(floor)) if floor else sched
    except ValueError as exc:
        detail = f" ({exc})" if str(exc) else ""
        raise InputError(f"cannot parse schedule {raw!r}{detail}; use a number, 1/n, inv:P[,S], "
                         "linear:START,END,STEPS or exp:START,END,DECAY, optionally @FLOOR") from None
