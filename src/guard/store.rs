//! The guard's DynamoDB I/O: the pre-check's consistent read, the commit's transaction,
//! the release that puts an attempt back, and how items are written and read. Each call
//! is bounded by [`CALL_TIMEOUT`] inside the request's deadline.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::transact_get_items::TransactGetItemsOutput;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Get, Put, TransactGetItem, TransactWriteItem, Update,
};
use tokio::time::{Instant, timeout_at};

use super::error::GuardError;
use super::keys::ItemKeys;
use super::rules::{Counter, Snapshot, Timeline};

/// Each DynamoDB call's own bound, inside the request's deadline: a slow table must leave
/// time for the Okta calls or for our own answer.
const CALL_TIMEOUT: Duration = Duration::from_millis(1_000);

/// How a transaction ended when DynamoDB answered.
pub(crate) enum Transaction {
    Done,
    /// Cancelled, with each item's reason code, in the order the items were given.
    Cancelled(Vec<Option<String>>),
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

    fn call_deadline(deadline: Instant) -> Instant {
        deadline.min(Instant::now() + CALL_TIMEOUT)
    }

    /// The pre-check's read: every item of `keys`, in one consistent `TransactGetItems`.
    pub async fn read(&self, keys: &ItemKeys, deadline: Instant) -> Result<Snapshot, GuardError> {
        let mut wanted = vec![keys.factor.clone(), keys.user.clone(), keys.budget.clone()];
        wanted.extend(keys.destination.iter().cloned());
        wanted.extend(keys.prefix.iter().cloned());
        let output = self.transact_get(&wanted, deadline).await?;
        let items: Vec<Option<&HashMap<String, AttributeValue>>> =
            output.responses().iter().map(|r| r.item()).collect();
        let item = |i: usize| items.get(i).copied().flatten();
        Ok(Snapshot {
            factor: timeline(item(0)),
            user: timeline(item(1)),
            budget: counter(item(2)),
            destination: keys.destination.as_ref().map(|_| counter(item(3))),
            prefix: keys
                .prefix
                .as_ref()
                .map(|_| counter(item(3 + usize::from(keys.destination.is_some())))),
        })
    }

    /// The current values of the counters `keys`, in order (one consistent read).
    pub async fn read_counters(
        &self,
        keys: &[String],
        deadline: Instant,
    ) -> Result<Vec<u64>, GuardError> {
        let output = self.transact_get(keys, deadline).await?;
        Ok(output
            .responses()
            .iter()
            .map(|r| counter(r.item()))
            .collect())
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
            .key("pk", AttributeValue::S(key.to_owned()))
            .consistent_read(true)
            .send();
        match timeout_at(Self::call_deadline(deadline), call).await {
            Ok(Ok(output)) => Ok(timeline(output.item())),
            Ok(Err(err)) => Err(unavailable(&err)),
            Err(_) => Err(GuardError::Unavailable("the read timed out".into())),
        }
    }

