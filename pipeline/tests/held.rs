//! The transaction-id index over a long run: ids that are numbers and ids that are not, held
//! while some window may need them, forgotten (and swept out of the index) after, folded again
//! once forgotten.

use pipeline::{LabelEvent, Reason, State, Transaction};
use scorer::Timestamp;
use scorer::features::FeatureSchema;

const DAY: i64 = 86_400;
const T0: i64 = 1_522_540_800;
// The handbook schema's longest reach: 30-day windows delayed by 7 days.
const SPAN: i64 = 37 * DAY;
const STEP: i64 = DAY / 48;

/// The id of the i-th transaction: numbers, text, and digits that are not a canonical number.
fn id(i: i64) -> Vec<u8> {
    match i % 3 {
        0 => i.to_string(),
        1 => format!("tx-{i}"),
        _ => format!("0{i}"),
    }
    .into_bytes()
}

fn tx(i: i64, time: i64) -> Transaction {
    Transaction {
        id: Some(id(i).into()),
        entities: vec![(i % 101).to_string().into_bytes().into(), format!("T{}", i % 13).into_bytes().into()],
        time: Timestamp(time),
        amount: (i % 50) as f64 + 0.25,
    }
}

fn label(i: i64, at: i64) -> LabelEvent {
    LabelEvent { transaction_id: id(i).into(), fraud: true, reported_at: Timestamp(at) }
}

#[test]
fn ids_are_held_while_a_window_needs_them_and_forgotten_after() {
    let schema = FeatureSchema::handbook();
    let mut state = State::new(schema);
    // The times of every transaction folded: those less than SPAN old are the held ones.
    let mut folded: Vec<i64> = Vec::new();
    let mut labels = 0;
    // 120 days, a transaction every half hour: far more ids forgotten than held, so the index
    // is swept several times.
    for i in 0..120 * 48 {
        let now = T0 + i * STEP;
        state.fold_transaction(&tx(i, now)).expect("in order, new id");
        folded.push(now);
        if i >= 48 {
            let again = state.fold_transaction(&tx(i - 48, now)).expect_err("a day old: held");
            assert_eq!(again.reason, Reason::DuplicateTransaction, "step {i}");
        }
        if i >= SPAN / STEP {
            // The oldest transaction still held (SPAN less one step old), whatever sweeps the
            // index has had.
            let oldest = i - (SPAN / STEP - 1);
            let again = state.fold_transaction(&tx(oldest, now)).expect_err("still held");
            assert_eq!(again.reason, Reason::DuplicateTransaction, "step {i}");
        }
        if i >= 30 * 48 && i % 7 == 0 {
            // 30 days old: still held (the delayed windows hold it).
            state.fold_label(&label(i - 30 * 48, now)).expect("held");
            labels += 1;
        }
        if i >= 40 * 48 && i % 5 == 0 {
            let old = i - 40 * 48;
            let gone = state.fold_label(&label(old, now)).expect_err("40 days old: forgotten");
            assert_eq!(gone.reason, Reason::UnknownTransaction, "step {i}");
            // Once forgotten, the same id is a new transaction, held again.
            state.fold_transaction(&tx(old, now)).expect("forgotten: folds again");
            folded.push(now);
            let twice = state.fold_transaction(&tx(old, now)).expect_err("now held again");
            assert_eq!(twice.reason, Reason::DuplicateTransaction, "step {i}");
        }
        let held = folded.iter().filter(|&&t| t > now - SPAN).count();
        assert_eq!(state.held_transactions(), held, "step {i}");
    }
    assert_eq!(state.counts().labels, labels);
    assert_eq!(state.counts().transactions, folded.len() as u64);
}
