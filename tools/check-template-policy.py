"""Assert what template.yaml promises, on the CloudFormation that SAM generates from it.

    python tools/check-template-policy.py TEMPLATE [COPY ...]

TEMPLATE is the template as written (template.yaml), each COPY the same template with a
deployment's parameter values as its defaults (tools/template-with-defaults.py).

cfn-lint and `sam validate --lint` check that a template is valid; this checks what it
deploys, after the SAM transform (so a role or route SAM adds on its own would be caught):
  * secure by default, from the template's Rules (Fn::Equals, Fn::Not, Fn::And, Fn::Or
    and Ref evaluated over a parameter set, as CloudFormation does before it deploys):
    TEMPLATE's defaults with the required parameters only (no JWT, no AllowAnonymous)
    are refused, as is a half-set JWT pair; AllowAnonymous=true is accepted, and so is
    JwtIssuer with JwtAudience; every COPY's own values are accepted (each is a
    deployment that must go through);
  * the API has exactly two routes, `POST /factors/resend` and `POST /factors/activate`
    (no ANY, no {proxy+}), with the same integration, authorization type, authorizer and
    scopes; the stage's default route settings throttle them (ThrottlingBurstLimit and
    ThrottlingRateLimit) and no per-route settings override that; API Gateway may invoke
    the function for these two routes only (one Lambda permission each);
  * no IAM statement has a `*` resource or action, and no role gets a managed policy;
  * the function: provided.al2023, bootstrap, 128 MB, a timeout above the 20 s ceiling
    of OKTA_TIMEOUT_MS (the OktaTimeoutMs parameter's MaxValue is that ceiling), JSON logs
    into its own log group, built with rust-cargolambda for the okta-resend binary only;
  * the shared guard (the Guard parameter), as the template deploys with its defaults
    (each Fn::If resolved, resources whose Condition is false dropped): with Guard=true,
    one on-demand table keyed on pk (S) with a TTL on expires_at, one generated key
    secret, the function's role allowed exactly dynamodb:BatchGetItem, GetItem, PutItem
    and UpdateItem on that table's ARN alone and secretsmanager:GetSecretValue on the Okta secret and
    the key secret alone, and RESEND_GUARD_TABLE / RESEND_GUARD_KEY_SECRET_ID naming
    them; with Guard=false, no table, no secret, no dynamodb action anywhere, and both
    variables empty. Both states need a copy of the template with those defaults
    (tools/template-with-defaults.py; make check-template lints three);
  * alarms and log retention, with the same defaults: an alarm on the function's Lambda
    `Errors` and one on its `Throttles` (AWS/Lambda, FunctionName, Sum >= 1 over 5
    minutes, missing data not breaching) always, and one on the HTTP API's `5xx`
    (AWS/ApiGateway, ApiId and Stage) exactly when Api5xxAlarm is true; every alarm
    notifies AlarmTopicArn (alarm and OK) when it is set and nothing when it is empty;
    an alarm on the activations refused as invalid_passcode plus too_many_attempts
    (ActivationFailuresAlarmThreshold); one dashboard, whose widgets graph the EMF metric
    Requests by factorType, country and outcome (activated, invalid_passcode,
    too_many_attempts) and the function's Errors and Duration;
    every log group is kept when the stack is deleted (DeletionPolicy Retain or
    RetainExceptOnCreate, UpdateReplacePolicy Retain), and the function's log and the
    API's access log go to log groups of this template.
The '*' check looks into both branches of every Fn::If. Runs with the SAM venv's Python
(cfn-lint's loader, the SAM translator), offline.
"""

import json
import logging
import os
import re
import sys

from cfnlint.decode import decode
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator

# OKTA_TIMEOUT_MS's ceiling (src/config.rs): a worst cold start (~5 s) plus it plus the
# 0.5 s kept to answer stays under API Gateway's 29 to 30 s.
OKTA_TIMEOUT_MAX_S = 20
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


def every_branch(stmts):
    """Statements with each Fn::If replaced by both its branches (AWS::NoValue dropped)."""
    for stmt in stmts:
        if isinstance(stmt, dict) and list(stmt) == ["Fn::If"]:
            yield from every_branch([b for b in stmt["Fn::If"][1:] if b != NO_VALUE])
        else:
            yield stmt


