//! The feature schema (entities, windows, features), the row layout it implies, its stable hash,
//! and the feature arithmetic.

use crate::Timestamp;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Most entity kinds one schema may have (customer, terminal, card, device, ...).
pub const MAX_ENTITIES: usize = 8;
/// Most aggregate slots one entity's row may have.
pub const MAX_SLOTS: usize = 16;
/// The built-in schemas' names, for [`FeatureSchema::named`].
pub const SCHEMA_NAMES: [&str; 2] = ["handbook", "handbook-ratios"];

/// A time window over an entity's past transactions: `(t - (days + delay_days), t - delay_days]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Window {
    /// Length of the window in days.
    pub days: u16,
    /// How far the window ends before the transaction, in days (the label delay for risk).
    pub delay_days: u16,
}

impl Window {
    /// A window of `days` ending at the transaction itself (which it includes).
    pub const fn last(days: u16) -> Window {
        Window { days, delay_days: 0 }
    }

    /// A window of `days` ending `delay_days` before the transaction.
    pub const fn delayed(days: u16, delay_days: u16) -> Window {
        Window { days, delay_days }
    }
}

/// A quantity summed over an entity's transactions in a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Aggregate {
    /// Number of transactions.
    Count,
    /// Sum of amounts.
    AmountSum,
    /// Number of fraudulent transactions (needs a delayed window: labels come late).
    FraudCount,
}

/// What a feature computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FeatureKind {
    /// The transaction's amount.
    Amount,
    /// 1 on Saturday or Sunday (UTC), else 0.
    DuringWeekend,
    /// 1 when the hour (UTC) is 0..=6, else 0.
    DuringNight,
    /// The entity's number of transactions in the window (the current one included when the
    /// window is not delayed).
    Count {
        /// Index of the entity kind in the schema.
        entity: u8,
        /// The window.
        window: Window,
    },
    /// The entity's mean amount in the window (the current transaction included when the window
    /// is not delayed); 0 for an empty delayed window.
    MeanAmount {
        /// Index of the entity kind in the schema.
        entity: u8,
        /// The window.
        window: Window,
    },
    /// Frauds / transactions of the entity in the window, 0 when it has none; the window must be
    /// delayed, since labels are known only later.
    Risk {
        /// Index of the entity kind in the schema.
        entity: u8,
        /// The window.
        window: Window,
    },
    /// The transaction's amount divided by the entity's mean amount in the window (the current
    /// transaction included when the window is not delayed); 0 when that mean is 0.
    AmountToMean {
        /// Index of the entity kind in the schema.
        entity: u8,
        /// The window.
        window: Window,
    },
}

impl FeatureKind {
    /// The kind's tag, entity index and window (zero for the transaction-local kinds): what the
    /// schema hash and the snapshot meta record. Tags are stable, part of the snapshot format.
    pub fn parts(&self) -> (u8, u8, Window) {
        match *self {
            FeatureKind::Amount => (0, 0, Window::last(0)),
            FeatureKind::DuringWeekend => (1, 0, Window::last(0)),
            FeatureKind::DuringNight => (2, 0, Window::last(0)),
            FeatureKind::Count { entity, window } => (3, entity, window),
            FeatureKind::MeanAmount { entity, window } => (4, entity, window),
            FeatureKind::Risk { entity, window } => (5, entity, window),
            FeatureKind::AmountToMean { entity, window } => (6, entity, window),
        }
    }

    /// The kind with these [`FeatureKind::parts`]; `None` for an unknown tag.
    pub fn from_parts(tag: u8, entity: u8, window: Window) -> Option<FeatureKind> {
        Some(match tag {
            0 => FeatureKind::Amount,
            1 => FeatureKind::DuringWeekend,
            2 => FeatureKind::DuringNight,
            3 => FeatureKind::Count { entity, window },
            4 => FeatureKind::MeanAmount { entity, window },
            5 => FeatureKind::Risk { entity, window },
            6 => FeatureKind::AmountToMean { entity, window },
            _ => return None,
        })
    }

