"""What Ark's Seedance models accept, and the submit built from a job spec.

Rules only, no HTTP: the producer checks specs with them at enqueue time (docs/wire-formats.md §4).
Provider-specific fields come from ``spec.options`` under their wire names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from workers.domain.errors import InvalidSpec
from workers.domain.images import check_image
from workers.domain.jobs import JobSpec

RESOLUTIONS: Final = ("480p", "720p", "1080p")
RATIOS: Final = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "9:21", "adaptive")
DURATIONS: Final = range(3, 13)
EXPIRES_AFTER_S: Final = range(3600, 259200 + 1)
# Image roles a job may ask for, as whole sets: frames and reference images do not mix.
ROLE_SETS: Final = (
    ("first_frame",),
    ("first_frame", "last_frame"),
    ("reference_image",),
    ("reference_image", "reference_image"),
)
_REFUSED: Final = {
    "size": "ark takes options.resolution (480p|720p|1080p) and options.ratio instead",
    "fps": "Seedance renders at 24 fps; ark takes no fps",
    "quality": "ark has no quality; use options.resolution",
    "negative_prompt": "ark takes no negative prompt",
}

Check = Callable[[object], bool]


def _one_of(*values: str) -> tuple[Check, str]:
    return (lambda value: value in values), " | ".join(values)


def _positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


_BOOL: Final[tuple[Check, str]] = (lambda value: isinstance(value, bool), "true or false")
# `options` keys, under their wire names, with what each accepts.
OPTIONS: Final[dict[str, tuple[Check, str]]] = {
    "resolution": _one_of(*RESOLUTIONS),
    "ratio": _one_of(*RATIOS),
    "frames": (_positive_int, "a positive integer"),
    "camera_fixed": _BOOL,
    "watermark": _BOOL,
    "return_last_frame": _BOOL,
    "callback_url": (
        lambda value: isinstance(value, str) and value.startswith(("http://", "https://")),
        "an http(s) URL",
    ),
    "service_tier": _one_of("default", "flex"),
    "execution_expires_after": (
        lambda value: _positive_int(value) and value in EXPIRES_AFTER_S,
        "whole seconds from 3600 to 259200",
    ),
    "image_roles": (
        lambda value: isinstance(value, list) and all(isinstance(r, str) for r in value),
        "a list of roles: first_frame, last_frame or reference_image",
    ),
}


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when Ark cannot take ``spec``."""
    for name, why in _REFUSED.items():
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, why)
    if spec.duration is not None and spec.duration not in DURATIONS:
        raise InvalidSpec("duration", "must be 3 to 12 seconds for ark")
    for key, value in spec.options.items():
        if key not in OPTIONS:
            raise InvalidSpec(f"options.{key}", f"ark takes only options {', '.join(OPTIONS)}")
        accepts, expected = OPTIONS[key]
        if not accepts(value):
            raise InvalidSpec(f"options.{key}", f"must be {expected}, got {value!r}")
    if "frames" in spec.options and spec.duration is not None:
        raise InvalidSpec("options.frames", "give duration or options.frames, not both")
    for image in spec.images:
        if not image.startswith("asset://"):
            check_image(image)
    image_roles(spec)
    _check_model_inputs(spec)


def image_roles(spec: JobSpec) -> list[str]:
    """The role of each image: first frame (+ last frame) unless ``options.image_roles`` says."""
    given = spec.options.get("image_roles")
    if given is None:
        return ["first_frame", "last_frame"][: len(spec.images)]
    roles = [str(role) for role in given]
    if len(roles) != len(spec.images):
        raise InvalidSpec(
            "options.image_roles", f"needs one role per image ({len(spec.images)}), got {roles}"
        )
    if tuple(roles) not in ROLE_SETS:
        allowed = "; ".join(", ".join(roles) for roles in ROLE_SETS)
        raise InvalidSpec("options.image_roles", f"must be one of: {allowed}; got {roles}")
    return roles


def _check_model_inputs(spec: JobSpec) -> None:
    """Seedance lite comes as a text-only (-t2v) and an image-only (-i2v) model."""
    if "-t2v" in spec.model and spec.images:
        raise InvalidSpec("image", f"{spec.model} is text-to-video and takes no image")
    if "-i2v" in spec.model and not spec.images:
        raise InvalidSpec("image", f"{spec.model} is image-to-video and needs an image")


def request_body(spec: JobSpec, callback_url: str | None = None) -> dict[str, Any]:
    """The submit body; fields the spec leaves unset are left out (Ark's defaults apply).
    vidqueue's ``callback_url`` goes out as ``callback_url``, over any in ``spec.options``."""
    content: list[dict[str, Any]] = []
    if spec.prompt and spec.prompt.strip():
        content.append({"type": "text", "text": spec.prompt})
    for url, role in zip(spec.images, image_roles(spec), strict=True):
        content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
    body: dict[str, Any] = {"model": spec.model, "content": content}
    fields = {"duration": spec.duration, "seed": spec.seed, "generate_audio": spec.with_audio}
    body.update({name: value for name, value in fields.items() if value is not None})
    body.update({key: value for key, value in spec.options.items() if key != "image_roles"})
    if callback_url is not None:
        body["callback_url"] = callback_url
    return body