# ---------------------------------------------------------------- the template as deployed
NO_VALUE = {"Ref": "AWS::NoValue"}
# The pre-check's BatchGetItem, a re-read (GetItem), the commit's TransactWriteItems
# (authorised by PutItem) and the give-back's PutItem, the counters' conditional UpdateItem.
GUARD_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
GUARD_VARIABLES = (
    "RESEND_GUARD_TABLE", "RESEND_GUARD_KEY_SECRET_ID", "RESEND_GUARD_FAIL_OPEN",
    "RESEND_COOLDOWN_SECONDS", "RESEND_EMAIL_COOLDOWN_SECONDS", "RESEND_COOLDOWN_MAX_SECONDS",
    "RESEND_USER_DAILY_LIMIT", "RESEND_DESTINATION_HOURLY_LIMIT", "RESEND_PREFIX_HOURLY_LIMIT",
    "RESEND_HOURLY_BUDGET", "RESEND_IP_HOURLY_LIMIT", "RESEND_MISMATCH_LIMIT", "ACTIVATE_ATTEMPTS_LIMIT",
    "METRICS_NAMESPACE",
)
# The API's routes, each served by the function (src/http/route.rs).
ROUTE_KEYS = ["POST /factors/activate", "POST /factors/resend"]
# What both routes must share: the integration, and how callers are authorized.
ROUTE_SHARED = ("Target", "AuthorizationType", "AuthorizerId", "AuthorizationScopes")


class Unresolvable(Exception):
    pass


class Deployed:
    """Evaluates the template's conditions from its parameter defaults and resolves
    Fn::If, as CloudFormation does when the stack is deployed with those values."""

    def __init__(self, template: dict, overrides: dict | None = None):
        self.params = {
            name: str(p["Default"]).lower() if isinstance(p.get("Default"), bool) else str(p["Default"])
            for name, p in template.get("Parameters", {}).items() if "Default" in p
        }
        self.params.update(overrides or {})
        self.raw_conditions = template.get("Conditions", {})
        self.conditions: dict[str, bool] = {}

    def value(self, node):
        if isinstance(node, dict) and list(node) == ["Ref"]:
            if node["Ref"] not in self.params:
                raise Unresolvable(f"parameter {node['Ref']} has no default")
            return self.params[node["Ref"]]
        if isinstance(node, (str, int, float)):
            return str(node)
        raise Unresolvable(f"cannot evaluate {node!r} in a condition")

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = self.evaluate(self.raw_conditions[name])
        return self.conditions[name]

    def evaluate(self, expr) -> bool:
        (fn, args), = expr.items()
        if fn == "Condition":
            return self.condition(args)
        if fn == "Fn::Equals":
            return self.value(args[0]) == self.value(args[1])
        if fn == "Fn::Not":
            return not self.evaluate(args[0])
        if fn == "Fn::And":
            return all(self.evaluate(a) for a in args)
        if fn == "Fn::Or":
            return any(self.evaluate(a) for a in args)
        raise Unresolvable(f"condition function {fn}")

    def resolve(self, node):
        """`node` with every Fn::If resolved; AWS::NoValue removes the key or list item."""
        if isinstance(node, dict):
            if list(node) == ["Fn::If"]:
                name, then, otherwise = node["Fn::If"]
                return self.resolve(then if self.condition(name) else otherwise)
            out = {}
            for key, value in node.items():
                value = self.resolve(value)
                if value != NO_VALUE:
                    out[key] = value
            return out
        if isinstance(node, list):
            return [v for v in (self.resolve(item) for item in node) if v != NO_VALUE]
        return node

    def resources(self, resources: dict) -> dict:
        return {
            name: self.resolve(res) for name, res in resources.items()
            if "Condition" not in res or self.condition(res["Condition"])
        }


# ---------------------------------------------------------------- the template's Rules
def refusals(template: dict, overrides: dict | None = None) -> list[str]:
    """The AssertDescription of every Rules assertion that fails for the template's
    parameter defaults with `overrides`, as CloudFormation refuses a stack before creating
    anything. A rule whose RuleCondition is false asserts nothing. The rule functions used
    here (Fn::Equals, Fn::Not, Fn::And, Fn::Or, Ref) share the conditions' evaluator."""
    deployed = Deployed(template, overrides)
    failed = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not deployed.evaluate(rule["RuleCondition"]):
            continue
        for assertion in rule.get("Assertions", []):
            if not deployed.evaluate(assertion["Assert"]):
                failed.append(f"{name}: {assertion.get('AssertDescription', '(no description)')}")
    return failed


