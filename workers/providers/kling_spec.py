"""What Kling's models accept, and the submit built from a job spec.

Rules only, no HTTP: the producer checks specs with them at enqueue time (docs/wire-formats.md §5).
A job without an image goes to the ``text2video`` family, one with images to ``image2video``.
Provider fields come from ``spec.options`` under their wire names; the job id always goes out as
``external_task_id``, and vidqueue's own callback URL, when it arms one, as ``callback_url``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from workers.domain.errors import InvalidSpec
from workers.domain.images import check_images
from workers.domain.jobs import JobSpec

FAMILIES: Final = ("text2video", "image2video")
_T2V: Final = (
    "kling-v1",
    "kling-v1-6",
    "kling-v2-master",
    "kling-v2-1-master",
    "kling-v2-5-turbo",
    "kling-v2-6",
)
MODELS: Final = {"text2video": _T2V, "image2video": (*_T2V, "kling-v1-5", "kling-v2-1")}
SOUND_MODELS: Final = ("kling-v2-6",)  # `sound` is for v2.6 and later
MAX_PROMPT_CHARS: Final = 2500
DURATIONS: Final = (5, 10)
CAMERA_TYPES: Final = (
    "simple",
    "down_back",
    "forward_up",
    "right_turn_forward",
    "left_turn_forward",
)
CAMERA_AXES: Final = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
_REFUSED: Final = {
    "size": "kling takes options.aspect_ratio (16:9 | 9:16 | 1:1) instead",
    "fps": "kling takes no fps",
    "quality": "kling takes options.mode (std | pro) instead",
    "seed": "kling takes no seed",
}


def _number_within(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _is_watermark_info(value: object) -> bool:
    return (
        isinstance(value, dict) and set(value) == {"enabled"} and isinstance(value["enabled"], bool)
    )


# `options` keys, under their wire names, with what each accepts (camera_control has its own
# check; these predicates are only consulted for the others).
OPTIONS: Final[dict[str, tuple[Callable[[object], bool], str]]] = {
    "mode": (lambda value: value in ("std", "pro"), "std or pro"),
    "aspect_ratio": (lambda value: value in ("16:9", "9:16", "1:1"), "16:9, 9:16 or 1:1"),
    "cfg_scale": (lambda value: _number_within(value, 0, 1), "a number from 0 to 1"),
    "camera_control": (lambda value: True, "checked on its own"),
    "watermark_info": (_is_watermark_info, '{"enabled": true|false}'),
    "callback_url": (
        lambda value: isinstance(value, str) and value.startswith(("http://", "https://")),
        "an http(s) URL",
    ),
}


def family_of(spec: JobSpec) -> str:
    return "image2video" if spec.images else "text2video"


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when Kling cannot take ``spec``."""
    family = family_of(spec)
    if spec.model not in MODELS[family]:
        hint = " (it needs an image)" if spec.model in MODELS["image2video"] else ""
        raise InvalidSpec("model", f"{family} has no model {spec.model!r}{hint}")
    for name, why in _REFUSED.items():
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, why)
    for name in ("prompt", "negative_prompt"):
        text = getattr(spec, name)
        if text is not None and len(text) > MAX_PROMPT_CHARS:
            raise InvalidSpec(name, f"at most {MAX_PROMPT_CHARS} characters for kling")
    if spec.duration is not None and spec.duration not in DURATIONS:
        raise InvalidSpec("duration", "must be 5 or 10 seconds for kling")
    if spec.with_audio and spec.model not in SOUND_MODELS:
        raise InvalidSpec("with_audio", f"only {', '.join(SOUND_MODELS)} generates sound")
    check_images(spec.images)
    for key, value in spec.options.items():
        _check_option(spec, family, key, value)
    if len(spec.images) == 2 and "camera_control" in spec.options:
        raise InvalidSpec("options.camera_control", "cannot be combined with a last frame image")


def _check_option(spec: JobSpec, family: str, key: str, value: object) -> None:
    field = f"options.{key}"
    if key == "external_task_id":
        raise InvalidSpec(field, "vidqueue always sends the job id as external_task_id")
    if key not in OPTIONS:
        raise InvalidSpec(field, f"kling takes only options {', '.join(OPTIONS)}")
    if key == "aspect_ratio" and family != "text2video":
        raise InvalidSpec(field, "text-to-video only; image-to-video follows the image")
    if key == "cfg_scale" and spec.model.startswith("kling-v2"):
        raise InvalidSpec(field, "kling-v2.x models take no cfg_scale")
    if key == "camera_control":
        _check_camera(value)
        return
    accepts, expected = OPTIONS[key]
    if not accepts(value):
        raise InvalidSpec(field, f"must be {expected}, got {value!r}")


def _check_camera(value: object) -> None:
    field = "options.camera_control"
    if not isinstance(value, dict) or not set(value) <= {"type", "config"}:
        raise InvalidSpec(field, 'must be {"type": …, "config": {…}}')
    kind, config = value.get("type"), value.get("config")
    if kind not in CAMERA_TYPES:
        raise InvalidSpec(f"{field}.type", f"must be one of {', '.join(CAMERA_TYPES)}")
    if kind != "simple":
        if config is not None:
            raise InvalidSpec(f"{field}.config", f"type {kind} takes no config")
        return
    if not isinstance(config, dict):
        raise InvalidSpec(f"{field}.config", "type simple needs a config")
    for axis, amount in config.items():
        if axis not in CAMERA_AXES:
            raise InvalidSpec(f"{field}.config.{axis}", f"axes are {', '.join(CAMERA_AXES)}")
        if not _number_within(amount, -10, 10):
            raise InvalidSpec(f"{field}.config.{axis}", "must be a number from -10 to 10")
    if sum(1 for amount in config.values() if amount != 0) != 1:
        raise InvalidSpec(f"{field}.config", "type simple moves along exactly one non-zero axis")


def request_body(job_id: str, spec: JobSpec, callback_url: str | None = None) -> dict[str, Any]:
    """The submit body; fields the spec leaves unset are left out (Kling's defaults apply).
    vidqueue's ``callback_url`` goes out as ``callback_url``, over any in ``spec.options``."""
    images = [_raw_base64(image) for image in spec.images]
    sound = None
    if spec.with_audio is not None and spec.model in SOUND_MODELS:
        sound = "on" if spec.with_audio else "off"
    fields: dict[str, Any] = {
        "model_name": spec.model,
        "prompt": spec.prompt if spec.prompt and spec.prompt.strip() else None,
        "negative_prompt": spec.negative_prompt,
        "duration": str(spec.duration) if spec.duration is not None else None,
        "sound": sound,
        "image": images[0] if images else None,
        "image_tail": images[1] if len(images) == 2 else None,
    }
    body = {name: value for name, value in fields.items() if value is not None}
    body.update(spec.options)
    if callback_url is not None:
        body["callback_url"] = callback_url
    body["external_task_id"] = job_id
    return body


def _raw_base64(image: str) -> str:
    """Kling takes a URL or bare base64: a data URI loses its ``data:…;base64,`` prefix."""
    return image.split(",", 1)[1] if image[:5].lower() == "data:" else image
