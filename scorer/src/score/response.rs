//! Writing responses: one layout, written through the MessagePack or the JSON sink, so that both
//! formats carry the same fields in the same order (`docs/abi.md`).

use super::wire::{Format, JsonWriter, MsgPackWriter, Sink};
use super::{Field, MAX_ID_LEN, Outcome, Request, ScoreError, Scorer, write_field};
use crate::snapshot::SnapshotMeta;
use alloc::vec::Vec;

/// Runs `write` against the sink of `format` over `out`.
pub(super) fn with_sink(format: Format, out: &mut Vec<u8>, write: impl FnOnce(&mut dyn Sink)) {
    match format {
        Format::MsgPack => write(&mut MsgPackWriter(out)),
        Format::Json => write(&mut JsonWriter::new(out)),
    }
}

/// `{ok, transaction_id, score, decision, rules, reasons, attribution, known, snapshot_id, model_id}`.
pub(super) fn write_outcome(sink: &mut dyn Sink, req: &Request<'_>, outcome: &Outcome, scorer: &Scorer<'_>) {
    let snapshot = scorer.snapshot();
    let schema = snapshot.schema();
    let policy = scorer.policy();
    sink.map(10);
    sink.key("ok");
    sink.bool(true);
    sink.key("transaction_id");
    match &req.transaction_id {
        Some(id) => {
            let mut buf = [0u8; MAX_ID_LEN];
            match id.as_number() {
                Some((neg, abs)) => sink.int(neg, abs),
                None => sink.str(id.canonical(&mut buf)),
            }
        }
        None => sink.nil(),
    }
    sink.key("score");
    match outcome.score {
        Some(score) => sink.f64(score),
        None => sink.nil(),
    }
    sink.key("decision");
    sink.str(outcome.decision.as_str().as_bytes());
    sink.key("rules");
    sink.array(outcome.rules.count());
    for code in outcome.rules.iter().filter_map(|i| policy.rule_code(i)) {
        sink.str(code.as_str().as_bytes());
    }
    sink.end_array();
    sink.key("reasons");
    let reasons = outcome.reasons.as_slice();
    sink.array(reasons.len() as u32);
    for r in reasons {
        sink.map(3);
        sink.key("feature");
        let name = schema.features().get(usize::from(r.feature)).map_or("", |f| f.name.as_str());
        sink.str(name.as_bytes());
        sink.key("value");
        sink.f64(r.value);
        sink.key("contribution");
        sink.f64(r.contribution);
        sink.end_map();
    }
    sink.end_array();
    sink.key("attribution");
    sink.str(outcome.attribution.as_str().as_bytes());
    sink.key("known");
    let entities = schema.entities();
    sink.map(entities.len() as u32);
    for (def, known) in entities.iter().zip(outcome.known) {
        sink.key(&def.name);
        sink.bool(known);
    }
    sink.end_map();
    let meta = snapshot.meta();
    sink.key("snapshot_id");
    sink.str(meta.snapshot_id.as_bytes());
    sink.key("model_id");
    match &meta.model_id {
        Some(id) => sink.str(id.as_bytes()),
        None => sink.nil(),
    }
    sink.end_map();
}

/// `{ok: false, error, error_kind, field, snapshot_id}`.
pub(super) fn write_error(sink: &mut dyn Sink, e: &ScoreError, meta: Option<&SnapshotMeta>) {
    let schema = meta.map(|m| &m.schema);
    // Messages are short: a fixed buffer keeps the error path free of allocation too.
    let mut text = Text::default();
    sink.map(5);
    sink.key("ok");
    sink.bool(false);
    sink.key("error");
    let _ = e.describe_to(schema, &mut text);
    sink.str(text.as_bytes());
    sink.key("error_kind");
    sink.str(e.kind().as_bytes());
    sink.key("field");
    match e {
        ScoreError::Request(r) if r.field != Field::Request && r.field != Field::Batch => {
            let mut name = Text::default();
            let _ = write_field(&mut name, r.field, schema);
            sink.str(name.as_bytes());
        }
        _ => sink.nil(),
    }
    sink.key("snapshot_id");
    match meta {
        Some(m) => sink.str(m.snapshot_id.as_bytes()),
        None => sink.nil(),
    }
    sink.end_map();
}

/// A fixed buffer for short texts; what does not fit is cut at a character boundary.
struct Text {
    buf: [u8; 256],
    len: usize,
}

impl Default for Text {
    fn default() -> Text {
        Text { buf: [0; 256], len: 0 }
    }
}

impl Text {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for c in s.chars() {
            let mut utf8 = [0u8; 4];
            let bytes = c.encode_utf8(&mut utf8).as_bytes();
            let Some(dst) = self.buf.get_mut(self.len..self.len + bytes.len()) else {
                return Err(core::fmt::Error);
            };
            dst.copy_from_slice(bytes);
            self.len += bytes.len();
        }
        Ok(())
    }
}
