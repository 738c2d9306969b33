//! The checks every row passes, whatever the file format: parsing single fields from text, and
//! the checks across rows (duplicate ids, time order, TX_TIME_SECONDS/DAYS against the origin)
//! made just before a row joins the table.

use super::columns::Fields;
use super::{Place, RowProblem, TimeOrder};
use crate::{EntityIds, Transactions};
use foldhash::{HashMap, HashMapExt};
use scorer::Timestamp;
use scorer::time::SECONDS_PER_DAY;

/// A customer or terminal id: its text, or its index when the reader already knows it.
#[derive(Clone, Copy, Debug)]
pub(super) enum Entity<'a> {
    /// The id's text, interned when the row is accepted.
    Text(&'a str),
    /// The index of an id already interned.
    Index(u32),
}

/// One row's values, parsed and checked on their own.
#[derive(Clone, Copy, Debug)]
pub(super) struct Row<'a> {
    pub id: u64,
    pub time: Timestamp,
    pub customer: Entity<'a>,
    pub terminal: Entity<'a>,
    pub amount: f64,
    pub fraud: u8,
    pub scenario: u8,
    pub seconds: Option<i64>,
    pub days: Option<i64>,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A transaction id: decimal digits only, at most `u64::MAX`.
pub(super) fn parse_id(column: &str, b: &[u8]) -> Result<u64, RowProblem> {
    if b.is_empty() {
        return Err(RowProblem::Empty { column: column.into() });
    }
    parse_digits(b).ok_or_else(|| RowProblem::NotAnId { column: column.into(), text: lossy(b) })
}

fn parse_digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(d))?;
    }
    Some(v)
}

/// A signed integer (TX_TIME_SECONDS, TX_TIME_DAYS): an optional `-`, then decimal digits.
pub(super) fn parse_i64(column: &str, b: &[u8]) -> Result<i64, RowProblem> {
    if b.is_empty() {
        return Err(RowProblem::Empty { column: column.into() });
    }
    let (negative, digits) = match b.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, b),
    };
    let not_integer = || RowProblem::NotAnInteger { column: column.into(), text: lossy(b) };
    let v = parse_digits(digits).ok_or_else(not_integer)?;
    let v = if negative { 0i64.checked_sub_unsigned(v) } else { i64::try_from(v).ok() };
    v.ok_or_else(|| RowProblem::OutOfRange { column: column.into(), text: lossy(b) })
}

/// A date-time, read by [`Timestamp`]'s parser.
pub(super) fn parse_time(column: &str, b: &[u8]) -> Result<Timestamp, RowProblem> {
    if b.is_empty() {
        return Err(RowProblem::Empty { column: column.into() });
    }
    let text = std::str::from_utf8(b).map_err(|_| RowProblem::NotUtf8 { column: column.into() })?;
    text.parse::<Timestamp>().map_err(|error| RowProblem::BadDateTime {
        column: column.into(),
        text: text.into(),
        error,
    })
}

/// A customer or terminal id: any non-empty UTF-8 text.
pub(super) fn parse_text<'a>(column: &str, b: &'a [u8]) -> Result<&'a str, RowProblem> {
    if b.is_empty() {
        return Err(RowProblem::Empty { column: column.into() });
    }
    std::str::from_utf8(b).map_err(|_| RowProblem::NotUtf8 { column: column.into() })
}

/// An amount, read exactly by the standard library's parser, then checked by [`check_amount`].
pub(super) fn parse_amount(column: &str, b: &[u8]) -> Result<f64, RowProblem> {
    if b.is_empty() {
        return Err(RowProblem::Empty { column: column.into() });
    }
    let not_a_number = || RowProblem::NotANumber { column: column.into(), text: lossy(b) };
    let text = std::str::from_utf8(b).map_err(|_| not_a_number())?;
    let v = text.parse::<f64>().map_err(|_| not_a_number())?;
    check_amount(column, v, || text.to_string())
}

/// Refuses NaN, infinite and negative amounts; `text` renders the value for the message.
pub(super) fn check_amount(column: &str, v: f64, text: impl FnOnce() -> String) -> Result<f64, RowProblem> {
    if !v.is_finite() {
        Err(RowProblem::NotFinite { column: column.into(), text: text() })
    } else if v.is_sign_negative() {
        Err(RowProblem::Negative { column: column.into(), text: text() })
    } else {
        Ok(v)
    }
}

