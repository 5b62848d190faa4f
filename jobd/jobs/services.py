"""What `GET /api/services` reports: each service's settings beside its queued and running jobs."""

from __future__ import annotations

from jobd.config.services import Services
from jobd.models import ANONYMOUS, DEFAULT_SERVICE


def report(
    services: Services, unfinished: list[tuple[str, int, str, int]], owner: int | None = None
) -> list[dict]:
    """Each service's settings and its queued and running jobs, in all and per user (for
    `GET /api/services`); the declared ones, `default`, and any other with jobs waiting.
    With `owner`, the per-user lists hold that user alone (the totals stay whole)."""
    names = {DEFAULT_SERVICE, *services.declared, *(row[0] for row in unfinished)}
    users: dict[str, dict[int, dict[str, int]]] = {name: {} for name in names}
    for name, user, status, count in unfinished:
        counts = users[name].setdefault(user, {"queued": 0, "running": 0})
        counts[status.lower()] = count
    found = []
    for name in sorted(names):
        settings = services.of(name)
        per_user = users[name]
        found.append(
            {
                "name": name,
                "declared": name in services.declared,
                "runs_per_user": settings.runs_per_user,
                "max_runs": settings.max_runs,
                "timeout": settings.timeout,
                "retention": settings.retention,
                "memory": settings.memory,
                "processes": settings.processes,
                "runner": settings.runner,
                "heartbeat_timeout": settings.heartbeat_timeout,
                "queued": sum(c["queued"] for c in per_user.values()),
                "running": sum(c["running"] for c in per_user.values()),
                "users": [
                    {"user_id": None if user == ANONYMOUS else user, **per_user[user]}
                    for user in sorted(per_user)
                    if owner is None or user == owner
                ],
            }
        )
    return found
