"""Stages of blocks with a searchable depth per stage: the structure the MBConv and ResNet families share.

Block ``b`` of stage ``s`` is the unit ``"s{s}.b{b}"``; it exists when the stage's depth decision
``"s{s}.depth"`` is greater than ``b`` (a gate). Each block has the family's architecture decisions
(:meth:`StagedSpace.block_decisions`) and a weight and an activation bit-width per quantized layer
(:attr:`StagedSpace.block_layers`). The first block of a stage takes the stage's stride; every later block has
stride 1 and the stage's channels. :meth:`StagedSpace.init_stages` checks the common constructor arguments and
computes every block's geometry once.
"""
from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

from hao.errors import ConfigError
from hao.space.base import Decision, Gate, SearchSpace, Unit

__all__ = ["StagedSpace"]


class StagedSpace(SearchSpace):
    """A :class:`SearchSpace` of depth-gated stages of blocks (see the module docstring)."""

    #: names of a block's quantized layers; each gets ``<unit>.<layer>.w_bits`` and ``.a_bits`` decisions
    block_layers: tuple[str, ...] = ()

    def init_stages(self, input_shape: Sequence[int], stem_channels: int, stem_stride: int,
                    stages: Sequence[Sequence[int]], depths: Sequence[int], w_bits: Sequence[int],
                    a_bits: Sequence[int], entry_channels: int | None = None) -> None:
        """Check and store the common arguments; compute ``self._blocks[(s, b)] = (in_channels, out_channels,
        stride, in_hw, out_hw)``, ``self.final_channels`` and ``self.final_hw``. ``entry_channels``: the channels
        entering the first stage (default ``stem_channels``; differs when a fixed block follows the stem)."""
        from hao.quant import check_bits

        if len(input_shape) != 3 or any(int(v) < 1 for v in input_shape):
            raise ConfigError(f"input_shape must be (channels, height, width) of positive ints, got {input_shape!r}.")
        self.input_shape = tuple(int(v) for v in input_shape)
        if stem_stride not in (1, 2):
            raise ConfigError(f"stem_stride must be 1 or 2, got {stem_stride!r}.")
        self.stem_channels, self.stem_stride = int(stem_channels), int(stem_stride)
        self.stages = tuple((int(c), int(s)) for c, s in stages)
        if not self.stages or any(c < 1 or s not in (1, 2) for c, s in self.stages):
            raise ConfigError(f"stages must be (out_channels >= 1, stride in (1, 2)) pairs, got {stages!r}.")
        self.depths = tuple(sorted(int(d) for d in depths))
        if not self.depths or self.depths[0] < 1:
            raise ConfigError(f"depths must be positive ints, got {depths!r}.")
        self.max_depth = self.depths[-1]
        self.w_bits = tuple(check_bits(b, "w_bits option") for b in w_bits)
        self.a_bits = tuple(check_bits(b, "a_bits option") for b in a_bits)
        self._blocks: dict[tuple[int, int], tuple[int, int, int, tuple[int, int], tuple[int, int]]] = {}
        h, w = (-(-v // self.stem_stride) for v in self.input_shape[1:])
        c = self.stem_channels if entry_channels is None else int(entry_channels)
        for s, (cout, stride) in enumerate(self.stages):
            for b in range(self.max_depth):
                cin, st = (c, stride) if b == 0 else (cout, 1)
                oh, ow = -(-h // st), -(-w // st)
                self._blocks[(s, b)] = (cin, cout, st, (h, w), (oh, ow))
                h, w = oh, ow
            c = cout
        self.final_channels, self.final_hw = c, (h, w)

    @abstractmethod
    def block_decisions(self, unit: str) -> list[Decision]:
        """The architecture decisions of block ``unit`` (bits are added by the base class)."""

    @staticmethod
    def parse_block(unit: str) -> tuple[int, int]:
        """``"s2.b1"`` -> ``(2, 1)``."""
        s, b = unit.split(".")
        return int(s[1:]), int(b[1:])

    def _block_bits(self, unit: str) -> list[Decision]:
        return [Decision(f"{unit}.{layer}.{q}", self.w_bits if q == "w_bits" else self.a_bits, q)
                for layer in self.block_layers for q in ("w_bits", "a_bits")]

    def decisions(self) -> tuple[Decision, ...]:
        out = []
        for s in range(len(self.stages)):
            out.append(Decision(f"s{s}.depth", self.depths, "depth"))
            for b in range(self.max_depth):
                p = f"s{s}.b{b}"
                out += self.block_decisions(p) + self._block_bits(p)
        return tuple(out)

    def units(self) -> tuple[Unit, ...]:
        out = []
        for s in range(len(self.stages)):
            for b in range(self.max_depth):
                p = f"s{s}.b{b}"
                decs = tuple(d.name for d in self.block_decisions(p) + self._block_bits(p))
                active = frozenset(d for d in self.depths if d > b)
                out.append(Unit(p, decs, None if len(active) == len(self.depths) else Gate(f"s{s}.depth", active)))
        return tuple(out)