/// A fraud label: exactly `0` or `1`.
pub(super) fn parse_label(column: &str, b: &[u8]) -> Result<u8, RowProblem> {
    match b {
        b"0" => Ok(0),
        b"1" => Ok(1),
        b"" => Err(RowProblem::Empty { column: column.into() }),
        _ => Err(RowProblem::NotALabel { column: column.into(), text: lossy(b) }),
    }
}

/// A fraud scenario: exactly one digit 0..=3.
pub(super) fn parse_scenario(column: &str, b: &[u8]) -> Result<u8, RowProblem> {
    match b {
        [c @ b'0'..=b'3'] => Ok(c - b'0'),
        b"" => Err(RowProblem::Empty { column: column.into() }),
        _ => Err(RowProblem::NotAScenario { column: column.into(), text: lossy(b) }),
    }
}

/// A fraud label given as an integer.
pub(super) fn check_label(column: &str, v: i128) -> Result<u8, RowProblem> {
    match v {
        0 | 1 => Ok(v as u8),
        _ => Err(RowProblem::NotALabel { column: column.into(), text: v.to_string() }),
    }
}

/// A fraud scenario given as an integer.
pub(super) fn check_scenario(column: &str, v: i128) -> Result<u8, RowProblem> {
    match v {
        0..=3 => Ok(v as u8),
        _ => Err(RowProblem::NotAScenario { column: column.into(), text: v.to_string() }),
    }
}

/// Entity ids already interned, found without hashing and comparing text: integer ids by value,
/// text ids of up to 7 bytes packed into a `u64` with their length. Longer ids are interned by
/// their text each time.
#[derive(Default)]
pub(super) struct EntityCache {
    ints: HashMap<i64, u32>,
    short: HashMap<u64, u32>,
}

/// Where an id would sit in an [`EntityCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CacheKey {
    /// An integer id.
    Int(i64),
    /// A text id of up to 7 bytes, packed.
    Short(u64),
}

impl EntityCache {
    /// The index cached under `key`.
    #[inline]
    pub fn get(&self, key: CacheKey) -> Option<u32> {
        match key {
            CacheKey::Int(k) => self.ints.get(&k).copied(),
            CacheKey::Short(k) => self.short.get(&k).copied(),
        }
    }

    /// A text id: its index when cached, else the text and the key to [`EntityCache::learn`] it under.
    #[inline]
    pub fn text<'b>(&self, text: &'b str) -> (Entity<'b>, Option<CacheKey>) {
        let key = pack(text.as_bytes()).map(CacheKey::Short);
        match key.and_then(|k| self.get(k)) {
            Some(index) => (Entity::Index(index), None),
            None => (Entity::Text(text), key),
        }
    }

    /// Records the index an id was interned under, once its row is accepted.
    pub fn learn(&mut self, key: Option<CacheKey>, index: u32) {
        match key {
            Some(CacheKey::Int(k)) => {
                self.ints.insert(k, index);
            }
            Some(CacheKey::Short(k)) => {
                self.short.insert(k, index);
            }
            None => {}
        }
    }
}

/// Up to 7 bytes and their length in one `u64` (distinct texts give distinct keys).
fn pack(text: &[u8]) -> Option<u64> {
    if text.len() > 7 {
        return None;
    }
    let mut bytes = [0u8; 8];
    bytes[..text.len()].copy_from_slice(text);
    bytes[7] = text.len() as u8;
    Some(u64::from_le_bytes(bytes))
}

fn intern(ids: &mut EntityIds, entity: Entity<'_>, column: &str) -> Result<u32, RowProblem> {
    match entity {
        Entity::Index(i) => Ok(i),
        Entity::Text(text) => {
            ids.intern(text).ok_or_else(|| RowProblem::TooManyIds { column: column.into() })
        }
    }
}

/// Builds the table from rows that passed the single-field checks, making the checks across rows.
pub(super) struct TableBuilder<'n> {
    names: &'n Fields<String>,
    time_order: TimeOrder,
    place: fn(u64) -> Place,
    tx: Transactions,
    /// Where each accepted row is (line or row number), to name a duplicate's first occurrence.
    places: Vec<u64>,
    /// The largest id so far: while ids only increase, no set of ids is needed.
    max_id: Option<u64>,
    /// Every accepted id and its row, built once an id fails to increase.
    seen: Option<HashMap<u64, u32>>,
    last_time: Option<Timestamp>,
    origin: Option<Timestamp>,
    out_of_order: bool,
}

