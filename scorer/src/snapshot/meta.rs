//! The snapshot's META section: who built it, when, from what data, for which schema, as a
//! MessagePack map with text keys. Unknown keys are skipped (minor versions may add some), so
//! optional keys such as `lineage` (where the model came from) are read by new readers only.

use super::reference::Reference;
use crate::Timestamp;
use crate::features::{FeatureDef, FeatureKind, FeatureSchema, Window};
use crate::score::wire::MsgPackReader;
use alloc::string::String;
use alloc::vec::Vec;
use rmp::encode::{self as enc, ByteBuf};

/// What a snapshot says about itself.
#[derive(Clone, Debug, PartialEq)]
pub struct SnapshotMeta {
    /// A unique id, e.g. `tg-20180814T000000-3f2a9c1d`.
    pub snapshot_id: String,
    /// The aggregates hold every transaction before this time.
    pub as_of: Timestamp,
    /// When the exporter built it.
    pub created_at: Timestamp,
    /// Time of the first and last transaction folded in (`None` when there was none).
    pub data_range: Option<(Timestamp, Timestamp)>,
    /// Version of the exporter that built it.
    pub exporter_version: String,
    /// [`IdHashKey::fingerprint`](super::IdHashKey::fingerprint) of the key that hashed the ids.
    pub id_key_fingerprint: u64,
    /// The feature schema the entity tables follow (its hash is checked on load).
    pub schema: FeatureSchema,
    /// The model's id, once a model section is present.
    pub model_id: Option<String>,
    /// Where the model came from (training data, code, metrics), when the builder knew it; its
    /// `model_id` equals [`SnapshotMeta::model_id`] (checked on decode).
    pub lineage: Option<ModelLineage>,
    /// The training window's feature and score distributions, for drift monitoring (key
    /// `reference`, added in 1.2: older readers skip it).
    pub reference: Option<Reference>,
}

/// A model's lineage as a snapshot records it (META key `lineage`): what it was trained on, by
/// which code, and how it scored on held-back days. Written by `tollgate snapshot build --models`
/// from the model registry; old readers skip the key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelLineage {
    /// The model's id (the registry's and the snapshot's `model_id`).
    pub model_id: String,
    /// The model family, e.g. `gbdt`.
    pub kind: String,
    /// The trainer's hyper-parameters, as text.
    pub params: String,
    /// The training data: transactions from the first time up to (excluding) the second.
    pub train_range: (Timestamp, Timestamp),
    /// Days between a transaction and its label being known, respected by the training window.
    pub label_delay_days: u32,
    /// The held-back evaluation days: from the first time up to (excluding) the second.
    pub eval_range: (Timestamp, Timestamp),
    /// The code that trained it: crate version, plus `+` the git commit when known at build time.
    pub code_version: String,
    /// When it was trained.
    pub created_at: Timestamp,
    /// The model that was current when it was trained, if any.
    pub parent: Option<String>,
    /// Metrics on the held-back days, by name (e.g. `average_precision`), in the builder's order.
    pub metrics: Vec<(String, f64)>,
}

/// Why a META section could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MetaError {
    /// The MessagePack is malformed or has the wrong type for a field.
    Malformed(&'static str),
    /// A required field is missing.
    Missing(&'static str),
    /// The drift reference is malformed (the text names the part) or does not fit the schema.
    Reference(&'static str),
    /// The embedded schema is not valid.
    Schema(crate::features::SchemaError),
    /// The schema hash recorded does not match the schema's definitions.
    SchemaHash {
        /// Recorded in the snapshot.
        recorded: u64,
        /// Computed from the schema it carries.
        computed: u64,
    },
}

impl MetaError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: core::fmt::Write + ?Sized>(&self, f: &mut W) -> core::fmt::Result {
        use crate::text::write_hex_u64;
        match self {
            MetaError::Malformed(what) | MetaError::Reference(what) => {
                f.write_str("meta: ")?;
                f.write_str(what)?;
                f.write_str(" is malformed")
            }
            MetaError::Missing(what) => {
                f.write_str("meta: ")?;
                f.write_str(what)?;
                f.write_str(" is missing")
            }
            MetaError::Schema(e) => {
                f.write_str("meta: schema: ")?;
                e.write_to(f)
            }
            MetaError::SchemaHash { recorded, computed } => {
                f.write_str("meta: schema hash ")?;
                write_hex_u64(f, *recorded)?;
                f.write_str(" does not match its definitions (")?;
                write_hex_u64(f, *computed)?;
                f.write_str(")")
            }
        }
    }
}

impl core::fmt::Display for MetaError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.write_to(f)
    }
}

