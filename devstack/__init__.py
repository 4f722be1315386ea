"""The local stack: Redis, S3 (SeaweedFS), the simulator, workers, beat, API and Flower as
background processes with PID records and logs in a run directory (``vidqueue dev``, tests)."""

from devstack.processes import (
    ProcessManager,
    ServiceError,
    ServiceSpec,
    ServiceStatus,
    StartError,
)
from devstack.stack import Stack

__all__ = [
    "ProcessManager",
    "ServiceError",
    "ServiceSpec",
    "ServiceStatus",
    "Stack",
    "StartError",
]