impl<'n> TableBuilder<'n> {
    /// An empty table; `place` turns a position into a [`Place`] (CSV line or Parquet row).
    pub fn new(
        names: &'n Fields<String>,
        time_order: TimeOrder,
        place: fn(u64) -> Place,
    ) -> TableBuilder<'n> {
        TableBuilder {
            names,
            time_order,
            place,
            tx: Transactions::default(),
            places: Vec::new(),
            max_id: None,
            seen: None,
            last_time: None,
            origin: None,
            out_of_order: false,
        }
    }

    /// Reserves room for `rows` more rows.
    pub fn reserve(&mut self, rows: usize) {
        let tx = &mut self.tx;
        tx.transaction_id.reserve(rows);
        tx.time.reserve(rows);
        tx.customer.reserve(rows);
        tx.terminal.reserve(rows);
        tx.amount.reserve(rows);
        tx.fraud.reserve(rows);
        tx.scenario.reserve(rows);
        self.places.reserve(rows);
    }

    /// Makes the checks across rows and adds the row, or says why it is rejected. Returns the
    /// row's customer and terminal indices.
    pub fn push(&mut self, position: u64, row: &Row<'_>) -> Result<(u32, u32), RowProblem> {
        self.check_duplicate(row.id)?;
        if let Some(previous) = self.last_time
            && row.time < previous
        {
            match self.time_order {
                TimeOrder::Require => {
                    return Err(RowProblem::TimeBackwards {
                        column: self.names.time.clone(),
                        time: row.time,
                        previous,
                    });
                }
                TimeOrder::Sort => self.out_of_order = true,
            }
        }
        let origin = match self.origin {
            Some(origin) => origin,
            None => self.first_origin(row)?,
        };
        self.check_time_columns(row, origin)?;
        let customer = intern(&mut self.tx.customers, row.customer, &self.names.customer)?;
        let terminal = intern(&mut self.tx.terminals, row.terminal, &self.names.terminal)?;

        // Accepted: commit.
        let index = self.tx.transaction_id.len() as u32;
        if let Some(seen) = &mut self.seen {
            seen.insert(row.id, index);
        }
        self.max_id = Some(self.max_id.map_or(row.id, |m| m.max(row.id)));
        self.last_time = Some(self.last_time.map_or(row.time, |t| t.max(row.time)));
        self.origin = Some(origin);
        self.places.push(position);
        let tx = &mut self.tx;
        tx.transaction_id.push(row.id);
        tx.time.push(row.time);
        tx.customer.push(customer);
        tx.terminal.push(terminal);
        tx.amount.push(row.amount);
        tx.fraud.push(row.fraud);
        tx.scenario.push(row.scenario);
        Ok((customer, terminal))
    }

    fn check_duplicate(&mut self, id: u64) -> Result<(), RowProblem> {
        if self.seen.is_none() && self.max_id.is_some_and(|m| id <= m) {
            let mut seen = HashMap::with_capacity(self.tx.transaction_id.len() * 2);
            for (i, &id) in self.tx.transaction_id.iter().enumerate() {
                seen.insert(id, i as u32);
            }
            self.seen = Some(seen);
        }
        match self.seen.as_ref().and_then(|seen| seen.get(&id)) {
            Some(&first) => Err(RowProblem::DuplicateId {
                column: self.names.id.clone(),
                id,
                first: (self.place)(self.places[first as usize]),
            }),
            None => Ok(()),
        }
    }

    /// The origin implied by the first accepted row: its time minus its TX_TIME_SECONDS, else
    /// midnight of its day minus its TX_TIME_DAYS, else midnight of its day.
    fn first_origin(&self, row: &Row<'_>) -> Result<Timestamp, RowProblem> {
        let (column, back) = match (row.seconds, row.days, &self.names.seconds, &self.names.days) {
            (Some(s), _, Some(column), _) => (column, i128::from(row.time.0) - i128::from(s)),
            (None, Some(d), _, Some(column)) => {
                (column, i128::from(row.time.start_of_day().0) - i128::from(d) * i128::from(SECONDS_PER_DAY))
            }
            _ => return Ok(row.time.start_of_day()),
        };
        let text = || row.seconds.or(row.days).unwrap_or_default().to_string();
        i64::try_from(back)
            .map(Timestamp)
            .map_err(|_| RowProblem::OutOfRange { column: column.clone(), text: text() })
    }

    fn check_time_columns(&self, row: &Row<'_>, origin: Timestamp) -> Result<(), RowProblem> {
        if row.seconds.is_none() && row.days.is_none() {
            return Ok(());
        }
        let Some(since) = row.time.0.checked_sub(origin.0) else {
            let column = self.names.time.clone();
            return Err(RowProblem::OutOfRange { column, text: row.time.to_string() });
        };
        let mismatch = |column: &Option<String>, found: i64, expected: i64, unit| RowProblem::TimeMismatch {
            column: column.clone().unwrap_or_default(),
            time_column: self.names.time.clone(),
            found,
            expected,
            unit,
            origin,
        };
        if let Some(s) = row.seconds
            && s != since
        {
            return Err(mismatch(&self.names.seconds, s, since, "seconds"));
        }
        let days = since.div_euclid(SECONDS_PER_DAY);
        if let Some(d) = row.days
            && d != days
        {
            return Err(mismatch(&self.names.days, d, days, "days"));
        }
        Ok(())
    }

    /// The table, sorted by (time, file order) when rows came out of order; true when sorted.
    pub fn finish(self) -> (Transactions, bool) {
        let mut tx = self.tx;
        tx.origin = self.origin.unwrap_or_default();
        if !self.out_of_order {
            return (tx, false);
        }
        let mut order: Vec<u32> = (0..tx.len() as u32).collect();
        // A stable sort: equal times keep their file order.
        order.sort_by_key(|&i| tx.time[i as usize]);
        fn gather<T: Copy>(v: &mut Vec<T>, order: &[u32]) {
            *v = order.iter().map(|&i| v[i as usize]).collect();
        }
        gather(&mut tx.transaction_id, &order);
        gather(&mut tx.time, &order);
        gather(&mut tx.customer, &order);
        gather(&mut tx.terminal, &order);
        gather(&mut tx.amount, &order);
        gather(&mut tx.fraud, &order);
        gather(&mut tx.scenario, &order);
        (tx, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ids_and_refuses_signs_fractions_and_overflow() {
        assert_eq!(parse_id("ID", b"18446744073709551615"), Ok(u64::MAX));
        for bad in ["18446744073709551616", "-1", "+1", "1.0", " 1", "1e3"] {
            assert_eq!(
                parse_id("ID", bad.as_bytes()).unwrap_err().to_string(),
                format!("ID {bad:?} is not an unsigned 64-bit integer")
            );
        }
        assert_eq!(parse_id("ID", b"").unwrap_err().to_string(), "ID is empty");
    }

    #[test]
    fn parses_signed_integers() {
        assert_eq!(parse_i64("S", b"-9223372036854775808"), Ok(i64::MIN));
        assert_eq!(parse_i64("S", b"9223372036854775807"), Ok(i64::MAX));
        assert_eq!(
            parse_i64("S", b"9223372036854775808").unwrap_err().to_string(),
            "S \"9223372036854775808\" is out of range"
        );
        assert_eq!(parse_i64("S", b"-").unwrap_err().to_string(), "S \"-\" is not an integer");
    }

    #[test]
    fn amounts_are_exact_finite_and_not_negative() {
        assert_eq!(parse_amount("A", b"57.16"), Ok(57.16));
        assert_eq!(parse_amount("A", b"0.1").map(f64::to_bits), Ok(0.1f64.to_bits()));
        assert_eq!(parse_amount("A", b"12,5").unwrap_err().to_string(), "A \"12,5\" is not a number");
        assert_eq!(parse_amount("A", b"NaN").unwrap_err().to_string(), "A \"NaN\" is not a finite number");
        assert_eq!(parse_amount("A", b"inf").unwrap_err().to_string(), "A \"inf\" is not a finite number");
        assert_eq!(parse_amount("A", b"-3.5").unwrap_err().to_string(), "A \"-3.5\" is negative");
        assert_eq!(parse_amount("A", b"-0").unwrap_err().to_string(), "A \"-0\" is negative");
    }

    #[test]
    fn entity_cache_finds_short_ids_once_learned() {
        let mut cache = EntityCache::default();
        let (entity, key) = cache.text("596");
        assert!(matches!(entity, Entity::Text("596")));
        cache.learn(key, 4);
        assert!(matches!(cache.text("596"), (Entity::Index(4), None)));
        assert!(matches!(cache.text("596\0"), (Entity::Text(_), Some(_))));
        assert!(matches!(cache.text("a longer id"), (Entity::Text(_), None)));
        assert_ne!(pack(b""), pack(b"\0"));
    }

    #[test]
    fn labels_and_scenarios_are_single_digits() {
        assert_eq!(parse_label("F", b"1"), Ok(1));
        assert_eq!(parse_label("F", b"2").unwrap_err().to_string(), "F \"2\" is not 0 or 1");
        assert_eq!(parse_scenario("S", b"3"), Ok(3));
        assert_eq!(
            parse_scenario("S", b"4").unwrap_err().to_string(),
            "S \"4\" is not a fraud scenario (0, 1, 2 or 3)"
        );
    }
}