impl SnapshotMeta {
    /// Encodes the META section.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = ByteBuf::new();
        let fields = 8
            + u32::from(self.data_range.is_some()) * 2
            + u32::from(self.model_id.is_some())
            + u32::from(self.lineage.is_some())
            + u32::from(self.reference.is_some());
        // Writing to a Vec cannot fail but for allocation, which aborts; errors are ignored.
        let _ = enc::write_map_len(&mut b, fields);
        put_str(&mut b, "snapshot_id", &self.snapshot_id);
        put_i64(&mut b, "as_of", self.as_of.0);
        put_i64(&mut b, "created_at", self.created_at.0);
        if let Some((from, to)) = self.data_range {
            put_i64(&mut b, "data_from", from.0);
            put_i64(&mut b, "data_to", to.0);
        }
        put_str(&mut b, "exporter_version", &self.exporter_version);
        let _ = enc::write_str(&mut b, "id_key_fingerprint");
        let _ = enc::write_u64(&mut b, self.id_key_fingerprint);
        let _ = enc::write_str(&mut b, "schema_hash");
        let _ = enc::write_u64(&mut b, self.schema.hash());
        let _ = enc::write_str(&mut b, "entities");
        let _ = enc::write_array_len(&mut b, self.schema.entities().len() as u32);
        for e in self.schema.entities() {
            let _ = enc::write_str(&mut b, &e.name);
        }
        let _ = enc::write_str(&mut b, "features");
        let _ = enc::write_array_len(&mut b, self.schema.len() as u32);
        for f in self.schema.features() {
            let (tag, entity, window) = f.kind.parts();
            let _ = enc::write_array_len(&mut b, 6);
            let _ = enc::write_str(&mut b, &f.name);
            let _ = enc::write_str(&mut b, &f.doc);
            let _ = enc::write_uint(&mut b, u64::from(tag));
            let _ = enc::write_uint(&mut b, u64::from(entity));
            let _ = enc::write_uint(&mut b, u64::from(window.days));
            let _ = enc::write_uint(&mut b, u64::from(window.delay_days));
        }
        if let Some(model) = &self.model_id {
            put_str(&mut b, "model_id", model);
        }
        if let Some(lineage) = &self.lineage {
            let _ = enc::write_str(&mut b, "lineage");
            lineage.encode_into(&mut b);
        }
        if let Some(reference) = &self.reference {
            let _ = enc::write_str(&mut b, "reference");
            reference.encode(&mut b);
        }
        b.into_vec()
    }

    /// Decodes a META section, checking the schema against its recorded hash.
    pub fn decode(bytes: &[u8]) -> Result<SnapshotMeta, MetaError> {
        let mut r = MsgPackReader::new(bytes);
        let fields = r.map_len().ok_or(MetaError::Malformed("the top-level map"))?;
        let (mut snapshot_id, mut as_of, mut created_at, mut from, mut to) = (None, None, None, None, None);
        let (mut exporter_version, mut fingerprint, mut schema_hash, mut model_id) = (None, None, None, None);
        let (mut entities, mut features) = (None, None);
        // Only read with `meta-extras`: scoring uses neither, so scorer.wasm skips them.
        #[cfg_attr(not(feature = "meta-extras"), allow(unused_mut))]
        let (mut lineage, mut reference): (Option<ModelLineage>, Option<Reference>) = (None, None);
        for _ in 0..fields {
            let key = get_str(&mut r, "a key")?;
            match key.as_str() {
                "snapshot_id" => snapshot_id = Some(get_str(&mut r, "snapshot_id")?),
                "as_of" => as_of = Some(get_i64(&mut r, "as_of")?),
                "created_at" => created_at = Some(get_i64(&mut r, "created_at")?),
                "data_from" => from = Some(get_i64(&mut r, "data_from")?),
                "data_to" => to = Some(get_i64(&mut r, "data_to")?),
                "exporter_version" => exporter_version = Some(get_str(&mut r, "exporter_version")?),
                "id_key_fingerprint" => fingerprint = Some(get_u64(&mut r, "id_key_fingerprint")?),
                "schema_hash" => schema_hash = Some(get_u64(&mut r, "schema_hash")?),
                "model_id" => model_id = Some(get_str(&mut r, "model_id")?),
                "entities" => {
                    let n = r.array_len().filter(|&n| n <= 64).ok_or(MetaError::Malformed("entities"))?;
                    let names = (0..n).map(|_| get_str(&mut r, "entities")).collect::<Result<Vec<_>, _>>()?;
                    entities = Some(names);
                }
                "features" => features = Some(get_features(&mut r)?),
                #[cfg(feature = "meta-extras")]
                "lineage" => lineage = Some(ModelLineage::decode_from(&mut r)?),
                #[cfg(feature = "meta-extras")]
                "reference" => reference = Some(Reference::decode(&mut r).map_err(MetaError::Reference)?),
                _ => r.skip().ok_or(MetaError::Malformed("an unknown field"))?,
            }
        }
        let schema = FeatureSchema::new(
            entities.ok_or(MetaError::Missing("entities"))?,
            features.ok_or(MetaError::Missing("features"))?,
        )
        .map_err(MetaError::Schema)?;
        let recorded = schema_hash.ok_or(MetaError::Missing("schema_hash"))?;
        if recorded != schema.hash() {
            return Err(MetaError::SchemaHash { recorded, computed: schema.hash() });
        }
        if reference.as_ref().is_some_and(|r| r.features.len() != schema.len()) {
            return Err(MetaError::Reference("reference.features (one distribution per schema feature)"));
        }
        let data_range = match (from, to) {
            (Some(from), Some(to)) => Some((Timestamp(from), Timestamp(to))),
            (None, None) => None,
            _ => return Err(MetaError::Missing("data_from or data_to")),
        };
        if let Some(l) = &lineage
            && model_id.as_deref() != Some(l.model_id.as_str())
        {
            return Err(MetaError::Malformed("lineage: its model_id is not the snapshot's model_id"));
        }
        Ok(SnapshotMeta {
            snapshot_id: snapshot_id.ok_or(MetaError::Missing("snapshot_id"))?,
            as_of: Timestamp(as_of.ok_or(MetaError::Missing("as_of"))?),
            created_at: Timestamp(created_at.ok_or(MetaError::Missing("created_at"))?),
            data_range,
            exporter_version: exporter_version.ok_or(MetaError::Missing("exporter_version"))?,
            id_key_fingerprint: fingerprint.ok_or(MetaError::Missing("id_key_fingerprint"))?,
            schema,
            model_id,
            lineage,
            reference,
        })
    }
}

