"""Checks the gateway's `/v0.1` answers against the official MCP registry's documents.

The documents are the official registry's OpenAPI document (`docs/reference/api/openapi.yaml` of
modelcontextprotocol/registry, `info.version` 2025-12-01) and the `server.json` schema
(`$id` .../schemas/2025-12-11/server.schema.json), byte-for-byte copies as published on PyPI in the
source distribution of `mcp-registry-sdk` 0.1.0 (which pins them, `docs/spec/`). They are fetched from
PyPI at test time, checked against the hashes below, and kept in the build's temporary directory: this
repository carries no copy of them.

Usage: python3 registry_official.py <cache-dir> < exchanges.json
where exchanges.json is a list of {"path", "status", "content_type", "body"}: every request the test
made to /v0.1 and the gateway's answer. Prints what fails and exits 1, or prints a summary.
"""

import hashlib
import io
import json
import pathlib
import re
import sys
import tarfile
import urllib.request
from datetime import datetime

import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

SDIST_URL = (
    "https://files.pythonhosted.org/packages/f4/d7/6e876cf255a80f54934853b59219731466d992a8f4ff4a6d973b76b9f4b9/"
    "mcp_registry_sdk-0.1.0.tar.gz"
)
SDIST_SHA256 = "833a30f1e297a7876f374175cf7840c96d215fba2e0c86de7e17be65c1d2b8c3"
DOCUMENTS = {
    "openapi.yaml": (
        "mcp_registry_sdk-0.1.0/docs/spec/openapi-v0.1.snapshot.yaml",
        "3ed9ca429754087f2c7de81aa845c1cab3286c33941ac48482f923bbd6f1442d",
    ),
    "server.schema.json": (
        "mcp_registry_sdk-0.1.0/docs/spec/server.schema.snapshot.json",
        "3fba09590c99f61735d234822279f4223fab9e300c0a81e81c91ab62a4114de0",
    ),
}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def official_documents(cache: pathlib.Path) -> dict:
    """The two documents, from the cache or PyPI, each checked against its pinned hash."""
    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for name, (_, digest) in DOCUMENTS.items():
        path = cache / name
        if path.exists() and sha256(path.read_bytes()) == digest:
            found[name] = path.read_bytes()
    if len(found) < len(DOCUMENTS):
        with urllib.request.urlopen(SDIST_URL, timeout=60) as response:
            sdist = response.read()
        if sha256(sdist) != SDIST_SHA256:
            sys.exit(f"the sdist at {SDIST_URL} is not the pinned one")
        with tarfile.open(fileobj=io.BytesIO(sdist), mode="r:gz") as archive:
            for name, (member, digest) in DOCUMENTS.items():
                data = archive.extractfile(member).read()
                if sha256(data) != digest:
                    sys.exit(f"{member} is not the pinned document")
                (cache / name).write_bytes(data)
                found[name] = data
    return found


def operation_for(openapi: dict, path: str):
    """The GET operation whose path template matches `path` (without its query), and its template."""
    bare = path.split("?", 1)[0]
    for template, item in openapi["paths"].items():
        pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(pattern, bare) and "get" in item:
            return template, item["get"]
    return None, None


def timestamps_parse(value, where, failures):
    """Every `...At` field is an RFC 3339 time (format checks are not always installed)."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.endswith("At") and isinstance(inner, str):
                try:
                    datetime.fromisoformat(inner.replace("Z", "+00:00"))
                except ValueError:
                    failures.append(f"{where}: {key} = {inner!r} is not an RFC 3339 time")
            timestamps_parse(inner, where, failures)
    elif isinstance(value, list):
        for inner in value:
            timestamps_parse(inner, where, failures)


def main() -> int:
    documents = official_documents(pathlib.Path(sys.argv[1]))
    openapi = yaml.safe_load(documents["openapi.yaml"])
    server_schema = json.loads(documents["server.schema.json"])
    base = openapi["$id"]
    registry = Registry().with_resource(base, Resource(contents=openapi, specification=DRAFT202012))
    server_validator = Draft7Validator(server_schema, format_checker=Draft7Validator.FORMAT_CHECKER)
    error_shape = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}

    exchanges = json.load(sys.stdin)
    failures, checked, servers = [], 0, 0
    for exchange in exchanges:
        path, status, body = exchange["path"], str(exchange["status"]), exchange["body"]
        where = f"GET {path} -> {status}"
        template, operation = operation_for(openapi, path)
        if operation is None:
            failures.append(f"{where}: no such operation in the official document")
            continue
        response = operation["responses"].get(status)
        if response is None:
            # A status the document does not list (400 for a parameter the registry cannot use, as the
            # official registry answers): the official error shape, as JSON.
            schema = error_shape
        else:
            media = response.get("content", {}).get("application/json")
            if media is None:
                failures.append(f"{where}: the document declares no JSON body")
                continue
            schema = {"$ref": base + media["schema"]["$ref"]} if "$ref" in media["schema"] else media["schema"]
        if not exchange["content_type"].startswith("application/json"):
            failures.append(f"{where}: content type {exchange['content_type']}, not application/json")
        validator = Draft202012Validator(schema, registry=registry, format_checker=Draft202012Validator.FORMAT_CHECKER)
        for error in validator.iter_errors(body):
            failures.append(f"{where}: {error.json_path}: {error.message}")
        timestamps_parse(body, where, failures)
        entries = body.get("servers", []) if "servers" in body else [body] if "server" in body else []
        for entry in entries:
            for error in server_validator.iter_errors(entry["server"]):
                failures.append(f"{where}: server.json {error.json_path}: {error.message}")
            if entry["server"].get("$schema") != server_schema["$id"]:
                failures.append(f"{where}: $schema {entry['server'].get('$schema')} is not {server_schema['$id']}")
            servers += 1
        checked += 1
    for failure in failures:
        print(failure)
    print(f"{checked} answers and {servers} server documents checked against {openapi['info']['title']} "
          f"{openapi['info']['version']} and {server_schema['$id']}: {len(failures)} failures")
    return 1 if failures or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