    /// The commit: both timelines rewritten on their versions, and each counter
    /// incremented on the condition that it is below its limit, in one transaction.
    pub async fn record(
        &self,
        timelines: [TimelineWrite<'_>; 2],
        counters: &[Counter],
        counter_expires: u64,
        deadline: Instant,
    ) -> Result<Transaction, GuardError> {
        let items = self.items(&timelines, counters, |counter| {
            self.update_counter(
                &counter.key,
                "ADD n :one SET expires_at = :exp",
                "attribute_not_exists(n) OR n < :limit",
                [
                    (":one", num(1)),
                    (":limit", num(counter.limit)),
                    (":exp", num(counter_expires)),
                ],
            )
        });
        self.transact_write(items, deadline)
            .await
            .ok_or_else(|| GuardError::Unavailable("the commit timed out".into()))?
    }

    /// Puts each timeline back as it was (if it is still the version the commit wrote) and
    /// takes one off each counter, in one transaction. Whether it was done.
    pub async fn restore(
        &self,
        timelines: [TimelineWrite<'_>; 2],
        counters: &[Counter],
        deadline: Instant,
    ) -> bool {
        let items = self.items(&timelines, counters, |counter| {
            self.update_counter(
                &counter.key,
                "ADD n :minus",
                "n > :zero",
                [(":minus", num(-1)), (":zero", num(0))],
            )
        });
        matches!(
            self.transact_write(items, deadline).await,
            Some(Ok(Transaction::Done))
        )
    }

    /// A transaction's items: the timelines' puts, then each counter's update, in the
    /// order a cancellation's reasons come back in.
    fn items(
        &self,
        timelines: &[TimelineWrite<'_>],
        counters: &[Counter],
        update: impl Fn(&Counter) -> TransactWriteItem,
    ) -> Vec<TransactWriteItem> {
        let puts = timelines.iter().map(|t| self.put_timeline(t));
        puts.chain(counters.iter().map(update)).collect()
    }

    /// One `TransactWriteItems` of `items`, by the call's deadline; `None` when it is past.
    async fn transact_write(
        &self,
        items: Vec<TransactWriteItem>,
        deadline: Instant,
    ) -> Option<Result<Transaction, GuardError>> {
        let call = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send();
        let result = timeout_at(Self::call_deadline(deadline), call).await.ok()?;
        Some(match result {
            Ok(_) => Ok(Transaction::Done),
            Err(err) => match cancellation_reasons(&err) {
                Some(reasons) => Ok(Transaction::Cancelled(reasons)),
                None => Err(unavailable(&err)),
            },
        })
    }

    /// One `TransactGetItems` of `keys`: a strongly consistent read of all of them at once.
    async fn transact_get(
        &self,
        keys: &[String],
        deadline: Instant,
    ) -> Result<TransactGetItemsOutput, GuardError> {
        let gets = keys
            .iter()
            .map(|key| {
                TransactGetItem::builder()
                    .get(
                        Get::builder()
                            .table_name(&self.table)
                            .key("pk", AttributeValue::S(key.clone()))
                            .build()
                            .expect("table and key are set"),
                    )
                    .build()
            })
            .collect();
        let call = self
            .client
            .transact_get_items()
            .set_transact_items(Some(gets))
            .send();
        match timeout_at(Self::call_deadline(deadline), call).await {
            Ok(Ok(output)) => Ok(output),
            Ok(Err(err)) => Err(unavailable(&err)),
            Err(_) => Err(GuardError::Unavailable("the read timed out".into())),
        }
    }

    /// An update of the counter item `key`, on `condition`.
    fn update_counter<const N: usize>(
        &self,
        key: &str,
        update: &str,
        condition: &str,
        values: [(&str, AttributeValue); N],
    ) -> TransactWriteItem {
        let update = values.into_iter().fold(
            Update::builder()
                .table_name(&self.table)
                .key("pk", AttributeValue::S(key.to_owned()))
                .update_expression(update)
                .condition_expression(condition),
            |update, (name, value)| update.expression_attribute_values(name, value),
        );
        TransactWriteItem::builder()
            .update(update.build().expect("table, key and expression are set"))
            .build()
    }

    fn put_timeline(&self, write: &TimelineWrite<'_>) -> TransactWriteItem {
        let TimelineWrite {
            key,
            timeline,
            replaces,
            expires_at,
        } = write;
        let mut put = Put::builder()
            .table_name(&self.table)
            .item("pk", AttributeValue::S((*key).to_owned()))
            .item(
                "sends",
                AttributeValue::L(timeline.sends.iter().map(num).collect()),
            )
            .item("next_at", num(timeline.next_at))
            .item("ver", num(timeline.version.unwrap_or_default()))
            .item("expires_at", num(expires_at));
        put = match replaces {
            None => put.condition_expression("attribute_not_exists(pk)"),
            Some(version) => put
                .condition_expression("ver = :ver")
                .expression_attribute_values(":ver", num(version)),
        };
        TransactWriteItem::builder()
            .put(put.build().expect("table and item are set"))
            .build()
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

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    err: &SdkError<E, R>,
) -> GuardError {
    GuardError::Unavailable(DisplayErrorContext(err).to_string())
}

fn num(n: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn timeline(item: Option<&HashMap<String, AttributeValue>>) -> Timeline {
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

fn counter(item: Option<&HashMap<String, AttributeValue>>) -> u64 {
    item.and_then(|i| i.get("n"))
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}
