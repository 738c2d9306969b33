//! Snapshots: what is built loads back exactly, and every kind of damage is refused with a typed
//! error, never a panic.

use proptest::prelude::*;
use scorer::Timestamp;
use scorer::features::{Aggregates, FeatureSchema};
use scorer::model::{Logistic, Model, ModelError, Node, TreeEnsemble, TreeOutput};
use scorer::policy::{BlockList, Policy, PolicyError, ReasonCode};
use scorer::score::Scorer;
use scorer::snapshot::{
    BuildError, EdgeKey, EntityKey, IdHashKey, PartMissing, Snapshot, SnapshotError, SnapshotMeta,
    SnapshotPieces, SnapshotSigner, build_snapshot, build_snapshot_in_parts, build_snapshot_with,
};

fn signer() -> SnapshotSigner {
    SnapshotSigner::from_secret([3; 32], IdHashKey([5; 16]))
}

fn meta(signer: &SnapshotSigner) -> SnapshotMeta {
    SnapshotMeta {
        snapshot_id: "tg-test".into(),
        as_of: Timestamp(1_533_686_400),
        created_at: Timestamp(1_700_000_000),
        data_range: Some((Timestamp(1_522_540_831), Timestamp(1_533_686_399))),
        exporter_version: "test".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema: FeatureSchema::handbook(),
        model_id: None,
        lineage: None,
        reference: None,
    }
}

/// Customer rows: count, amount sum per window (slots 0..6); terminal rows: count, frauds.
fn rows(signer: &SnapshotSigner, customers: u64, terminals: u64) -> Vec<Vec<(EntityKey, Aggregates)>> {
    let key = |id: u64| signer.id_hash().hash(id.to_string().as_bytes());
    let customer = |i: u64| {
        let mut a = Aggregates::ZERO;
        a.0[..6].copy_from_slice(&[1.0, 10.5 + i as f64, 3.0, 30.25, 9.0, 99.125]);
        (key(i), a)
    };
    let terminal = |i: u64| {
        let mut a = Aggregates::ZERO;
        a.0[..6].copy_from_slice(&[2.0, 1.0, 14.0, 1.0, 60.0, i as f64 % 3.0]);
        (key(1_000_000 + i), a)
    };
    vec![(0..customers).map(customer).collect(), (0..terminals).map(terminal).collect()]
}

fn model() -> Model {
    Model::Logistic(Logistic { weights: (0..15).map(|i| f64::from(i) / 10.0).collect(), intercept: -3.0 })
}

fn policy() -> Policy {
    let code = |c| ReasonCode::new(c).unwrap();
    Policy::new(0.4, 0.9)
        .unwrap()
        .with_amount_cap(2500.0, code("AMOUNT_CAP"))
        .unwrap()
        .with_block_list(BlockList::new(0, code("BLOCKED_CUSTOMER"), vec![EntityKey(11), EntityKey(5)]))
        .unwrap()
}

fn meta_with_model(signer: &SnapshotSigner) -> SnapshotMeta {
    SnapshotMeta { model_id: Some("lr-test".into()), ..meta(signer) }
}

/// A small snapshot with every section kind: META, two entity tables, MODEL and POLICY.
fn small_snapshot() -> Vec<u8> {
    let s = signer();
    build_snapshot_with(&meta_with_model(&s), rows(&s, 5, 3), Some(&model()), Some(&policy()), &s).unwrap()
}