# Parameter sets for the template as written: (what, overrides, accepted). The required
# parameters have no default; the rules must not depend on them.
REQUIRED = {"OktaOrgUrl": "https://example.okta.com",
            "OktaSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:okta-resend/api-token-AbC123"}
JWT = {"JwtIssuer": "https://example.okta.com/oauth2/default", "JwtAudience": "api://default"}
RULE_CASES = [
    ("the defaults, no JWT, no AllowAnonymous", {}, False),
    ("AllowAnonymous=true", {"AllowAnonymous": "true"}, True),
    ("JwtIssuer and JwtAudience", JWT, True),
    ("JwtIssuer and JwtAudience with AllowAnonymous=true", {**JWT, "AllowAnonymous": "true"}, True),
    ("JwtIssuer alone", {"JwtIssuer": JWT["JwtIssuer"]}, False),
    ("JwtIssuer alone with AllowAnonymous=true", {"JwtIssuer": JWT["JwtIssuer"], "AllowAnonymous": "true"}, False),
    ("JwtAudience alone with AllowAnonymous=true", {"JwtAudience": JWT["JwtAudience"], "AllowAnonymous": "true"}, False),
]


def check_rules(template: dict, as_written: bool) -> list[str]:
    try:
        if not as_written:
            return [f"this deployment's parameters are refused by the Rules: {r}" for r in refusals(template)]
        problems = []
        for what, overrides, accepted in RULE_CASES:
            failed = refusals(template, {**REQUIRED, **overrides})
            if accepted and failed:
                problems.append(f"Rules refuse {what}, which must deploy: {failed}")
            if not accepted and not failed:
                problems.append(f"Rules accept {what}, which must be refused")
        return problems
    except (Unresolvable, KeyError, TypeError, ValueError) as err:
        return [f"cannot evaluate the Rules: {err!r}"]


def actions_of(stmt) -> list[str]:
    return [a for a in as_list(stmt.get("Action", [])) if isinstance(a, str)]


