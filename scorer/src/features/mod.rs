//! Feature definitions and their arithmetic: the one code path that builds training sets in the
//! exporter and scores at the edge.
//!
//! A [`FeatureSchema`] is data: entity kinds (customer, terminal, ...) and features over them
//! (transaction-local flags, windowed counts, mean amounts and fraud risks). From it follows each
//! entity's row layout (which windowed aggregates a snapshot stores). [`EntityWindows`] keeps the
//! exact windowed aggregates of one entity as transactions stream by; [`FeatureSchema::compute`]
//! turns aggregates plus the current transaction into the feature vector.

mod schema;
mod window;

pub use schema::{
    Aggregate, Aggregates, EntityDef, EntityLayout, FeatureDef, FeatureKind, FeatureSchema, MAX_ENTITIES,
    MAX_SLOTS, SCHEMA_NAMES, SchemaError, Slot, TxFacts, Window,
};
pub use window::{EntityWindows, FixedAmount, WindowTotals};
