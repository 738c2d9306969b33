//! Reading a [`Request`] off the wire: field names matched without regard to case
//! (`customer_id` = `CUSTOMER_ID`), ids canonicalised, amount and time checked; unknown fields
//! skipped. The first problem found is the error.

use super::wire::{Format, JsonReader, KEY_BUF, MsgPackReader, Reader, Scalar, unescape};
use super::{Field, Id, MAX_TIME, MIN_TIME, Problem, Request, RequestError};
use crate::Timestamp;
use crate::features::FeatureSchema;
use alloc::vec::Vec;

/// Largest integer a float carries exactly: float ids beyond it have lost digits.
const EXACT_FLOAT_INT: f64 = 9_007_199_254_740_992.0;

/// Decodes one request, sniffing its format.
pub(super) fn decode<'i>(input: &'i [u8], schema: &FeatureSchema) -> Result<Request<'i>, RequestError> {
    decode_as(input, Format::sniff(input), schema)
}

/// Decodes one request in a known format.
pub(super) fn decode_as<'i>(
    input: &'i [u8],
    format: Format,
    schema: &FeatureSchema,
) -> Result<Request<'i>, RequestError> {
    match format {
        Format::MsgPack => read(&mut MsgPackReader::new(input), schema, format, Ends::Input),
        Format::Json => match JsonReader::new(input) {
            Ok(mut r) => read(&mut r, schema, format, Ends::Input),
            Err(problem) => Err(RequestError { field: Field::Request, problem, format }),
        },
    }
}

/// The byte ranges of a batch's items; the whole batch is checked to be well formed first.
pub(super) fn split_batch(input: &[u8], format: Format) -> Result<Vec<(usize, usize)>, Problem> {
    fn walk<'a>(r: &mut impl Reader<'a>) -> Result<Vec<(usize, usize)>, Problem> {
        let mut entries = r.open_array()?;
        let mut items = Vec::new();
        while r.next_item(&mut entries)? {
            let start = r.pos();
            r.value()?;
            items.push((start, r.pos()));
        }
        r.finish()?;
        Ok(items)
    }
    match format {
        Format::MsgPack => walk(&mut MsgPackReader::new(input)),
        Format::Json => walk(&mut JsonReader::new(input)?),
    }
}

/// Which request field a key names.
fn classify(key: &[u8], schema: &FeatureSchema) -> Option<Field> {
    let is = |name: &[u8]| key.eq_ignore_ascii_case(name);
    if is(b"transaction_id") {
        Some(Field::TransactionId)
    } else if is(b"amount") || is(b"tx_amount") {
        Some(Field::Amount)
    } else if is(b"time") || is(b"tx_datetime") {
        Some(Field::Time)
    } else {
        schema.entities().iter().position(|e| is(e.name.as_bytes())).map(|e| Field::Entity(e as u8))
    }
}

fn bit(field: Field) -> u32 {
    match field {
        Field::Request | Field::Batch => 0,
        Field::TransactionId => 1,
        Field::Amount => 2,
        Field::Time => 4,
        Field::Entity(e) => 8 << e,
    }
}

/// Where a request read by [`read`] ends.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Ends {
    /// With the input: only (JSON) whitespace may follow.
    Input,
    /// As an item of a batch: the reader is left after it, at whatever follows.
    Item,
}

/// Reads one request, a map, at the reader's position.
// `dyn`: one copy of the decoder for both formats keeps scorer.wasm smaller, for a few
// nanoseconds of indirect calls per request.
pub(super) fn read<'a>(
    r: &mut dyn Reader<'a>,
    schema: &FeatureSchema,
    format: Format,
    ends: Ends,
) -> Result<Request<'a>, RequestError> {
    let fail = |field, problem| RequestError { field, problem, format };
    let whole = |problem| fail(Field::Request, problem);
    let mut entries = r.open_map().map_err(whole)?;
    let mut req = Request::new(Timestamp(0), 0.0);
    let mut seen = 0u32;
    let mut key = [0u8; KEY_BUF];
    while let Some(len) = r.next_key(&mut entries, &mut key).map_err(whole)? {
        let field = len.and_then(|len| classify(&key[..len], schema));
        let value = r.value().map_err(whole)?;
        let Some(field) = field else { continue };
        if seen & bit(field) != 0 {
            return Err(fail(field, Problem::Repeated));
        }
        seen |= bit(field);
        let checked = match field {
            Field::TransactionId => id(value).map(|id| req.transaction_id = Some(id)),
            Field::Entity(e) => id(value).map(|id| req.entity_ids[usize::from(e)] = Some(id)),
            Field::Amount => amount(value).map(|a| req.amount = a),
            Field::Time => time(value).map(|t| req.time = t),
            Field::Request | Field::Batch => Ok(()),
        };
        checked.map_err(|problem| fail(field, problem))?;
    }
    if ends == Ends::Input {
        r.finish().map_err(whole)?;
    }
    for (e, _) in schema.entities().iter().enumerate() {
        if seen & bit(Field::Entity(e as u8)) == 0 {
            return Err(fail(Field::Entity(e as u8), Problem::Missing));
        }
    }
    if seen & bit(Field::Amount) == 0 {
        return Err(fail(Field::Amount, Problem::Missing));
    }
    if seen & bit(Field::Time) == 0 {
        return Err(fail(Field::Time, Problem::Missing));
    }
    Ok(req)
}

