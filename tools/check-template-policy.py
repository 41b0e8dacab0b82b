"""Assert what template.yaml promises, on the CloudFormation that SAM generates from it.

    python tools/check-template-policy.py TEMPLATE [TEMPLATE ...]

cfn-lint and `sam validate --lint` check that a template is valid; this checks that it
is the template issue 4 asks for, after the SAM transform (so a role or route SAM adds
on its own would be caught):
  * the API has exactly one route, `POST /factors/resend` (no ANY, no {proxy+});
  * no IAM statement has a `*` resource or action, and no role gets a managed policy;
  * the function: provided.al2023, bootstrap, 128 MB, a timeout above the 25 s ceiling
    of OKTA_TIMEOUT_MS, JSON logs into its own log group, built with rust-cargolambda
    for the okta-resend binary only.
Runs with the SAM venv's Python (cfn-lint's loader, the SAM translator), offline.
"""

import logging
import os
import sys

from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

OKTA_TIMEOUT_MAX_S = 25
# The translator resolves pseudo parameters; any region does for these checks.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
# The translator's metrics go nowhere here; do not warn that they were not published.
logging.getLogger("samtranslator.metrics.metrics").setLevel(logging.ERROR)


def statements(document):
    stmts = document.get("Statement", [])
    return stmts if isinstance(stmts, list) else [stmts]


def walk_statements(resources):
    for name, res in resources.items():
        props = res.get("Properties", {})
        if res["Type"] == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield name, policy["PolicyDocument"]
        if res["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield name, props["PolicyDocument"]


def as_list(value):
    return value if isinstance(value, list) else [value]


def check(path):
    problems = []
    source, matches = decode(path)
    if matches or source is None:
        return [str(m) for m in matches] or [f"{path}: cannot be read"]

    fn_name, fn = next(
        (n, r) for n, r in source["Resources"].items() if r["Type"] == "AWS::Serverless::Function"
    )
    meta = fn.get("Metadata", {})
    if meta.get("BuildMethod") != "rust-cargolambda":
        problems.append(f"{fn_name}: Metadata.BuildMethod is not rust-cargolambda")
    if meta.get("BuildProperties", {}).get("Binary") != "okta-resend":
        problems.append(f"{fn_name}: Metadata.BuildProperties.Binary is not okta-resend")

    # The translator wants packaged code, as after `sam package`; cfn-lint does the same.
    fn.setdefault("Properties", {})["CodeUri"] = "s3://bucket/okta-resend.zip"
    cfn = Translator(managed_policy_map={}, sam_parser=Parser()).translate(source, parameter_values={})
    resources = cfn["Resources"]

    routes = [r["Properties"]["RouteKey"] for r in resources.values() if r["Type"] == "AWS::ApiGatewayV2::Route"]
    if routes != ["POST /factors/resend"]:
        problems.append(f"routes are {routes}, expected only POST /factors/resend")
    apis = [n for n, r in resources.items() if r["Type"] in ("AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi")]
    if len(apis) != 1:
        problems.append(f"expected one API, found {apis}")

    for name, doc in walk_statements(resources):
        for stmt in statements(doc):
            for key in ("Resource", "Action", "NotResource", "NotAction"):
                if any(v == "*" or v == ["*"] for v in as_list(stmt.get(key, []))):
                    problems.append(f"{name}: statement {stmt.get('Sid', '?')} has {key} '*'")
            if "NotResource" in stmt or "NotAction" in stmt:
                problems.append(f"{name}: statement {stmt.get('Sid', '?')} uses NotResource/NotAction")
    for name, res in resources.items():
        if res["Type"] == "AWS::IAM::Role" and res["Properties"].get("ManagedPolicyArns"):
            problems.append(f"{name}: has managed policies {res['Properties']['ManagedPolicyArns']}")

    lam = resources[fn_name]["Properties"]
    expect = {"Runtime": "provided.al2023", "Handler": "bootstrap", "MemorySize": 128}
    for key, want in expect.items():
        if lam.get(key) != want:
            problems.append(f"{fn_name}: {key} is {lam.get(key)!r}, expected {want!r}")
    if not isinstance(lam.get("Timeout"), int) or lam["Timeout"] <= OKTA_TIMEOUT_MAX_S:
        problems.append(f"{fn_name}: Timeout {lam.get('Timeout')!r} is not above {OKTA_TIMEOUT_MAX_S} s")
    logging = lam.get("LoggingConfig", {})
    if logging.get("LogFormat") != "JSON" or "LogGroup" not in logging:
        problems.append(f"{fn_name}: LoggingConfig must be JSON into the template's own log group")
    env = lam.get("Environment", {}).get("Variables", {})
    for var in ("OKTA_ORG_URL", "OKTA_SECRET_ID", "OKTA_TIMEOUT_MS"):
        if var not in env:
            problems.append(f"{fn_name}: environment lacks {var}")
    return [f"{path}: {p}" for p in problems]


def main(paths):
    problems = [p for path in paths for p in check(path)]
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{', '.join(paths)}: one POST /factors/resend route, no '*' in IAM, function as specified")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else 2)