impl ModelLineage {
    /// Writes the lineage as one MessagePack map with text keys (unknown keys skipped on read).
    fn encode_into(&self, b: &mut ByteBuf) {
        let _ = enc::write_map_len(b, 12 + u32::from(self.parent.is_some()));
        put_str(b, "model_id", &self.model_id);
        put_str(b, "kind", &self.kind);
        put_str(b, "params", &self.params);
        put_i64(b, "train_from", self.train_range.0.0);
        put_i64(b, "train_to", self.train_range.1.0);
        put_i64(b, "label_delay_days", i64::from(self.label_delay_days));
        put_i64(b, "eval_from", self.eval_range.0.0);
        put_i64(b, "eval_to", self.eval_range.1.0);
        put_str(b, "code_version", &self.code_version);
        put_i64(b, "created_at", self.created_at.0);
        if let Some(parent) = &self.parent {
            put_str(b, "parent", parent);
        }
        let _ = enc::write_str(b, "metrics");
        let _ = enc::write_map_len(b, self.metrics.len() as u32);
        for (name, value) in &self.metrics {
            let _ = enc::write_str(b, name);
            let _ = enc::write_f64(b, *value);
        }
        let _ = enc::write_str(b, "format");
        let _ = enc::write_uint(b, 1);
    }

