"""What a new-api-style gateway accepts, per upstream vendor, and the submit built from a spec.

Rules only, no HTTP: the producer checks specs with them at enqueue time. The model picks the
vendor family; the spec's ``options`` go into ``metadata``, which the gateway merges into that
vendor's own body, so they are checked against the vendor's fields (docs/wire-formats.md §3).
"""

from __future__ import annotations

from typing import Any, Final

from workers.domain.errors import InvalidSpec
from workers.domain.images import check_images
from workers.domain.jobs import JobSpec
from workers.providers.openai_spec import check_seconds_and_size


def _fields(names: str) -> frozenset[str]:
    return frozenset(names.split())


# Model-name prefix → vendor family; a model matching none is passed through unchecked.
FAMILIES: Final = (
    ("kling", "kling"),
    ("jimeng", "jimeng"),
    ("vidu", "vidu"),
    ("doubao", "doubao"),
    ("seedance", "doubao"),
    ("sora", "sora"),
)
# The vendor-native fields each family reads from `metadata` (docs/wire-formats.md §3). Kling's
# `mode` is a top-level field too, but its adaptor lets metadata override it.
METADATA_KEYS: Final[dict[str, frozenset[str]]] = {
    "kling": _fields(
        "negative_prompt cfg_scale aspect_ratio camera_control image_tail static_mask "
        "dynamic_masks callback_url mode"
    ),
    "jimeng": _fields("req_key seed aspect_ratio frames image_urls"),
    "vidu": _fields("seed resolution movement_amplitude bgm payload callback_url"),
    "doubao": _fields(
        "resolution ratio frames seed camera_fixed watermark generate_audio return_last_frame "
        "service_tier execution_expires_after callback_url content"
    ),
    "sora": frozenset(),
}
# The families whose vendor body reads `metadata.callback_url`: where vidqueue's callback goes.
CALLBACK_FAMILIES: Final = frozenset(
    name for name, keys in METADATA_KEYS.items() if "callback_url" in keys
)
# Spec fields that become a metadata key, and the families that read it.
SPEC_METADATA: Final = {
    "negative_prompt": ("negative_prompt", ("kling",)),
    "seed": ("seed", ("jimeng", "vidu", "doubao")),
    "with_audio": ("generate_audio", ("doubao",)),
}
KLING_DURATIONS: Final = (5, 10)
# Kling maps these to an aspect ratio; anything else silently becomes 1:1.
KLING_SIZES: Final = ("1280x720", "1920x1080", "720x1280", "1080x1920", "1024x1024")


def family(model: str) -> str:
    """The vendor family of a gateway model name, or "" when it is not one vidqueue knows."""
    lowered = model.lower()
    return next((name for prefix, name in FAMILIES if lowered.startswith(prefix)), "")


def accepts_callback(spec: JobSpec) -> bool:
    """True where the model's vendor reads ``metadata.callback_url`` (Kling, Vidu, Doubao)."""
    return family(spec.model) in CALLBACK_FAMILIES


def validate(spec: JobSpec) -> None:
    """Raise ``InvalidSpec`` naming the field when the gateway's model cannot take ``spec``."""
    fam = family(spec.model)
    if not (spec.prompt and spec.prompt.strip()):
        raise InvalidSpec("prompt", "the gateway needs a prompt, also for image-to-video")
    for name in ("fps", "quality"):
        if getattr(spec, name) is not None:
            raise InvalidSpec(name, "the gateway takes no such field; use the vendor's in options")
    for name, (_, families) in SPEC_METADATA.items():
        if getattr(spec, name) is not None and fam not in families:
            raise InvalidSpec(name, f"only {', '.join(families)} models take it")
    _check_options(spec, fam)
    check_images(spec.images)
    if fam == "sora":
        check_seconds_and_size(spec)
        if len(spec.images) > 1:
            raise InvalidSpec("image", "sora takes one reference image")
    if fam == "kling":
        if spec.duration is not None and spec.duration not in KLING_DURATIONS:
            raise InvalidSpec("duration", "kling takes 5 or 10 seconds")
        if spec.size is not None and spec.size not in KLING_SIZES:
            raise InvalidSpec("size", f"kling takes one of {', '.join(KLING_SIZES)}")


def _check_options(spec: JobSpec, fam: str) -> None:
    allowed = METADATA_KEYS.get(fam)
    from_spec = {key for name, (key, _) in SPEC_METADATA.items() if getattr(spec, name) is not None}
    if fam == "kling" and len(spec.images) == 2:
        from_spec.add("image_tail")
    for key in spec.options:
        where = f"options.{key}"
        if key == "model":
            raise InvalidSpec(where, "the gateway drops it; set the job's model instead")
        if key == "external_task_id" and fam == "kling":
            raise InvalidSpec(where, "vidqueue sends the job id as kling's external_task_id")
        if key in from_spec:
            raise InvalidSpec(where, "the job spec already sets it; set it in one place")
        if allowed is not None and key not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise InvalidSpec(where, f"{fam} models take only metadata {known}")


def request_body(job_id: str, spec: JobSpec, callback_url: str | None = None) -> dict[str, Any]:
    """The submit body: the generic fields, and everything vendor-specific in ``metadata``;
    vidqueue's ``callback_url`` as ``metadata.callback_url`` (over ``options.callback_url``),
    only for the families that read it."""
    fam = family(spec.model)
    body: dict[str, Any] = {"model": spec.model, "prompt": spec.prompt}
    metadata: dict[str, Any] = dict(spec.options)
    images = spec.images
    if fam == "sora" and images:
        body["input_reference"] = images[0]
    elif len(images) == 1:
        body["image"] = images[0]
    elif fam == "kling" and len(images) == 2:
        body["image"], metadata["image_tail"] = images
    elif images:
        body["images"] = images
    if spec.size is not None:
        body["size"] = spec.size
    if spec.duration is not None:
        if fam == "sora":
            body["seconds"] = str(spec.duration)
        else:
            body["duration"] = spec.duration
    for name, (key, _) in SPEC_METADATA.items():
        if getattr(spec, name) is not None:
            metadata[key] = getattr(spec, name)
    if fam == "kling":
        metadata["external_task_id"] = job_id
    if callback_url is not None and fam in CALLBACK_FAMILIES:
        metadata["callback_url"] = callback_url
    if metadata:
        body["metadata"] = metadata
    return body
