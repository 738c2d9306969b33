//! The continuous exporter: Kafka in, incremental windowed state, signed snapshots out, exactly
//! once.
//!
//! # Brief overview
//! * [`Transaction`] and [`Label`]: the two topics' messages. Transactions are score requests,
//!   read by the scorer's own reader; labels are `{"transaction_id", "fraud", "reported_at"}`.
//! * [`State`]: every entity's `scorer::features::EntityWindows` (the batch exporter's code), the
//!   transactions a late label can still reach, and the counts of rejected messages.
//! * [`run`](run::run): the loop. Partitions are assigned by hand at the checkpoint's offsets and
//!   merged by event time; the watermark (the least head over partitions, idle ones excluded)
//!   triggers a snapshot at every multiple of the interval, built by
//!   `exporter::snapshot::build_from_aggregates` and handed to a [`Sink`](run::Sink).
//! * [`checkpoint`]: state and offsets in one versioned file, replaced atomically.
//! * [`replay`](replay::replay): writes a transaction file to the topics (tests, demos).
//! * Scale-out: [`run_instance`](run::run_instance) runs one member of a consumer group (the
//!   partitions Kafka assigns it of a customer-keyed and a terminal-keyed transaction topic, every
//!   label), with one state, checkpoint and [`Shard`](shard::Shard) per partition (a
//!   [`Lane`](shard::Lane)) that follows the partition when the group rebalances;
//!   [`assemble`](assemble::assemble) merges every lane's shard of an as-of and signs one snapshot.
//!
//! ```
//! use pipeline::{State, Transaction};
//! use scorer::features::FeatureSchema;
//! let schema = FeatureSchema::handbook();
//! let mut state = State::new(schema.clone());
//! let tx = Transaction::decode(br#"{"transaction_id": 1, "time": 1522540800, "customer_id": 7, "terminal_id": 9, "amount": 12.5}"#, &schema).unwrap();
//! state.fold_transaction(&tx).unwrap();
//! let tables = state.aggregates_as_of(scorer::Timestamp(1522544400), &scorer::snapshot::IdHashKey([0; 16]));
//! assert_eq!(tables[0].len(), 1);
//! ```

#![warn(missing_docs)]

pub mod assemble;
pub mod checkpoint;
mod framed;
mod ids;
mod lanes;
pub mod message;
pub mod replay;
pub mod run;
pub mod shard;
pub mod state;

pub use message::{Label, LabelEvent, Reason, Rejection, Transaction};
pub use state::{Counts, KindSet, State, Status};
