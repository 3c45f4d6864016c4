"""The write plan: for each tensor, stored once already (same-as), coded against the base
tensor of the same name or against an earlier tensor of the file (a residual), or coded
plainly, and with which codec.

One function decides, and every writer consumes its decisions: the local path
(``add_tensors``, used by ``compress_file``, ``save_file`` and ``analyze``) and the Dask path
(``writing/cluster.py``). "A cluster run writes the same bytes as a local run" rests on there
being only this one decision, taken in file order on the same samples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import dtypes
from ..codecs import Codec, bounded, choose_codec
from ..codecs.policy import DEFAULT_LEVEL, checked_level
from ..codecs.residual import Delta, Reference, choose_deltas, codec_for, residual
from ..container.bases import BaseCheckpoint
from .dedup import Deduplicator
from .references import ReferenceFinder

if TYPE_CHECKING:
    from ..container.writer import TzipWriter

# Tensors of at most this many bytes, coded plainly, are coded together with the other small
# tensors of their dtype (``TzipWriter.add(pack=True)``): alone, each would pay its own chunk
# directory, rANS states and tables, or be stored raw where those do not pay (issue 22; the
# threshold measured in benchmarks/RESULTS.md, "Small files").
PACK_MAX_TENSOR_BYTES = 64 * 1024


@dataclass(frozen=True)
class TensorPlan:
    """What to store for one tensor. ``same_as``: nothing (a repeat of that earlier tensor);
    else ``codec`` coding the tensor itself, or with ``delta_mode`` the residual against
    ``base_array`` (the base's tensor of the same name, dtype and shape), or with
    ``reference`` the residual against ``reference_array`` (an earlier tensor of the file,
    converted to this dtype)."""

    name: str
    spec: dtypes.DTypeSpec
    same_as: str | None = None
    codec: Codec | None = None
    delta_mode: str | None = None
    base_array: np.ndarray | None = None
    base_saved_bytes: int = 0  # estimated from a sample (codecs.residual.choose_delta)
    reference: Reference | None = None
    reference_array: np.ndarray | None = None
    packed: bool = False  # coded with the file's other small tensors of its dtype


# A base tensor (None where the base has none of that name), and the residual mode and the bytes
# it saves (None, 0: coded plainly), as ``choose_delta`` decides them.
BaseChoice = tuple[np.ndarray | None, str | None, int]


class WritePlanner:
    """Decides per tensor, in file order (dedup remembers what came before)."""

    def __init__(self, base: BaseCheckpoint | None, *, references: bool = True,
                 pack_max_bytes: int = PACK_MAX_TENSOR_BYTES,
                 error_bound: Callable[[str, np.ndarray], float | None] | None = None,
                 level: str = DEFAULT_LEVEL):
        """``references``: also code tensors against earlier tensors of the file where that
        pays (``writing/references.py``). ``pack_max_bytes``: tensors up to this size are
        coded together (0: none). ``error_bound(name, array)``: the max-abs error a float
        tensor may be stored within (None: exactly); such tensors get the error-bounded codec
        (``codecs/bounded.choose``), coded alone and against nothing."""
        self.base = base
        self.level = checked_level(level)  # of tensors coded plainly and alone (codecs/policy.py)
        self.pack_max_bytes = pack_max_bytes
        self.error_bound = error_bound
        self.dedup = Deduplicator()
        self.references = ReferenceFinder() if references else None
        self.base_savings: dict[str, int] = {}  # tensor -> estimated bytes the base saved it

    @property
    def base_saved_bytes(self) -> int:
        return sum(self.base_savings.values())

    def plan(self, name: str, array: np.ndarray, base_choice: BaseChoice | None = None) -> TensorPlan:
        """``base_choice``: the base tensor of the same name and ``choose_delta`` against it, when
        they were taken already (``add_tensors`` takes them for several tensors at once)."""
        spec = dtypes.by_numpy(array.dtype)
        twin = self.dedup.twin_of(name, array)
        if twin is not None:
            return TensorPlan(name, spec, same_as=twin)
        bound = (self.error_bound(name, array) if self.error_bound is not None and spec.name in bounded.FLOAT_DTYPES
                 else None)
        if bound is not None:
            return TensorPlan(name, spec, codec=bounded.choose(array, bound).codec)
        if base_choice is None:  # not taken ahead (the Dask path plans one tensor at a time)
            base_choice = next(_base_choices([(name, array)], self.base, 1))[2]
        base_array, mode, saved = base_choice
        inside = self.references.choose(name, array, spec) if self.references is not None else None
        if inside is not None and inside.saved_bytes > saved:
            return TensorPlan(name, spec, codec=codec_for(inside.reference.mode, array, spec),
                              reference=inside.reference, reference_array=inside.converted)
        if self.references is not None:
            self.references.remember(name, array, spec)
        if mode is not None:  # the residual's codec depends on the mode and dtype only
            self.base_savings[name] = saved
            return TensorPlan(name, spec, codec=codec_for(mode, array, spec), delta_mode=mode,
                              base_array=base_array, base_saved_bytes=saved)
        packed = 0 < array.nbytes <= self.pack_max_bytes
        return TensorPlan(name, spec, codec=choose_codec(array, spec, self.level), packed=packed)


def add_tensors(writer: TzipWriter, tensors: Iterable[tuple[str, np.ndarray]],
                base: BaseCheckpoint | None,
                error_bound: Callable[[str, np.ndarray], float | None] | None = None) -> WritePlanner:
    """Queue every tensor in ``writer`` as the plan says (encoded here, with the writer's
    threads, at the writer's level). Returns the planner (what dedup and the base saved)."""
    planner = WritePlanner(base, error_bound=error_bound, level=writer.level)
    for name, array, base_choice in _with_base_choices(tensors, base, writer.threads):
        plan = planner.plan(name, array, base_choice)
        if plan.same_as is not None:
            writer.add_shared(name, plan.same_as)
        elif plan.delta_mode is not None:
            assert plan.base_array is not None
            stored = residual(array, plan.base_array, plan.delta_mode, plan.spec, writer.threads)
            assert base is not None
            writer.add(name, stored, plan.codec, Delta(plan.delta_mode, name, base.pin(name, plan.base_array)))
        elif plan.reference is not None:
            assert plan.reference_array is not None
            stored = residual(array, plan.reference_array, plan.reference.mode, plan.spec, writer.threads)
            writer.add(name, stored, plan.codec, plan.reference)
        else:
            writer.add(name, array, plan.codec, pack=plan.packed)
    return planner


# Tensors whose base choices are taken together (``choose_deltas``): enough that the samples'
# coding fills every thread, few and small enough that holding them adds little memory.
BASE_CHOICE_TENSORS = 32
BASE_CHOICE_BYTES = 32 * 1024 * 1024


def _with_base_choices(tensors: Iterable[tuple[str, np.ndarray]], base: BaseCheckpoint | None, threads: int
                       ) -> Iterator[tuple[str, np.ndarray, BaseChoice | None]]:
    """Each tensor with its base tensor and ``choose_delta`` against it, taken for a few tensors
    at a time in one native call on the writer's threads (None where there is no base: ``plan``
    then decides without one). Each choice depends on its tensor alone, so taking them together
    changes no decision and no byte of the file. Each base tensor is looked up once (a .tzip
    base decodes it), and a window holds its base tensors as well as its own."""
    if base is None:
        yield from ((name, array, None) for name, array in tensors)
        return
    window: list[tuple[str, np.ndarray]] = []
    held = 0
    for name, array in tensors:
        window.append((name, array))
        held += array.nbytes
        if len(window) >= BASE_CHOICE_TENSORS or held >= BASE_CHOICE_BYTES:
            yield from _base_choices(window, base, threads)
            window, held = [], 0
    yield from _base_choices(window, base, threads)


def _base_choices(window: list[tuple[str, np.ndarray]], base: BaseCheckpoint | None, threads: int
                  ) -> Iterator[tuple[str, np.ndarray, BaseChoice]]:
    """Each tensor of ``window`` with its ``BaseChoice`` (no base: none to code against)."""
    base_arrays = [base.tensor(name) if base is not None else None for name, _ in window]
    like = [i for i, ((_, array), base_array) in enumerate(zip(window, base_arrays, strict=True))  # same dtype, shape
            if base_array is not None and base_array.dtype == array.dtype and base_array.shape == array.shape]
    decided = choose_deltas([(window[i][1], base_arrays[i], dtypes.by_numpy(window[i][1].dtype)) for i in like],
                            threads)
    choices: list[tuple[str | None, int]] = [(None, 0)] * len(window)
    for index, choice in zip(like, decided, strict=True):
        choices[index] = choice
    for (name, array), base_array, (mode, saved) in zip(window, base_arrays, choices, strict=True):
        yield name, array, (base_array, mode, saved)
