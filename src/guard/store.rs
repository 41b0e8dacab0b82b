//! The guard's DynamoDB I/O: the pre-check's consistent batch read, the commit's
//! transaction over the request's own two items, the single-item counter updates, and the
//! writes that give an attempt back. Each call is bounded by [`CALL_TIMEOUT`] inside the
//! request's deadline.
//!
//! Which calls can meet another request's transaction (DynamoDB's documented rules):
//! `BatchGetItem` and `GetItem` never; a `TransactWriteItems` is cancelled
//! (`TransactionConflict`) when another holds one of its items; a single-item write is
//! refused (`TransactionConflictException`) when a transaction holds its item. Only the
//! factor's and the user's items are ever in a transaction, so the shared counters (the
//! budget, a destination, a prefix, an address) never conflict.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::{Instant, timeout_at};

use super::dynamodb::{CallError, DynamoDb};
use super::error::GuardError;
use super::rules::Timeline;

/// Each DynamoDB call's own bound, inside the request's deadline: a slow table must leave
/// time for the Okta calls or for our own answer.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// An attribute value as DynamoDB's JSON writes it (`{"N": "42"}`). The guard writes only
/// strings, numbers and lists; the other types are read without being looked into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Attr {
    S(String),
    N(String),
    L(Vec<Attr>),
    M(serde_json::Value),
    #[serde(rename = "BOOL")]
    Bool(serde_json::Value),
    #[serde(rename = "NULL")]
    Null(serde_json::Value),
    B(serde_json::Value),
    #[serde(rename = "SS")]
    StringSet(serde_json::Value),
    #[serde(rename = "NS")]
    NumberSet(serde_json::Value),
    #[serde(rename = "BS")]
    BinarySet(serde_json::Value),
}

impl Attr {
    fn number<T: std::str::FromStr>(&self) -> Option<T> {
        match self {
            Self::N(n) => n.parse().ok(),
            _ => None,
        }
    }
}

type Item = HashMap<String, Attr>;

/// A request's attribute map (an `Item`, `ExpressionAttributeValues`): names written
/// here, values owned, serialised as a JSON object, with no `serde_json::Value` tree built
/// and dropped on every call.
struct Attrs(Vec<(&'static str, Attr)>);

impl Serialize for Attrs {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in &self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// The requests the guard sends, in DynamoDB's field names.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateItemInput<'a> {
    table_name: &'a str,
    key: Item,
    update_expression: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    condition_expression: Option<&'static str>,
    expression_attribute_values: Attrs,
    #[serde(skip_serializing_if = "Option::is_none")]
    return_values: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput<'a> {
    table_name: &'a str,
    item: Attrs,
    condition_expression: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    expression_attribute_values: Option<Attrs>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TransactWriteItemsInput<'a> {
    transact_items: Vec<TransactItem<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct TransactItem<'a> {
    put: PutInput<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct GetItemInput<'a> {
    table_name: &'a str,
    key: Item,
    consistent_read: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct BatchGetItemInput<'a> {
    /// One entry: the guard's table.
    request_items: HashMap<&'a str, KeysAndAttributes>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KeysAndAttributes {
    keys: Vec<Item>,
    #[serde(default)]
    consistent_read: bool,
}

/// How a transaction ended when DynamoDB answered.
pub(crate) enum Transaction {
    Done,
    /// Cancelled, with each item's reason code, in the order the items were given.
    Cancelled(Vec<Option<String>>),
}

/// How a single-item conditional write ended when DynamoDB answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Single<T> {
    Done(T),
    /// Its condition did not hold.
    ConditionFailed,
    /// A transaction holds the item (`TransactionConflictException`): try again.
    Conflict,
}

/// A timeline item to write: its key, its new content, the version it replaces (`None`:
/// it must not exist yet) and when DynamoDB's TTL may remove it (epoch seconds).
pub(crate) struct TimelineWrite<'a> {
    pub key: &'a str,
    pub timeline: &'a Timeline,
    pub replaces: Option<u64>,
    pub expires_at: u64,
}

/// The answers the guard reads.
#[derive(Deserialize)]
struct BatchGetOutput {
    #[serde(rename = "Responses", default)]
    responses: HashMap<String, Vec<Item>>,
    #[serde(rename = "UnprocessedKeys", default)]
    unprocessed: HashMap<String, KeysAndAttributes>,
}

#[derive(Deserialize)]
struct GetOutput {
    #[serde(rename = "Item")]
    item: Option<Item>,
}

#[derive(Deserialize)]
struct UpdateOutput {
    #[serde(rename = "Attributes")]
    attributes: Option<Item>,
}

/// An answer whose content the guard does not need.
#[derive(Deserialize)]
struct Empty {}

#[derive(Deserialize)]
struct CancelledBody {
    #[serde(rename = "CancellationReasons", default)]
    reasons: Vec<CancellationReason>,
}

#[derive(Deserialize)]
struct CancellationReason {
    #[serde(rename = "Code")]
    code: Option<String>,
}

