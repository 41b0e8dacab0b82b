#!/usr/bin/env python3
"""Self-test of scripts/dynamo_front.py, the DynamoDB front that answers transaction
conflicts by DynamoDB's rules in front of moto.

    .venv/bin/python scripts/test_dynamo_front.py

Starts a serial moto behind a front (scripts/moto.py's `start(front=True)`) with a 500 ms
hold, creates a table with a string hash key `pk`, and checks with real concurrent requests:

  0. a workload without conflicts goes through unchanged (Secrets Manager included; moto's
     own errors, ConditionalCheckFailedException and a TransactionCanceledException with
     ConditionalCheckFailed, come back as moto gives them);
  1. while a TransactWriteItems holds item A, PutItem/UpdateItem/DeleteItem of A fail with
     TransactionConflictException and change nothing, an UpdateItem of B succeeds;
  2. ... and a TransactWriteItems including A is cancelled (TransactionCanceledException,
     reasons in item order, TransactionConflict for A), and so is a TransactGetItems of A;
     GetItem, BatchGetItem and Query of A succeed;
  3. while a plain UpdateItem (or PutItem, DeleteItem, BatchWriteItem) holds an item, a
     TransactGetItems of it is cancelled; GetItem/BatchGetItem of it, another UpdateItem of
     it and a TransactWriteItems of it succeed (only a TransactWriteItems blocks writes);
  4. after the hold, the same calls succeed;
  5. the answers are DynamoDB's bytes exactly (raw HTTP), and `GET /__front/stats` and the
     front's log count every conflict.

Exits 0 when every check passes, 1 otherwise (each failure listed), within 30 s.
"""

import json
import signal
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import moto as moto_launcher  # noqa: E402  scripts/moto.py, not the moto package

import boto3  # noqa: E402
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

HOLD_MS = 500
HOLD_S = HOLD_MS / 1000
DEADLINE_S = 28
REGION = "us-east-1"
TABLE = "front-test"
ONGOING = "Transaction is ongoing for the item"
CONFLICT_BODY = ('{"__type":"com.amazonaws.dynamodb.v20120810#TransactionConflictException",'
                 '"message":"Transaction is ongoing for the item"}')
CANCELLED_BODY = ('{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException",'
                  '"Message":"Transaction cancelled, please refer cancellation reasons for specific reasons '
                  '[None, TransactionConflict]",'
                  '"CancellationReasons":[{"Code":"None"},{"Code":"TransactionConflict",'
                  '"Message":"Transaction is ongoing for the item"}]}')

failures: list[str] = []
passed = 0


def check(name: str, ok: bool, detail="") -> None:
    global passed
    if ok:
        passed += 1
        print(f"  ok    {name}")
    else:
        failures.append(f"{name}: {detail}")
        print(f"  FAIL  {name}: {detail}")


def S(value: str) -> dict:
    return {"S": value}


def key(pk: str) -> dict:
    return {"pk": S(pk)}


def client(service: str, endpoint: str):
    return boto3.client(
        service, endpoint_url=endpoint, region_name=REGION,
        aws_access_key_id="testing", aws_secret_access_key="testing",
        # No retries: a conflict must be seen as it is answered.
        config=Config(retries={"total_max_attempts": 1}, max_pool_connections=32,
                      connect_timeout=5, read_timeout=10),
    )


def outcome(call):
    """('ok', response) or (error code, error response) of one call."""
    try:
        return "ok", call()
    except ClientError as err:
        return err.response["Error"]["Code"], err.response


def reasons(response) -> list:
    return [(r.get("Code"), r.get("Message")) for r in response.get("CancellationReasons", [])]


