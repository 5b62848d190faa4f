"""The limits a job runs with: the smallest of what it asked for (its `limits`, read by
upload.py), its service's maximum and jobd's (--job-memory, --job-processes).

A job may ask for less than the maximum, never more: above it is a 400 that names the field,
the value asked and the maximum, so a job never silently runs with less than it expected.
"""

from __future__ import annotations

from jobd.config.options import Config
from jobd.config.units import format_size
from jobd.errors import BadRequest
from jobd.models import JobLimits


def effective(asked: JobLimits, service: str, config: Config, *, clamp: bool = False) -> JobLimits:
    """The limits a job of `service` runs with: the smallest of what it asked for, its
    service's maximum and jobd's; None where none applies. Asking above the maximum is a 400,
    or, with `clamp`, the maximum (a schedule's run: its limits were checked when it was made,
    and the maxima may have changed since)."""
    own = config.services.of(service)
    return JobLimits(
        _smallest("memory", asked.memory, own.memory, config.job_memory, service, clamp),
        _smallest(
            "processes", asked.processes, own.processes, config.job_processes, service, clamp
        ),
    )


def _smallest(
    key: str,
    asked: int | None,
    by_service: int | None,
    by_jobd: int | None,
    service: str,
    clamp: bool,
) -> int | None:
    # a service's maximum is never above jobd's (checked at start-up), so it is the one
    maximum = by_service if by_service is not None else by_jobd
    if asked is None or maximum is None:
        return maximum if asked is None else asked
    if asked <= maximum or clamp:
        return min(asked, maximum)
    show = format_size if key == "memory" else str
    whose = (
        f"the maximum of service {service!r}, {show(maximum)} (--service {service}:{key}=...)"
        if by_service is not None
        else f"this jobd's maximum of {show(maximum)} (--job-{key})"
    )
    raise BadRequest(
        f"limits.{key} {show(asked)} is above {whose}; ask for at most {show(maximum)},"
        f" or leave limits.{key} out"
    )