/// The guard's table.
pub(crate) struct Store {
    client: DynamoDb,
    table: String,
}

impl Store {
    pub fn new(client: DynamoDb, table: String) -> Self {
        Self { client, table }
    }

    /// The item `key`'s primary key.
    fn key(key: &str) -> Item {
        HashMap::from([("pk".to_owned(), Attr::S(key.to_owned()))])
    }

    /// Runs one call by the call's deadline.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        deadline: Instant,
        operation: &str,
        request: &impl Serialize,
        what: &str,
    ) -> Result<Result<T, CallError>, GuardError> {
        let call = self.client.call(operation, request);
        timeout_at(deadline.min(Instant::now() + CALL_TIMEOUT), call)
            .await
            .map_err(|_| GuardError::Unavailable(format!("the {what} timed out")))
    }

    /// The items `keys`, read consistently in one `BatchGetItem` (which never conflicts);
    /// a missing item is absent from the map.
    pub async fn read(&self, keys: &[&str], deadline: Instant) -> Result<Read, GuardError> {
        let mut items: HashMap<String, Item> = HashMap::new();
        let keys = keys.iter().map(|k| Self::key(k)).collect();
        let mut wanted = Some(KeysAndAttributes {
            keys,
            consistent_read: true,
        });
        // DynamoDB may leave keys unprocessed (throttling): ask again for those.
        while let Some(request) = wanted.take() {
            let request = BatchGetItemInput {
                request_items: HashMap::from([(self.table.as_str(), request)]),
            };
            let mut output: BatchGetOutput = self
                .call(deadline, "BatchGetItem", &request, "read")
                .await?
                .map_err(unavailable)?;
            for item in output.responses.remove(&self.table).into_iter().flatten() {
                if let Some(Attr::S(pk)) = item.get("pk") {
                    items.insert(pk.clone(), item);
                }
            }
            wanted = output
                .unprocessed
                .remove(&self.table)
                .filter(|u| !u.keys.is_empty());
        }
        Ok(Read(items))
    }

    /// One timeline item, read consistently.
    pub async fn read_timeline(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Result<Timeline, GuardError> {
        let request = GetItemInput {
            table_name: &self.table,
            key: Self::key(key),
            consistent_read: true,
        };
        let output: GetOutput = self
            .call(deadline, "GetItem", &request, "read")
            .await?
            .map_err(unavailable)?;
        Ok(timeline(output.item.as_ref()))
    }

    /// The commit's transaction: the factor's and the user's timelines, each rewritten on
    /// the condition that its version is still the one read.
    pub async fn record(
        &self,
        timelines: [TimelineWrite<'_>; 2],
        deadline: Instant,
    ) -> Result<Transaction, GuardError> {
        let request = TransactWriteItemsInput {
            transact_items: timelines
                .iter()
                .map(|t| TransactItem { put: self.put(t) })
                .collect(),
        };
        match self
            .call::<Empty>(deadline, "TransactWriteItems", &request, "commit")
            .await?
        {
            Ok(_) => Ok(Transaction::Done),
            Err(CallError::Service { code, body, .. })
                if code == "TransactionCanceledException" =>
            {
                let cancelled: CancelledBody = serde_json::from_slice(&body).map_err(|e| {
                    GuardError::Unavailable(format!("a cancelled transaction without reasons: {e}"))
                })?;
                Ok(Transaction::Cancelled(
                    cancelled.reasons.into_iter().map(|r| r.code).collect(),
                ))
            }
            Err(err) => Err(unavailable(err)),
        }
    }

    /// One timeline rewritten on its own, on its version.
    pub async fn put_timeline(
        &self,
        write: &TimelineWrite<'_>,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let request = self.put(write);
        let answer = self.call::<Empty>(deadline, "PutItem", &request, "write");
        single(answer.await?).map(|s| s.map(drop))
    }

    /// The timeline `key` emptied, whatever it holds.
    pub async fn reset_timeline(
        &self,
        key: &str,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let request = self.update(
            key,
            "SET sends = :empty, expires_at = :exp ADD ver :one",
            vec![
                (":empty", Attr::L(Vec::new())),
                (":exp", num(expires_at)),
                (":one", num(1)),
            ],
        );
        let answer = self.call::<Empty>(deadline, "UpdateItem", &request, "write");
        single(answer.await?).map(|s| s.map(drop))
    }

    /// One more in the counter `key`, on the condition that it is below `limit`; its value
    /// after, from DynamoDB's own answer.
    pub async fn increment(
        &self,
        key: &str,
        limit: u64,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Single<u64>, GuardError> {
        let values = vec![
            (":one", num(1)),
            (":limit", num(limit)),
            (":exp", num(expires_at)),
        ];
        let request = UpdateItemInput {
            condition_expression: Some("attribute_not_exists(n) OR n < :limit"),
            return_values: Some("UPDATED_NEW"),
            ..self.update(key, "ADD n :one SET expires_at = :exp", values)
        };
        let answer = self.call::<UpdateOutput>(deadline, "UpdateItem", &request, "counter update");
        let result = single(answer.await?)?;
        Ok(result.map(|output| counter(output.attributes.as_ref())))
    }

    /// One less in the counter `key`, never below zero.
    pub async fn decrement(&self, key: &str, deadline: Instant) -> Result<Single<()>, GuardError> {
        let values = vec![(":minus", num(-1)), (":zero", num(0))];
        let request = UpdateItemInput {
            condition_expression: Some("n > :zero"),
            ..self.update(key, "ADD n :minus", values)
        };
        let answer = self.call::<Empty>(deadline, "UpdateItem", &request, "counter update");
        single(answer.await?).map(|s| s.map(drop))
    }

    /// Appends `at` to the timeline `key` (created when missing), with no condition.
    pub async fn append(
        &self,
        key: &str,
        at: u64,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let request = self.update(
            key,
            "SET sends = list_append(if_not_exists(sends, :empty), :at), expires_at = :exp",
            vec![
                (":empty", Attr::L(Vec::new())),
                (":at", Attr::L(vec![num(at)])),
                (":exp", num(expires_at)),
            ],
        );
        let answer = self.call::<Empty>(deadline, "UpdateItem", &request, "write");
        single(answer.await?).map(|s| s.map(drop))
    }

    /// An `UpdateItem` of the item `key` by `expression`, with `values`, no condition.
    fn update(
        &self,
        key: &str,
        expression: &'static str,
        values: Vec<(&'static str, Attr)>,
    ) -> UpdateItemInput<'_> {
        UpdateItemInput {
            table_name: &self.table,
            key: Self::key(key),
            update_expression: expression,
            condition_expression: None,
            expression_attribute_values: Attrs(values),
            return_values: None,
        }
    }

    /// A `Put` of a timeline's item, on the condition that it is still the version read.
    fn put(&self, write: &TimelineWrite<'_>) -> PutInput<'_> {
        let TimelineWrite {
            key,
            timeline,
            replaces,
            expires_at,
        } = write;
        let item = Attrs(vec![
            ("pk", Attr::S((*key).to_owned())),
            ("sends", Attr::L(timeline.sends.iter().map(num).collect())),
            ("next_at", num(timeline.next_at)),
            ("ver", num(timeline.version.unwrap_or_default())),
            ("expires_at", num(expires_at)),
        ]);
        let (condition_expression, expression_attribute_values) = match replaces {
            None => ("attribute_not_exists(pk)", None),
            Some(version) => ("ver = :ver", Some(Attrs(vec![(":ver", num(version))]))),
        };
        PutInput {
            table_name: &self.table,
            item,
            condition_expression,
            expression_attribute_values,
        }
    }
}

/// What a batch read found.
pub(crate) struct Read(HashMap<String, Item>);

impl Read {
    /// The timeline item `key` (empty when it does not exist).
    pub fn timeline(&self, key: &str) -> Timeline {
        timeline(self.0.get(key))
    }

    /// The counter `key` (0 when it does not exist).
    pub fn counter(&self, key: &str) -> u64 {
        counter(self.0.get(key))
    }
}

/// A single-item write's answer: a failed condition and a transaction holding the item
/// are answers; anything else (unreachable, throttled, no such table) is unavailability.
fn single<O>(result: Result<O, CallError>) -> Result<Single<O>, GuardError> {
    match result {
        Ok(output) => Ok(Single::Done(output)),
        Err(CallError::Service { code, .. }) if code == "ConditionalCheckFailedException" => {
            Ok(Single::ConditionFailed)
        }
        Err(CallError::Service { code, .. }) if code == "TransactionConflictException" => {
            Ok(Single::Conflict)
        }
        Err(err) => Err(unavailable(err)),
    }
}

impl<T> Single<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> Single<U> {
        match self {
            Self::Done(t) => Single::Done(f(t)),
            Self::ConditionFailed => Single::ConditionFailed,
            Self::Conflict => Single::Conflict,
        }
    }
}

fn unavailable(err: CallError) -> GuardError {
    GuardError::Unavailable(err.to_string())
}

fn num(n: impl std::fmt::Display) -> Attr {
    Attr::N(n.to_string())
}

fn timeline(item: Option<&Item>) -> Timeline {
    let Some(item) = item else {
        return Timeline::default();
    };
    let number = |name: &str| item.get(name).and_then(Attr::number::<u64>);
    let mut sends: Vec<u64> = match item.get("sends") {
        Some(Attr::L(list)) => list.iter().filter_map(Attr::number).collect(),
        _ => Vec::new(),
    };
    sends.sort_unstable();
    Timeline {
        sends,
        next_at: number("next_at").unwrap_or(0),
        version: Some(number("ver").unwrap_or(0)),
    }
}

fn counter(item: Option<&Item>) -> u64 {
    item.and_then(|i| i.get("n"))
        .and_then(Attr::number)
        .unwrap_or(0)
}
