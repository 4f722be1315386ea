"""A provider's own finish timestamp reaches PollResult (vidqueue's detection-lag metric)."""

from __future__ import annotations

import pytest

from workers.domain.jobs import ProviderStatus
from workers.providers.base import PollResult, with_finish_time


@pytest.mark.parametrize(
    ("stamp", "millis", "expected"),
    [(1760000300, False, 1760000300.0), (1722769557708, True, 1722769557.708)],
)
def test_a_terminal_result_takes_the_provider_timestamp(
    stamp: int, millis: bool, expected: float
) -> None:
    done = PollResult(status=ProviderStatus.SUCCEEDED)
    assert with_finish_time(done, stamp, millis=millis).finished_at == pytest.approx(expected)


@pytest.mark.parametrize("stamp", [None, 0, -5, "1760000300", True])
def test_an_implausible_timestamp_is_ignored(stamp: object) -> None:
    done = PollResult(status=ProviderStatus.FAILED)
    assert with_finish_time(done, stamp).finished_at is None


def test_a_running_result_has_no_finish_time() -> None:
    running = PollResult(status=ProviderStatus.RUNNING)
    assert with_finish_time(running, 1760000300).finished_at is None
