//! The decision log directory as a Delta Lake table (the `deltalake` crate): a `_delta_log/`
//! beside the Parquet files, so that analysts query the alerts with duckdb, polars or Spark as a
//! table, with its versions and time travel.
//!
//! The Parquet files stay the source of truth: the table is kept in step with the directory by
//! [`DeltaTable::sync`], which commits every `decisions-*.parquet` file the table does not list yet
//! (one commit for all of them). It runs when the log opens and after each roll, so a crash between
//! a file's rename and its commit is repaired by the next sync, and a file is never added twice.

use super::DecisionLogError;
use super::parquet_file;
use deltalake::kernel::transaction::CommitBuilder;
use deltalake::kernel::{Action, Add, ArrayType, DataType as DeltaType, StructField, StructType};
use deltalake::protocol::{DeltaOperation, SaveMode};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// The Delta table of one decision log directory, with the runtime its async API needs.
pub(crate) struct DeltaTable {
    dir: PathBuf,
    table: deltalake::DeltaTable,
    runtime: tokio::runtime::Runtime,
}

impl DeltaTable {
    /// Loads the table in `dir`, creating it (version 0: the schema, no files) when `dir` has no
    /// `_delta_log/` yet.
    pub(crate) fn open(dir: &Path) -> Result<DeltaTable, DecisionLogError> {
        let err = |message: String| DecisionLogError::Delta { path: dir.to_path_buf(), message };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DecisionLogError::Io { path: dir.to_path_buf(), source: e })?;
        let location = dir.to_str().ok_or_else(|| err("the path is not valid UTF-8".into()))?;
        let url = deltalake::ensure_table_uri(location).map_err(|e| err(e.to_string()))?;
        let table = runtime.block_on(async {
            let table = deltalake::DeltaTable::try_from_url(url).await?;
            if table.version().is_some() {
                return Ok(table);
            }
            table
                .create()
                .with_table_name("decisions")
                .with_comment("tollgate decision log: one row per scored transaction")
                .with_columns(columns())
                .with_save_mode(SaveMode::Ignore)
                .await
        });
        let table = table.map_err(|e| err(e.to_string()))?;
        Ok(DeltaTable { dir: dir.to_path_buf(), table, runtime })
    }

    /// Commits the directory's Parquet files that the table does not list yet; returns how many.
    pub(crate) fn sync(&mut self) -> Result<usize, DecisionLogError> {
        let err = |message: String| DecisionLogError::Delta { path: self.dir.clone(), message };
        let listed: HashSet<String> = self
            .table
            .snapshot()
            .map_err(|e| err(e.to_string()))?
            .log_data()
            .into_iter()
            .map(|file| file.path().into_owned())
            .collect();
        let mut adds = Vec::new();
        for path in parquet_file::files(&self.dir)? {
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else { continue };
            if listed.contains(name) {
                continue;
            }
            let io = |source| DecisionLogError::Io { path: path.clone(), source };
            let metadata = std::fs::metadata(&path).map_err(io)?;
            let modified = metadata.modified().map_err(io)?;
            let rows = parquet_file::row_count(&path)?;
            adds.push(Action::Add(Add {
                path: name.to_string(),
                size: i64::try_from(metadata.len()).unwrap_or(i64::MAX),
                modification_time: modified
                    .duration_since(UNIX_EPOCH)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .unwrap_or(0),
                data_change: true,
                stats: Some(format!("{{\"numRecords\":{rows}}}")),
                ..Default::default()
            }));
        }
        let added = adds.len();
        if added == 0 {
            return Ok(0);
        }
        let operation = DeltaOperation::Write { mode: SaveMode::Append, partition_by: None, predicate: None };
        let DeltaTable { table, runtime, .. } = self;
        runtime
            .block_on(async {
                let snapshot = table.snapshot()?;
                CommitBuilder::default()
                    .with_actions(adds)
                    .build(Some(snapshot), table.log_store(), operation)
                    .await?;
                table.update_state().await
            })
            .map_err(|e| err(e.to_string()))?;
        Ok(added)
    }
}

/// The Delta schema of the decision log, from its Arrow schema (one definition of the columns).
fn columns() -> Vec<StructField> {
    parquet_file::schema()
        .fields()
        .iter()
        .map(|f| StructField::new(f.name(), delta_type(f.data_type()), f.is_nullable()))
        .collect()
}

/// The Delta type of an Arrow type of the decision log.
fn delta_type(arrow: &arrow_schema::DataType) -> DeltaType {
    use arrow_schema::DataType as A;
    match arrow {
        A::Utf8 => DeltaType::STRING,
        A::Int32 => DeltaType::INTEGER,
        A::Int64 => DeltaType::LONG,
        A::Float64 => DeltaType::DOUBLE,
        A::Timestamp(_, Some(_)) => DeltaType::TIMESTAMP,
        A::Timestamp(_, None) => DeltaType::TIMESTAMP_NTZ,
        A::List(item) => {
            DeltaType::Array(Box::new(ArrayType::new(delta_type(item.data_type()), item.is_nullable())))
        }
        A::Struct(fields) => DeltaType::Struct(Box::new(
            StructType::try_new(
                fields.iter().map(|f| StructField::new(f.name(), delta_type(f.data_type()), f.is_nullable())),
            )
            // Field names of one Arrow struct are unique, which is all try_new checks.
            .unwrap_or_else(|_| unreachable!("duplicate field in the decision log schema")),
        )),
        other => unreachable!("the decision log schema has no {other} column"),
    }
}