    /// The entity window the kind reads, `None` for the transaction-local kinds.
    pub fn window(&self) -> Option<Window> {
        match *self {
            FeatureKind::Amount | FeatureKind::DuringWeekend | FeatureKind::DuringNight => None,
            FeatureKind::Count { window, .. }
            | FeatureKind::MeanAmount { window, .. }
            | FeatureKind::Risk { window, .. }
            | FeatureKind::AmountToMean { window, .. } => Some(window),
        }
    }
}

/// One named feature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureDef {
    /// Column name, e.g. `CUSTOMER_ID_NB_TX_7DAY_WINDOW`.
    pub name: String,
    /// What it is, in one line.
    pub doc: String,
    /// What it computes.
    pub kind: FeatureKind,
}

/// One stored aggregate of an entity's row: a quantity over a window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Slot {
    /// The quantity.
    pub aggregate: Aggregate,
    /// The window.
    pub window: Window,
}

/// The aggregates an entity's row holds, derived from the features that use the entity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityLayout {
    /// The distinct windows, in order of first use.
    pub windows: Vec<Window>,
    /// The slots, in row order; each slot's window is one of `windows`.
    pub slots: Vec<Slot>,
}

impl EntityLayout {
    /// The index of `slot` in the row, if the layout has it.
    pub fn slot_index(&self, slot: Slot) -> Option<usize> {
        self.slots.iter().position(|s| *s == slot)
    }
}

/// One entity kind: its name (the id column, e.g. `CUSTOMER_ID`) and its row layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntityDef {
    /// Name of the entity's id column, e.g. `CUSTOMER_ID`.
    pub name: String,
    /// The aggregates its row holds.
    pub layout: EntityLayout,
}

/// The windowed aggregates of one entity, in its layout's slot order (unused slots are 0).
/// All zeros is the state of an entity never seen: the defined cold start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Aggregates(pub [f64; MAX_SLOTS]);

impl Aggregates {
    /// An entity with no transactions in any window.
    pub const ZERO: Aggregates = Aggregates([0.0; MAX_SLOTS]);
}

/// What the features need of the transaction being scored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TxFacts {
    /// When it happens.
    pub time: Timestamp,
    /// Its amount.
    pub amount: f64,
}

/// Why a schema is not valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemaError {
    /// No entity or more than [`MAX_ENTITIES`].
    EntityCount(usize),
    /// A feature names an entity index the schema does not have.
    UnknownEntity {
        /// The feature's name.
        feature: String,
        /// The entity index it names.
        entity: u8,
    },
    /// A window of zero days.
    EmptyWindow {
        /// The feature's name.
        feature: String,
    },
    /// A risk feature over a window that is not delayed (it would read labels not yet known).
    RiskWithoutDelay {
        /// The feature's name.
        feature: String,
    },
    /// An entity's row would need more than [`MAX_SLOTS`] aggregates.
    TooManySlots {
        /// The entity's name.
        entity: String,
    },
    /// Two features share a name.
    DuplicateName(String),
}

impl SchemaError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        use crate::text::write_u64;
        match self {
            SchemaError::EntityCount(n) => {
                f.write_str("a schema needs 1 to ")?;
                write_u64(f, MAX_ENTITIES as u64)?;
                f.write_str(" entity kinds, not ")?;
                write_u64(f, *n as u64)
            }
            SchemaError::UnknownEntity { feature, entity } => {
                f.write_str("feature ")?;
                f.write_str(feature)?;
                f.write_str(": entity index ")?;
                write_u64(f, u64::from(*entity))?;
                f.write_str(" is not in the schema")
            }
            SchemaError::EmptyWindow { feature } => {
                f.write_str("feature ")?;
                f.write_str(feature)?;
                f.write_str(": a window must be at least one day")
            }
            SchemaError::RiskWithoutDelay { feature } => {
                f.write_str("feature ")?;
                f.write_str(feature)?;
                f.write_str(": a risk window needs a delay, labels are not known at once")
            }
            SchemaError::TooManySlots { entity } => {
                f.write_str("entity ")?;
                f.write_str(entity)?;
                f.write_str(": its row would need more than ")?;
                write_u64(f, MAX_SLOTS as u64)?;
                f.write_str(" aggregates")
            }
            SchemaError::DuplicateName(name) => {
                f.write_str("two features are named ")?;
                f.write_str(name)
            }
        }
    }
}

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl core::error::Error for SchemaError {}