def concurrently(calls: dict) -> dict:
    """Runs every call at once (one thread each); name -> outcome."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = {name: pool.submit(outcome, call) for name, call in calls.items()}
        return {name: future.result() for name, future in futures.items()}


def within(name: str, started: float) -> None:
    """The checks of a window are only proof when they ran inside the hold."""
    elapsed = time.monotonic() - started
    check(f"{name} ran inside the hold ({elapsed * 1000:.0f} ms of {HOLD_MS})", elapsed < HOLD_S * 0.9,
          "the machine was too slow for the window: the results above prove nothing")


def raw(endpoint: str, target: str, payload: dict):
    """(status, headers, body text) of a DynamoDB call sent by hand."""
    request = urllib.request.Request(endpoint + "/", data=json.dumps(payload).encode(), method="POST", headers={
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": f"DynamoDB_20120810.{target}",
        "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20250101/{REGION}/dynamodb/aws4_request, "
                         "SignedHeaders=host, Signature=0",
    })
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers, err.read().decode()


def stats(endpoint: str) -> dict:
    with urllib.request.urlopen(endpoint + "/__front/stats", timeout=5) as response:
        return json.loads(response.read())


def run(server) -> None:
    front, moto = server.endpoint, server.moto_endpoint
    ddb, direct, sm = client("dynamodb", front), client("dynamodb", moto), client("secretsmanager", front)
    expected_conflicts = 0

    print("0. a workload without conflicts goes through unchanged")
    sm.create_secret(Name="front-test/secret", SecretString="s3cret")
    check("Secrets Manager through the front",
          sm.get_secret_value(SecretId="front-test/secret")["SecretString"] == "s3cret")
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                     KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
    for pk in ("A", "B", "A2", "P", "D", "Z", "W0"):
        ddb.put_item(TableName=TABLE, Item={**key(pk), "v": {"N": "0"}})
    ddb.update_item(TableName=TABLE, Key=key("W0"), UpdateExpression="SET v = v + :one",
                    ExpressionAttributeValues={":one": {"N": "1"}})
    ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": {**key(f"W{i}"), "v": {"N": str(i)}}}}
                                               for i in range(1, 4)]})
    check("writes and reads agree with moto",
          ddb.get_item(TableName=TABLE, Key=key("W0"))["Item"] == direct.get_item(TableName=TABLE, Key=key("W0"))["Item"]
          == {**key("W0"), "v": {"N": "1"}})
    conditional = dict(TableName=TABLE, Key=key("W0"), UpdateExpression="SET v = :two",
                       ConditionExpression="v = :zero",
                       ExpressionAttributeValues={":two": {"N": "2"}, ":zero": {"N": "0"}})
    through, straight = outcome(lambda: ddb.update_item(**conditional)), outcome(lambda: direct.update_item(**conditional))
    check("ConditionalCheckFailedException comes back unchanged",
          through[0] == straight[0] == "ConditionalCheckFailedException"
          and through[1]["Error"] == straight[1]["Error"], f"{through[1]['Error']} vs {straight[1]['Error']}")
    # W1 and W2 are held (by the BatchWriteItem) as plain writes only: a transaction on them goes through.
    failing = dict(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": key("W1"), "UpdateExpression": "SET v = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"ConditionCheck": {"TableName": TABLE, "Key": key("W2"), "ConditionExpression": "v = :zero",
                            "ExpressionAttributeValues": {":zero": {"N": "0"}}}}])
    through = outcome(lambda: ddb.transact_write_items(**failing))
    time.sleep(HOLD_S + 0.1)  # the failed transaction's own hold, before moto is asked directly
    straight = outcome(lambda: direct.transact_write_items(**failing))
    check("a transaction moto cancels (ConditionalCheckFailed) comes back unchanged",
          through[0] == straight[0] == "TransactionCanceledException"
          and reasons(through[1]) == reasons(straight[1]) == [("None", None), ("ConditionalCheckFailed", "The conditional request failed")]
          and through[1]["Error"] == straight[1]["Error"], f"{through} vs {straight}")
    check("Query goes through", [i["pk"] for i in ddb.query(
        TableName=TABLE, KeyConditionExpression="pk = :p",
        ExpressionAttributeValues={":p": S("W3")})["Items"]] == [S("W3")])
    check("TransactGetItems of items no write holds goes through",
          [r.get("Item", {}).get("v") for r in ddb.transact_get_items(TransactItems=[
              {"Get": {"TableName": TABLE, "Key": key(pk)}} for pk in ("W0", "W1")])["Responses"]]
          == [{"N": "1"}, {"N": "1"}])
    check("no conflict so far", stats(front)["conflicts"] == 0, stats(front))

    print("1-2. while a TransactWriteItems holds A")
    ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": key("A"), "UpdateExpression": "SET v = :t",
                    "ExpressionAttributeValues": {":t": S("transaction")}}}])
    started = time.monotonic()
    got = concurrently({
        "update A": lambda: ddb.update_item(TableName=TABLE, Key=key("A"), UpdateExpression="SET v = :x",
                                            ExpressionAttributeValues={":x": S("update")}),
        "put A": lambda: ddb.put_item(TableName=TABLE, Item={**key("A"), "v": S("put")}),
        "delete A": lambda: ddb.delete_item(TableName=TABLE, Key=key("A")),
        "update B": lambda: ddb.update_item(TableName=TABLE, Key=key("B"), UpdateExpression="SET v = :x",
                                            ExpressionAttributeValues={":x": S("update")}),
        "transaction X, A": lambda: ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {**key("X"), "v": S("x")}}},
            {"ConditionCheck": {"TableName": TABLE, "Key": key("A"), "ConditionExpression": "attribute_exists(pk)"}}]),
        "transact get Y, A": lambda: ddb.transact_get_items(TransactItems=[
            {"Get": {"TableName": TABLE, "Key": key("Y")}}, {"Get": {"TableName": TABLE, "Key": key("A")}}]),
        "get A": lambda: ddb.get_item(TableName=TABLE, Key=key("A")),
        "batch get A": lambda: ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key("A")]}}),
        "query A": lambda: ddb.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                                     ExpressionAttributeValues={":p": S("A")}),
    })
    within("window 1", started)
    for name in ("update A", "put A", "delete A"):
        code, response = got[name]
        check(f"{name}: TransactionConflictException", code == "TransactionConflictException"
              and response["Error"].get("Message") == ONGOING
              and response["ResponseMetadata"]["HTTPStatusCode"] == 400, (code, response.get("Error")))
    expected_conflicts += 3
    check("update B: succeeds", got["update B"][0] == "ok", got["update B"])
    code, response = got["transaction X, A"]
    check("transaction X, A: TransactionCanceledException [None, TransactionConflict]",
          code == "TransactionCanceledException" and reasons(response) == [("None", None), ("TransactionConflict", ONGOING)],
          (code, reasons(response) if code != "ok" else response))
    code, response = got["transact get Y, A"]
    check("transact get Y, A: TransactionCanceledException [None, TransactionConflict]",
          code == "TransactionCanceledException" and reasons(response) == [("None", None), ("TransactionConflict", ONGOING)],
          (code, reasons(response) if code != "ok" else response))
    expected_conflicts += 2
    check("get A: succeeds, sees the transaction", got["get A"][0] == "ok"
          and got["get A"][1].get("Item", {}).get("v") == S("transaction"), got["get A"])
    check("batch get A: succeeds", got["batch get A"][0] == "ok"
          and [i["v"] for i in got["batch get A"][1]["Responses"][TABLE]] == [S("transaction")], got["batch get A"])
    check("query A: succeeds", got["query A"][0] == "ok" and got["query A"][1]["Count"] == 1, got["query A"])
    check("the refused requests changed nothing (never reached moto)",
          direct.get_item(TableName=TABLE, Key=key("A")).get("Item", {}).get("v") == S("transaction")
          and "Item" not in direct.get_item(TableName=TABLE, Key=key("X")))

    print("3. while plain writes hold A2, P, D and Z")
    ddb.update_item(TableName=TABLE, Key=key("A2"), UpdateExpression="SET v = :x",
                    ExpressionAttributeValues={":x": S("first")})
    ddb.put_item(TableName=TABLE, Item={**key("P"), "v": S("put")})
    ddb.delete_item(TableName=TABLE, Key=key("D"))
    ddb.batch_write_item(RequestItems={TABLE: [{"PutRequest": {"Item": {**key("Z"), "v": S("batch")}}}]})
    started = time.monotonic()
    got = concurrently({
        **{f"transact get Y, {pk}": (lambda pk=pk: ddb.transact_get_items(TransactItems=[
            {"Get": {"TableName": TABLE, "Key": key("Y")}}, {"Get": {"TableName": TABLE, "Key": key(pk)}}]))
           for pk in ("A2", "P", "D", "Z")},
        "get A2": lambda: ddb.get_item(TableName=TABLE, Key=key("A2")),
        "batch get A2": lambda: ddb.batch_get_item(RequestItems={TABLE: {"Keys": [key("A2")]}}),
        "update A2 again": lambda: ddb.update_item(TableName=TABLE, Key=key("A2"), UpdateExpression="SET w = :x",
                                                   ExpressionAttributeValues={":x": S("second")}),
    })
    transaction = outcome(lambda: ddb.transact_write_items(TransactItems=[
        {"Update": {"TableName": TABLE, "Key": key("P"), "UpdateExpression": "SET t = :x",
                    "ExpressionAttributeValues": {":x": S("transaction")}}}]))
    within("window 3", started)
    for pk, write in (("A2", "UpdateItem"), ("P", "PutItem"), ("D", "DeleteItem"), ("Z", "BatchWriteItem")):
        code, response = got[f"transact get Y, {pk}"]
        check(f"transact get Y, {pk} during its {write}: cancelled [None, TransactionConflict]",
              code == "TransactionCanceledException" and reasons(response) == [("None", None), ("TransactionConflict", ONGOING)],
              (code, reasons(response) if code != "ok" else response))
        expected_conflicts += 1
    for name in ("get A2", "batch get A2", "update A2 again"):
        check(f"{name}: succeeds", got[name][0] == "ok", got[name])
    check("a TransactWriteItems of P during its PutItem: succeeds", transaction[0] == "ok", transaction)

    print("4. after the hold, the same calls succeed")
    time.sleep(HOLD_S + 0.1)
    got = {
        "transact get Y, A": outcome(lambda: ddb.transact_get_items(TransactItems=[
            {"Get": {"TableName": TABLE, "Key": key("Y")}}, {"Get": {"TableName": TABLE, "Key": key("A")}}])),
        "transact get Y, A2, P, D, Z": outcome(lambda: ddb.transact_get_items(TransactItems=[
            {"Get": {"TableName": TABLE, "Key": key(pk)}} for pk in ("Y", "A2", "P", "D", "Z")])),
        "update A": outcome(lambda: ddb.update_item(TableName=TABLE, Key=key("A"), UpdateExpression="SET v = :x",
                                                    ExpressionAttributeValues={":x": S("update")})),
        "put A": outcome(lambda: ddb.put_item(TableName=TABLE, Item={**key("A"), "v": S("put")})),
        "transaction X, A": outcome(lambda: ddb.transact_write_items(TransactItems=[
            {"Put": {"TableName": TABLE, "Item": {**key("X"), "v": S("x")}}},
            {"ConditionCheck": {"TableName": TABLE, "Key": key("A"), "ConditionExpression": "attribute_exists(pk)"}}])),
    }
    for name, (code, response) in got.items():
        check(f"{name}: succeeds", code == "ok", (code, response.get("Error")))
    check("transact get sees the writes", got["transact get Y, A2, P, D, Z"][0] == "ok" and [
        r.get("Item", {}).get("v") for r in got["transact get Y, A2, P, D, Z"][1]["Responses"]]
        == [None, S("first"), S("put"), None, S("batch")], got["transact get Y, A2, P, D, Z"])

    print("5. DynamoDB's answers, byte for byte (the transaction on X, A holds A)")
    started = time.monotonic()
    update = raw(front, "UpdateItem", {"TableName": TABLE, "Key": key("A"), "UpdateExpression": "SET v = :x",
                                       "ExpressionAttributeValues": {":x": S("raw")}})
    transaction = raw(front, "TransactWriteItems", {"TransactItems": [
        {"Update": {"TableName": TABLE, "Key": key("B"), "UpdateExpression": "SET v = :x",
                    "ExpressionAttributeValues": {":x": S("raw")}}},
        {"Delete": {"TableName": TABLE, "Key": key("A")}}]})
    transact_get = raw(front, "TransactGetItems", {"TransactItems": [
        {"Get": {"TableName": TABLE, "Key": key("Y")}}, {"Get": {"TableName": TABLE, "Key": key("A")}}]})
    within("window 5", started)
    expected_conflicts += 3
    for name, (status, headers, body), expected in (("UpdateItem", update, CONFLICT_BODY),
                                                    ("TransactWriteItems", transaction, CANCELLED_BODY),
                                                    ("TransactGetItems", transact_get, CANCELLED_BODY)):
        check(f"{name}: 400 and the exact body", status == 400 and body == expected, (status, body))
        check(f"{name}: Content-Type, x-amzn-RequestId, x-amz-crc32",
              headers.get("Content-Type") == "application/x-amz-json-1.0"
              and len(headers.get("x-amzn-RequestId") or "") == 52 and headers.get("x-amz-crc32"), dict(headers))
    check("B was not changed by the cancelled transaction",
          direct.get_item(TableName=TABLE, Key=key("B"))["Item"]["v"] == S("update"))

    counted = stats(front)
    check(f"stats count {expected_conflicts} conflicts", counted["conflicts"] == expected_conflicts, counted)
    check("stats count the requests", counted["requests"] >= 40, counted)
    logged = [json.loads(line) for line in server.front.log.read_text().splitlines() if line.startswith("{")]
    conflicts = [line for line in logged if line.get("event") == "conflict"]
    check(f"the front's log has one line per conflict ({len(conflicts)})", len(conflicts) == expected_conflicts
          and all(line["items"] for line in conflicts), conflicts[-1:] if conflicts else logged)


def main() -> int:
    def out_of_time(_signum, _frame):
        raise TimeoutError(f"the self-test took more than {DEADLINE_S} s")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(DEADLINE_S)
    began = time.monotonic()
    try:
        with moto_launcher.running(serial=True, front=True, hold_ms=HOLD_MS,
                                   log=moto_launcher.LOGS / "test-dynamo-front.log") as server:
            print(f"moto on {server.moto_endpoint}, its front on {server.endpoint} (hold {HOLD_MS} ms)")
            run(server)
    except Exception as err:  # noqa: BLE001  any error is a failure, listed with the rest
        failures.append(f"{type(err).__name__}: {err}")
        print(f"  FAIL  {type(err).__name__}: {err}")
    finally:
        signal.alarm(0)
    print(f"{passed} checks passed, {len(failures)} failed, in {time.monotonic() - began:.1f} s")
    for failure in failures:
        print(f"  - {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
