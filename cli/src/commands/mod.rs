//! One module per subcommand.

pub mod features;
pub mod ingest;
pub mod keys;
pub mod simulate;
pub mod snapshot;