/// Entity kinds and the features over them: the single definition that the exporter's training
/// sets, the snapshot layout and the edge's scoring all follow.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeatureSchema {
    entities: Vec<EntityDef>,
    features: Vec<FeatureDef>,
    // For each feature, the slot indices it reads (count, numerator) in its entity's row.
    plan: Vec<(u8, u8)>,
}

impl FeatureSchema {
    /// A schema over the named entity kinds (id column names) and features; derives each entity's
    /// row layout and checks the definitions.
    pub fn new(entity_names: Vec<String>, features: Vec<FeatureDef>) -> Result<FeatureSchema, SchemaError> {
        if entity_names.is_empty() || entity_names.len() > MAX_ENTITIES {
            return Err(SchemaError::EntityCount(entity_names.len()));
        }
        let mut entities: Vec<EntityDef> = entity_names
            .into_iter()
            .map(|name| EntityDef { name, layout: EntityLayout { windows: Vec::new(), slots: Vec::new() } })
            .collect();
        let mut plan = Vec::with_capacity(features.len());
        for (i, def) in features.iter().enumerate() {
            if features[..i].iter().any(|d| d.name == def.name) {
                return Err(SchemaError::DuplicateName(def.name.clone()));
            }
            let (entity, window, numerator) = match def.kind {
                FeatureKind::Amount | FeatureKind::DuringWeekend | FeatureKind::DuringNight => {
                    plan.push((0, 0));
                    continue;
                }
                FeatureKind::Count { entity, window } => (entity, window, None),
                FeatureKind::MeanAmount { entity, window } | FeatureKind::AmountToMean { entity, window } => {
                    (entity, window, Some(Aggregate::AmountSum))
                }
                FeatureKind::Risk { entity, window } => {
                    if window.delay_days == 0 {
                        return Err(SchemaError::RiskWithoutDelay { feature: def.name.clone() });
                    }
                    (entity, window, Some(Aggregate::FraudCount))
                }
            };
            if window.days == 0 {
                return Err(SchemaError::EmptyWindow { feature: def.name.clone() });
            }
            let Some(entity_def) = entities.get_mut(usize::from(entity)) else {
                return Err(SchemaError::UnknownEntity { feature: def.name.clone(), entity });
            };
            let count = add_slot(entity_def, Slot { aggregate: Aggregate::Count, window })?;
            let numerator = match numerator {
                Some(aggregate) => add_slot(entity_def, Slot { aggregate, window })?,
                None => count,
            };
            plan.push((count, numerator));
        }
        Ok(FeatureSchema { entities, features, plan })
    }

    /// The handbook's 15 baseline features over customers (entity 0) and terminals (entity 1):
    /// amount, weekend and night flags, customer count and mean amount over 1, 7 and 30 days,
    /// terminal count and risk over 1, 7 and 30 days delayed by 7 days.
    pub fn handbook() -> FeatureSchema {
        handbook_schema(handbook_features())
    }

    /// The handbook's 15 features and three more: the amount over the customer's mean amount in
    /// the last 1, 7 and 30 days (`CUSTOMER_ID_AMOUNT_TO_AVG_{1,7,30}DAY_WINDOW`). The rows are
    /// the handbook's: the ratios read the aggregates the means already store.
    pub fn handbook_ratios() -> FeatureSchema {
        use alloc::format;
        let mut features = handbook_features();
        for days in [1u16, 7, 30] {
            features.push(def(
                &format!("CUSTOMER_ID_AMOUNT_TO_AVG_{days}DAY_WINDOW"),
                &format!(
                    "the amount over the customer's mean amount in the last {days} days, this one included"
                ),
                FeatureKind::AmountToMean { entity: 0, window: Window::last(days) },
            ));
        }
        handbook_schema(features)
    }

    /// A built-in schema by name, one of [`SCHEMA_NAMES`]: `handbook`
    /// ([`FeatureSchema::handbook`]) or `handbook-ratios` ([`FeatureSchema::handbook_ratios`]).
    pub fn named(name: &str) -> Option<FeatureSchema> {
        match name {
            "handbook" => Some(FeatureSchema::handbook()),
            "handbook-ratios" => Some(FeatureSchema::handbook_ratios()),
            _ => None,
        }
    }

