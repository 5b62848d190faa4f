"""`jobd schedule ...`: recurring jobs from the command line, through the daemon's API."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from urllib.parse import quote

from jobd.client.api import ClientError, JobdClient

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
    verbs.add_parser("list", parents=[common], help="every schedule")
    for verb, text in (
        ("get", "one schedule"),
        ("trigger", "start a run now"),
        ("enable", "fire again, from now on"),
        ("disable", "stop firing"),
        ("delete", "delete it (its runs stay)"),
        ("runs", "its runs, newest first"),
    ):
        parser = verbs.add_parser(verb, parents=[common], help=text)
        parser.add_argument("name")
        if verb == "runs":
            parser.add_argument("--limit", type=int, default=50)


def run_schedule_command(args: argparse.Namespace, client: JobdClient) -> int:
    if args.verb == "create":
        answer: object = client.create_schedule(*_read_spec(args.file))
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
    if answer is not None:
        print(json.dumps(answer, indent=2))
    return 0


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
