#!/usr/bin/env python3
"""The guard's DynamoDB table, created in a local DynamoDB (moto) from template.yaml.

    guard_table.py create --endpoint URL --name NAME
        creates table NAME at URL with the key schema, attribute definitions and TTL
        attribute of the template's one AWS::DynamoDB::Table (on-demand billing, TTL on);
        a table of that name that already exists with the same key schema is fine. Prints
        nothing on success; on failure one line on stderr and exit status 1.
    guard_table.py show
        prints what it reads from template.yaml, as JSON (KeySchema,
        AttributeDefinitions, TimeToLiveAttribute)

The key schema is declared once, in template.yaml; make dev, make demo, make bench
(scripts/stack.py, scripts/bench.py: `create_table(endpoint, name)`) and the Rust tests
(`.venv/bin/python scripts/guard_table.py create --endpoint $MOTO --name <unique>`) all
create their tables through this file, so none of them can drift from what is deployed.

Runs with the .venv's Python: PyYAML and boto3 come with moto. Region us-east-1 and dummy
credentials, as for every local moto.
"""

import argparse
import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
TABLE_TYPE = "AWS::DynamoDB::Table"


class GuardTableError(Exception):
    pass


class _CloudFormationLoader(yaml.SafeLoader):
    """Safe YAML that accepts CloudFormation's short-form tags (!Ref, !If, !Sub, ...)."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node):
    """`!Ref X` -> {"Ref": X}, `!If [...]` -> {"Fn::If": [...]}, `!GetAtt A.B` -> {"Fn::GetAtt": ...}."""
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}": value}


_CloudFormationLoader.add_multi_constructor("!", _tagged)


def table_definition(template: Path = TEMPLATE) -> dict:
    """KeySchema, AttributeDefinitions and TimeToLiveAttribute of the template's one table."""
    try:
        document = yaml.load(template.read_text(encoding="utf-8"), Loader=_CloudFormationLoader)
    except (OSError, yaml.YAMLError) as err:
        raise GuardTableError(f"cannot read {template}: {err}") from err
    tables = {name: res for name, res in (document.get("Resources") or {}).items()
              if isinstance(res, dict) and res.get("Type") == TABLE_TYPE}
    if len(tables) != 1:
        raise GuardTableError(f"{template}: expected one {TABLE_TYPE}, found {sorted(tables)}")
    (name, table), = tables.items()
    props = table.get("Properties") or {}
    ttl = props.get("TimeToLiveSpecification") or {}
    definition = {
        "KeySchema": props.get("KeySchema"),
        "AttributeDefinitions": props.get("AttributeDefinitions"),
        "TimeToLiveAttribute": ttl.get("AttributeName") if ttl.get("Enabled") is True else None,
    }
    for key, value in definition.items():
        # Every one of them must be written out literally: a parameter here could not be read.
        if not value or "Ref" in json.dumps(value) or "Fn::" in json.dumps(value):
            raise GuardTableError(f"{template}: {name} has no literal {key} ({value!r})")
    return definition


def _client(endpoint: str):
    import boto3  # from the venv this script runs in (moto brings it)
    from botocore.config import Config

    return boto3.client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        # A local endpoint: fail within seconds when nothing listens, instead of botocore's
        # minute of retries.
        config=Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard", "max_attempts": 3}),
    )


def create_table(endpoint: str, name: str, template: Path = TEMPLATE) -> None:
    """Creates the guard's table `name` at `endpoint` as the template declares it (with TTL
    on), and waits until it is ACTIVE. An existing table with the same key schema is fine;
    one with another key schema is an error."""
    from botocore.exceptions import BotoCoreError, ClientError

    definition = table_definition(template)
    client = _client(endpoint)
    try:
        try:
            client.create_table(
                TableName=name,
                KeySchema=definition["KeySchema"],
                AttributeDefinitions=definition["AttributeDefinitions"],
                BillingMode="PAY_PER_REQUEST",
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise
            existing = client.describe_table(TableName=name)["Table"]["KeySchema"]
            if existing != definition["KeySchema"]:
                raise GuardTableError(f"table {name} exists at {endpoint} with key schema {existing}, "
                                      f"not {definition['KeySchema']} (template.yaml)") from None
        client.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        wanted = definition["TimeToLiveAttribute"]
        if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") or ttl.get("AttributeName") != wanted:
            client.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": wanted})
    except (BotoCoreError, ClientError) as err:
        raise GuardTableError(f"cannot create table {name} at {endpoint}: {err}") from err


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True)
    create = modes.add_parser("create", help="create the table in a local DynamoDB")
    create.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:5000 (moto)")
    create.add_argument("--name", required=True, help="the table's name")
    modes.add_parser("show", help="print the table definition read from template.yaml")
    args = parser.parse_args()
    try:
        if args.mode == "create":
            create_table(args.endpoint, args.name)
        else:
            print(json.dumps(table_definition(), indent=2))
    except GuardTableError as err:
        print(f"guard_table.py: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