    /// The entity kinds, in the order a transaction gives their ids.
    pub fn entities(&self) -> &[EntityDef] {
        &self.entities
    }

    /// The features, in output order.
    pub fn features(&self) -> &[FeatureDef] {
        &self.features
    }

    /// Number of features.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// True when the schema has no feature.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// A stable 64-bit hash of the definitions (names, kinds, windows; not the docs). A snapshot
    /// records it; a scorer refuses a snapshot whose hash differs from the schema it was built for.
    pub fn hash(&self) -> u64 {
        let mut h = Fnv1a::new();
        h.bytes(b"tollgate feature schema v1");
        for e in &self.entities {
            h.str(&e.name);
        }
        h.bytes(&[0xff]);
        for f in &self.features {
            h.str(&f.name);
            let (tag, entity, window) = f.kind.parts();
            h.bytes(&[tag, entity]);
            h.bytes(&window.days.to_le_bytes());
            h.bytes(&window.delay_days.to_le_bytes());
        }
        h.finish()
    }

    /// Computes every feature of `tx` from the aggregates of its entities (`aggregates[e]` for
    /// entity kind `e`, as of just before `tx`) into `out` (one value per feature).
    ///
    /// Windows that are not delayed include `tx` itself; delayed windows do not.
    /// `aggregates` must have one entry per entity kind and `out` one slot per feature;
    /// shorter slices leave the missing features unwritten.
    pub fn compute(&self, tx: &TxFacts, aggregates: &[Aggregates], out: &mut [f64]) {
        self.compute_with(tx, |entity, slot| aggregates.get(entity).map(|row| row.0[slot]), out);
    }

    /// [`FeatureSchema::compute`] with each aggregate read through `slot(entity, slot)` (the
    /// value of that slot of that entity kind's row, `None` when the kind is missing), for
    /// callers that keep aggregates in another form. The arithmetic is the same.
    #[inline]
    pub fn compute_with(&self, tx: &TxFacts, slot: impl Fn(usize, usize) -> Option<f64>, out: &mut [f64]) {
        for ((def, &(count_slot, numerator_slot)), out) in self.features.iter().zip(&self.plan).zip(out) {
            *out = match def.kind {
                FeatureKind::Amount => tx.amount,
                FeatureKind::DuringWeekend => f64::from(u8::from(tx.time.is_weekend())),
                FeatureKind::DuringNight => f64::from(u8::from(tx.time.hour() <= 6)),
                FeatureKind::Count { entity, window }
                | FeatureKind::MeanAmount { entity, window }
                | FeatureKind::Risk { entity, window }
                | FeatureKind::AmountToMean { entity, window } => {
                    let entity = usize::from(entity);
                    let Some(count) = slot(entity, usize::from(count_slot)) else { continue };
                    let current = window.delay_days == 0;
                    if let FeatureKind::Count { .. } = def.kind {
                        if current { count + 1.0 } else { count }
                    } else {
                        let Some(numerator) = slot(entity, usize::from(numerator_slot)) else { continue };
                        // A mean (or a risk, always delayed) over the window.
                        let mean = if current {
                            (numerator + tx.amount) / (count + 1.0)
                        } else if count > 0.0 {
                            numerator / count
                        } else {
                            0.0
                        };
                        match def.kind {
                            FeatureKind::AmountToMean { .. } if mean > 0.0 => tx.amount / mean,
                            FeatureKind::AmountToMean { .. } => 0.0,
                            _ => mean,
                        }
                    }
                }
            };
        }
    }
}

