"""Recurring jobs: named schedules (cron, @names, @every) whose runs are ordinary jobs, made
through the same intake as an upload from an input kept once, with a concurrency policy
(allow, forbid, replace) and a loop of their own.

Durable: each schedule stores the slot it last fired for, and a run's ID comes from its
slot (`<name>-<UTC time>`), so a restart neither skips nor doubles a run. Slots missed while
jobd was down, or while the loop was late, fire once (the latest of them); the others leave
one SKIPPED record for the whole gap, saying why and how many slots it covers.

Nothing a client stores can break the loop: what the API refuses (see cron and Rules) the loop
refuses too, and a row that got past it by other means is logged once, disabled with its
reason (`disabled_reason`), and the other schedules go on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from jobd.errors import BadRequest, Conflict, IdTaken, NotFound
from jobd.jobs import cron
from jobd.jobs.intake import Intake
from jobd.jobs.upload import parse_env, parse_limits, parse_retry, parse_timeout, unknown_field
from jobd.logs import Once
from jobd.loop import LONGEST_WAIT, Loop
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
from jobd.store.schedules import Full

log = logging.getLogger("jobd")
_once = Once(log)

NAME = re.compile(r"[a-z0-9]+(?:-[a-z0-9]+)*")
CONCURRENCY = ("forbid", "allow", "replace")
#: Settings a schedule's body may hold besides `name` and `input`.
SETTINGS = ("schedule", "timezone", "concurrency", "timeout", "retry", "env", "slurml", "limits")
#: Why jobd disabled a schedule the loop could not run: kept in its body, shown in its JSON.
REASON = "disabled_reason"
#: The most cron slots counted in a gap; past it the SKIPPED record says "more than".
_COUNT_STEPS = 1_000
#: After a run could not start (a full disk, say), the loop tries that schedule again after.
_RETRY_AFTER = 5.0


@dataclass(frozen=True)
class Rules:
    """What this jobd lets a client ask of schedules (--max-schedules,
    --min-schedule-interval); checked on create and change."""

    most: int = 1000
    min_interval: float = cron.MIN_EVERY


class BadSchedule(Exception):
    """A stored schedule the loop cannot run; its message says why, for a person."""


def when_of(schedule: Schedule) -> cron.When:
    settings = schedule.settings
    return cron.parse(settings["schedule"], settings["timezone"])


def _stored_settings(schedule: Schedule) -> dict[str, object]:
    """Its settings, or none if its body is not a JSON object (only a hand-edited store)."""
    try:
        return schedule.settings
    except ValueError:
        return {}


def _next_fire(schedule: Schedule) -> str | None:
    if not schedule.enabled:
        return None
    try:
        return rfc3339(when_of(schedule).next_after(schedule.last_fire))
    except Exception:  # a bad row: the loop disables it and says why; a read never fails
        return None


def _moment(moment: float) -> str | None:
    """A stored time as RFC 3339; None for one no calendar shows (only a hand-edited store)."""
    try:
        return rfc3339(moment)
    except (ValueError, OverflowError, OSError, TypeError):
        return None


def wire(schedule: Schedule) -> dict[str, object]:
    """A schedule as the API shows it: env's names only (its values may be secrets)."""
    settings = _stored_settings(schedule)
    env = settings.get("env")
    return {
        "name": schedule.name,
        **{key: value for key, value in settings.items() if key not in ("env", REASON)},
        "env": sorted(env) if isinstance(env, dict) else [],
        "enabled": schedule.enabled,
        REASON: settings.get(REASON),
        "last_fire": _moment(schedule.last_fire),
        "next_fire": _next_fire(schedule),
        "created_at": _moment(schedule.created_at),
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
    settings.pop(REASON, None)  # settings that pass are no longer a reason to be off
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


def check_rules(settings: dict[str, object], rules: Rules, now: float) -> None:
    """The limits this jobd sets beyond cron's own: how often a schedule may fire."""
    try:
        when = cron.parse(settings["schedule"], settings["timezone"], now)
        gap = when.smallest_gap(now) if rules.min_interval > 60 or when.every else 60.0
    except ValueError as exc:  # a gap past the horizon among its next fires
        raise BadRequest(str(exc)) from None
    if gap < rules.min_interval:
        raise BadRequest(
            f"'schedule' {when.text!r} fires {gap:g}s apart; this jobd allows"
            f" {rules.min_interval:g}s at least (--min-schedule-interval)"
        )


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
        self._started = time.time()  # slots before it were missed while jobd was down
        self._checked_bodies: dict[tuple[str, str], cron.When] = {}
        #: Names being created or deleted: their zip is being written or removed.
        self._claims: set[str] = set()
        self._claims_lock = threading.Lock()

    # -- the API's verbs ---------------------------------------------------------------------
    # `owner` as in JobService: a user's schedules are theirs alone (another's is not found),
    # and their runs are that user's jobs; None sees and changes every schedule.

    def create(
        self, body: BinaryIO, *, owner: int | None = None, rules: Rules = Rules()
    ) -> Schedule:
        made: list[Schedule] = []

        def keep(fields: dict[str, object]) -> Path:
            name = check_name(fields.get("name"))
            settings = self._checked(fields, rules=rules)
            now = time.time()
            schedule = Schedule(
                name, encode(settings), _enabled(fields, True), now, now, now, owner
            )
            with self._claims_lock:  # a name's zip is written by one create at a time
                if name in self._claims or self._store.schedules.get(name) is not None:
                    raise Conflict(f"there is already a schedule named {name!r}")
                self._claims.add(name)
            made.append(schedule)
            if self._store.schedules.count() >= rules.most:
                raise _full(rules)
            return self._layout.schedule_zip(name)

        try:
            self._intake.zip_and_fields(body, self._limit, keep)
            (schedule,) = made
            try:
                inserted = self._store.schedules.insert(schedule, rules.most)
            except Full:
                self._layout.schedule_zip(schedule.name).unlink(missing_ok=True)
                raise _full(rules) from None
            if not inserted:
                raise Conflict(f"there is already a schedule named {schedule.name!r}")
        finally:
            with self._claims_lock:
                self._claims.difference_update(claimed.name for claimed in made)
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

    def change(
        self,
        name: str,
        fields: dict[str, object],
        *,
        owner: int | None = None,
        rules: Rules = Rules(),
    ) -> Schedule:
        current = self.get(name, owner=owner)
        if "input" in fields or "name" in fields:
            raise BadRequest("a schedule's name and input cannot change: delete it and create it")
        settings = self._checked(fields, _stored_settings(current), rules=rules)
        changed = dataclasses.replace(
            current,
            body=encode(settings),
            enabled=_enabled(fields, current.enabled),
            updated_at=time.time(),
        )
        self._store.schedules.update(changed)
        self.kick()
        return changed

    def _checked(
        self,
        fields: dict[str, object],
        base: dict[str, object] | None = None,
        *,
        rules: Rules | None = None,
    ) -> dict:
        """check_settings, its runs' limits within the maxima (their service's, jobd's), and
        with `rules` this jobd's limits of schedules."""
        settings = check_settings(fields, base)
        self._limits(settings)
        if rules is not None:
            check_rules(settings, rules, time.time())
        return settings

    def _limits(self, settings: dict[str, object], *, clamp: bool = False) -> JobLimits:
        """A run's limits; with `clamp`, lowered to maxima that changed since it was made."""
        asked = parse_limits(settings.get("limits"))
        slurml = settings.get("slurml") is True
        return self._intake.limits(asked, DEFAULT_SERVICE, slurml, clamp=clamp)

    def enable(self, name: str, enabled: bool, *, owner: int | None = None) -> Schedule:
        current = self.get(name, owner=owner)
        body = current.body
        if enabled:
            try:
                body = encode(self._checked({}, _stored_settings(current)))
                self._definition(dataclasses.replace(current, body=body))
            except (BadRequest, BadSchedule) as exc:
                raise BadRequest(f"schedule {name!r} cannot be enabled: {exc}") from None
        # enabled again: from now on, not the slots that passed while it was off
        last = current.last_fire if current.enabled or not enabled else time.time()
        changed = dataclasses.replace(
            current, body=body, enabled=enabled, last_fire=last, updated_at=time.time()
        )
        self._store.schedules.update(changed)
        self.kick()
        return changed

    def delete(self, name: str, *, owner: int | None = None) -> None:
        self.get(name, owner=owner)
        with self._claims_lock:  # not while a create of this name writes its zip
            if name in self._claims:
                raise Conflict(f"schedule {name!r} is being created or deleted; try again")
            self._claims.add(name)
        try:
            self._store.schedules.delete(name)
            self._layout.schedule_zip(name).unlink(missing_ok=True)
        finally:
            with self._claims_lock:
                self._claims.discard(name)
        self._metrics.forget_schedule(name)

    def trigger(self, name: str, *, owner: int | None = None) -> Job:
        """A run now, whatever the schedule says (its concurrency policy still holds)."""
        schedule = self.get(name, owner=owner)
        try:
            self._definition(schedule)
        except BadSchedule as exc:
            raise BadRequest(f"schedule {name!r} cannot run: {exc}") from None
        return self._start_run(schedule, time.time(), manual=True)

    def runs(self, name: str, limit: int, *, owner: int | None = None) -> list[Job]:
        self.get(name, owner=owner)
        return self._store.jobs.runs_of(name, limit, owner)

    # -- the loop ------------------------------------------------------------------------------

    def tick(self, now: float) -> float | None:
        upcoming = []
        schedules = self._store.schedules.all()
        present = {(schedule.name, schedule.body) for schedule in schedules}
        self._checked_bodies = {k: v for k, v in self._checked_bodies.items() if k in present}
        for schedule in schedules:
            if schedule.enabled and (fire := self._tick_one(schedule, now)) is not None:
                upcoming.append(fire)
        if not upcoming:
            return None
        return min(LONGEST_WAIT, max(0.0, min(upcoming) - self.clock()))

    def _tick_one(self, schedule: Schedule, now: float) -> float | None:
        """Fire one schedule if it is due; when it is next due (None: disabled for good)."""
        try:
            when = self._definition(schedule)
            fire = when.next_after(schedule.last_fire)
            if fire > now:
                return fire
            slot, missed = _latest_slot(when, fire, now)
            following = when.next_after(slot)
        except (BadSchedule, ValueError, OverflowError, OSError) as exc:  # its fires' arithmetic
            self._disable(schedule, str(exc))
            return None
        key = f"schedule {schedule.name}"
        try:
            if missed != 0:
                self._record_gap(schedule, fire, slot, missed)
            self._start_run(schedule, slot)
            self._store.schedules.set_last_fire(schedule.name, slot, schedule.created_at)
        except Exception as exc:
            if self._gone(schedule):  # deleted while it fired: nothing is wrong
                log.info("schedule %s: deleted while it fired; no run", schedule.name)
                return None
            _once.failed(key, "schedule %s: cannot start a run: %s", schedule.name, exc, exc=exc)
            return now + _RETRY_AFTER
        _once.recovered(key, "schedule %s: runs start again", schedule.name)
        return following

    def _definition(self, schedule: Schedule) -> cron.When:
        """Its settings checked as the API checks them, and its input there; BadSchedule if
        not."""
        when = self._checked_when(schedule)
        kept = self._layout.schedule_zip(schedule.name)
        if not kept.is_file():
            raise BadSchedule(f"its input {kept} is missing")
        return when

    def _checked_when(self, schedule: Schedule) -> cron.When:
        """Its settings checked (once per body) and when it fires."""
        key = (schedule.name, schedule.body)
        if (found := self._checked_bodies.get(key)) is not None:
            return found
        try:
            settings = schedule.settings
            if not isinstance(json.loads(schedule.body), dict):
                raise BadSchedule("its settings are not a JSON object")
            stored = {k: v for k, v in settings.items() if k != REASON}
            checked = check_settings(stored)
            self._limits(checked, clamp=True)
            when = cron.parse(checked["schedule"], checked["timezone"])
        except BadSchedule:
            raise
        except BadRequest as exc:
            raise BadSchedule(exc.message) from None
        except ValueError as exc:  # JSON that does not parse
            raise BadSchedule(f"its settings are not JSON: {exc}") from None
        self._checked_bodies[key] = when
        return when

    def _disable(self, schedule: Schedule, reason: str) -> None:
        """A row the loop cannot run: said once, and kept off until a person fixes it."""
        message = f"disabled by jobd, which cannot run it: {reason}"
        settings = _stored_settings(schedule) | {REASON: message}
        if self._store.schedules.disable(
            schedule.name, schedule.body, encode(settings), time.time()
        ):
            self.set_aside(f"schedule {schedule.name}", message)  # the log, once, and /health
            self._metrics.schedule_run(schedule.name, "disabled")

    def _gone(self, schedule: Schedule) -> bool:
        now = self._store.schedules.get(schedule.name)
        return now is None or now.created_at != schedule.created_at or not now.enabled

    def _record_gap(self, schedule: Schedule, first: float, slot: float, missed: int) -> None:
        """One SKIPPED record for the slots from `first` up to `slot` that did not fire."""
        why = (
            "jobd was not running (downtime)"
            if first < self._started
            else "the schedules loop was late (a slow firing, or runs that could not start)"
        )
        count = f"more than {_COUNT_STEPS:,} slots" if missed < 0 else _slots(missed)
        message = (
            f"skipped: {count} from {rfc3339(first)} did not fire: {why};"
            f" only the latest, {rfc3339(slot)}, did"
        )
        job_id = f"{schedule.name}-{cron.utc_stamp(first)}"
        try:
            self._store.jobs.insert_skipped(job_id, schedule.name, message, schedule.user_id)
        except IdTaken:
            return  # recorded before a restart cut the bookkeeping short
        self._metrics.schedule_run(schedule.name, JobStatus.SKIPPED.value)
        log.info("schedule %s: %s", schedule.name, message)

    def _start_run(self, schedule: Schedule, slot: float, manual: bool = False) -> Job:
        job_id = f"{schedule.name}-{cron.utc_stamp(slot)}"
        if manual:
            job_id = self._free_id(job_id)
        elif (existing := self._store.jobs.get(job_id)) is not None:
            return existing  # fired before a restart cut the bookkeeping short
        running = self._store.schedules.unfinished_runs(schedule.name, schedule.user_id)
        policy = schedule.settings["concurrency"]
        if running and policy == "forbid":
            newest, status = running[0]
            message = f"skipped: run {newest} was still {status.lower()} (concurrency forbid)"
            job = self._store.jobs.insert_skipped(job_id, schedule.name, message, schedule.user_id)
            self._metrics.schedule_run(schedule.name, JobStatus.SKIPPED.value)
            log.info("schedule %s: %s", schedule.name, message)
            return job
        if running and policy == "replace":
            for old, _ in running:
                self._cancel(old)
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


def _latest_slot(when: cron.When, first: float, now: float) -> tuple[float, int]:
    """The latest slot at or before `now`, from the first one due, and how many slots before
    it were passed over (-1: more than _COUNT_STEPS, for cron)."""
    if when.every is not None:
        passed = math.floor((now - first) / when.every)
        return first + passed * when.every, passed
    slot = first
    for passed in range(_COUNT_STEPS):
        following = when.next_after(slot)
        if following > now:
            return slot, passed
        slot = following
    return max(slot, when.latest_by(now)), -1


def _slots(count: int) -> str:
    return "1 slot" if count == 1 else f"{count:,} slots"


def _full(rules: Rules) -> Conflict:
    return Conflict(
        f"this jobd keeps at most {rules.most} schedules (--max-schedules): delete one first"
    )


def encode(settings: dict[str, object]) -> str:
    return json.dumps(settings, sort_keys=True)
