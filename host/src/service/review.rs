//! The analysts' loop: `GET /v1/reviews` lists the latest review decisions of the decision log
//! (newest first, with amount, score, rules and the reasons' feature values), and
//! `POST /v1/labels` takes an analyst's verdict on a transaction and publishes it on the labels
//! topic, `{"transaction_id": "...", "fraud": true, "reported_at": <Unix seconds>}`: the message
//! the continuous exporter (`tollgate exporter run --labels`) folds into the next snapshot, and
//! the next training set. Both need the admin token.

use super::{AppState, authorize, body, json_answer, problem};
use crate::decision_log::{DecisionRecord, KafkaTopic};
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Most items one `GET /v1/reviews` returns.
const MAX_LIMIT: usize = 1_000;
/// Largest label body.
const MAX_LABEL_BODY: usize = 4_096;
/// Longest transaction id a label may name.
const MAX_ID_LEN: usize = 128;

/// The verdicts given through this service since it started, by transaction id (the labels
/// topic is the record; this only marks the queue's rows as done).
#[derive(Default)]
pub(crate) struct Verdicts(Mutex<HashMap<String, bool>>);

impl Verdicts {
    fn get(&self, transaction_id: &str) -> Option<bool> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(transaction_id).copied()
    }

    fn set(&self, transaction_id: &str, fraud: bool) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(transaction_id.to_string(), fraud);
    }
}

/// `?limit=N` of `GET /v1/reviews`.
#[derive(Deserialize)]
pub(crate) struct ReviewQuery {
    limit: Option<usize>,
}

/// One row of the review queue: the logged decision and the verdict given here, if any.
#[derive(Serialize)]
struct ReviewItem<'a> {
    #[serde(flatten)]
    decision: &'a DecisionRecord,
    /// `fraud`, `genuine`, or null while undecided.
    verdict: Option<&'static str>,
}

/// `GET /v1/reviews?limit=N` (default 50).
pub(crate) async fn reviews(
    State(state): State<Arc<AppState>>,
    headers: axum::http::HeaderMap,
    Query(query): Query<ReviewQuery>,
) -> Response {
    if let Err(r) = authorize(&state, &headers) {
        return *r;
    }
    let Some(log) = &state.log else {
        return problem(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "no_decision_log",
            "reviews: the service keeps no decision log (--decision-log DIR)",
        );
    };
    let rows = log.reviews(query.limit.unwrap_or(50).min(MAX_LIMIT));
    let items: Vec<ReviewItem<'_>> = rows
        .iter()
        .map(|decision| ReviewItem {
            decision,
            verdict: decision
                .transaction_id
                .as_deref()
                .and_then(|t| state.verdicts.get(t))
                .map(|fraud| if fraud { "fraud" } else { "genuine" }),
        })
        .collect();
    json_answer(StatusCode::OK, json!({ "ok": true, "reviews": items }))
}

/// The body of `POST /v1/labels`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Verdict {
    transaction_id: String,
    fraud: bool,
    /// When the verdict was reached, Unix seconds (default: now). A replayed or simulated stream
    /// passes its own clock.
    reported_at: Option<i64>,
}

/// The message published on the labels topic.
#[derive(Serialize)]
struct LabelMessage<'a> {
    transaction_id: &'a str,
    fraud: bool,
    reported_at: i64,
}

/// `POST /v1/labels`: publishes a verdict and answers once the broker has it.
pub(crate) async fn label(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let (headers, bytes) = match body(&state, request, MAX_LABEL_BODY, Some(state.config.body_timeout)).await
    {
        Ok(b) => b,
        Err(r) => return *r,
    };
    if let Err(r) = authorize(&state, &headers) {
        return *r;
    }
    let verdict: Verdict = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => return problem(&state, StatusCode::BAD_REQUEST, "bad_request", format!("label: {e}")),
    };
    if verdict.transaction_id.is_empty() || verdict.transaction_id.len() > MAX_ID_LEN {
        return problem(
            &state,
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("label: transaction_id must be 1 to {MAX_ID_LEN} bytes"),
        );
    }
    let Some(topic) = &state.labels else {
        return problem(
            &state,
            StatusCode::SERVICE_UNAVAILABLE,
            "no_labels_topic",
            "label: the service has no labels topic (--labels-topic, --kafka-brokers)",
        );
    };
    let reported_at = verdict.reported_at.unwrap_or_else(|| crate::decision_log::now_us() / 1_000_000);
    let message = LabelMessage { transaction_id: &verdict.transaction_id, fraud: verdict.fraud, reported_at };
    match topic.publish(&verdict.transaction_id, &message).await {
        Ok((partition, offset)) => {
            state.verdicts.set(&verdict.transaction_id, verdict.fraud);
            state.metrics.labels.inc();
            json_answer(
                StatusCode::OK,
                json!({ "ok": true, "topic": topic.name(), "partition": partition, "offset": offset }),
            )
        }
        Err(e) => problem(&state, StatusCode::BAD_GATEWAY, "label_not_published", format!("label: {e}")),
    }
}

/// The producer of the labels topic.
pub(crate) struct LabelsTopic {
    name: String,
    #[cfg(feature = "kafka")]
    producer: rdkafka::producer::FutureProducer,
}

impl LabelsTopic {
    /// A producer for `topic` (librdkafka connects in the background).
    pub(crate) fn open(topic: &KafkaTopic) -> Result<LabelsTopic, String> {
        #[cfg(feature = "kafka")]
        {
            let producer = rdkafka::ClientConfig::new()
                .set("bootstrap.servers", &topic.brokers)
                .set("enable.idempotence", "true")
                .create()
                .map_err(|e| format!("labels topic {}: {e}", topic.topic))?;
            Ok(LabelsTopic { name: topic.topic.clone(), producer })
        }
        #[cfg(not(feature = "kafka"))]
        Err(format!(
            "labels topic {}: this build has no Kafka support (the host's `kafka` feature)",
            topic.topic
        ))
    }

    fn name(&self) -> &str {
        &self.name
    }

    /// Publishes `message` as JSON under `key`; answers the partition and offset it got.
    #[cfg_attr(not(feature = "kafka"), allow(unused_variables))]
    async fn publish(&self, key: &str, message: &impl Serialize) -> Result<(i32, i64), String> {
        let payload = serde_json::to_vec(message).map_err(|e| e.to_string())?;
        #[cfg(feature = "kafka")]
        {
            let record = rdkafka::producer::FutureRecord::to(&self.name).key(key).payload(&payload);
            let delivered = self
                .producer
                .send(record, std::time::Duration::from_secs(5))
                .await
                .map_err(|(e, _)| format!("not delivered to {}: {e}", self.name))?;
            Ok((delivered.partition, delivered.offset))
        }
        #[cfg(not(feature = "kafka"))]
        Err(format!("not delivered to {}: no Kafka support in this build", self.name))
    }
}
