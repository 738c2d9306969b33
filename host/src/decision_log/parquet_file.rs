//! The Parquet side of the decision log: the Arrow schema of its files, writing a closed
//! segment's rows as one file, and reading files back (for tests, audits and `read_dir`).

use super::DecisionLogError;
use super::record::{DecisionRecord, Reason, ShadowDecision, parse_decision};
use arrow_array::builder::OffsetBufferBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{
    Array, ArrayRef, Float64Array, Int32Array, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Rows per Arrow batch handed to the writer (bounds the memory of one roll).
const BATCH_ROWS: usize = 16_384;

fn reason_fields() -> Fields {
    Fields::from(vec![
        Field::new("feature", DataType::Utf8, false),
        Field::new("value", DataType::Float64, true),
        Field::new("contribution", DataType::Float64, true),
    ])
}

fn rule_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Utf8, false))
}

fn reason_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(reason_fields()), false))
}

/// The columns of every decision log file, in order (`docs/host.md` describes them).
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("decided_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        Field::new("request_id", DataType::Utf8, false),
        Field::new("batch_index", DataType::Int32, true),
        Field::new("transaction_id", DataType::Utf8, true),
        // The 64-bit keyed hashes, stored as signed integers (the same bits): Delta Lake, Spark
        // and most engines have no unsigned types.
        Field::new("customer_key", DataType::Int64, true),
        Field::new("terminal_key", DataType::Int64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("score", DataType::Float64, true),
        Field::new("decision", DataType::Utf8, false),
        Field::new("rules", DataType::List(rule_item()), false),
        Field::new("reasons", DataType::List(reason_item()), false),
        Field::new("snapshot_id", DataType::Utf8, true),
        Field::new("model_id", DataType::Utf8, true),
        Field::new("latency_us", DataType::Int64, false),
        Field::new("fallback", DataType::Utf8, true),
        // The shadow snapshot's answer; all null when no shadow was loaded.
        Field::new("shadow_snapshot_id", DataType::Utf8, true),
        Field::new("shadow_model_id", DataType::Utf8, true),
        Field::new("shadow_score", DataType::Float64, true),
        Field::new("shadow_decision", DataType::Utf8, true),
        Field::new("shadow_rules", DataType::List(rule_item()), true),
        Field::new("shadow_fallback", DataType::Utf8, true),
        Field::new("shadow_error", DataType::Utf8, true),
    ]))
}

fn batch(rows: &[DecisionRecord]) -> Result<RecordBatch, arrow_schema::ArrowError> {
    let strings = |f: fn(&DecisionRecord) -> Option<&str>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let mut rule_offsets = OffsetBufferBuilder::<i32>::new(rows.len());
    let mut rules = Vec::new();
    let mut reason_offsets = OffsetBufferBuilder::<i32>::new(rows.len());
    let mut reasons: Vec<&Reason> = Vec::new();
    let mut shadow_rule_offsets = OffsetBufferBuilder::<i32>::new(rows.len());
    let mut shadow_rules = Vec::new();
    for r in rows {
        rule_offsets.push_length(r.rules.len());
        rules.extend(r.rules.iter().map(String::as_str));
        let shadow = r.shadow.as_ref().map(|s| s.rules.as_slice()).unwrap_or_default();
        shadow_rule_offsets.push_length(shadow.len());
        shadow_rules.extend(shadow.iter().map(String::as_str));
        reason_offsets.push_length(r.reasons.len());
        reasons.extend(r.reasons.iter());
    }
    let reason_values = StructArray::try_new(
        reason_fields(),
        vec![
            Arc::new(reasons.iter().map(|r| Some(r.feature.as_str())).collect::<StringArray>()),
            Arc::new(reasons.iter().map(|r| r.value).collect::<Float64Array>()),
            Arc::new(reasons.iter().map(|r| r.contribution).collect::<Float64Array>()),
        ],
        None,
    )?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.decided_at_us))
                .with_timezone("UTC"),
        ),
        strings(|r| Some(&r.request_id)),
        Arc::new(
            rows.iter()
                .map(|r| r.batch_index.map(|i| i32::try_from(i).unwrap_or(i32::MAX)))
                .collect::<Int32Array>(),
        ),
        strings(|r| r.transaction_id.as_deref()),
        Arc::new(rows.iter().map(|r| r.customer_key.map(|k| k as i64)).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.terminal_key.map(|k| k as i64)).collect::<Int64Array>()),
        Arc::new(rows.iter().map(|r| r.amount).collect::<Float64Array>()),
        Arc::new(rows.iter().map(|r| r.score).collect::<Float64Array>()),
        strings(|r| Some(r.decision.as_str())),
        Arc::new(ListArray::try_new(
            rule_item(),
            rule_offsets.finish(),
            Arc::new(rules.into_iter().map(Some).collect::<StringArray>()),
            None,
        )?),
        Arc::new(ListArray::try_new(reason_item(), reason_offsets.finish(), Arc::new(reason_values), None)?),
        strings(|r| r.snapshot_id.as_deref()),
        strings(|r| r.model_id.as_deref()),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| i64::try_from(r.latency_us).unwrap_or(i64::MAX)),
        )),
        strings(|r| r.fallback.as_deref()),
        strings(|r| r.shadow.as_ref()?.snapshot_id.as_deref()),
        strings(|r| r.shadow.as_ref()?.model_id.as_deref()),
        Arc::new(rows.iter().map(|r| r.shadow.as_ref()?.score).collect::<Float64Array>()),
        strings(|r| Some(r.shadow.as_ref()?.decision?.as_str())),
        Arc::new(ListArray::try_new(
            rule_item(),
            shadow_rule_offsets.finish(),
            Arc::new(shadow_rules.into_iter().map(Some).collect::<StringArray>()),
            Some(rows.iter().map(|r| r.shadow.is_some()).collect()),
        )?),
        strings(|r| r.shadow.as_ref()?.fallback.as_deref()),
        strings(|r| r.shadow.as_ref()?.error.as_deref()),
    ];
    RecordBatch::try_new(schema(), columns)
}