/// Lays out and signs `sections` (kind, entity, width, rows, body) as the builder does, so that
/// tests can make validly signed snapshots the builder refuses to make.
fn assemble(sections: &[(u16, u16, u32, u64, Vec<u8>)], signer: &SnapshotSigner) -> Vec<u8> {
    let table_end = 64 + 64 * sections.len();
    let mut offsets = Vec::new();
    let mut next = table_end + 64;
    for s in sections {
        offsets.push(next);
        next = (next + s.4.len()).next_multiple_of(8);
    }
    let mut out = vec![0u8; next];
    out[..8].copy_from_slice(b"TGSNAP\r\n");
    out[8..10].copy_from_slice(&1u16.to_le_bytes());
    out[10..12].copy_from_slice(&1u16.to_le_bytes());
    out[12..16].copy_from_slice(&(sections.len() as u32).to_le_bytes());
    out[16..24].copy_from_slice(&(next as u64).to_le_bytes());
    out[24..32].copy_from_slice(&signer.edge_key().key_id());
    for (i, ((kind, entity, width, rows, body), &offset)) in sections.iter().zip(&offsets).enumerate() {
        let e = 64 + 64 * i;
        out[e..e + 2].copy_from_slice(&kind.to_le_bytes());
        out[e + 2..e + 4].copy_from_slice(&entity.to_le_bytes());
        out[e + 4..e + 8].copy_from_slice(&width.to_le_bytes());
        out[e + 8..e + 16].copy_from_slice(&(offset as u64).to_le_bytes());
        out[e + 16..e + 24].copy_from_slice(&(body.len() as u64).to_le_bytes());
        out[e + 24..e + 32].copy_from_slice(&rows.to_le_bytes());
        out[offset..offset + body.len()].copy_from_slice(body);
    }
    resign(&mut out, signer);
    out
}

/// The sections of [`small_snapshot`], to recombine with [`assemble`].
fn small_sections() -> Vec<(u16, u16, u32, u64, Vec<u8>)> {
    let bytes = small_snapshot();
    let n = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    (0..n)
        .map(|i| {
            let e = &bytes[64 + 64 * i..128 + 64 * i];
            let offset = u64::from_le_bytes(e[8..16].try_into().unwrap()) as usize;
            let len = u64::from_le_bytes(e[16..24].try_into().unwrap()) as usize;
            (
                u16::from_le_bytes(e[0..2].try_into().unwrap()),
                u16::from_le_bytes(e[2..4].try_into().unwrap()),
                u32::from_le_bytes(e[4..8].try_into().unwrap()),
                u64::from_le_bytes(e[24..32].try_into().unwrap()),
                bytes[offset..offset + len].to_vec(),
            )
        })
        .collect()
}

/// Recomputes every section digest and the signature, as a forger holding the key would: used to
/// make snapshots that are validly signed yet break a structural rule.
/// Damaged fields that point outside the file are left as they are.
fn resign(bytes: &mut [u8], signer: &SnapshotSigner) {
    let sections = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let table_end = 64usize.saturating_add(64usize.saturating_mul(sections));
    if table_end.saturating_add(64) > bytes.len() {
        return;
    }
    for s in 0..sections {
        let entry = 64 + 64 * s;
        let offset = u64::from_le_bytes(bytes[entry + 8..entry + 16].try_into().unwrap()) as usize;
        let len = u64::from_le_bytes(bytes[entry + 16..entry + 24].try_into().unwrap()) as usize;
        let Some(body) = bytes.get(offset..offset.saturating_add(len)) else { continue };
        let digest = *blake3::hash(body).as_bytes();
        bytes[entry + 32..entry + 64].copy_from_slice(&digest);
    }
    let mut message = b"tollgate snapshot v1\0".to_vec();
    message.extend_from_slice(&bytes[..table_end]);
    let signature = signer.sign(&message);
    bytes[table_end..table_end + 64].copy_from_slice(&signature);
}

fn load(bytes: &[u8]) -> Result<Snapshot<'_>, SnapshotError> {
    Snapshot::load(bytes, &[signer().edge_key()])
}

#[test]
fn loads_what_was_built_and_finds_every_entity() {
    let s = signer();
    let tables = rows(&s, 1000, 300);
    let bytes = build_snapshot(&meta(&s), tables.clone(), &s).unwrap();
    let snap = load(&bytes).unwrap();
    assert_eq!(snap.meta(), &meta(&s));
    for (e, table) in tables.iter().enumerate() {
        let t = snap.table(e).unwrap();
        assert_eq!(t.len(), table.len());
        for (key, aggregates) in table {
            assert_eq!(t.lookup(*key), Ok(Some(*aggregates)));
        }
        assert_eq!(t.lookup(s.id_hash().hash(b"never seen")), Ok(None));
    }
}

