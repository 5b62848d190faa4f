"""Recurring jobs: named schedules (cron, @names, @every) whose runs are ordinary jobs, made
through the same intake as an upload from an input kept once, with a concurrency policy
(allow, forbid, replace) and a loop of their own.

Durable: each schedule stores the slot it last fired for, and a run's ID comes from its
slot (`<name>-<UTC time>`), so a restart neither skips nor doubles a run. Slots missed while
jobd was down fire once, at start-up (for the latest of them), not once each.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from jobd.errors import BadRequest, Conflict, NotFound
from jobd.jobs import cron
from jobd.jobs.intake import Intake
from jobd.jobs.upload import parse_env, parse_limits, parse_retry, parse_timeout, unknown_field
from jobd.loop import Loop
from jobd.metrics import Metrics
from jobd.models import (
    DEFAULT_SERVICE,
    NO_RETRY,
    Job,
    JobLimits,
    JobSpec,
    JobStatus,
    Schedule,
    rfc3339,
)
from jobd.store import Store
from jobd.store.layout import Layout

log = logging.getLogger("jobd")

NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
CONCURRENCY = ("forbid", "allow", "replace")
#: Settings a schedule's body may hold besides `name` and `input`.
SETTINGS = ("schedule", "timezone", "concurrency", "timeout", "retry", "env", "slurml", "limits")
#: The most slots searched for the latest missed one; past it, "now" is the slot.
_CATCH_UP_STEPS = 10_000


def when_of(schedule: Schedule) -> cron.When:
    settings = schedule.settings
    return cron.parse(settings["schedule"], settings["timezone"])


def wire(schedule: Schedule) -> dict[str, object]:
    """A schedule as the API shows it: env's names only (its values may be secrets)."""
    settings = schedule.settings
    env = settings.get("env")
    return {
        "name": schedule.name,
        **{key: value for key, value in settings.items() if key != "env"},
        "env": sorted(env) if isinstance(env, dict) else [],
        "enabled": schedule.enabled,
        "last_fire": rfc3339(schedule.last_fire),
        "next_fire": rfc3339(when_of(schedule).next_after(schedule.last_fire))
        if schedule.enabled
        else None,
        "created_at": rfc3339(schedule.created_at),
    }


def check_name(name: object) -> str:
    if not isinstance(name, str) or len(name) > 64 or not NAME.fullmatch(name):
        raise BadRequest(
            f"'name' must be kebab-case (lowercase letters and digits joined by '-', up to"
            f" 64), not {name!r}"
        )
    return name


def check_settings(fields: dict[str, object], base: dict[str, object] | None = None) -> dict:
    """The settings of a new schedule (`base` None) or a change to one; a 400 that says what
    is wrong."""
    known = ("name", "input", *SETTINGS, "enabled")
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise BadRequest(unknown_field(unknown[0], known, "a schedule"))
    settings = dict(base or {"timezone": "UTC", "concurrency": "forbid", "slurml": False})
    settings.update({key: value for key, value in fields.items() if key in SETTINGS})
    if "schedule" not in settings:
        raise BadRequest("'schedule' is missing: cron like '0 2 * * *', '@daily' or '@every 15m'")
    try:
        when = cron.parse(settings["schedule"], settings["timezone"])
    except ValueError as exc:
        raise BadRequest(str(exc)) from None
    settings["schedule"] = when.text
    if settings["concurrency"] not in CONCURRENCY:
        raise BadRequest(f"'concurrency' must be one of {', '.join(CONCURRENCY)}")
    if not isinstance(settings["slurml"], bool):
        raise BadRequest("'slurml' must be true or false")
    settings["timeout"] = parse_timeout(settings.get("timeout"))
    retry = parse_retry(settings.get("retry"))
    settings["retry"] = dataclasses.asdict(retry) if retry else None
    settings["env"] = dict(parse_env(settings.get("env")))
    limits = parse_limits(settings.get("limits"))
    asked = {key: value for key, value in dataclasses.asdict(limits).items() if value is not None}
    settings["limits"] = asked or None
    return settings


