"""What Zhipu's video models (CogVideoX, and the Vidu models Zhipu hosts) accept, and the submit
built from a job spec.

Rules only, no HTTP: the producer checks specs with them at enqueue time
(docs/wire-formats.md §1 and the official CogVideoX API reference).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from workers.domain.errors import InvalidSpec
from workers.domain.images import check_images
from workers.domain.jobs import JobSpec

COGVIDEOX: Final = ("cogvideox-flash", "cogvideox-2", "cogvideox-3")
# Vidu models Zhipu hosts, with how many images each takes (min, max): their rules stay light.
VIDU_IMAGES: Final = {
    "viduq1-text": (0, 0),
    "viduq1-image": (1, 1),
    "viduq1-start-end": (2, 2),
    "vidu2-image": (1, 1),
    "vidu2-start-end": (2, 2),
    "vidu2-reference": (1, 2),
}
MODELS: Final = COGVIDEOX + tuple(VIDU_IMAGES)
_SHARED_SIZES: Final = ("1024x1024", "1920x1080", "1080x1920", "2048x1080", "3840x2160")
SIZES: Final = {
    "cogvideox-3": ("1280x720", "720x1280", *_SHARED_SIZES),
    # From the official CogVideoX reference, the only source for cogvideox-2's list.
    "cogvideox-2": ("720x480", "1280x960", "960x1280", *_SHARED_SIZES),
}
QUALITIES: Final = ("speed", "quality")
FPS: Final = (30, 60)
DURATIONS: Final = (5, 10)
# The Z.ai OpenAPI caps the prompt at 512 characters; the vendor docs say 512 *tokens*, which
# usually allows more characters. Which one is current is unconfirmed, so the stricter one holds.
MAX_PROMPT_CHARS: Final = 512


@dataclass(frozen=True)
class _Option:
    accepts: Callable[[object], bool]
    expected: str


def _one_of(*values: str) -> _Option:
    return _Option(lambda value: value in values, " | ".join(values))


_BOOL: Final = _Option(lambda value: isinstance(value, bool), "true or false")
# `options` keys passed into the body as they are: those every model takes, then Vidu's own.
OPTIONS: Final = {
    "user_id": _Option(
        lambda value: isinstance(value, str) and 6 <= len(value) <= 128,
        "a string of 6-128 characters",
    ),
    "watermark_enabled": _BOOL,
    "off_peak": _BOOL,
}
VIDU_OPTIONS: Final = {
    "style": _one_of("general", "anime"),
    "aspect_ratio": _one_of("16:9", "9:16", "1:1"),
    "movement_amplitude": _one_of("auto", "small", "medium", "large"),
}


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when Zhipu's ``spec.model`` cannot take ``spec``."""
    if spec.model not in MODELS:
        raise InvalidSpec("model", f"unknown model {spec.model!r}; zhipu has {', '.join(MODELS)}")
    for name in ("seed", "negative_prompt"):
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, "zhipu does not take it")
    if spec.prompt is not None and len(spec.prompt) > MAX_PROMPT_CHARS:
        raise InvalidSpec("prompt", f"at most {MAX_PROMPT_CHARS} characters for zhipu")
    _check_options(spec)
    check_images(spec.images)
    if spec.model in VIDU_IMAGES:
        _check_vidu(spec)
    else:
        _check_cogvideox(spec)


def _check_options(spec: JobSpec) -> None:
    allowed = OPTIONS | VIDU_OPTIONS if spec.model in VIDU_IMAGES else OPTIONS
    for key, value in spec.options.items():
        option = allowed.get(key)
        if option is None:
            raise InvalidSpec(
                f"options.{key}", f"{spec.model} takes only options {', '.join(allowed)}"
            )
        if not option.accepts(value):
            raise InvalidSpec(f"options.{key}", f"must be {option.expected}, got {value!r}")


def _check_cogvideox(spec: JobSpec) -> None:
    if spec.model == "cogvideox-flash":
        for name in ("quality", "size", "fps"):
            if getattr(spec, name) is not None:
                raise InvalidSpec(name, "cogvideox-flash does not take it")
    if spec.quality is not None and spec.quality not in QUALITIES:
        raise InvalidSpec("quality", f"must be one of {', '.join(QUALITIES)}")
    if spec.fps is not None and spec.fps not in FPS:
        raise InvalidSpec("fps", "must be 30 or 60")
    if spec.duration is not None and spec.duration not in DURATIONS:
        raise InvalidSpec("duration", "must be 5 or 10 seconds")
    sizes = SIZES.get(spec.model, ())
    if spec.size is not None and spec.size not in sizes:
        raise InvalidSpec("size", f"{spec.model} takes one of {', '.join(sizes)}")
    if len(spec.images) == 2 and spec.quality not in (None, "speed"):
        raise InvalidSpec("image", 'first and last frame (two images) need quality "speed"')


def _check_vidu(spec: JobSpec) -> None:
    low, high = VIDU_IMAGES[spec.model]
    if not low <= len(spec.images) <= high:
        wanted = str(low) if low == high else f"{low} to {high}"
        raise InvalidSpec("image", f"{spec.model} takes {wanted} image(s)")


def request_body(job_id: str, spec: JobSpec) -> dict[str, Any]:
    """The submit body; fields the spec leaves unset are left out (Zhipu's defaults apply)."""
    images = spec.images
    fields: dict[str, Any] = {
        "model": spec.model,
        "prompt": spec.prompt,
        "image_url": images[0] if len(images) == 1 else images or None,
        "quality": spec.quality,
        "with_audio": spec.with_audio,
        "size": spec.size,
        "fps": spec.fps,
        "duration": spec.duration,
    }
    body = {name: value for name, value in fields.items() if value is not None}
    body.update(spec.options)
    body["request_id"] = job_id
    return body