    /// Reads the map [`ModelLineage::encode_into`] writes.
    #[cfg(feature = "meta-extras")]
    fn decode_from(r: &mut MsgPackReader<'_>) -> Result<ModelLineage, MetaError> {
        let fields = r.map_len().ok_or(MetaError::Malformed("lineage"))?;
        let mut l = ModelLineage::default();
        let (mut id, mut train_from, mut train_to, mut eval_from, mut eval_to) =
            (None, None, None, None, None);
        for _ in 0..fields {
            let key = get_str(r, "a lineage key")?;
            match key.as_str() {
                "model_id" => id = Some(get_str(r, "lineage.model_id")?),
                "kind" => l.kind = get_str(r, "lineage.kind")?,
                "params" => l.params = get_str(r, "lineage.params")?,
                "train_from" => train_from = Some(get_i64(r, "lineage.train_from")?),
                "train_to" => train_to = Some(get_i64(r, "lineage.train_to")?),
                "label_delay_days" => {
                    let days = get_u64(r, "lineage.label_delay_days")?;
                    l.label_delay_days =
                        u32::try_from(days).map_err(|_| MetaError::Malformed("lineage.label_delay_days"))?;
                }
                "eval_from" => eval_from = Some(get_i64(r, "lineage.eval_from")?),
                "eval_to" => eval_to = Some(get_i64(r, "lineage.eval_to")?),
                "code_version" => l.code_version = get_str(r, "lineage.code_version")?,
                "created_at" => l.created_at = Timestamp(get_i64(r, "lineage.created_at")?),
                "parent" => l.parent = Some(get_str(r, "lineage.parent")?),
                "metrics" => {
                    let n =
                        r.map_len().filter(|&n| n <= 256).ok_or(MetaError::Malformed("lineage.metrics"))?;
                    for _ in 0..n {
                        let name = get_str(r, "a lineage metric's name")?;
                        let value = r.float().ok_or(MetaError::Malformed("a lineage metric's value"))?;
                        l.metrics.push((name, value));
                    }
                }
                _ => r.skip().ok_or(MetaError::Malformed("an unknown lineage field"))?,
            }
        }
        l.model_id = id.ok_or(MetaError::Missing("lineage.model_id"))?;
        let range = |from: Option<i64>, to: Option<i64>, what| match (from, to) {
            (Some(from), Some(to)) => Ok((Timestamp(from), Timestamp(to))),
            _ => Err(MetaError::Missing(what)),
        };
        l.train_range = range(train_from, train_to, "lineage.train_from or lineage.train_to")?;
        l.eval_range = range(eval_from, eval_to, "lineage.eval_from or lineage.eval_to")?;
        Ok(l)
    }
}

fn put_str(b: &mut ByteBuf, key: &str, value: &str) {
    let _ = enc::write_str(b, key);
    let _ = enc::write_str(b, value);
}

fn put_i64(b: &mut ByteBuf, key: &str, value: i64) {
    let _ = enc::write_str(b, key);
    let _ = enc::write_sint(b, value);
}

fn get_str(r: &mut MsgPackReader<'_>, what: &'static str) -> Result<String, MetaError> {
    r.str().map(String::from).ok_or(MetaError::Malformed(what))
}

