//! Snapshots: what is built loads back exactly, and every kind of damage is refused with a typed
//! error, never a panic.

use proptest::prelude::*;
use scorer::Timestamp;
use scorer::features::{Aggregates, FeatureSchema};
use scorer::snapshot::{
    EdgeKey, EntityKey, IdHashKey, Snapshot, SnapshotError, SnapshotMeta, SnapshotSigner, build_snapshot,
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

fn small_snapshot() -> Vec<u8> {
    let s = signer();
    build_snapshot(&meta(&s), rows(&s, 5, 3), &s).unwrap()
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
            assert_eq!(t.lookup(*key), Some(*aggregates));
        }
        assert_eq!(t.lookup(s.id_hash().hash(b"never seen")), None);
    }
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

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

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
    fn finds_exactly_the_keys_present(keys in proptest::collection::btree_set(any::<u64>(), 1..2000), probes in proptest::collection::vec(any::<u64>(), 0..200)) {
        let s = signer();
        let table: Vec<(EntityKey, Aggregates)> = keys.iter().map(|&k| (EntityKey(k), Aggregates::ZERO)).collect();
        let bytes = build_snapshot(&meta(&s), vec![table, vec![]], &s).unwrap();
        let snap = load(&bytes).unwrap();
        let t = snap.table(0).unwrap();
        for &k in &keys {
            prop_assert!(t.find(EntityKey(k)).is_some());
        }
        for p in probes {
            prop_assert_eq!(t.find(EntityKey(p)).is_some(), keys.contains(&p));
        }
    }
}