/// Writes `rows` as one Parquet file at `path` (created or truncated) and syncs it to disk.
pub(crate) fn write(path: &Path, rows: &[DecisionRecord]) -> Result<(), DecisionLogError> {
    let err = |message: String| DecisionLogError::Parquet { path: path.to_path_buf(), message };
    let io = |source| DecisionLogError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::create(path).map_err(io)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| err(e.to_string()))?))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_created_by(format!("tollgate host {}", crate::VERSION))
        .build();
    let mut writer =
        ArrowWriter::try_new(file, schema(), Some(properties)).map_err(|e| err(e.to_string()))?;
    for chunk in rows.chunks(BATCH_ROWS) {
        let batch = batch(chunk).map_err(|e| err(e.to_string()))?;
        writer.write(&batch).map_err(|e| err(e.to_string()))?;
    }
    let file = writer.into_inner().map_err(|e| err(e.to_string()))?;
    file.sync_all().map_err(io)
}

/// Reads every row of one decision log file.
pub fn read_file(path: &Path) -> Result<Vec<DecisionRecord>, DecisionLogError> {
    let err = |message: String| DecisionLogError::Parquet { path: path.to_path_buf(), message };
    let file = std::fs::File::open(path)
        .map_err(|source| DecisionLogError::Io { path: path.to_path_buf(), source })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| err(e.to_string()))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| err(e.to_string()))?;
        read_batch(&batch, &mut out).map_err(err)?;
    }
    Ok(out)
}

