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
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, ReturnValue, TransactWriteItem,
};
use tokio::time::{Instant, timeout_at};

use super::error::GuardError;
use super::rules::Timeline;

/// Each DynamoDB call's own bound, inside the request's deadline: a slow table must leave
/// time for the Okta calls or for our own answer.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

type Item = HashMap<String, AttributeValue>;

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

/// The guard's table.
pub(crate) struct Store {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

impl Store {
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        Self { client, table }
    }

    fn key(key: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), AttributeValue::S(key.to_owned()))])
    }

    /// Runs one call by the call's deadline.
    async fn call<O, E, R>(
        deadline: Instant,
        call: impl Future<Output = Result<O, SdkError<E, R>>>,
        what: &str,
    ) -> Result<Result<O, SdkError<E, R>>, GuardError> {
        timeout_at(deadline.min(Instant::now() + CALL_TIMEOUT), call)
            .await
            .map_err(|_| GuardError::Unavailable(format!("the {what} timed out")))
    }

    /// The items `keys`, read consistently in one `BatchGetItem` (which never conflicts);
    /// a missing item is absent from the map.
    pub async fn read(&self, keys: &[&str], deadline: Instant) -> Result<Read, GuardError> {
        let mut items: HashMap<String, Item> = HashMap::new();
        let mut wanted = Some(
            KeysAndAttributes::builder()
                .set_keys(Some(keys.iter().map(|k| Self::key(k)).collect()))
                .consistent_read(true)
                .build()
                .expect("keys are set"),
        );
        // DynamoDB may leave keys unprocessed (throttling): ask again for those.
        while let Some(request) = wanted.take() {
            let call = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send();
            let output = Self::call(deadline, call, "read")
                .await?
                .map_err(|e| unavailable(&e))?;
            for item in output
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                if let Some(AttributeValue::S(pk)) = item.get("pk") {
                    items.insert(pk.clone(), item.clone());
                }
            }
            wanted = output
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .filter(|k| !k.keys().is_empty())
                .cloned();
        }
        Ok(Read(items))
    }

    /// One timeline item, read consistently.
    pub async fn read_timeline(
        &self,
        key: &str,
        deadline: Instant,
    ) -> Result<Timeline, GuardError> {
        let call = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .consistent_read(true)
            .send();
        let output = Self::call(deadline, call, "read")
            .await?
            .map_err(|e| unavailable(&e))?;
        Ok(timeline(output.item()))
    }

    /// The commit's transaction: the factor's and the user's timelines, each rewritten on
    /// the condition that its version is still the one read.
    pub async fn record(
        &self,
        timelines: [TimelineWrite<'_>; 2],
        deadline: Instant,
    ) -> Result<Transaction, GuardError> {
        let items = timelines
            .iter()
            .map(|t| {
                let (item, condition, values) = timeline_item(t);
                let put = Put::builder()
                    .table_name(&self.table)
                    .set_item(Some(item))
                    .condition_expression(condition)
                    .set_expression_attribute_values(values)
                    .build()
                    .expect("table and item are set");
                TransactWriteItem::builder().put(put).build()
            })
            .collect();
        let call = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send();
        match Self::call(deadline, call, "commit").await? {
            Ok(_) => Ok(Transaction::Done),
            Err(err) => match cancellation_reasons(&err) {
                Some(reasons) => Ok(Transaction::Cancelled(reasons)),
                None => Err(unavailable(&err)),
            },
        }
    }

    /// One timeline rewritten on its own, on its version.
    pub async fn put_timeline(
        &self,
        write: &TimelineWrite<'_>,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let (item, condition, values) = timeline_item(write);
        let call = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition)
            .set_expression_attribute_values(values)
            .send();
        single(Self::call(deadline, call, "write").await?).map(|s| s.map(drop))
    }

    /// The timeline `key` emptied, whatever it holds.
    pub async fn reset_timeline(
        &self,
        key: &str,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression("SET sends = :empty, expires_at = :exp ADD ver :one")
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":exp", num(expires_at))
            .expression_attribute_values(":one", num(1));
        single(Self::call(deadline, update.send(), "write").await?).map(|s| s.map(drop))
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
        let update = self
            .update_counter(key, "ADD n :one SET expires_at = :exp")
            .condition_expression("attribute_not_exists(n) OR n < :limit")
            .expression_attribute_values(":one", num(1))
            .expression_attribute_values(":limit", num(limit))
            .expression_attribute_values(":exp", num(expires_at))
            .return_values(ReturnValue::UpdatedNew);
        let result = single(Self::call(deadline, update.send(), "counter update").await?)?;
        Ok(result.map(|output| counter(output.attributes())))
    }

    /// One less in the counter `key`, never below zero.
    pub async fn decrement(&self, key: &str, deadline: Instant) -> Result<Single<()>, GuardError> {
        let update = self
            .update_counter(key, "ADD n :minus")
            .condition_expression("n > :zero")
            .expression_attribute_values(":minus", num(-1))
            .expression_attribute_values(":zero", num(0));
        single(Self::call(deadline, update.send(), "counter update").await?).map(|s| s.map(drop))
    }

    /// An `UpdateItem` of the counter `key` by `expression`.
    fn update_counter(&self, key: &str, expression: &str) -> UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression(expression)
    }

    /// Appends `at` to the timeline `key` (created when missing), with no condition.
    pub async fn append(
        &self,
        key: &str,
        at: u64,
        expires_at: u64,
        deadline: Instant,
    ) -> Result<Single<()>, GuardError> {
        let call = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(key)))
            .update_expression(
                "SET sends = list_append(if_not_exists(sends, :empty), :at), expires_at = :exp",
            )
            .expression_attribute_values(":empty", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":at", AttributeValue::L(vec![num(at)]))
            .expression_attribute_values(":exp", num(expires_at))
            .send();
        single(Self::call(deadline, call, "write").await?).map(|s| s.map(drop))
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

