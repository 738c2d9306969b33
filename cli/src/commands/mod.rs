//! One module per subcommand.

pub mod evaluate;
pub mod exporter;
pub mod exporter_metrics;
pub mod features;
pub mod import;
pub mod ingest;
pub mod keys;
pub mod kv;
pub mod push;
pub mod replay;
pub mod retrain;
pub mod serve;
pub mod simulate;
pub mod snapshot;
pub mod train;
pub mod www;