#[test]
fn loads_the_model_and_the_policy_it_was_built_with() {
    let bytes = small_snapshot();
    let snap = load(&bytes).unwrap();
    assert_eq!(snap.model(), Some(&model()));
    assert_eq!(snap.policy(), Some(&policy()));
    assert_eq!(snap.meta().model_id.as_deref(), Some("lr-test"));
    assert_eq!(snap.id_hash(), signer().id_hash());
    assert_eq!(assemble(&small_sections(), &signer()), bytes, "the test assembler lays out as the builder");
}

#[test]
fn a_snapshot_without_model_or_policy_still_serves_features() {
    let bytes = build_snapshot(&meta(&signer()), rows(&signer(), 5, 3), &signer()).unwrap();
    let snap = load(&bytes).unwrap();
    assert!(snap.model().is_none() && snap.policy().is_none());
    assert_eq!(snap.table(0).unwrap().len(), 5);
}

#[test]
fn the_builder_refuses_models_and_policies_that_do_not_fit() {
    let s = signer();
    let short = Model::Logistic(Logistic { weights: vec![1.0; 14], intercept: 0.0 });
    let build = |meta: &SnapshotMeta, model: Option<&Model>, policy: Option<&Policy>| {
        build_snapshot_with(meta, rows(&s, 2, 2), model, policy, &s).unwrap_err()
    };
    assert_eq!(
        build(&meta_with_model(&s), Some(&short), None),
        BuildError::ModelFeatureCount { model: 14, schema: 15 }
    );
    assert_eq!(build(&meta(&s), Some(&model()), None), BuildError::ModelId);
    assert_eq!(build(&meta_with_model(&s), None, None), BuildError::ModelId);
    let stray = scorer::snapshot::ModelLineage { model_id: "gbdt-other".into(), ..Default::default() };
    let with_stray = SnapshotMeta { lineage: Some(stray), ..meta_with_model(&s) };
    assert_eq!(build(&with_stray, Some(&model()), None), BuildError::LineageModelId);
    let code = ReasonCode::new("X").unwrap();
    let stray = Policy::DEFAULT.with_block_list(BlockList::new(2, code, vec![])).unwrap();
    assert_eq!(
        build(&meta(&s), None, Some(&stray)),
        BuildError::Policy(PolicyError::UnknownEntity { list: 0, entity: 2 })
    );
}

#[test]
fn refuses_models_and_policies_that_do_not_fit_even_when_validly_signed() {
    let s = signer();
    let base = small_sections();
    let with = |i: usize, body: Vec<u8>| {
        let mut sections = base.clone();
        sections[i].4 = body;
        assemble(&sections, &s)
    };
    // A tree model reading 14 features (the schema has 15).
    let leaf = |value| Node { feature: u16::MAX, default_left: false, value, left: 0, right: 0 };
    let trees = Model::Trees(TreeEnsemble {
        n_features: 14,
        nodes: vec![
            Node { feature: 0, default_left: true, value: 1.0, left: 1, right: 2 },
            leaf(0.0),
            leaf(1.0),
        ],
        roots: vec![0],
        base_margin: 0.0,
        output: TreeOutput::Logistic,
    });
    let bytes = with(3, trees.encode());
    assert_eq!(
        load(&bytes).unwrap_err(),
        SnapshotError::Model(ModelError::FeatureCount { model: 14, schema: 15 })
    );
    let bytes = with(3, vec![9, 9, 9]);
    assert!(matches!(load(&bytes).unwrap_err(), SnapshotError::Model(_)));
    let code = ReasonCode::new("X").unwrap();
    let stray = Policy::DEFAULT.with_block_list(BlockList::new(2, code, vec![])).unwrap();
    let bytes = with(4, stray.encode());
    assert_eq!(
        load(&bytes).unwrap_err(),
        SnapshotError::Policy(PolicyError::UnknownEntity { list: 0, entity: 2 })
    );
    let bytes = with(4, vec![0x80]);
    assert_eq!(load(&bytes).unwrap_err(), SnapshotError::Policy(PolicyError::Missing("review_at")));
}

