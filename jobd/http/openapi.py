"""The API described in OpenAPI 3.1, served at /openapi.json, and a readable page of it at /docs.

The description is data beside the routes it describes: `openapi.yaml` holds what they share
(the head, schemas, common answers and parameters), and each route module's paths (and the
schemas only they use) sit in the YAML file of its name (`jobd_api.yaml` beside `jobd_api.py`),
so adding a route is a change in one place. Read once, when first asked for, so parsing it
costs the start nothing.
tests/test_openapi.py keeps it true: every route is described, real answers match the schemas.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

import yaml

from jobd import __version__

_HERE = Path(__file__).resolve().parent
_SHARED = "openapi.yaml"


def _load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@functools.cache
def _document() -> dict[str, Any]:
    """The shared part with every route file's paths merged in (a path may have methods in
    two files: `/` is job-orchestrator's ping and the status page's sign-in)."""
    doc = _load(_HERE / _SHARED)
    doc["info"]["version"] = __version__
    paths: dict[str, dict] = {}
    for part in sorted(_HERE.glob("*.yaml")):
        if part.name != _SHARED:
            loaded = _load(part)
            for path, operations in loaded["paths"].items():
                paths.setdefault(path, {}).update(operations)
            for kind, named in loaded.get("components", {}).items():
                doc["components"].setdefault(kind, {}).update(named)
    doc["paths"] = paths
    return doc


def _resolved(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to this document's components, followed; anything else as it is."""
    ref = node.get("$ref")
    if ref is None:
        return node
    target: Any = doc
    for part in ref.removeprefix("#/").split("/"):
        target = target[part]
    return target


def spec(token_required: bool) -> dict[str, Any]:
    """The description of this daemon: every route but /health needs the token if one is set,
    and none does otherwise."""
    return _document() | {"security": [{"bearer": []}] if token_required else []}


def docs_page() -> str:
    """A self-contained HTML page of the description: no scripts, no CDN."""
    doc = _document()
    rows = []
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            parameters = [_resolved(doc, p) for p in op.get("parameters", [])]
            params = ", ".join(
                f"<code>{html.escape(p['name'])}</code> ({p['in']})" for p in parameters
            )
            codes = ", ".join(
                f"<b>{code}</b> {html.escape(_resolved(doc, r)['description'])}"
                for code, r in op["responses"].items()
            )
            rows.append(
                f"<tr><td><code>{method.upper()} {html.escape(path)}</code></td>"
                f"<td>{html.escape(op['summary'])}</td><td>{params}</td><td>{codes}</td></tr>"
            )
    schemas = "".join(
        f"<h3>{name}</h3><pre>{html.escape(json.dumps(schema, indent=2))}</pre>"
        for name, schema in doc["components"]["schemas"].items()
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>jobd API</title><style>"
        "body{font-family:sans-serif;margin:2em;max-width:75em}td{vertical-align:top;"
        "padding:.3em .6em;border-bottom:1px solid #ddd}pre{background:#f6f6f6;padding:1em}"
        "</style></head><body>"
        f"<h1>jobd {html.escape(__version__)} API</h1>"
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a> (OpenAPI 3.1). When a "
        "token is set, every route but /health needs <code>Authorization: Bearer &lt;token&gt;"
        "</code>.</p><table><tr><th>route</th><th>what</th><th>parameters</th>"
        f"<th>answers</th></tr>{''.join(rows)}</table><h2>Schemas</h2>{schemas}</body></html>"
    )