fn get_i64(r: &mut MsgPackReader<'_>, what: &'static str) -> Result<i64, MetaError> {
    match r.int() {
        Some((false, abs)) => i64::try_from(abs).ok(),
        // Down to -2^63, whose magnitude wraps to itself.
        Some((true, abs)) if abs <= 1 << 63 => Some((abs as i64).wrapping_neg()),
        _ => None,
    }
    .ok_or(MetaError::Malformed(what))
}

fn get_u64(r: &mut MsgPackReader<'_>, what: &'static str) -> Result<u64, MetaError> {
    match r.int() {
        Some((false, abs)) | Some((true, abs @ 0)) => Ok(abs),
        _ => Err(MetaError::Malformed(what)),
    }
}

fn get_small(r: &mut MsgPackReader<'_>) -> Result<u16, MetaError> {
    let v = get_u64(r, "a feature's numbers")?;
    u16::try_from(v).map_err(|_| MetaError::Malformed("a feature's numbers"))
}

fn get_features(r: &mut MsgPackReader<'_>) -> Result<Vec<FeatureDef>, MetaError> {
    let n = r.array_len().filter(|&n| n <= 4096).ok_or(MetaError::Malformed("features"))?;
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if r.array_len() != Some(6) {
            return Err(MetaError::Malformed("a feature"));
        }
        let name = get_str(r, "a feature's name")?;
        let doc = get_str(r, "a feature's doc")?;
        let tag = get_small(r)?;
        let entity = u8::try_from(get_small(r)?).map_err(|_| MetaError::Malformed("a feature's entity"))?;
        let window = Window { days: get_small(r)?, delay_days: get_small(r)? };
        let kind = FeatureKind::from_parts(u8::try_from(tag).unwrap_or(u8::MAX), entity, window)
            .ok_or(MetaError::Malformed("a feature's kind"))?;
        out.push(FeatureDef { name, doc, kind });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        SnapshotMeta {
            snapshot_id: "tg-test".into(),
            as_of: Timestamp(1_533_686_400),
            created_at: Timestamp(1_700_000_000),
            data_range: Some((Timestamp(1_522_540_831), Timestamp(1_533_686_399))),
            exporter_version: "0.1.0".into(),
            id_key_fingerprint: 0xdead_beef,
            schema: FeatureSchema::handbook(),
            model_id: None,
            lineage: None,
            reference: None,
        }
    }

    fn lineage() -> ModelLineage {
        ModelLineage {
            model_id: "gbdt-0123456789abcdef".into(),
            kind: "gbdt".into(),
            params: "Gbdt { trees: 100, max_depth: 6 }".into(),
            train_range: (Timestamp(1_532_476_800), Timestamp(1_533_081_600)),
            label_delay_days: 7,
            eval_range: (Timestamp(1_533_686_400), Timestamp(1_534_291_200)),
            code_version: "0.1.0+abc1234".into(),
            created_at: Timestamp(1_700_000_000),
            parent: Some("lr-fedcba9876543210".into()),
            metrics: alloc::vec![("auc_roc".into(), 0.87), ("average_precision".into(), 0.61)],
        }
    }

    #[test]
    fn every_built_in_schema_round_trips() {
        for name in crate::features::SCHEMA_NAMES {
            let with = SnapshotMeta { schema: FeatureSchema::named(name).unwrap(), ..meta() };
            assert_eq!(SnapshotMeta::decode(&with.encode()), Ok(with), "{name}");
        }
    }

    #[test]
    fn lineage_round_trips_and_must_name_the_snapshot_model() {
        let with = SnapshotMeta {
            model_id: Some("gbdt-0123456789abcdef".into()),
            lineage: Some(lineage()),
            ..meta()
        };
        assert_eq!(SnapshotMeta::decode(&with.encode()), Ok(with.clone()));
        let first =
            SnapshotMeta { lineage: Some(ModelLineage { parent: None, ..lineage() }), ..with.clone() };
        assert_eq!(SnapshotMeta::decode(&first.encode()), Ok(first));
        let other = SnapshotMeta { model_id: Some("lr-1".into()), ..with.clone() };
        assert_eq!(
            SnapshotMeta::decode(&other.encode()),
            Err(MetaError::Malformed("lineage: its model_id is not the snapshot's model_id"))
        );
        let full = with.encode();
        for cut in 0..full.len() {
            assert!(SnapshotMeta::decode(&full[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn a_reader_that_knows_no_lineage_skips_it() {
        // What a reader without the key does: the generic skip over an unknown value.
        let with = SnapshotMeta {
            model_id: Some("gbdt-0123456789abcdef".into()),
            lineage: Some(lineage()),
            ..meta()
        };
        let bytes = with.encode();
        let mut b = ByteBuf::new();
        with.lineage.as_ref().unwrap().encode_into(&mut b);
        let mut r = MsgPackReader::new(b.as_slice());
        assert_eq!(r.skip(), Some(()));
        assert!(r.at_end());
        // Renamed, the key is unknown to this reader too: the meta decodes without it.
        let at = bytes.windows(7).position(|w| w == b"lineage").unwrap();
        let mut renamed = bytes.clone();
        renamed[at..at + 7].copy_from_slice(b"lineagx");
        assert_eq!(SnapshotMeta::decode(&renamed), Ok(SnapshotMeta { lineage: None, ..with }));
    }

    #[test]
    fn meta_round_trips() {
        let m = meta();
        assert_eq!(SnapshotMeta::decode(&m.encode()), Ok(m));
    }

    fn with_reference() -> SnapshotMeta {
        use super::super::reference::Bins;
        let n = FeatureSchema::handbook().len();
        let bins = |k: usize| Bins {
            edges: (0..k).map(|i| i as f64 * 1.5).collect(),
            proportions: alloc::vec![1.0 / (k + 1) as f64; k + 1],
        };
        SnapshotMeta {
            reference: Some(Reference {
                from: Timestamp(1_531_267_200),
                to: Timestamp(1_533_686_400),
                rows: 271_828,
                features: (0..n).map(|i| bins(i % 10)).collect(),
                score: Some(bins(9)),
            }),
            ..meta()
        }
    }

    #[test]
    fn meta_with_a_reference_round_trips_and_refuses_truncation() {
        let m = with_reference();
        let bytes = m.encode();
        assert_eq!(SnapshotMeta::decode(&bytes), Ok(m));
        for cut in 0..bytes.len() {
            assert!(SnapshotMeta::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn refuses_a_reference_that_does_not_fit_the_schema() {
        let mut m = with_reference();
        if let Some(r) = &mut m.reference {
            r.features.pop();
        }
        assert!(matches!(SnapshotMeta::decode(&m.encode()), Err(MetaError::Reference(_))));
        let mut m = with_reference();
        if let Some(r) = &mut m.reference {
            r.features[3].edges.reverse();
        }
        assert!(matches!(SnapshotMeta::decode(&m.encode()), Err(MetaError::Reference(_))));
    }

    #[test]
    fn skips_unknown_fields_and_refuses_truncation() {
        let m = meta();
        let mut bytes = m.encode();
        // Bump the map length by one and append an unknown field.
        bytes[0] += 1;
        let mut extra = ByteBuf::new();
        let _ = enc::write_str(&mut extra, "future_field");
        let _ = enc::write_array_len(&mut extra, 2);
        let _ = enc::write_str(&mut extra, "x");
        let _ = enc::write_f64(&mut extra, 1.5);
        bytes.extend_from_slice(extra.as_slice());
        assert_eq!(SnapshotMeta::decode(&bytes), Ok(m.clone()));
        let full = m.encode();
        for cut in 0..full.len() {
            assert!(SnapshotMeta::decode(&full[..cut]).is_err(), "cut at {cut}");
        }
    }
}