#[test]
fn refuses_a_model_without_its_id_repeated_sections_and_stray_section_fields() {
    let s = signer();
    let base = small_sections();
    let without =
        |kinds: &[u16]| -> Vec<_> { base.iter().filter(|x| !kinds.contains(&x.0)).cloned().collect() };
    // META without model_id, MODEL present.
    let mut sections = base.clone();
    sections[0].4 = meta(&s).encode();
    let err = load(&assemble(&sections, &s)).unwrap_err();
    assert_eq!(err, SnapshotError::Sections("META model_id and the MODEL section must come together"));
    // model_id present, MODEL absent.
    assert!(matches!(load(&assemble(&without(&[3]), &s)).unwrap_err(), SnapshotError::Sections(_)));
    // Neither: fine; no policy: fine.
    let mut sections = without(&[3, 4]);
    sections[0].4 = meta(&s).encode();
    assert!(load(&assemble(&sections, &s)).is_ok());
    for kind in [3u16, 4] {
        let mut sections = base.clone();
        sections.push(base.iter().find(|x| x.0 == kind).unwrap().clone());
        assert!(matches!(load(&assemble(&sections, &s)).unwrap_err(), SnapshotError::Sections(_)));
    }
    let mut sections = base.clone();
    sections[3].1 = 1; // an entity index on the MODEL section
    assert_eq!(load(&assemble(&sections, &s)).unwrap_err(), SnapshotError::SectionLayout { section: 3 });
}

#[test]
fn handbook_rows_are_at_most_48_bytes_per_customer() {
    let bytes = small_snapshot();
    let snap = load(&bytes).unwrap();
    assert_eq!(snap.table(0).unwrap().row_width(), 48);
    assert_eq!(snap.table(1).unwrap().row_width(), 32);
}

#[test]
fn refuses_every_truncation() {
    let bytes = small_snapshot();
    for cut in 0..bytes.len() {
        assert!(load(&bytes[..cut]).is_err(), "accepted a snapshot cut at byte {cut}");
    }
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0; 8]);
    assert!(matches!(load(&longer), Err(SnapshotError::LengthMismatch { .. })));
}

#[test]
fn refuses_any_single_flipped_bit() {
    let bytes = small_snapshot();
    let mut copy = bytes.clone();
    for byte in 0..bytes.len() {
        for bit in 0..8 {
            copy[byte] ^= 1 << bit;
            assert!(load(&copy).is_err(), "accepted a flip of bit {bit} of byte {byte}");
            copy[byte] ^= 1 << bit;
        }
    }
    assert!(load(&copy).is_ok());
}

#[test]
fn refuses_a_snapshot_signed_by_another_key() {
    let bytes = small_snapshot();
    let stranger = SnapshotSigner::from_secret([4; 32], IdHashKey([5; 16]));
    assert!(matches!(
        Snapshot::load(&bytes, &[stranger.edge_key()]),
        Err(SnapshotError::UnknownSigner { .. })
    ));
    // Same key id but a different signature: re-signed by the stranger under the trusted key id.
    let mut forged = bytes.clone();
    let sections = u32::from_le_bytes(forged[12..16].try_into().unwrap()) as usize;
    let table_end = 64 + 64 * sections;
    let mut message = b"tollgate snapshot v1\0".to_vec();
    message.extend_from_slice(&forged[..table_end]);
    let signature = stranger.sign(&message);
    forged[table_end..table_end + 64].copy_from_slice(&signature);
    assert_eq!(load(&forged).unwrap_err(), SnapshotError::BadSignature);
}

#[test]
fn refuses_an_unsigned_snapshot() {
    let mut bytes = small_snapshot();
    let sections = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let table_end = 64 + 64 * sections;
    bytes[table_end..table_end + 64].fill(0);
    assert_eq!(load(&bytes).unwrap_err(), SnapshotError::BadSignature);
}

#[test]
fn refuses_a_future_major_version_before_anything_else() {
    let mut bytes = small_snapshot();
    bytes[8] = 2;
    let err = load(&bytes).unwrap_err();
    assert_eq!(err, SnapshotError::UnsupportedVersion { found: 2, supported: 1 });
    assert!(err.to_string().contains("version 2 is not supported"));
}