/// A string's text (JSON escapes decoded) into `buf`: its length, or `None` when it does not fit.
fn text_into(raw: &[u8], escaped: bool, buf: &mut [u8]) -> Option<usize> {
    if escaped {
        unescape(raw, buf)
    } else {
        buf.get_mut(..raw.len())?.copy_from_slice(raw);
        Some(raw.len())
    }
}

/// A float that is a whole number a float carries exactly, as sign and magnitude.
fn whole(v: f64) -> Option<(bool, u64)> {
    (v.is_finite() && v == libm::trunc(v) && libm::fabs(v) <= EXACT_FLOAT_INT)
        .then(|| (v.is_sign_negative(), libm::fabs(v) as u64))
}

fn id(value: Scalar<'_>) -> Result<Id<'_>, Problem> {
    match value {
        Scalar::Str { raw, escaped: true } => Id::escaped(raw).ok_or(Problem::BadIdText),
        Scalar::Str { raw, escaped: false } => {
            let text = core::str::from_utf8(raw).map_err(|_| Problem::BadIdText)?;
            Id::text(text).ok_or(Problem::BadIdText)
        }
        Scalar::Int { neg, abs } => Ok(Id::number(neg, abs)),
        Scalar::Float(v) if v.is_finite() && v == libm::trunc(v) => {
            let (neg, abs) = whole(v).ok_or(Problem::IdTooLarge)?;
            Ok(Id::number(neg, abs))
        }
        _ => Err(Problem::NotAnId),
    }
}

fn amount(value: Scalar<'_>) -> Result<f64, Problem> {
    let v = match value {
        Scalar::Int { neg: false, abs } => abs as f64,
        Scalar::Int { neg: true, abs: 0 } => 0.0,
        Scalar::Float(v) => v,
        _ => return Err(Problem::NotAnAmount),
    };
    if v.is_finite() && v >= 0.0 { Ok(v + 0.0) } else { Err(Problem::NotAnAmount) }
}

fn time(value: Scalar<'_>) -> Result<Timestamp, Problem> {
    let seconds = match value {
        Scalar::Int { neg, abs } => {
            let v = i64::try_from(abs).map_err(|_| Problem::TimeOutOfRange)?;
            if neg { -v } else { v }
        }
        Scalar::Float(v) if v.is_finite() && v == libm::trunc(v) => {
            if !(MIN_TIME.0 as f64..=MAX_TIME.0 as f64).contains(&v) {
                return Err(Problem::TimeOutOfRange);
            }
            v as i64
        }
        Scalar::Str { raw, escaped } => {
            let mut buf = [0u8; 32];
            let len = text_into(raw, escaped, &mut buf).ok_or(Problem::NotATime)?;
            let text = core::str::from_utf8(&buf[..len]).map_err(|_| Problem::NotATime)?;
            return match text.parse::<Timestamp>() {
                Ok(t) => Ok(t),
                Err(crate::TimestampError::OutOfRange) => Err(Problem::TimeOutOfRange),
                Err(crate::TimestampError::BadFormat) => Err(Problem::NotATime),
            };
        }
        _ => return Err(Problem::NotATime),
    };
    let t = Timestamp(seconds);
    if (MIN_TIME..=MAX_TIME).contains(&t) { Ok(t) } else { Err(Problem::TimeOutOfRange) }
}
