"""`jobd schedule ...`: recurring jobs from the command line, through the daemon's API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jobd.client.api import ClientError, JobdClient
from jobd.client.terminal import print_jobs, print_table

VERBS = ("create", "list", "get", "trigger", "enable", "disable", "delete", "runs")


def add_schedule_commands(
    commands: argparse._SubParsersAction, common: argparse.ArgumentParser
) -> None:
    schedule = commands.add_parser(
        "schedule", help="recurring jobs: create -f FILE.yaml, list, get, trigger, enable, ..."
    )
    verbs = schedule.add_subparsers(dest="verb", metavar="VERB", required=True)
    create = verbs.add_parser(
        "create",
        parents=[common],
        help="create one from a YAML or JSON file: the schedule's fields, and 'folder' (the job"
        " folder, relative to the file) instead of 'input'",
    )
    create.add_argument("-f", "--file", type=Path, required=True, metavar="FILE.yaml|json")
    create.add_argument("--json", action="store_true", help="print the schedule object")
    listing = verbs.add_parser("list", parents=[common], help="every schedule, as a table")
    listing.add_argument("--json", action="store_true", help="the schedule objects")
    for verb, text in (
        ("get", "one schedule"),
        ("trigger", "start a run now"),
        ("enable", "fire again, from now on"),
        ("disable", "stop firing"),
        ("delete", "delete it (its runs stay)"),
        ("runs", "its runs, newest first, as a table"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("name")
        parser.add_argument("--json", action="store_true", help="the object(s) the API sends")
        if verb == "runs":
            parser.add_argument("--limit", type=int, default=50)


def run_schedule_command(args: argparse.Namespace, client: JobdClient) -> int:
    if args.verb == "create":
        answer: Any = client.create_schedule(*_read_spec(args.file))
    elif args.verb == "list":
        answer = client.call("GET", "/api/schedules", 200)
    else:
        path = f"/api/schedules/{quote(args.name, safe='')}"
        method, route, code = {
            "get": ("GET", "", 200),
            "trigger": ("POST", "/trigger", 200),
            "enable": ("POST", "/enable", 200),
            "disable": ("POST", "/disable", 200),
            "delete": ("DELETE", "", 204),
            "runs": ("GET", f"/runs?limit={getattr(args, 'limit', 50)}", 200),
        }[args.verb]
        answer = client.call(method, path + route, code)
    if args.json:
        print(json.dumps(answer if answer is not None else {"deleted": args.name}, indent=2))
    elif args.verb == "list":
        _print_schedules(answer)
    elif args.verb == "runs":
        print_jobs(answer)
    elif args.verb == "get":
        _describe(answer)
    else:
        print(_confirmation(args, answer))
    return 0


def _confirmation(args: argparse.Namespace, answer: Any) -> str:
    """One line saying what was done."""
    if args.verb == "create":
        return f"schedule {answer['name']} created; next fire {answer.get('next_fire') or '-'}"
    if args.verb == "delete":
        return f"schedule {args.name} deleted (its runs stay)"
    if args.verb == "trigger":
        run = answer.get("run") or {}
        return f"schedule {args.name} triggered: run {run.get('ID')} {run.get('Status')}"
    state = "enabled" if answer.get("enabled") else "disabled"
    return f"schedule {args.name} {state}; next fire {answer.get('next_fire') or '-'}"


def _print_schedules(schedules: list[dict[str, Any]]) -> None:
    rows = [
        (
            str(s.get("name")),
            str(s.get("schedule")),
            str(s.get("timezone") or "UTC"),
            "yes" if s.get("enabled") else "no",
            str(s.get("next_fire") or "-"),
            str(s.get("last_fire") or "-"),
        )
        for s in schedules
    ]
    print_table(("NAME", "SCHEDULE", "TIMEZONE", "ENABLED", "NEXT FIRE", "LAST FIRE"), rows, 3)


def _describe(schedule: dict[str, Any]) -> None:
    """One `key  value` a line; empty fields left out."""
    width = max(len(key) for key in schedule)
    for key, value in schedule.items():
        if value not in (None, "", [], {}):
            shown = value if isinstance(value, str) else json.dumps(value)
            print(f"{key.ljust(width)}  {shown}")


def _read_spec(path: Path) -> tuple[dict[str, object], Path]:
    """The file's fields, and the folder (or zip) it names, found relative to the file."""
    import yaml  # here: every other command starts without it

    yaml_file = path.suffix.lower() in (".yaml", ".yml")
    try:
        text = path.read_text()
        spec = yaml.safe_load(text) if yaml_file else json.loads(text)
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, yaml.YAMLError) as exc:
        kind = "YAML" if yaml_file else "JSON"
        raise ClientError(f"{path} is not {kind}: {' '.join(str(exc).split())}") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("folder"), str):
        raise ClientError(f"{path} must map 'folder' to the job folder to run, and the rest")
    source = path.parent / str(spec.pop("folder"))
    if not source.exists():
        raise ClientError(f"{source} (the 'folder' of {path}) does not exist")
    return spec, source