/// A timeline's item, and the condition that it is still the version read.
fn timeline_item(
    write: &TimelineWrite<'_>,
) -> (Item, &'static str, Option<HashMap<String, AttributeValue>>) {
    let TimelineWrite {
        key,
        timeline,
        replaces,
        expires_at,
    } = write;
    let item = HashMap::from([
        ("pk".to_owned(), AttributeValue::S((*key).to_owned())),
        (
            "sends".to_owned(),
            AttributeValue::L(timeline.sends.iter().map(num).collect()),
        ),
        ("next_at".to_owned(), num(timeline.next_at)),
        ("ver".to_owned(), num(timeline.version.unwrap_or_default())),
        ("expires_at".to_owned(), num(expires_at)),
    ]);
    match replaces {
        None => (item, "attribute_not_exists(pk)", None),
        Some(version) => (
            item,
            "ver = :ver",
            Some(HashMap::from([(":ver".to_owned(), num(version))])),
        ),
    }
}

fn cancellation_reasons(err: &SdkError<TransactWriteItemsError>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
        ),
        _ => None,
    }
}

/// A single-item write's answer: a failed condition and a transaction holding the item
/// are answers; anything else (unreachable, throttled, no such table) is unavailability.
fn single<O, E, R>(result: Result<O, SdkError<E, R>>) -> Result<Single<O>, GuardError>
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(output) => Ok(Single::Done(output)),
        Err(err) => match err.as_service_error().and_then(ProvideErrorMetadata::code) {
            Some("ConditionalCheckFailedException") => Ok(Single::ConditionFailed),
            Some("TransactionConflictException") => Ok(Single::Conflict),
            _ => Err(unavailable(&err)),
        },
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

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> GuardError {
    GuardError::Unavailable(DisplayErrorContext(err).to_string())
}

fn num(n: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn timeline(item: Option<&Item>) -> Timeline {
    let Some(item) = item else {
        return Timeline::default();
    };
    let number = |name: &str| {
        item.get(name)
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<u64>().ok())
    };
    let mut sends: Vec<u64> = item
        .get("sends")
        .and_then(|v| v.as_l().ok())
        .map(|list| {
            list.iter()
                .filter_map(|v| v.as_n().ok()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    sends.sort_unstable();
    Timeline {
        sends,
        next_at: number("next_at").unwrap_or(0),
        version: Some(number("ver").unwrap_or(0)),
    }
}

fn counter(item: Option<&Item>) -> u64 {
    item.and_then(|i| i.get("n"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
