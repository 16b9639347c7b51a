"""Optimization profiles: the shapes a TensorRT engine accepts (pure Python, tested everywhere).

A profile is a (min, opt, max) triple of NCHW shapes; TensorRT tunes kernels for ``opt`` and accepts
any shape between ``min`` and ``max`` in every dim. An engine may have several profiles; at run time
the runner picks one that covers the input's shape.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

from fcn_deploy.errors import FCNError

Shape = tuple[int, ...]

#: The profile used when the user gives none: batch 1, any image from 32x32 to 1024x1024,
#: tuned for the paper's 500x500.
DEFAULT_PROFILE = ((1, 3, 32, 32), (1, 3, 500, 500), (1, 3, 1024, 1024))


def format_shape(shape: Sequence[int | None]) -> str:
    return "x".join("?" if d is None else str(d) for d in shape)


def parse_shape_text(text: str, *, what: str = "shape") -> Shape:
    """``"1x3x500x500"`` -> (1, 3, 500, 500); FCNError naming ``what`` otherwise."""
    try:
        dims = tuple(int(d) for d in str(text).lower().split("x"))
    except ValueError:
        raise FCNError(f"{what} {text!r} is not of the form NxCxHxW (e.g. 1x3x500x500)") from None
    if len(dims) != 4 or any(d < 1 for d in dims):
        raise FCNError(f"{what} {text!r} must have 4 positive dimensions NxCxHxW (e.g. 1x3x500x500)")
    return dims


@dataclass(frozen=True)
class Profile:
    """One optimization profile for the input tensor: min <= opt <= max in every dimension."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        object.__setattr__(self, "min", tuple(int(d) for d in self.min))
        object.__setattr__(self, "opt", tuple(int(d) for d in self.opt))
        object.__setattr__(self, "max", tuple(int(d) for d in self.max))

    def validate(self, *, index: int = 0) -> "Profile":
        """Check ranks and min <= opt <= max; FCNError saying which dim is wrong."""
        ranks = {len(self.min), len(self.opt), len(self.max)}
        if ranks != {4}:
            raise FCNError(f"profile #{index}: min, opt and max must all be NxCxHxW; got "
                           f"{self.describe()}")
        for axis, (lo, mid, hi) in enumerate(zip(self.min, self.opt, self.max)):
            if lo < 1:
                raise FCNError(f"profile #{index}: dimension {axis} must be >= 1; got {self.describe()}")
            if not lo <= mid <= hi:
                raise FCNError(f"profile #{index}: dimension {axis} needs min <= opt <= max, got "
                               f"{lo}, {mid}, {hi} ({self.describe()})")
        return self

    def check_static(self, input_shape: Sequence[int | str | None], *, index: int = 0,
                     name: str = "image") -> None:
        """Static dims of the network input must be equal in min, opt and max."""
        if len(input_shape) != len(self.min):
            raise FCNError(f"profile #{index} has {len(self.min)} dims but input {name!r} has "
                           f"{len(input_shape)} ({format_shape([d if isinstance(d, int) else None for d in input_shape])})")
        for axis, dim in enumerate(input_shape):
            if isinstance(dim, int) and dim > 0:
                got = (self.min[axis], self.opt[axis], self.max[axis])
                if got != (dim, dim, dim):
                    raise FCNError(f"profile #{index}: dimension {axis} of input {name!r} is fixed "
                                   f"at {dim} in the ONNX graph, but the profile gives "
                                   f"min/opt/max {got[0]}/{got[1]}/{got[2]}")

    def covers(self, shape: Sequence[int]) -> bool:
        return len(shape) == len(self.min) and all(
            lo <= s <= hi for lo, s, hi in zip(self.min, shape, self.max))

    def describe(self) -> str:
        return (f"min {format_shape(self.min)}, opt {format_shape(self.opt)}, "
                f"max {format_shape(self.max)}")

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}

    @classmethod
    def from_dict(cls, data) -> "Profile":
        try:
            return cls(tuple(data["min"]), tuple(data["opt"]), tuple(data["max"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise FCNError(f"profile {data!r} needs 'min', 'opt' and 'max' shapes ({exc})") from None


def parse_profiles(mins: Iterable[str] | None, opts: Iterable[str] | None,
                   maxs: Iterable[str] | None) -> list[Profile]:
    """Pair up repeated ``--min/--opt/--max`` values into profiles (the i-th of each forms one).

    No values at all gives :data:`DEFAULT_PROFILE`.
    """
    mins, opts, maxs = list(mins or []), list(opts or []), list(maxs or [])
    if not (mins or opts or maxs):
        return [Profile(*DEFAULT_PROFILE)]
    if not len(mins) == len(opts) == len(maxs):
        raise FCNError(f"each profile needs --min, --opt and --max; got {len(mins)} --min, "
                       f"{len(opts)} --opt and {len(maxs)} --max")
    profiles = []
    for i, (lo, mid, hi) in enumerate(zip(mins, opts, maxs)):
        profile = Profile(parse_shape_text(lo, what=f"--min of profile #{i}"),
                          parse_shape_text(mid, what=f"--opt of profile #{i}"),
                          parse_shape_text(hi, what=f"--max of profile #{i}"))
        profiles.append(profile.validate(index=i))
    return profiles


def validate_profiles(profiles: Sequence[Profile],
                      input_shape: Sequence[int | str | None] | None = None, *,
                      inputs: Mapping[str, Sequence[int | str | None]] | None = None
                      ) -> list[Profile]:
    """Validate every profile (and its static dims against the ONNX input, when given; with
    ``inputs``, every input's derived profile against that input, see :func:`input_profiles`)."""
    if not profiles:
        raise FCNError("an engine needs at least one optimization profile")
    for i, p in enumerate(profiles):
        p.validate(index=i)
        if inputs:
            input_profiles(p, inputs, index=i)
        elif input_shape is not None:
            p.check_static(input_shape, index=i)
    return list(profiles)


def input_profiles(profile: Profile, inputs: Mapping[str, Sequence[int | str | None]], *,
                   index: int = 0) -> dict[str, Profile]:
    """The profile of every network input (``{name: ONNX dims}``, in order) from ``profile``,
    which is given for the first input: every input shares its batch, height and width (one
    call feeds all of them at one N, H, W) and takes its own channel count from its graph dims
    (NYUDv2's ``depth`` is 1 channel next to a 3-channel ``image``). Each input's static dims
    are checked against its profile (FCNError naming the input)."""
    out: dict[str, Profile] = {}
    for k, (name, dims) in enumerate(inputs.items()):
        if k == 0:
            own = profile
        else:
            if len(dims) != 4 or not isinstance(dims[1], int) or dims[1] < 1:
                shown = format_shape([d if isinstance(d, int) else None for d in dims])
                raise FCNError(f"input {name!r} has dims {shown}; expected N x C x H x W with "
                               "a fixed channel count C")
            c = int(dims[1])
            own = Profile(*((p[0], c, *p[2:]) for p in (profile.min, profile.opt, profile.max)))
        own.check_static(dims, index=index, name=name)
        out[name] = own
    return out


def first_input_shape(shapes: Mapping[str, Sequence[int]], *, what: str = "engine") -> Shape:
    """The first input's shape, which picks the profile (:func:`select_profile`); every other
    input must share its batch, height and width (FCNError naming both otherwise)."""
    items = [(name, tuple(int(d) for d in shape)) for name, shape in shapes.items()]
    first_name, first = items[0]
    for name, shape in items[1:]:
        if len(shape) != len(first) or (shape[:1] + shape[2:]) != (first[:1] + first[2:]):
            raise FCNError(f"{what}: input {name!r} has shape {format_shape(shape)} but "
                           f"{first_name!r} has {format_shape(first)}; expected the same batch, "
                           "height and width for every input")
    return first


def describe_profiles(profiles: Sequence[Profile]) -> str:
    return "; ".join(f"#{i}: {p.describe()}" for i, p in enumerate(profiles))


def select_profile(profiles: Sequence[Profile], shape: Sequence[int], *, what: str = "engine") -> int:
    """Index of the profile to run ``shape`` with; FCNError listing the profiles if none covers it.

    Among the profiles that cover the shape, the one whose ``opt`` is closest in scale (smallest
    ratio between the element counts) wins, since kernels were tuned for ``opt``.
    """
    shape = tuple(int(d) for d in shape)
    covering = [i for i, p in enumerate(profiles) if p.covers(shape)]
    if not covering:
        raise FCNError(f"input shape {format_shape(shape)} is outside every optimization profile "
                       f"of {what}; it accepts {describe_profiles(profiles)}. Rebuild it with "
                       "fcn-build --min/--opt/--max covering this shape")

    def distance(i: int) -> float:
        return abs(math.log(_volume(profiles[i].opt) / _volume(shape)))

    return min(covering, key=lambda i: (distance(i), i))


def max_batch(profiles: Sequence[Profile], shape: Sequence[int]) -> int | None:
    """Largest batch any profile takes for the C, H, W of ``shape`` (None if no profile fits)."""
    best = None
    for p in profiles:
        if all(lo <= s <= hi for lo, s, hi in zip(p.min[1:], shape[1:], p.max[1:])):
            best = max(best or 0, p.max[0])
    return best


def _volume(shape: Sequence[int]) -> int:
    v = 1
    for d in shape:
        v *= int(d)
    return v
