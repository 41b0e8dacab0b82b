#!/usr/bin/env python3
"""okta-resend's real answers against its contract, openapi.yaml.

    conformance.py answers FILE   check answers recorded by `stack.py demo` (JSON lines:
                                  name, route, status, headers, body): each status is
                                  documented on the operation of its route, its media type
                                  is one the document lists, the body validates against
                                  that schema and required headers are there
    conformance.py fuzz URL       schemathesis against the running function at URL, with a
                                  bounded number of generated requests

Runs in the .venv-lint virtualenv (PyYAML, jsonschema, schemathesis).
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "openapi.yaml"
BASE = "urn:okta-resend:openapi"
# Where an answer is documented: the operation of the route the request was for; an
# answer to any other path (404) is documented on both, and checked against the first.
ROUTES = ("/factors/resend", "/factors/activate")


def pointer(*parts: str) -> str:
    return "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


class Contract:
    def __init__(self, spec: dict):
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self.registry = Registry().with_resource(BASE, resource)
        # Every answer to a route, whatever the method (404 and 405 included), is
        # documented on its POST operation, as API Gateway and the function give them.
        for route in ROUTES:
            assert "post" in spec["paths"][route], route

    def resolve(self, node: dict, at: tuple = ()) -> tuple[dict, tuple]:
        """The node a `$ref` chain ends at, and that node's path in the document."""
        while "$ref" in node:
            ref = node["$ref"]
            assert ref.startswith("#/"), ref
            at = tuple(part.replace("~1", "/").replace("~0", "~") for part in ref[2:].split("/"))
            node = self.spec
            for part in at:
                node = node[part]
        return node, at

    def check(self, route: str, status: int, headers: dict, body: str) -> list[str]:
        problems = []
        route = route if route in ROUTES else ROUTES[0]
        responses = self.spec["paths"][route]["post"]["responses"]
        key = str(status) if str(status) in responses else "default"
        if key not in responses:
            return [f"status {status} is not documented on POST {route}"]
        response, at = self.resolve(responses[key], ("paths", route, "post", "responses", key))
        headers = {k.lower(): v for k, v in headers.items()}

        media = (headers.get("content-type") or "").split(";")[0].strip().lower()
        content = response.get("content", {})
        if content:
            if media not in content:
                problems.append(f"Content-Type {media!r} not in {sorted(content)}")
            else:
                schema_ref = {"$ref": BASE + pointer(*at, "content", media, "schema")}
                try:
                    document = json.loads(body)
                except ValueError:
                    problems.append(f"body is not JSON: {body[:80]!r}")
                else:
                    validator = Draft202012Validator(schema_ref, registry=self.registry)
                    for error in validator.iter_errors(document):
                        problems.append(f"body: {error.message[:160]} at {list(error.absolute_path)}")
        elif body:
            problems.append("a body where the document has none")

        for name, header in response.get("headers", {}).items():
            header, _ = self.resolve(header)
            value = headers.get(name.lower())
            if value is None:
                if header.get("required"):
                    problems.append(f"required header {name} is missing")
                continue
            schema = header.get("schema")
            if schema:
                as_json = int(value) if schema.get("type") == "integer" and value.isdigit() else value
                validator = Draft202012Validator(schema, registry=self.registry)
                for error in validator.iter_errors(as_json):
                    problems.append(f"header {name}: {error.message[:120]}")
        return problems


def check_answers(path: Path) -> int:
    contract = Contract(yaml.safe_load(SPEC_PATH.read_text()))
    answers = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    failures = 0
    for answer in answers:
        problems = contract.check(answer.get("route", ROUTES[0]), answer["status"], answer["headers"], answer["body"])
        if problems:
            failures += 1
            print(f"NOT CONFORMING  {answer['name']} ({answer['status']}):")
            for problem in problems:
                print(f"    {problem}")
    print(f"conformance: {len(answers) - failures}/{len(answers)} recorded answers conform to openapi.yaml")
    return 1 if failures else 0


def fuzz(url: str) -> int:
    """Generated requests (valid and invalid) against the running function. Every answer
    must be documented and match its schema, and invalid data must be refused. A valid
    request may well be refused by the sandbox (unknown user): positive_data_acceptance is
    not checked; nor is not_a_server_error, since 502/504 are part of the contract."""
    argv = [
        str(Path(sys.executable).parent / "schemathesis"), "run", str(SPEC_PATH),
        "--url", url,
        "--checks", ",".join([
            "status_code_conformance",
            "content_type_conformance",
            "response_headers_conformance",
            "response_schema_conformance",
            "negative_data_rejection",
        ]),
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "40",
        "--workers", "1",
        "--seed", "20261129",
        "--request-timeout", "20",
        "--suppress-health-check", "too_slow",
        "--no-color",
    ]
    print("$ " + " ".join(argv), flush=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "SCHEMATHESIS_TELEMETRY": "false",
        "PYTHONDONTWRITEBYTECODE": "1",
        "SCHEMATHESIS_HOOKS": "schemathesis_hooks",
        "PYTHONPATH": str(ROOT / "tools"),
    }
    return subprocess.run(argv, cwd=ROOT, env=env).returncode


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("answers", "fuzz"):
        print(__doc__, file=sys.stderr)
        return 2
    return check_answers(Path(sys.argv[2])) if sys.argv[1] == "answers" else fuzz(sys.argv[2])


if __name__ == "__main__":
    sys.exit(main())
