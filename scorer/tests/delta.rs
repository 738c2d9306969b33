//! Snapshot deltas: applying a delta to its base gives the next snapshot byte for byte, a delta
//! against another base is refused naming both digests, and no damage to a delta panics or yields
//! a snapshot that loads.

use proptest::prelude::*;
use scorer::Timestamp;
use scorer::features::{Aggregates, FeatureSchema};
use scorer::model::{Logistic, Model};
use scorer::snapshot::{
    DeltaError, DeltaInfo, EntityKey, IdHashKey, Snapshot, SnapshotMeta, SnapshotSigner, apply_delta,
    build_delta, build_snapshot_in_parts, is_delta,
};
use std::collections::BTreeMap;

fn signer() -> SnapshotSigner {
    SnapshotSigner::from_secret([3; 32], IdHashKey([5; 16]))
}

fn meta(signer: &SnapshotSigner, as_of: i64) -> SnapshotMeta {
    SnapshotMeta {
        snapshot_id: format!("tg-test-{as_of}"),
        as_of: Timestamp(as_of),
        created_at: Timestamp(1_700_000_000),
        data_range: Some((Timestamp(1_522_540_831), Timestamp(as_of - 1))),
        exporter_version: "test".into(),
        id_key_fingerprint: signer.id_hash().fingerprint(),
        schema: FeatureSchema::handbook(),
        model_id: Some("lr-test".into()),
        lineage: None,
        reference: None,
    }
}

fn model() -> Model {
    Model::Logistic(Logistic { weights: (0..15).map(|i| f64::from(i) / 10.0).collect(), intercept: -3.0 })
}

/// Entity tables as maps from key to (a count, an amount sum): enough to vary every row's bytes.
type Tables = [BTreeMap<u64, (u32, f64)>; 2];

/// Customer rows hold amount sums; terminal rows only counts (u32), so their "amount" is whole.
fn aggregates(entity: usize, count: u32, amount: f64) -> Aggregates {
    let mut a = Aggregates::ZERO;
    if entity == 0 {
        a.0[..6].copy_from_slice(&[f64::from(count), amount, 3.0, 30.25, 9.0, 99.125]);
    } else {
        a.0[..6].copy_from_slice(&[f64::from(count), (amount.abs() % 1000.0).floor(), 14.0, 1.0, 60.0, 0.0]);
    }
    a
}

fn snapshot(tables: &Tables, as_of: i64, part_bytes: usize) -> Vec<u8> {
    let s = signer();
    let rows = tables
        .iter()
        .enumerate()
        .map(|(e, t)| t.iter().map(|(&k, &(c, a))| (EntityKey(k), aggregates(e, c, a))).collect())
        .collect();
    build_snapshot_in_parts(&meta(&s, as_of), rows, Some(&model()), None, &s, part_bytes).unwrap()
}

fn loads(bytes: &[u8]) -> bool {
    Snapshot::load(bytes, &[signer().edge_key()]).is_ok()
}

fn tables(customers: u64, terminals: u64) -> Tables {
    let c = (0..customers).map(|i| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15), (1, i as f64))).collect();
    let t = (0..terminals).map(|i| ((i + 7).wrapping_mul(0xC2B2_AE3D_27D4_EB4F), (2, 0.5))).collect();
    [c, t]
}

/// A base and a next snapshot an hour apart: a few rows updated, one inserted, one deleted.
fn pair(part_bytes: usize) -> (Vec<u8>, Vec<u8>) {
    let base_tables = tables(400, 100);
    let mut next_tables = base_tables.clone();
    for (i, (_, v)) in next_tables[0].iter_mut().enumerate().filter(|(i, _)| i % 37 == 0) {
        v.0 += 1 + i as u32;
    }
    next_tables[0].insert(42, (1, 9.5));
    let first = *next_tables[1].keys().next().unwrap();
    next_tables[1].remove(&first);
    (snapshot(&base_tables, 1_533_686_400, part_bytes), snapshot(&next_tables, 1_533_690_000, part_bytes))
}

#[test]
fn applying_a_delta_rebuilds_the_next_snapshot_exactly() {
    for part_bytes in [usize::MAX, 2048] {
        let (base, next) = pair(part_bytes);
        let delta = build_delta(&base, &next).unwrap();
        assert!(is_delta(&delta) && !is_delta(&next));
        assert_eq!(apply_delta(&base, &delta).unwrap(), next);
        assert!(loads(&next));
        // Only the changed rows travel: far smaller than the snapshot.
        assert!(delta.len() * 4 < next.len(), "delta {} bytes, snapshot {}", delta.len(), next.len());
        let info = DeltaInfo::read(&delta).unwrap();
        assert_eq!(info.result_len, next.len() as u64);
        assert_eq!((info.rows_deleted, info.rows_inserted, info.rows_updated), (1, 1, 11));
        assert!(info.patched >= 2 && info.copied >= 1, "{info:?}");
        assert_eq!(info.copied + info.patched + info.literal, info.sections);
    }
}

#[test]
fn a_delta_of_identical_snapshots_copies_every_section() {
    let (base, _) = pair(2048);
    let delta = build_delta(&base, &base).unwrap();
    let info = DeltaInfo::read(&delta).unwrap();
    assert_eq!(info.copied, info.sections);
    assert_eq!(apply_delta(&base, &delta).unwrap(), base);
}