#[test]
fn refuses_rows_out_of_order_even_when_validly_signed() {
    let s = signer();
    let mut bytes = small_snapshot();
    // Swap the first two customer rows (48 bytes each) of the second section and re-sign.
    let entry = 64 + 64;
    let offset = u64::from_le_bytes(bytes[entry + 8..entry + 16].try_into().unwrap()) as usize;
    let (a, b) = bytes[offset..offset + 96].split_at_mut(48);
    a.swap_with_slice(b);
    resign(&mut bytes, &s);
    assert_eq!(load(&bytes).unwrap_err(), SnapshotError::RowsOutOfOrder { entity: 0, row: 1 });
}

#[test]
fn refuses_a_snapshot_with_no_entity() {
    let s = signer();
    let bytes = build_snapshot(&meta(&s), vec![vec![], vec![]], &s).unwrap();
    assert_eq!(load(&bytes).unwrap_err(), SnapshotError::Empty);
}

#[test]
fn refuses_ids_hashed_with_another_key() {
    let s = signer();
    let bytes = small_snapshot();
    let other_hash = SnapshotSigner::from_secret([3; 32], IdHashKey([6; 16]));
    let err = Snapshot::load(&bytes, &[other_hash.edge_key()]).unwrap_err();
    assert_eq!(err, SnapshotError::IdHashKeyMismatch);
    assert!(Snapshot::load(&bytes, &[EdgeKey::from_text(&s.edge_key().to_text()).unwrap()]).is_ok());
}

/// A snapshot of `customers` and `terminals` with tables in parts of at most `part_bytes`.
fn parted_snapshot(customers: u64, terminals: u64, part_bytes: usize) -> Vec<u8> {
    let s = signer();
    let tables = rows(&s, customers, terminals);
    build_snapshot_in_parts(&meta_with_model(&s), tables, Some(&model()), Some(&policy()), &s, part_bytes)
        .unwrap()
}

#[test]
fn tables_in_parts_load_whole_and_find_every_entity() {
    let s = signer();
    let whole =
        build_snapshot_with(&meta_with_model(&s), rows(&s, 3000, 500), Some(&model()), Some(&policy()), &s)
            .unwrap();
    let bytes = parted_snapshot(3000, 500, 16 << 10);
    assert_eq!(u16::from_le_bytes([whole[10], whole[11]]), 1, "a file without parts stays 1.1");
    assert_eq!(u16::from_le_bytes([bytes[10], bytes[11]]), 2, "a file with parts is 1.2");
    let snap = load(&bytes).unwrap();
    let customers = snap.table(0).unwrap();
    assert_eq!(customers.part_count(), 16, "3000 rows x 48 B in parts of at most 16 KiB");
    assert_eq!(snap.table(1).unwrap().part_count(), 1, "500 x 32 B fit one part");
    assert_eq!(snap.size(), bytes.len());
    for (e, table) in rows(&s, 3000, 500).iter().enumerate() {
        let t = snap.table(e).unwrap();
        assert_eq!(t.len(), table.len());
        for (key, aggregates) in table {
            assert_eq!(t.lookup(*key), Ok(Some(*aggregates)));
        }
        assert!((0..t.part_count()).all(|p| t.part_len(p).unwrap() <= 16 << 10));
    }
}