/// The number of rows of one decision log file, from its footer.
#[cfg(feature = "delta-lake")]
pub(crate) fn row_count(path: &Path) -> Result<i64, DecisionLogError> {
    let file = std::fs::File::open(path)
        .map_err(|source| DecisionLogError::Io { path: path.to_path_buf(), source })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| DecisionLogError::Parquet { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(builder.metadata().file_metadata().num_rows())
}

/// The decision log files in `dir` (`decisions-*.parquet`), in name order (= the order written).
pub fn files(dir: &Path) -> Result<Vec<PathBuf>, DecisionLogError> {
    let io = |source| DecisionLogError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("decisions-") && name.ends_with(".parquet") {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads every row of every decision log file in `dir`, in the order written.
pub fn read_dir(dir: &Path) -> Result<Vec<DecisionRecord>, DecisionLogError> {
    let mut out = Vec::new();
    for path in files(dir)? {
        out.extend(read_file(&path)?);
    }
    Ok(out)
}

fn column<'b>(batch: &'b RecordBatch, name: &str) -> Result<&'b ArrayRef, String> {
    batch.column_by_name(name).ok_or_else(|| format!("column {name} is missing"))
}

fn typed<'b, T: 'static>(batch: &'b RecordBatch, name: &str) -> Result<&'b T, String> {
    column(batch, name)?
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| format!("column {name} does not have the decision log's type"))
}

fn read_batch(batch: &RecordBatch, out: &mut Vec<DecisionRecord>) -> Result<(), String> {
    let text = |name: &str| typed::<StringArray>(batch, name);
    let opt = |a: &StringArray, i: usize| a.is_valid(i).then(|| a.value(i).to_string());
    let decided = column(batch, "decided_at")?
        .as_primitive_opt::<TimestampMicrosecondType>()
        .ok_or("column decided_at is not a timestamp in microseconds")?;
    let request_id = text("request_id")?;
    let batch_index = typed::<arrow_array::PrimitiveArray<Int32Type>>(batch, "batch_index")?;
    let transaction_id = text("transaction_id")?;
    let customer = typed::<arrow_array::PrimitiveArray<Int64Type>>(batch, "customer_key")?;
    let terminal = typed::<arrow_array::PrimitiveArray<Int64Type>>(batch, "terminal_key")?;
    let amount = typed::<arrow_array::PrimitiveArray<Float64Type>>(batch, "amount")?;
    let score = typed::<arrow_array::PrimitiveArray<Float64Type>>(batch, "score")?;
    let decision = text("decision")?;
    let rules = typed::<ListArray>(batch, "rules")?;
    let reasons = typed::<ListArray>(batch, "reasons")?;
    let snapshot_id = text("snapshot_id")?;
    let model_id = text("model_id")?;
    let latency = typed::<arrow_array::PrimitiveArray<Int64Type>>(batch, "latency_us")?;
    let fallback = text("fallback")?;
    let shadow_snapshot_id = text("shadow_snapshot_id")?;
    let shadow_model_id = text("shadow_model_id")?;
    let shadow_score = typed::<arrow_array::PrimitiveArray<Float64Type>>(batch, "shadow_score")?;
    let shadow_decision = text("shadow_decision")?;
    let shadow_rules = typed::<ListArray>(batch, "shadow_rules")?;
    let shadow_fallback = text("shadow_fallback")?;
    let shadow_error = text("shadow_error")?;
    let num = |a: &Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
    for i in 0..batch.num_rows() {
        let rule_values = rules.value(i);
        let rule_values = rule_values.as_string_opt::<i32>().ok_or("rules are not text")?;
        let reason_values = reasons.value(i);
        let reason_values = reason_values.as_struct_opt().ok_or("reasons are not structs")?;
        let feature = reason_values
            .column_by_name("feature")
            .and_then(|c| c.as_string_opt::<i32>())
            .ok_or("reasons.feature is not text")?;
        let value = reason_values
            .column_by_name("value")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or("reasons.value is not a float")?;
        let contribution = reason_values
            .column_by_name("contribution")
            .and_then(|c| c.as_primitive_opt::<Float64Type>())
            .ok_or("reasons.contribution is not a float")?;
        // A row has a shadow answer exactly when its shadow_rules list is present.
        let shadow = if shadow_rules.is_valid(i) {
            let rules = shadow_rules.value(i);
            let rules = rules.as_string_opt::<i32>().ok_or("shadow_rules are not text")?;
            let decision = match opt(shadow_decision, i) {
                Some(d) => {
                    Some(parse_decision(&d).ok_or_else(|| format!("row {i}: {d:?} is not a decision"))?)
                }
                None => None,
            };
            Some(ShadowDecision {
                snapshot_id: opt(shadow_snapshot_id, i),
                model_id: opt(shadow_model_id, i),
                score: num(shadow_score, i),
                decision,
                rules: (0..rules.len()).map(|j| rules.value(j).to_string()).collect(),
                fallback: opt(shadow_fallback, i),
                error: opt(shadow_error, i),
            })
        } else {
            None
        };
        out.push(DecisionRecord {
            decided_at_us: decided.value(i),
            request_id: request_id.value(i).to_string(),
            batch_index: batch_index.is_valid(i).then(|| batch_index.value(i) as u32),
            transaction_id: opt(transaction_id, i),
            customer_key: customer.is_valid(i).then(|| customer.value(i) as u64),
            terminal_key: terminal.is_valid(i).then(|| terminal.value(i) as u64),
            amount: num(amount, i),
            score: num(score, i),
            decision: parse_decision(decision.value(i))
                .ok_or_else(|| format!("row {i}: {:?} is not a decision", decision.value(i)))?,
            rules: (0..rule_values.len()).map(|j| rule_values.value(j).to_string()).collect(),
            reasons: (0..reason_values.len())
                .map(|j| Reason {
                    feature: feature.value(j).to_string(),
                    value: num(value, j),
                    contribution: num(contribution, j),
                })
                .collect(),
            snapshot_id: opt(snapshot_id, i),
            model_id: opt(model_id, i),
            latency_us: u64::try_from(latency.value(i)).unwrap_or(0),
            fallback: opt(fallback, i),
            shadow,
        });
    }
    Ok(())
}