#[test]
fn refuses_a_delta_against_another_base_naming_both_digests() {
    let (base, next) = pair(usize::MAX);
    let delta = build_delta(&base, &next).unwrap();
    let err = apply_delta(&next, &delta).unwrap_err();
    let DeltaError::WrongBase { expected, found } = err.clone() else { panic!("{err:?}") };
    assert_eq!(expected, *blake3::hash(&base).as_bytes());
    assert_eq!(found, *blake3::hash(&next).as_bytes());
    let message = err.to_string();
    assert!(message.contains(&blake3::hash(&base).to_hex().to_string()), "{message}");
    assert!(message.contains(&blake3::hash(&next).to_hex().to_string()), "{message}");
}

#[test]
fn refuses_what_is_not_a_delta() {
    let (base, next) = pair(usize::MAX);
    assert_eq!(apply_delta(&base, &next), Err(DeltaError::NotADelta));
    assert_eq!(apply_delta(&base, b""), Err(DeltaError::NotADelta));
    assert!(matches!(build_delta(b"nonsense", &next), Err(DeltaError::NotASnapshot { which: "base", .. })));
    assert!(matches!(build_delta(&base, &next[..100]), Err(DeltaError::NotASnapshot { which: "next", .. })));
}

#[test]
fn every_single_byte_corruption_is_refused_without_panic() {
    let (base, next) = pair(2048);
    let delta = build_delta(&base, &next).unwrap();
    for at in 0..delta.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut bad = delta.clone();
            bad[at] ^= flip;
            // The minor version (bytes 10-11) is informative: such a delta still rebuilds `next`.
            if let Ok(result) = apply_delta(&base, &bad) {
                assert!(
                    result == next || !loads(&result),
                    "byte {at} ^ {flip:#x} made another snapshot that loads"
                );
                assert!((10..12).contains(&at), "byte {at} ^ {flip:#x} was not noticed");
            }
        }
    }
    for len in 0..delta.len() {
        assert!(apply_delta(&base, &delta[..len]).is_err(), "cut at {len}");
    }
}

/// Edits to a table: (key, Some(value)) upserts, (key, None) deletes.
fn edits() -> impl Strategy<Value = Vec<(u64, Option<(u32, f64)>)>> {
    proptest::collection::vec((any::<u64>(), proptest::option::of((0u32..1000, -1e6f64..1e6))), 0..60)
}

fn table() -> impl Strategy<Value = BTreeMap<u64, (u32, f64)>> {
    proptest::collection::btree_map(any::<u64>(), (0u32..1000, -1e6f64..1e6), 0..300)
}

fn edit(
    table: &BTreeMap<u64, (u32, f64)>,
    edits: &[(u64, Option<(u32, f64)>)],
    salt: usize,
) -> BTreeMap<u64, (u32, f64)> {
    let mut out = table.clone();
    let existing: Vec<u64> = table.keys().copied().collect();
    for (i, (key, value)) in edits.iter().enumerate() {
        // Half the edits touch keys the table has, so that updates and deletes happen.
        let key = if (i + salt).is_multiple_of(2) && !existing.is_empty() {
            existing[*key as usize % existing.len()]
        } else {
            *key
        };
        match value {
            Some(v) => out.insert(key, *v),
            None => out.remove(&key),
        };
    }
    out
}

/// Proptest cases per property: `TOLLGATE_FUZZ_CASES` or 300 (each case builds snapshots).
fn fuzz_cases() -> u32 {
    std::env::var("TOLLGATE_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: fuzz_cases(), ..ProptestConfig::default() })]

    #[test]
    fn apply_of_build_is_the_next_snapshot(
        customers in table(),
        terminals in table(),
        customer_edits in edits(),
        terminal_edits in edits(),
        base_parts in prop_oneof![Just(usize::MAX), 256usize..4096],
        next_parts in prop_oneof![Just(usize::MAX), 256usize..4096],
    ) {
        // A snapshot needs at least one entity.
        let mut base_tables = [customers, terminals];
        base_tables[1].insert(1, (1, 1.0));
        let next_tables = [edit(&base_tables[0], &customer_edits, 0), edit(&base_tables[1], &terminal_edits, 1)];
        prop_assume!(next_tables.iter().any(|t| !t.is_empty()));
        let base = snapshot(&base_tables, 1_533_686_400, base_parts);
        let next = snapshot(&next_tables, 1_533_690_000, next_parts);
        let delta = build_delta(&base, &next).unwrap();
        prop_assert_eq!(apply_delta(&base, &delta).unwrap(), next);
    }

    #[test]
    fn random_damage_to_a_delta_never_panics(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let (base, next) = pair(2048);
        let mut delta = build_delta(&base, &next).unwrap();
        for (at, byte) in edits {
            let at = at % delta.len();
            delta[at] = byte;
        }
        if cut % 3 == 0 {
            delta.truncate(cut % (delta.len() + 1));
        }
        if let Ok(result) = apply_delta(&base, &delta) {
            prop_assert!(!loads(&result) || result == next);
        }
        let _ = DeltaInfo::read(&delta);
    }

    #[test]
    fn arbitrary_bytes_after_the_magic_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let (base, _) = pair(usize::MAX);
        let mut delta = b"TGDELT\r\n\x01\x00".to_vec();
        delta.extend_from_slice(&tail);
        let _ = apply_delta(&base, &delta);
        let _ = DeltaInfo::read(&delta);
    }
}