/// The handbook's 15 features, in its golden file's order.
fn handbook_features() -> Vec<FeatureDef> {
    use alloc::format;
    let mut features = alloc::vec![
        def("TX_AMOUNT", "the transaction's amount", FeatureKind::Amount),
        def("TX_DURING_WEEKEND", "1 on Saturday or Sunday (UTC)", FeatureKind::DuringWeekend),
        def("TX_DURING_NIGHT", "1 when the hour (UTC) is 0 to 6", FeatureKind::DuringNight),
    ];
    for days in [1u16, 7, 30] {
        let window = Window::last(days);
        features.push(def(
            &format!("CUSTOMER_ID_NB_TX_{days}DAY_WINDOW"),
            &format!("the customer's transactions in the last {days} days, this one included"),
            FeatureKind::Count { entity: 0, window },
        ));
        features.push(def(
            &format!("CUSTOMER_ID_AVG_AMOUNT_{days}DAY_WINDOW"),
            &format!("the customer's mean amount over the last {days} days, this one included"),
            FeatureKind::MeanAmount { entity: 0, window },
        ));
    }
    for days in [1u16, 7, 30] {
        let window = Window::delayed(days, 7);
        features.push(def(
            &format!("TERMINAL_ID_NB_TX_{days}DAY_WINDOW"),
            &format!("the terminal's transactions in the {days} days before the last 7"),
            FeatureKind::Count { entity: 1, window },
        ));
        features.push(def(
            &format!("TERMINAL_ID_RISK_{days}DAY_WINDOW"),
            &format!("the terminal's fraud share in the {days} days before the last 7"),
            FeatureKind::Risk { entity: 1, window },
        ));
    }
    features
}

/// A schema of `features` over the handbook's customers and terminals.
fn handbook_schema(features: Vec<FeatureDef>) -> FeatureSchema {
    let entities = alloc::vec![String::from("CUSTOMER_ID"), String::from("TERMINAL_ID")];
    match FeatureSchema::new(entities, features) {
        Ok(schema) => schema,
        // The built-in definitions are constant and valid; tests prove it.
        Err(_) => unreachable!("the built-in schemas are valid"),
    }
}

fn def(name: &str, doc: &str, kind: FeatureKind) -> FeatureDef {
    FeatureDef { name: String::from(name), doc: String::from(doc), kind }
}

fn add_slot(entity: &mut EntityDef, slot: Slot) -> Result<u8, SchemaError> {
    let layout = &mut entity.layout;
    if let Some(i) = layout.slot_index(slot) {
        return Ok(i as u8);
    }
    if layout.slots.len() == MAX_SLOTS {
        return Err(SchemaError::TooManySlots { entity: entity.name.clone() });
    }
    if !layout.windows.contains(&slot.window) {
        layout.windows.push(slot.window);
    }
    layout.slots.push(slot);
    Ok((layout.slots.len() - 1) as u8)
}

/// 64-bit FNV-1a: tiny, stable across platforms and versions, enough to tell schemas apart.
struct Fnv1a(u64);

