"""One search for every lossy target: the best parameter whose *measured* figure (the
real encoded size, the attention error or the recall of the decoded data) meets a target.

The figure is taken to change monotonically with the parameter, so the feasible
parameters form one interval that reaches the ``feasible_end`` of the bracket: the
search checks that end, then (optionally) the ``best_end``, and bisects between the last
parameter that met the target and the first that did not. It returns the best parameter
known to meet it with what the measurement returned there, so the caller need not encode
it again. With ``log_scale`` the bracket is halved in log2 or natural-log units (steps and
levels span orders of magnitude); the ends are then given in those units, and ``measure``
receives ``2.0 ** t`` or ``exp(t)``, exactly as the layers always computed them (the
parameter ends up in their files, so not one bit of it may change).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from ..errors import TargetUnreachableError

T = TypeVar("T")
LogScale = Literal["log2", "ln"]


class TargetNotMet(TargetUnreachableError):
    """Even the feasible end of the bracket misses the target. ``figure`` is what was
    measured there and ``parameter`` where; callers catch it to say what that means in
    their domain (and may try another configuration)."""

    def __init__(self, message: str, parameter: float, figure: float):
        super().__init__(message)
        self.parameter = parameter
        self.figure = figure


@dataclass(frozen=True)
class Found(Generic[T]):
    """The best parameter that met the target and what was measured there."""

    parameter: float  # as passed to measure (2.0 ** coordinate on a log2 scale)
    coordinate: float  # where in the bracket (the exponent on a log scale)
    figure: float  # the measured figure, within the target
    result: T  # what measure returned with it
    evaluations: int  # calls of measure
    missed_coordinate: float | None = None  # the nearest coordinate beyond it known to miss (None: none tried)


def parameter_at(coordinate: float, log_scale: LogScale | None) -> float:
    """The parameter at a point of the bracket."""
    if log_scale is None:
        return coordinate
    if log_scale == "log2":
        return 2.0**coordinate
    if log_scale == "ln":
        return float(np.exp(coordinate))
    raise ValueError(f"log_scale must be None, 'log2' or 'ln', got {log_scale!r}")


def _on_lattice(steps: float) -> float:
    """A lattice index as computed in floats: the whole number it is meant to be, when it is one."""
    nearest = round(steps)
    return float(nearest) if abs(steps - nearest) < 1e-6 else steps


def bisect(measure: Callable[[float], tuple[float, T]], *, feasible_end: float, best_end: float,
           at_most: float | None = None, at_least: float | None = None, max_iterations: int,
           tolerance: float = 0.0, log_scale: LogScale | None = None, try_best_end: bool = True,
           progress: Callable[[int, int], None] | None = None, interpolate: bool = False) -> Found[T]:
    """The parameter nearest ``best_end`` whose figure is ``<= at_most`` (or ``>= at_least``).

    ``measure(parameter) -> (figure, result)`` encodes at ``parameter`` and measures.
    Order of the calls: ``feasible_end`` (TargetNotMet if it misses), then ``best_end``
    when ``try_best_end`` (returned at once if it meets the target), then up to
    ``max_iterations`` midpoints, stopping early once the bracket is ``tolerance`` wide
    or less (in bracket units). ``progress(call, most)`` runs before each call of ``measure``.

    ``interpolate``: for a figure that is nearly linear in the coordinate (an encoded size
    against log2 of the step: about one bit per value per octave), each next point is where
    the line through the bracket's ends meets the target (the Illinois variant of regula
    falsi, so both ends move), not the midpoint, rounded to the lattice of whole
    ``tolerance`` steps from ``feasible_end`` that bisection probes: for a monotone figure the
    same answer as bisecting to that tolerance, in a third of the measurements. Needs a
    ``tolerance``.
    """
    if (at_most is None) == (at_least is None):
        raise ValueError("give exactly one of at_most and at_least")
    if interpolate and not (try_best_end and tolerance > 0):
        raise ValueError("interpolate needs the best end measured (try_best_end) and a tolerance")

    def meets(figure: float) -> bool:
        return figure <= at_most if at_most is not None else figure >= at_least  # type: ignore[operator]

    calls = 0
    most = 1 + int(try_best_end) + max_iterations

    def at(coordinate: float) -> tuple[float, T]:
        nonlocal calls
        calls += 1
        if progress is not None:
            progress(calls, most)
        return measure(parameter_at(coordinate, log_scale))

    figure, result = at(feasible_end)
    if not meets(figure):
        wanted = f"at most {at_most}" if at_most is not None else f"at least {at_least}"
        raise TargetNotMet(f"the target ({wanted}) is not met even at {parameter_at(feasible_end, log_scale):.6g}, "
                           f"which measures {figure:.6g}", parameter_at(feasible_end, log_scale), figure)
    if try_best_end:
        best_figure, best_result = at(best_end)
        if meets(best_figure):
            return Found(parameter_at(best_end, log_scale), best_end, best_figure, best_result, calls)
    good, bad = feasible_end, best_end
    bad_tried = try_best_end
    target = at_most if at_most is not None else at_least
    # Illinois: the figures the line is drawn through; one halved each time the same end stays.
    weights = [figure - target, best_figure - target] if interpolate else [0.0, 0.0]  # type: ignore[operator]
    kept = 0  # +1: good stayed last time, -1: bad stayed
    widths = [abs(bad - good)] * 2  # the bracket's width two steps back and one step back
    for _ in range(max_iterations):
        width = abs(bad - good)
        if width <= tolerance:
            break
        middle = (good + bad) / 2
        # Interpolate, unless the last two steps did not halve the bracket (a figure far from a
        # line there): then a midpoint, so it is never slower than bisecting by much.
        slow = width > widths[0] / 2
        widths = [widths[1], width]
        if interpolate and weights[0] != weights[1] and not slow:
            middle = good + (bad - good) * weights[0] / (weights[0] - weights[1])
        if interpolate:
            # On the lattice bisection probes (the feasible end plus whole tolerances), strictly
            # inside the bracket: the search ends where bisecting would have, in fewer steps.
            low, high = sorted(_on_lattice((end - feasible_end) / tolerance) for end in (good, bad))
            steps = min(max(round((middle - feasible_end) / tolerance), math.floor(low) + 1), math.ceil(high) - 1)
            if not low < steps < high:
                break
            middle = feasible_end + steps * tolerance
        trial_figure, trial_result = at(middle)
        if meets(trial_figure):
            good, figure, result = middle, trial_figure, trial_result
            weights[0] = trial_figure - target  # type: ignore[operator]
            weights[1] = weights[1] / 2 if kept == -1 else weights[1]
            kept = -1
        else:
            bad, bad_tried = middle, True
            weights[1] = trial_figure - target  # type: ignore[operator]
            weights[0] = weights[0] / 2 if kept == 1 else weights[0]
            kept = 1
    return Found(parameter_at(good, log_scale), good, figure, result, calls, bad if bad_tried else None)