#[test]
fn parts_load_on_demand_each_verified_against_the_signed_table() {
    let s = signer();
    let bytes = parted_snapshot(2000, 300, 8 << 10);
    let pieces = SnapshotPieces::split(&bytes).unwrap();
    // The core is the head, META, MODEL and POLICY: no rows.
    assert!(pieces.core.len() * 20 < bytes.len(), "core {} of {} bytes", pieces.core.len(), bytes.len());
    let trusted = [s.edge_key()];
    let mut snap = Snapshot::load_core(&pieces.core, &trusted).unwrap();
    assert_eq!(snap.model(), Some(&model()));
    assert_eq!(snap.policy(), Some(&policy()));
    let rows = rows(&s, 2000, 300);
    let (key, aggregates) = rows[0][17];
    let t = snap.table(0).unwrap();
    assert_eq!(t.len(), 2000, "the row count is known before any part is loaded");
    let part = t.part_of(key);
    assert_eq!(t.lookup(key), Err(PartMissing { entity: 0, part }));
    let range =
        |e: usize, p: usize| pieces.parts.iter().find(|(pe, pp, _)| (*pe, *pp) == (e, p)).unwrap().2.clone();
    // Damaged bytes, another part's bytes and a wrong index are refused; nothing is loaded.
    let mut damaged = bytes[range(0, part)].to_vec();
    damaged[9] ^= 1;
    assert!(matches!(snap.insert_part(0, part, damaged), Err(SnapshotError::SectionDigest { .. })));
    let other = (part + 1) % snap.table(0).unwrap().part_count();
    assert!(snap.insert_part(0, part, bytes[range(0, other)].to_vec()).is_err());
    assert_eq!(snap.insert_part(0, 99, vec![]), Err(SnapshotError::NoSuchPart { entity: 0, part: 99 }));
    assert!(!snap.table(0).unwrap().is_loaded(part));
    // The right bytes load, and the entity is found.
    snap.insert_part(0, part, bytes[range(0, part)].to_vec()).unwrap();
    assert_eq!(snap.table(0).unwrap().lookup(key), Ok(Some(aggregates)));
    assert!(snap.evict_part(0, part));
    assert_eq!(snap.table(0).unwrap().lookup(key), Err(PartMissing { entity: 0, part }));
    // Every part loaded: the same answers as the whole file.
    for (e, p, r) in &pieces.parts {
        snap.insert_part(*e, *p, bytes[r.clone()].to_vec()).unwrap();
    }
    let whole = load(&bytes).unwrap();
    for (e, table) in rows.iter().enumerate() {
        for (k, _) in table {
            assert_eq!(snap.table(e).unwrap().lookup(*k), whole.table(e).unwrap().lookup(*k));
        }
    }
}