impl Fnv1a {
    fn new() -> Fnv1a {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn str(&mut self, s: &str) {
        self.bytes(&(s.len() as u32).to_le_bytes());
        self.bytes(s.as_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn handbook_schema_has_fifteen_features_and_compact_rows() {
        let schema = FeatureSchema::handbook();
        assert_eq!(schema.len(), 15);
        let customer = &schema.entities()[0].layout;
        assert_eq!(customer.windows.len(), 3);
        assert_eq!(customer.slots.len(), 6, "count and amount sum per window");
        let terminal = &schema.entities()[1].layout;
        assert_eq!(terminal.slots.len(), 6, "count and fraud count per window");
        assert!(terminal.slots.iter().all(|s| s.window.delay_days == 7));
    }

    #[test]
    fn hash_is_stable_and_ignores_docs() {
        let a = FeatureSchema::handbook();
        let mut features = a.features().to_vec();
        features[0].doc = String::from("changed");
        let b =
            FeatureSchema::new(vec!["CUSTOMER_ID".into(), "TERMINAL_ID".into()], features.clone()).unwrap();
        assert_eq!(a.hash(), b.hash());
        features[0].name = String::from("AMOUNT");
        let c = FeatureSchema::new(vec!["CUSTOMER_ID".into(), "TERMINAL_ID".into()], features).unwrap();
        assert_ne!(a.hash(), c.hash());
        // Pinned: a change here breaks every snapshot in the field, so it must be deliberate.
        assert_eq!(a.hash(), 0x13a3_3465_a111_fa5f);
    }

    #[test]
    fn refuses_risk_without_delay_and_unknown_entities() {
        let risk = def("R", "", FeatureKind::Risk { entity: 0, window: Window::last(7) });
        assert_eq!(
            FeatureSchema::new(vec!["C".into()], vec![risk]),
            Err(SchemaError::RiskWithoutDelay { feature: "R".into() })
        );
        let count = def("N", "", FeatureKind::Count { entity: 3, window: Window::last(7) });
        assert!(matches!(
            FeatureSchema::new(vec!["C".into()], vec![count]),
            Err(SchemaError::UnknownEntity { entity: 3, .. })
        ));
        assert_eq!(FeatureSchema::new(vec![], vec![]), Err(SchemaError::EntityCount(0)));
    }

    #[test]
    fn ratio_schema_adds_three_features_on_the_handbook_rows() {
        let handbook = FeatureSchema::handbook();
        let ratios = FeatureSchema::handbook_ratios();
        assert_eq!(ratios.len(), 18);
        assert_eq!(&ratios.features()[..15], handbook.features());
        assert_eq!(ratios.entities(), handbook.entities(), "no new aggregate per row");
        assert_ne!(ratios.hash(), handbook.hash());
        for name in SCHEMA_NAMES {
            assert!(FeatureSchema::named(name).is_some(), "{name}");
        }
        assert_eq!(FeatureSchema::named("handbook-ratios"), Some(ratios));
        assert_eq!(FeatureSchema::named("nope"), None);
    }

    #[test]
    fn amount_to_mean_divides_by_the_mean_that_includes_the_transaction() {
        let schema = FeatureSchema::handbook_ratios();
        let tx = TxFacts { time: "2018-04-02 12:00:00".parse().unwrap(), amount: 90.0 };
        // Customer: 1-day window 2 transactions summing 30; 7-day 2 summing 30; 30-day 8 summing 160.
        let customer = schema.entities()[0].layout.clone();
        let mut row = Aggregates::ZERO;
        for (i, slot) in customer.slots.iter().enumerate() {
            row.0[i] = match (slot.aggregate, slot.window.days) {
                (Aggregate::Count, 30) => 8.0,
                (Aggregate::Count, _) => 2.0,
                (Aggregate::AmountSum, 30) => 160.0,
                (Aggregate::AmountSum, _) => 30.0,
                _ => unreachable!(),
            };
        }
        let mut out = [f64::NAN; 18];
        schema.compute(&tx, &[row, Aggregates::ZERO], &mut out);
        assert_eq!(out[4], 40.0, "mean over 1 day: (30 + 90) / 3");
        assert_eq!(out[15], 90.0 / 40.0);
        assert_eq!(out[16], 90.0 / 40.0);
        assert_eq!(out[17], 90.0 / ((160.0 + 90.0) / 9.0));
        // A zero amount on a new customer: mean 0, ratio 0 (not NaN).
        let free = TxFacts { amount: 0.0, ..tx };
        schema.compute(&free, &[Aggregates::ZERO, Aggregates::ZERO], &mut out);
        assert_eq!(out[15..], [0.0, 0.0, 0.0]);
    }

    #[test]
    fn kinds_round_trip_through_their_parts() {
        let window = Window::delayed(7, 3);
        for kind in [
            FeatureKind::Amount,
            FeatureKind::DuringWeekend,
            FeatureKind::DuringNight,
            FeatureKind::Count { entity: 1, window },
            FeatureKind::MeanAmount { entity: 1, window },
            FeatureKind::Risk { entity: 1, window },
            FeatureKind::AmountToMean { entity: 1, window },
        ] {
            let (tag, entity, w) = kind.parts();
            assert_eq!(FeatureKind::from_parts(tag, entity, w), Some(kind));
        }
        assert_eq!(FeatureKind::from_parts(7, 0, window), None);
    }

    #[test]
    fn cold_start_counts_only_the_transaction_itself() {
        let schema = FeatureSchema::handbook();
        let tx = TxFacts { time: "2018-04-07 05:00:00".parse().unwrap(), amount: 42.5 };
        let mut out = [f64::NAN; 15];
        schema.compute(&tx, &[Aggregates::ZERO, Aggregates::ZERO], &mut out);
        assert_eq!(out, [42.5, 1.0, 1.0, 1.0, 42.5, 1.0, 42.5, 1.0, 42.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]);
    }
}