def _enabled(fields: dict[str, object], default: bool) -> bool:
    value = fields.get("enabled", default)
    if not isinstance(value, bool):
        raise BadRequest(f"'enabled' must be true or false, not {value!r}")
    return value


class Schedules(Loop):
    thread_name = "schedules"

    def __init__(
        self,
        store: Store,
        layout: Layout,
        intake: Intake,
        cancel: Callable[[str], object],
        metrics: Metrics,
        limit: int,
    ) -> None:
        super().__init__()
        self._store = store
        self._layout = layout
        self._intake = intake
        self._cancel = cancel
        self._metrics = metrics
        self._limit = limit

    # -- the API's verbs ---------------------------------------------------------------------
    # `owner` as in JobService: a user's schedules are theirs alone (another's is not found),
    # and their runs are that user's jobs; None sees and changes every schedule.

    def create(self, body: BinaryIO, *, owner: int | None = None) -> Schedule:
        made: list[Schedule] = []

        def keep(fields: dict[str, object]) -> Path:
            name = check_name(fields.get("name"))
            settings = self._checked(fields)
            if self._store.schedules.get(name) is not None:
                raise Conflict(f"there is already a schedule named {name!r}")
            now = time.time()
            enabled = _enabled(fields, True)
            made.append(Schedule(name, encode(settings), enabled, now, now, now, owner))
            return self._layout.schedule_zip(name)

        self._intake.zip_and_fields(body, self._limit, keep)
        (schedule,) = made
        if not self._store.schedules.insert(schedule):
            raise Conflict(f"there is already a schedule named {schedule.name!r}")
        log.info("schedule %s: created (%s)", schedule.name, schedule.settings["schedule"])
        self.kick()
        return schedule

    def get(self, name: str, *, owner: int | None = None) -> Schedule:
        found = self._store.schedules.get(name) if NAME.fullmatch(name) else None
        if found is None or (owner is not None and found.user_id != owner):
            raise NotFound(f"there is no schedule named {name!r}")
        return found

    def all(self, *, owner: int | None = None) -> list[Schedule]:
        return self._store.schedules.all(owner)

    def change(self, name: str, fields: dict[str, object], *, owner: int | None = None) -> Schedule:
        current = self.get(name, owner=owner)
        if "input" in fields or "name" in fields:
            raise BadRequest("a schedule's name and input cannot change: delete it and create it")
        settings = self._checked(fields, current.settings)
        changed = dataclasses.replace(
            current,
            body=encode(settings),
            enabled=_enabled(fields, current.enabled),
            updated_at=time.time(),
        )
        self._store.schedules.update(changed)
        self.kick()
        return changed

    def _checked(self, fields: dict[str, object], base: dict[str, object] | None = None) -> dict:
        """check_settings, and its runs' limits within the maxima (their service's, jobd's)."""
        settings = check_settings(fields, base)
        self._limits(settings)
        return settings

    def _limits(self, settings: dict[str, object], *, clamp: bool = False) -> JobLimits:
        """A run's limits; with `clamp`, lowered to maxima that changed since it was made."""
        asked = parse_limits(settings.get("limits"))
        slurml = settings.get("slurml") is True
        return self._intake.limits(asked, DEFAULT_SERVICE, slurml, clamp=clamp)

    def enable(self, name: str, enabled: bool, *, owner: int | None = None) -> Schedule:
        current = self.get(name, owner=owner)
        # enabled again: from now on, not the slots that passed while it was off
        last = current.last_fire if current.enabled or not enabled else time.time()
        changed = dataclasses.replace(
            current, enabled=enabled, last_fire=last, updated_at=time.time()
        )
        self._store.schedules.update(changed)
        self.kick()
        return changed

    def delete(self, name: str, *, owner: int | None = None) -> None:
        self.get(name, owner=owner)
        self._store.schedules.delete(name)
        self._layout.schedule_zip(name).unlink(missing_ok=True)

    def trigger(self, name: str, *, owner: int | None = None) -> Job:
        """A run now, whatever the schedule says (its concurrency policy still holds)."""
        return self._start_run(self.get(name, owner=owner), time.time(), manual=True)

    def runs(self, name: str, limit: int, *, owner: int | None = None) -> list[Job]:
        self.get(name, owner=owner)
        return self._store.jobs.runs_of(name, limit, owner)

    # -- the loop ------------------------------------------------------------------------------

    def tick(self, now: float) -> float | None:
        upcoming = []
        for schedule in self._store.schedules.all():
            if not schedule.enabled:
                continue
            try:
                when = when_of(schedule)
                fire = when.next_after(schedule.last_fire)
                if fire <= now:
                    slot = _latest_slot(when, fire, now)
                    self._start_run(schedule, slot)
                    self._store.schedules.set_last_fire(schedule.name, slot)
                    fire = when.next_after(slot)
                upcoming.append(fire)
            except Exception as exc:  # one schedule's trouble never stops the others
                log.error("schedule %s: cannot run it: %s", schedule.name, exc)
                upcoming.append(now + 5.0)
        return max(0.0, min(upcoming) - self.clock()) if upcoming else None

    def _start_run(self, schedule: Schedule, slot: float, manual: bool = False) -> Job:
        job_id = f"{schedule.name}-{cron.utc_stamp(slot)}"
        if manual:
            job_id = self._free_id(job_id)
        elif (existing := self._store.jobs.get(job_id)) is not None:
            return existing  # fired before a restart cut the bookkeeping short
        running = [
            job
            for job in self._store.jobs.runs_of(schedule.name, 100, schedule.user_id)
            if not job.status.terminal
        ]
        policy = schedule.settings["concurrency"]
        if running and policy == "forbid":
            message = (
                f"skipped: run {running[0].id} was still {running[0].status.value.lower()}"
                " (concurrency forbid)"
            )
            job = self._store.jobs.insert_skipped(job_id, schedule.name, message, schedule.user_id)
            self._metrics.schedule_run(schedule.name, JobStatus.SKIPPED.value)
            log.info("schedule %s: %s", schedule.name, message)
            return job
        if running and policy == "replace":
            for old in running:
                self._cancel(old.id)
        settings = schedule.settings
        retry = parse_retry(settings.get("retry"))
        env = settings.get("env")
        timeout = settings.get("timeout")
        limits = self._limits(settings, clamp=True)
        spec = JobSpec(
            job_id,
            slurml=settings.get("slurml") is True,
            timeout=float(timeout) if isinstance(timeout, (int, float)) else None,
            env=tuple(env.items()) if isinstance(env, dict) else (),
            schedule=schedule.name,
            retry=retry or NO_RETRY,
            user_id=schedule.user_id,
            memory_limit=limits.memory,
            process_limit=limits.processes,
        )
        job = self._intake.from_zip(self._layout.schedule_zip(schedule.name), spec)
        self._metrics.schedule_run(schedule.name, "started")
        log.info("schedule %s: started run %s", schedule.name, job.id)
        return job

    def _free_id(self, job_id: str) -> str:
        candidate, number = job_id, 1
        while self._store.jobs.get(candidate) is not None:
            number += 1
            candidate = f"{job_id}-{number}"
        return candidate


def _latest_slot(when: cron.When, first: float, now: float) -> float:
    """The latest slot at or before `now`, from the first one due."""
    if when.every is not None:
        return first + math.floor((now - first) / when.every) * when.every
    slot = first
    for _ in range(_CATCH_UP_STEPS):
        following = when.next_after(slot)
        if following > now:
            return slot
        slot = following
    return now


def encode(settings: dict[str, object]) -> str:
    return json.dumps(settings, sort_keys=True)