def check_guard(template: dict, cfn: dict, fn_name: str) -> list[str]:
    """The guard's resources and permissions, with the template's parameter defaults."""
    problems = []
    deployed = Deployed(template)
    try:
        guard_on = deployed.value({"Ref": "Guard"}) == "true"
        resources = deployed.resources(cfn["Resources"])
    except Unresolvable as err:
        return [f"cannot resolve the template's conditions from its defaults: {err}"]
    state = f"Guard={'true' if guard_on else 'false'}"

    tables = [n for n, r in resources.items() if r["Type"] == "AWS::DynamoDB::Table"]
    secrets = [n for n, r in resources.items() if r["Type"] == "AWS::SecretsManager::Secret"]
    fn = resources[fn_name]["Properties"]
    env = fn.get("Environment", {}).get("Variables", {})
    for var in GUARD_VARIABLES:
        if var not in env:
            problems.append(f"{fn_name}: environment lacks {var}")

    role_ref = fn.get("Role")
    role_name = role_ref.get("Fn::GetAtt", [None])[0] if isinstance(role_ref, dict) else None
    if role_name not in resources or resources[role_name]["Type"] != "AWS::IAM::Role":
        return problems + [f"{fn_name}: Role is not a role of this template ({role_ref!r})"]

    # Every statement of every policy in the template, Fn::If resolved.
    dynamo_stmts, secret_resources = [], []
    for name, doc in walk_statements(resources):
        for stmt in statements(doc):
            actions = actions_of(stmt)
            dynamo = [a for a in actions if a.lower().startswith("dynamodb:")]
            if dynamo:
                if name != role_name:
                    problems.append(f"{name}: a dynamodb permission outside the function's role {role_name}")
                dynamo_stmts.append(stmt)
            if any(a.lower() in ("secretsmanager:getsecretvalue", "secretsmanager:*") for a in actions):
                secret_resources += as_list(stmt.get("Resource", []))

    if not guard_on:
        if tables:
            problems.append(f"{state}: DynamoDB tables {tables} are created")
        if secrets:
            problems.append(f"{state}: secrets {secrets} are created")
        for stmt in dynamo_stmts:
            problems.append(f"{state}: statement {stmt.get('Sid', '?')} grants {actions_of(stmt)}")
        for var in ("RESEND_GUARD_TABLE", "RESEND_GUARD_KEY_SECRET_ID"):
            if env.get(var) != "":
                problems.append(f"{state}: {var} is {env.get(var)!r}, expected empty")
        if secret_resources != [{"Ref": "OktaSecretArn"}]:
            problems.append(f"{state}: GetSecretValue on {secret_resources}, expected the Okta secret only")
        return [f"{state}: {p}" if not p.startswith(state) else p for p in problems]

    if len(tables) != 1:
        return problems + [f"{state}: expected one DynamoDB table, found {tables}"]
    if len(secrets) != 1:
        return problems + [f"{state}: expected one secret (the guard's key), found {secrets}"]
    table, secret = tables[0], secrets[0]
    props = resources[table]["Properties"]
    expect = {
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
    }
    for key, want in expect.items():
        if props.get(key) != want:
            problems.append(f"{table}: {key} is {props.get(key)!r}, expected {want!r}")
    for key in ("DeletionProtectionEnabled", "PointInTimeRecoverySpecification"):
        if key not in props:
            problems.append(f"{table}: {key} is not set (a template parameter decides it)")
    generate = resources[secret]["Properties"].get("GenerateSecretString", {})
    if generate.get("PasswordLength") != 64 or generate.get("ExcludePunctuation") is not True \
            or "SecretStringTemplate" in generate:
        problems.append(f"{secret}: expected GenerateSecretString of 64 characters without punctuation")
    if "SecretString" in resources[secret]["Properties"]:
        problems.append(f"{secret}: the key must be generated, not written in the template")

    table_arn = {"Fn::GetAtt": [table, "Arn"]}
    granted = set()
    for stmt in dynamo_stmts:
        granted |= set(actions_of(stmt))
        if stmt.get("Effect") != "Allow" or "Condition" in stmt:
            problems.append(f"{role_name}: statement {stmt.get('Sid', '?')} is not a plain Allow")
        if as_list(stmt.get("Resource", [])) != [table_arn]:
            problems.append(f"{role_name}: statement {stmt.get('Sid', '?')} grants dynamodb on "
                            f"{stmt.get('Resource')!r}, expected the table's ARN only")
    if granted != GUARD_ACTIONS:
        problems.append(f"{role_name}: dynamodb actions are {sorted(granted)}, expected exactly {sorted(GUARD_ACTIONS)}")
    want_secrets = [{"Ref": "OktaSecretArn"}, {"Ref": secret}]
    if sorted(map(str, secret_resources)) != sorted(map(str, want_secrets)):
        problems.append(f"{role_name}: GetSecretValue on {secret_resources}, expected {want_secrets}")
    if env.get("RESEND_GUARD_TABLE") != {"Ref": table}:
        problems.append(f"{fn_name}: RESEND_GUARD_TABLE is {env.get('RESEND_GUARD_TABLE')!r}, expected the table")
    if env.get("RESEND_GUARD_KEY_SECRET_ID") != {"Ref": secret}:
        problems.append(f"{fn_name}: RESEND_GUARD_KEY_SECRET_ID is {env.get('RESEND_GUARD_KEY_SECRET_ID')!r}, "
                        f"expected the key secret")
    alarms = {r["Properties"].get("MetricName") for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"}
    for metric in ("BudgetExhausted", "Requests"):
        if metric not in alarms:
            problems.append(f"{state}: no alarm on the metric {metric}")
    return [f"{state}: {p}" for p in problems]


# ---------------------------------------------------------------- operations
# What "kept when the stack is deleted" accepts: RetainExceptOnCreate retains like Retain,
# except when the deployment that created the resource rolls back.
RETAINING_DELETION_POLICIES = ("Retain", "RetainExceptOnCreate")


def metric_alarms(resources: dict, namespace: str, metric: str) -> list[str]:
    return [
        name for name, res in resources.items()
        if res["Type"] == "AWS::CloudWatch::Alarm"
        and res["Properties"].get("Namespace") == namespace
        and res["Properties"].get("MetricName") == metric
    ]


def check_alarm_shape(name: str, props: dict, dimensions: list) -> list[str]:
    """Sum >= 1 over one 5-minute period, on exactly these dimensions."""
    problems = []
    expect = {
        "Statistic": "Sum", "Period": 300, "EvaluationPeriods": 1, "Threshold": 1,
        "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "notBreaching",
    }
    for key, want in expect.items():
        if props.get(key) != want and str(props.get(key)) != str(want):
            problems.append(f"{name}: {key} is {props.get(key)!r}, expected {want!r}")
    if props.get("Dimensions") != dimensions:
        problems.append(f"{name}: Dimensions are {props.get('Dimensions')!r}, expected {dimensions!r}")
    return problems


def check_operations(template: dict, cfn: dict, fn_name: str) -> list[str]:
    """Alarms and log retention, with the template's parameter defaults."""
    problems = []
    deployed = Deployed(template)
    try:
        api_5xx_on = deployed.value({"Ref": "Api5xxAlarm"}) == "true"
        topic = deployed.value({"Ref": "AlarmTopicArn"})
        resources = deployed.resources(cfn["Resources"])
    except Unresolvable as err:
        return [f"cannot resolve the template's conditions from its defaults: {err}"]
    state = f"Api5xxAlarm={'true' if api_5xx_on else 'false'}"

    fn_dimensions = [{"Name": "FunctionName", "Value": {"Ref": fn_name}}]
    for metric in ("Errors", "Throttles"):
        alarms = metric_alarms(resources, "AWS/Lambda", metric)
        if len(alarms) != 1:
            problems.append(f"expected one alarm on the function's AWS/Lambda {metric}, found {alarms}")
        for name in alarms:
            problems += check_alarm_shape(name, resources[name]["Properties"], fn_dimensions)

    api_5xx = metric_alarms(resources, "AWS/ApiGateway", "5xx")
    if not api_5xx_on and api_5xx:
        problems.append(f"{state}: alarms {api_5xx} on the API's 5xx exist")
    if api_5xx_on:
        apis = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGatewayV2::Api"]
        stages = [r["Properties"].get("StageName") for r in resources.values()
                  if r["Type"] == "AWS::ApiGatewayV2::Stage"]
        if len(api_5xx) != 1:
            problems.append(f"{state}: expected one alarm on the API's AWS/ApiGateway 5xx, found {api_5xx}")
        elif len(apis) != 1 or len(stages) != 1:
            problems.append(f"{state}: expected one HTTP API with one stage, found {apis} and {stages}")
        else:
            dimensions = [{"Name": "ApiId", "Value": {"Ref": apis[0]}},
                          {"Name": "Stage", "Value": stages[0]}]
            problems += [f"{state}: {p}" for p in
                         check_alarm_shape(api_5xx[0], resources[api_5xx[0]]["Properties"], dimensions)]

    want_actions = [{"Ref": "AlarmTopicArn"}] if topic else None
    for name, res in resources.items():
        if res["Type"] != "AWS::CloudWatch::Alarm":
            continue
        for key in ("AlarmActions", "OKActions"):
            if res["Properties"].get(key) != want_actions:
                problems.append(f"{name}: {key} is {res['Properties'].get(key)!r}, expected "
                                f"{want_actions!r} (AlarmTopicArn={topic!r})")

    # Log groups: every one the stack creates (after the SAM transform, so one SAM added
    # on its own would be caught too) is kept when the stack is deleted.
    log_groups = [n for n, r in cfn["Resources"].items() if r["Type"] == "AWS::Logs::LogGroup"]
    for name in log_groups:
        res = cfn["Resources"][name]
        if res.get("DeletionPolicy") not in RETAINING_DELETION_POLICIES:
            problems.append(f"{name}: DeletionPolicy is {res.get('DeletionPolicy')!r}, expected one of "
                            f"{RETAINING_DELETION_POLICIES} (log groups outlive the stack)")
        if res.get("UpdateReplacePolicy") != "Retain":
            problems.append(f"{name}: UpdateReplacePolicy is {res.get('UpdateReplacePolicy')!r}, expected 'Retain'")
    fn_log = resources[fn_name]["Properties"].get("LoggingConfig", {}).get("LogGroup")
    if fn_log not in [{"Ref": n} for n in log_groups]:
        problems.append(f"{fn_name}: LoggingConfig.LogGroup {fn_log!r} is not a log group of this template")
    for name, res in resources.items():
        if res["Type"] == "AWS::ApiGatewayV2::Stage":
            dest = res["Properties"].get("AccessLogSettings", {}).get("DestinationArn")
            if dest not in [{"Fn::GetAtt": [n, "Arn"]} for n in log_groups]:
                problems.append(f"{name}: the access log goes to {dest!r}, not a log group of this template")
    return problems


def check_routes(resources: dict) -> list[str]:
    """The two routes, as alike as the verification screen needs: one integration, one
    way to authorize, one throttling, and an invoke permission for each route only."""
    problems = []
    routes = {r["Properties"]["RouteKey"]: r["Properties"] for r in resources.values()
              if r["Type"] == "AWS::ApiGatewayV2::Route"}
    if sorted(routes) != ROUTE_KEYS:
        problems.append(f"routes are {sorted(routes)}, expected exactly {ROUTE_KEYS}")
    apis = [n for n, r in resources.items() if r["Type"] in ("AWS::ApiGatewayV2::Api", "AWS::ApiGateway::RestApi")]
    if len(apis) != 1:
        problems.append(f"expected one API, found {apis}")
    if len(routes) > 1:
        first, *others = sorted(routes)
        for key in ROUTE_SHARED:
            for other in others:
                if routes[other].get(key) != routes[first].get(key):
                    problems.append(f"{other}: {key} is {routes[other].get(key)!r}, but {first}'s is "
                                    f"{routes[first].get(key)!r} (both routes must be served and "
                                    f"authorized alike)")
    for name, res in resources.items():
        if res["Type"] != "AWS::ApiGatewayV2::Stage":
            continue
        props = res["Properties"]
        default = props.get("DefaultRouteSettings", {})
        for key, param in (("ThrottlingBurstLimit", "ThrottlingBurstLimit"), ("ThrottlingRateLimit", "ThrottlingRateLimit")):
            if default.get(key) != {"Ref": param}:
                problems.append(f"{name}: DefaultRouteSettings.{key} is {default.get(key)!r}, expected the "
                                f"{param} parameter (it throttles every route)")
        if props.get("RouteSettings"):
            problems.append(f"{name}: RouteSettings {props['RouteSettings']!r} would throttle the routes apart")

    # API Gateway's invoke permissions: one per route, for that route's method and path.
    arns = []
    for name, res in resources.items():
        if res["Type"] != "AWS::Lambda::Permission":
            continue
        source = res["Properties"].get("SourceArn")
        text = source.get("Fn::Sub") if isinstance(source, dict) else source
        if not isinstance(text, str):
            problems.append(f"{name}: SourceArn {source!r} is not one route's ARN")
            continue
        arns.append(text)
    want = sorted("/*/" + key.replace(" ", "") for key in ROUTE_KEYS)
    got = sorted(a[a.rfind("}/*/") + 1:] if "}/*/" in a else a for a in arns)
    if got != want:
        problems.append(f"Lambda permissions are for {got}, expected one for each route: {want}")
    return problems


def check_dashboard_and_activation_alarm(template: dict, cfn: dict) -> list[str]:
    """The alarm on guessed codes and the dashboard, with the template's defaults."""
    problems = []
    try:
        resources = Deployed(template).resources(cfn["Resources"])
    except Unresolvable as err:
        return [f"cannot resolve the template's conditions from its defaults: {err}"]
    namespace = {"Fn::Sub": "okta-resend/${AWS::StackName}"}

    def outcomes(props: dict) -> set:
        return {d["Value"] for q in props.get("Metrics", []) if "MetricStat" in q
                for d in q["MetricStat"]["Metric"].get("Dimensions", []) if d.get("Name") == "outcome"
                and q["MetricStat"]["Metric"].get("Namespace") == namespace
                and q["MetricStat"]["Metric"].get("MetricName") == "Requests"}

    guessing = [n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"
                and outcomes(r["Properties"]) == {"invalid_passcode", "too_many_attempts"}]
    if len(guessing) != 1:
        problems.append(f"expected one alarm on Requests with outcome invalid_passcode and too_many_attempts, "
                        f"found {guessing}")
    for name in guessing:
        props = resources[name]["Properties"]
        if props.get("Threshold") != {"Ref": "ActivationFailuresAlarmThreshold"}:
            problems.append(f"{name}: Threshold is {props.get('Threshold')!r}, expected ActivationFailuresAlarmThreshold")
        returned = [q for q in props["Metrics"] if q.get("ReturnData", True)]
        if len(returned) != 1 or "wrong" not in returned[0].get("Expression", "") \
                or "locked" not in returned[0].get("Expression", ""):
            problems.append(f"{name}: the one returned query must add both outcomes, found {returned!r}")

    dashboards = [n for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    if len(dashboards) != 1:
        return problems + [f"expected one dashboard, found {dashboards}"]
    body = resources[dashboards[0]]["Properties"].get("DashboardBody")
    text = body.get("Fn::Sub") if isinstance(body, dict) else body
    if not isinstance(text, str):
        return problems + [f"{dashboards[0]}: DashboardBody {body!r} is not a Fn::Sub string"]
    # Fn::Sub's variables as the values they stand for, to read the JSON.
    sample = re.sub(r"\$\{[A-Za-z0-9]+\}", "1", text.replace("${AWS::StackName}", "STACK")
                    .replace("${AWS::Region}", "us-east-1").replace("${OktaResendFunction}", "FN"))
    try:
        widgets = json.loads(sample)["widgets"]
    except (ValueError, KeyError, TypeError) as err:
        return problems + [f"{dashboards[0]}: DashboardBody is not a dashboard's JSON: {err}"]
    lines = [line for w in widgets for line in w.get("properties", {}).get("metrics", [])]
    plain = [[v for v in line if isinstance(v, str)] for line in lines]
    searches = " ".join(v.get("expression", "") for line in lines for v in line if isinstance(v, dict))
    want = [["okta-resend/STACK", "Requests", "factorType", t] for t in ("sms", "call", "email")]
    want += [["okta-resend/STACK", "Requests", "outcome", o] for o in ("activated", "invalid_passcode", "too_many_attempts")]
    want += [["AWS/Lambda", m, "FunctionName", "FN"] for m in ("Errors", "Duration")]
    for line in want:
        if line not in plain:
            problems.append(f"{dashboards[0]}: no widget graphs {line}")
    for dimension in ("country", "outcome"):
        if f'"okta-resend/STACK",{dimension}}}' not in searches:
            problems.append(f"{dashboards[0]}: no SEARCH over Requests by {dimension}")
    return problems


def check(path, as_written: bool):
    problems = []
    source, matches = decode(path)
    if matches or source is None:
        return [str(m) for m in matches] or [f"{path}: cannot be read"]
    problems += check_rules(source, as_written)
    timeout_max = source.get("Parameters", {}).get("OktaTimeoutMs", {}).get("MaxValue")
    if str(timeout_max) != str(OKTA_TIMEOUT_MAX_S * 1000):
        problems.append(f"OktaTimeoutMs: MaxValue is {timeout_max!r}, expected {OKTA_TIMEOUT_MAX_S * 1000} "
                        f"(OKTA_TIMEOUT_MS's ceiling)")

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

    problems += check_routes(resources)

    for name, doc in walk_statements(resources):
        for stmt in every_branch(statements(doc)):
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
    for var in ("OKTA_ORG_URL", "OKTA_SECRET_ID", "OKTA_TIMEOUT_MS", "RESEND_ALLOWED_TEMPLATE_IDS"):
        if var not in env:
            problems.append(f"{fn_name}: environment lacks {var}")
    problems += check_guard(source, cfn, fn_name)
    problems += check_operations(source, cfn, fn_name)
    problems += check_dashboard_and_activation_alarm(source, cfn)
    return [f"{path}: {p}" for p in problems]


def main(paths):
    problems = [p for i, path in enumerate(paths) for p in check(path, as_written=i == 0)]
    for p in problems:
        print(p, file=sys.stderr)
    if not problems:
        print(f"{', '.join(paths)}: Rules refuse an anonymous deployment unless AllowAnonymous=true "
              f"(every copy accepted), the routes POST /factors/resend and POST /factors/activate alike, "
              f"no '*' in IAM, function as specified, "
              f"guard table and key access exactly as specified (or absent with Guard=false), "
              f"Errors and Throttles alarms (5xx with Api5xxAlarm=true), the guessed-codes alarm and the "
              f"dashboard, log groups retained")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]) if len(sys.argv) > 1 else 2)