#[test]
fn a_scorer_names_the_parts_a_request_needs_and_scores_like_the_whole_file() {
    let s = signer();
    let bytes = parted_snapshot(2000, 300, 8 << 10);
    let pieces = SnapshotPieces::split(&bytes).unwrap();
    let trusted = [s.edge_key()];
    let mut whole = Scorer::new(load(&bytes).unwrap());
    let mut parted = Scorer::new(Snapshot::load_core(&pieces.core, &trusted).unwrap());
    let request = |c: u64, t: u64| {
        format!(
            r#"{{"transaction_id":"t{c}","customer_id":"{c}","terminal_id":"{}","amount":42.5,"time":1533690000}}"#,
            1_000_000 + t
        )
    };
    let (single, batch) =
        (request(7, 3), format!("[{},{},{{\"amount\":\"x\"}}]", request(1500, 299), request(9999, 1)));
    for (input, is_batch) in [(single.as_bytes(), false), (batch.as_bytes(), true)] {
        let mut out = Vec::new();
        parted.score_bytes(input, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        if !is_batch {
            assert!(text.contains(r#""error_kind":"part_missing""#), "{text}");
            assert!(text.contains("customer_id is not loaded"), "{text}");
        }
        let mut missing = Vec::new();
        parted.needed_parts(input, is_batch, &mut missing);
        assert!(!missing.is_empty() && missing.len() <= if is_batch { 4 } else { 2 }, "{missing:?}");
        let snap = parted.snapshot();
        assert!(is_batch || missing.iter().all(|&(e, p)| !snap.table(e).unwrap().is_loaded(p)));
        for (e, p) in missing {
            let range = pieces.parts.iter().find(|(pe, pp, _)| (*pe, *pp) == (e, p)).unwrap().2.clone();
            parted.insert_part(e, p, bytes[range].to_vec()).unwrap();
        }
        let mut again = Vec::new();
        parted.needed_parts(input, is_batch, &mut again);
        let snap = parted.snapshot();
        assert!(again.iter().all(|&(e, p)| snap.table(e).unwrap().is_loaded(p)), "{again:?}");
        let (mut a, mut b) = (Vec::new(), Vec::new());
        if is_batch {
            parted.score_batch_bytes(input, &mut a);
            whole.score_batch_bytes(input, &mut b);
        } else {
            parted.score_bytes(input, &mut a);
            whole.score_bytes(input, &mut b);
        }
        assert_eq!(
            String::from_utf8(a).unwrap(),
            String::from_utf8(b).unwrap(),
            "the same bytes as the whole file"
        );
    }
}

#[test]
fn a_damaged_or_unsigned_core_is_refused() {
    let s = signer();
    let bytes = parted_snapshot(2000, 300, 8 << 10);
    let core = SnapshotPieces::split(&bytes).unwrap().core;
    let trusted = [s.edge_key()];
    for at in [12, 70, core.len() - 1, core.len() - 200] {
        let mut damaged = core.clone();
        damaged[at] ^= 0x10;
        assert!(Snapshot::load_core(&damaged, &trusted).is_err(), "a flipped bit at {at} was accepted");
    }
    assert!(Snapshot::load_core(&core[..core.len() - 8], &trusted).is_err());
    let other = SnapshotSigner::from_secret([4; 32], IdHashKey([5; 16]));
    assert!(matches!(
        Snapshot::load_core(&core, &[other.edge_key()]),
        Err(SnapshotError::UnknownSigner { .. })
    ));
    // A whole file is not a core, and a core is not a whole file.
    assert!(Snapshot::load_core(&bytes, &trusted).is_err());
    assert!(load(&core).is_err());
}

#[test]
fn refuses_a_part_holding_keys_of_another_range_even_when_validly_signed() {
    let s = signer();
    let mut bytes = parted_snapshot(2000, 300, 8 << 10);
    let pieces = SnapshotPieces::split(&bytes).unwrap();
    // Swap the first rows of customer parts 0 and 1 (48 bytes each) and re-sign.
    let (a, b) = (pieces.parts[0].2.start, pieces.parts[1].2.start);
    let first: Vec<u8> = bytes[a..a + 48].to_vec();
    bytes.copy_within(b..b + 48, a);
    bytes[b..b + 48].copy_from_slice(&first);
    resign(&mut bytes, &s);
    assert!(matches!(
        load(&bytes),
        Err(SnapshotError::PartRange { entity: 0, .. } | SnapshotError::RowsOutOfOrder { entity: 0, .. })
    ));
}

/// Proptest cases per property: `TOLLGATE_FUZZ_CASES` or 2,000.
fn fuzz_cases() -> u32 {
    std::env::var("TOLLGATE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000)
}

proptest! {
    // 2,000 cases in CI; `TOLLGATE_FUZZ_CASES=N` runs longer (docs/snapshot-format.md records one).
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = load(&bytes);
    }

    #[test]
    fn damaged_real_snapshots_never_panic(edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let mut bytes = small_snapshot();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let _ = load(&bytes);
        // Damage behind a valid signature reaches the structural checks too.
        resign(&mut bytes, &signer());
        let _ = load(&bytes);
    }

    #[test]
    fn finds_exactly_the_keys_present(keys in proptest::collection::btree_set(any::<u64>(), 1..2000), probes in proptest::collection::vec(any::<u64>(), 0..200), part_rows in prop_oneof![Just(usize::MAX), 1usize..400]) {
        // Whole tables, and tables in parts of at most `part_rows` rows (48-byte rows).
        let s = signer();
        let table: Vec<(EntityKey, Aggregates)> = keys.iter().map(|&k| (EntityKey(k), Aggregates::ZERO)).collect();
        let bytes = build_snapshot_in_parts(&meta(&s), vec![table, vec![]], None, None, &s, part_rows.saturating_mul(48)).unwrap();
        let snap = load(&bytes).unwrap();
        let t = snap.table(0).unwrap();
        for &k in &keys {
            prop_assert!(t.lookup(EntityKey(k)).unwrap().is_some());
        }
        for p in probes {
            prop_assert_eq!(t.lookup(EntityKey(p)).unwrap().is_some(), keys.contains(&p));
        }
        let all: Vec<EntityKey> = t.rows().map(|(k, _)| k).collect();
        prop_assert_eq!(all, keys.iter().map(|&k| EntityKey(k)).collect::<Vec<_>>());
    }
}
