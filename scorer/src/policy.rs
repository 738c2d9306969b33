//! The decision policy a snapshot carries: the score thresholds that turn a fraud score into a
//! [`Decision`], and the hard rules (an amount cap, block lists of entity keys) evaluated before the
//! model, each with its own [`ReasonCode`]. Stored as the POLICY section, a MessagePack map
//! (`docs/snapshot-format.md`); a reader refuses fields it does not know rather than drop a rule.

use crate::score::wire::MsgPackReader;
use crate::snapshot::{EntityKey, IdHashKey};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use rmp::encode::{self as enc, ByteBuf};

/// Most block lists one policy may have (rule 0 is the amount cap, rules 1..=31 the block lists).
pub const MAX_BLOCK_LISTS: usize = 31;
/// Longest reason code, in bytes.
pub const MAX_CODE_LEN: usize = 32;

/// What the scorer tells the payment gateway to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Let the payment through.
    Allow,
    /// Let it through but queue it for an analyst (or ask for step-up authentication).
    Review,
    /// Refuse the payment.
    Decline,
}

impl Decision {
    /// `allow`, `review` or `decline`: the text in responses.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Review => "review",
            Decision::Decline => "decline",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's reason code: 1 to 32 ASCII letters, digits, `_`, `-` or `.` (so it never needs
/// escaping in JSON or a log line), e.g. `AMOUNT_CAP`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ReasonCode(String);

impl ReasonCode {
    /// Checks `code` and wraps it.
    pub fn new(code: &str) -> Result<ReasonCode, PolicyError> {
        let ok = (1..=MAX_CODE_LEN).contains(&code.len())
            && code.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.'));
        if ok { Ok(ReasonCode(String::from(code))) } else { Err(PolicyError::BadCode) }
    }

    /// The code's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Hard rule: an amount strictly above `max` is declined before the model runs.
#[derive(Clone, Debug, PartialEq)]
pub struct AmountCap {
    /// The largest amount allowed (finite, >= 0).
    pub max: f64,
    /// The reason code reported when it fires.
    pub code: ReasonCode,
}

/// Hard rule: a transaction whose entity of kind `entity` is in the list is declined before the
/// model runs. The list holds keyed hashes ([`EntityKey`]), never raw ids.
#[derive(Clone, Debug, PartialEq)]
pub struct BlockList {
    entity: u8,
    code: ReasonCode,
    keys: Vec<EntityKey>,
}

impl BlockList {
    /// A block list over entity kind `entity` (schema order); keys are sorted and deduplicated here.
    pub fn new(entity: u8, code: ReasonCode, mut keys: Vec<EntityKey>) -> BlockList {
        keys.sort_unstable();
        keys.dedup();
        BlockList { entity, code, keys }
    }

    /// A block list of raw entity ids (numbers as decimal text), hashed with the edge's id-hash key.
    pub fn from_ids<'i>(
        entity: u8,
        code: ReasonCode,
        ids: impl IntoIterator<Item = &'i [u8]>,
        id_hash: &IdHashKey,
    ) -> BlockList {
        BlockList::new(entity, code, ids.into_iter().map(|id| id_hash.hash(id)).collect())
    }

    /// The entity kind index it applies to.
    pub fn entity(&self) -> u8 {
        self.entity
    }

    /// The reason code reported when it fires.
    pub fn code(&self) -> &ReasonCode {
        &self.code
    }

    /// The blocked keys, ascending.
    pub fn keys(&self) -> &[EntityKey] {
        &self.keys
    }

    /// True when `key` is blocked.
    pub fn contains(&self, key: EntityKey) -> bool {
        self.keys.binary_search(&key).is_ok()
    }
}

/// The hard rules that fired for one transaction, as a bit set over rule indices (0: the amount
/// cap, 1 + i: block list i).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleHits(pub u32);

impl RuleHits {
    /// True when at least one rule fired.
    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// Number of rules that fired.
    pub fn count(self) -> u32 {
        self.0.count_ones()
    }

    /// The indices of the rules that fired, ascending.
    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..32usize).filter(move |i| self.0 & (1 << i) != 0)
    }
}

/// Thresholds and hard rules: the whole decision policy of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    review_at: f64,
    decline_at: f64,
    amount_cap: Option<AmountCap>,
    block_lists: Vec<BlockList>,
}

/// Why a policy was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyError {
    /// The MessagePack is malformed or a field has the wrong type; the text names the field.
    Malformed(&'static str),
    /// A required field is missing.
    Missing(&'static str),
    /// A field this reader does not know: a newer exporter wrote a rule this scorer cannot enforce.
    UnknownField,
    /// The thresholds are not finite or `review_at > decline_at`.
    Thresholds,
    /// The amount cap is not a finite number >= 0.
    AmountCap,
    /// A reason code is empty, longer than 32 bytes or has a character other than `A-Za-z0-9_-.`.
    BadCode,
    /// More than [`MAX_BLOCK_LISTS`] block lists.
    TooManyRules,
    /// A block list names an entity kind the snapshot's schema does not have.
    UnknownEntity {
        /// Index of the block list.
        list: usize,
        /// The entity kind index it names.
        entity: u8,
    },
    /// A block list's keys are not strictly ascending.
    KeysOutOfOrder {
        /// Index of the block list.
        list: usize,
    },
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl PolicyError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        use crate::text::write_u64;
        match self {
            PolicyError::Malformed(what) => {
                f.write_str("policy: ")?;
                f.write_str(what)?;
                f.write_str(" is malformed")
            }
            PolicyError::Missing(what) => {
                f.write_str("policy: ")?;
                f.write_str(what)?;
                f.write_str(" is missing")
            }
            PolicyError::UnknownField => f.write_str(
                "policy: a field this scorer does not know (a rule it cannot enforce); upgrade the scorer",
            ),
            PolicyError::Thresholds => {
                f.write_str("policy: review_at and decline_at must be finite with review_at <= decline_at")
            }
            PolicyError::AmountCap => f.write_str("policy: the amount cap must be a finite number >= 0"),
            PolicyError::BadCode => f.write_str("policy: a reason code must be 1 to 32 of A-Z a-z 0-9 _ - ."),
            PolicyError::TooManyRules => {
                f.write_str("policy: more than ")?;
                write_u64(f, MAX_BLOCK_LISTS as u64)?;
                f.write_str(" block lists")
            }
            PolicyError::UnknownEntity { list, entity } => {
                f.write_str("policy: block list ")?;
                write_u64(f, *list as u64)?;
                f.write_str(" names entity kind ")?;
                write_u64(f, u64::from(*entity))?;
                f.write_str(", which the schema does not have")
            }
            PolicyError::KeysOutOfOrder { list } => {
                f.write_str("policy: block list ")?;
                write_u64(f, *list as u64)?;
                f.write_str(": keys are not strictly ascending")
            }
        }
    }
}

impl core::error::Error for PolicyError {}

impl Default for Policy {
    fn default() -> Policy {
        Policy::DEFAULT
    }
}

impl Policy {
    /// The policy of a snapshot without a POLICY section: review from 0.5, decline from 0.9, no rule.
    pub const DEFAULT: Policy =
        Policy { review_at: 0.5, decline_at: 0.9, amount_cap: None, block_lists: Vec::new() };

    /// Thresholds only: a score >= `decline_at` declines, >= `review_at` reviews, else allows.
    pub fn new(review_at: f64, decline_at: f64) -> Result<Policy, PolicyError> {
        if !(review_at.is_finite() && decline_at.is_finite() && review_at <= decline_at) {
            return Err(PolicyError::Thresholds);
        }
        Ok(Policy { review_at, decline_at, amount_cap: None, block_lists: Vec::new() })
    }

    /// Adds (or replaces) the amount cap.
    pub fn with_amount_cap(mut self, max: f64, code: ReasonCode) -> Result<Policy, PolicyError> {
        if !(max.is_finite() && max >= 0.0) {
            return Err(PolicyError::AmountCap);
        }
        self.amount_cap = Some(AmountCap { max, code });
        Ok(self)
    }

    /// Adds a block list.
    pub fn with_block_list(mut self, list: BlockList) -> Result<Policy, PolicyError> {
        if self.block_lists.len() == MAX_BLOCK_LISTS {
            return Err(PolicyError::TooManyRules);
        }
        self.block_lists.push(list);
        Ok(self)
    }

    /// Scores from here review.
    pub fn review_at(&self) -> f64 {
        self.review_at
    }

    /// Scores from here decline.
    pub fn decline_at(&self) -> f64 {
        self.decline_at
    }

    /// The amount cap, if any.
    pub fn amount_cap(&self) -> Option<&AmountCap> {
        self.amount_cap.as_ref()
    }

    /// The block lists, in rule order.
    pub fn block_lists(&self) -> &[BlockList] {
        &self.block_lists
    }

    /// Checks the policy against a schema with `entities` entity kinds.
    pub fn check_entities(&self, entities: usize) -> Result<(), PolicyError> {
        match self.block_lists.iter().position(|l| usize::from(l.entity) >= entities) {
            Some(list) => Err(PolicyError::UnknownEntity { list, entity: self.block_lists[list].entity }),
            None => Ok(()),
        }
    }

    /// The hard rules that fire for a transaction of `amount` whose entities have `keys` (schema
    /// order). Every rule is evaluated, so that all reasons are reported.
    pub fn rules(&self, amount: f64, keys: &[EntityKey]) -> RuleHits {
        let mut hits = 0u32;
        if let Some(cap) = &self.amount_cap
            && amount > cap.max
        {
            hits |= 1;
        }
        for (i, list) in self.block_lists.iter().enumerate() {
            if keys.get(usize::from(list.entity)).is_some_and(|&k| list.contains(k)) {
                hits |= 1 << (i + 1);
            }
        }
        RuleHits(hits)
    }

    /// The reason code of rule `index` (see [`RuleHits`]), if the policy has that rule.
    pub fn rule_code(&self, index: usize) -> Option<&ReasonCode> {
        match index {
            0 => self.amount_cap.as_ref().map(|c| &c.code),
            i => self.block_lists.get(i - 1).map(|l| &l.code),
        }
    }

    /// The decision for a model score. A score that is not a number (a model fed absurd
    /// inputs) is sent to review rather than silently allowed.
    pub fn decide(&self, score: f64) -> Decision {
        if score >= self.decline_at {
            Decision::Decline
        } else if score >= self.review_at || score.is_nan() {
            Decision::Review
        } else {
            Decision::Allow
        }
    }

    /// The POLICY section bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = ByteBuf::new();
        let fields = 3 + u32::from(self.amount_cap.is_some());
        // Writing to a Vec cannot fail but for allocation, which aborts; errors are ignored.
        let _ = enc::write_map_len(&mut b, fields);
        let _ = enc::write_str(&mut b, "review_at");
        let _ = enc::write_f64(&mut b, self.review_at);
        let _ = enc::write_str(&mut b, "decline_at");
        let _ = enc::write_f64(&mut b, self.decline_at);
        if let Some(cap) = &self.amount_cap {
            let _ = enc::write_str(&mut b, "amount_cap");
            let _ = enc::write_array_len(&mut b, 2);
            let _ = enc::write_f64(&mut b, cap.max);
            let _ = enc::write_str(&mut b, cap.code.as_str());
        }
        let _ = enc::write_str(&mut b, "block_lists");
        let _ = enc::write_array_len(&mut b, self.block_lists.len() as u32);
        for list in &self.block_lists {
            let _ = enc::write_array_len(&mut b, 3);
            let _ = enc::write_uint(&mut b, u64::from(list.entity));
            let _ = enc::write_str(&mut b, list.code.as_str());
            let mut keys = Vec::with_capacity(8 * list.keys.len());
            for k in &list.keys {
                keys.extend_from_slice(&k.0.to_le_bytes());
            }
            let _ = enc::write_bin(&mut b, &keys);
        }
        b.into_vec()
    }

    /// Reads and validates POLICY section bytes (entity indices are checked by the snapshot
    /// reader, which knows the schema).
    pub fn decode(bytes: &[u8]) -> Result<Policy, PolicyError> {
        let mut r = MsgPackReader::new(bytes);
        let fields = r.map_len().ok_or(PolicyError::Malformed("the top-level map"))?;
        let (mut review_at, mut decline_at, mut amount_cap, mut lists) = (None, None, None, None);
        for _ in 0..fields {
            let key = r.str().ok_or(PolicyError::Malformed("a key"))?;
            let seen = match key {
                "review_at" => review_at.replace(get_f64(&mut r, "review_at")?).is_some(),
                "decline_at" => decline_at.replace(get_f64(&mut r, "decline_at")?).is_some(),
                "amount_cap" => {
                    if r.array_len() != Some(2) {
                        return Err(PolicyError::Malformed("amount_cap"));
                    }
                    let max = get_f64(&mut r, "amount_cap")?;
                    let code = ReasonCode::new(r.str().ok_or(PolicyError::Malformed("amount_cap"))?)?;
                    amount_cap.replace((max, code)).is_some()
                }
                "block_lists" => lists.replace(get_block_lists(&mut r)?).is_some(),
                _ => return Err(PolicyError::UnknownField),
            };
            if seen {
                return Err(PolicyError::Malformed("a repeated field"));
            }
        }
        if !r.at_end() {
            return Err(PolicyError::Malformed("the end (bytes after the map)"));
        }
        let mut policy = Policy::new(
            review_at.ok_or(PolicyError::Missing("review_at"))?,
            decline_at.ok_or(PolicyError::Missing("decline_at"))?,
        )?;
        if let Some((max, code)) = amount_cap {
            policy = policy.with_amount_cap(max, code)?;
        }
        policy.block_lists = lists.ok_or(PolicyError::Missing("block_lists"))?;
        Ok(policy)
    }
}

fn get_f64(r: &mut MsgPackReader<'_>, what: &'static str) -> Result<f64, PolicyError> {
    r.float().ok_or(PolicyError::Malformed(what))
}

fn get_block_lists(r: &mut MsgPackReader<'_>) -> Result<Vec<BlockList>, PolicyError> {
    let n = r.array_len().ok_or(PolicyError::Malformed("block_lists"))? as usize;
    if n > MAX_BLOCK_LISTS {
        return Err(PolicyError::TooManyRules);
    }
    let mut lists = Vec::with_capacity(n);
    for list in 0..n {
        if r.array_len() != Some(3) {
            return Err(PolicyError::Malformed("a block list"));
        }
        let entity = match r.int() {
            Some((false, e)) => u8::try_from(e).ok(),
            _ => None,
        };
        let entity = entity.ok_or(PolicyError::Malformed("a block list's entity"))?;
        let code = ReasonCode::new(r.str().ok_or(PolicyError::Malformed("a block list's code"))?)?;
        let raw = r.bin().filter(|raw| raw.len() % 8 == 0);
        let raw = raw.ok_or(PolicyError::Malformed("a block list's keys"))?;
        let mut keys = Vec::with_capacity(raw.len() / 8);
        for chunk in raw.chunks_exact(8) {
            let mut k = [0u8; 8];
            k.copy_from_slice(chunk);
            let key = EntityKey(u64::from_le_bytes(k));
            if keys.last().is_some_and(|&last| last >= key) {
                return Err(PolicyError::KeysOutOfOrder { list });
            }
            keys.push(key);
        }
        lists.push(BlockList { entity, code, keys });
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn code(c: &str) -> ReasonCode {
        ReasonCode::new(c).unwrap()
    }

    fn policy() -> Policy {
        Policy::new(0.3, 0.8)
            .unwrap()
            .with_amount_cap(1000.0, code("AMOUNT_CAP"))
            .unwrap()
            .with_block_list(BlockList::new(1, code("BLOCKED_TERMINAL"), vec![EntityKey(9), EntityKey(3)]))
            .unwrap()
            .with_block_list(BlockList::new(0, code("BLOCKED_CUSTOMER"), vec![EntityKey(7)]))
            .unwrap()
    }

    #[test]
    fn policy_round_trips_and_refuses_every_truncation() {
        let p = policy();
        let bytes = p.encode();
        assert_eq!(Policy::decode(&bytes), Ok(p.clone()));
        for cut in 0..bytes.len() {
            assert!(Policy::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(Policy::decode(&Policy::DEFAULT.encode()), Ok(Policy::DEFAULT));
    }

    #[test]
    fn thresholds_decide_and_nan_goes_to_review() {
        let p = policy();
        assert_eq!(p.decide(0.1), Decision::Allow);
        assert_eq!(p.decide(0.3), Decision::Review);
        assert_eq!(p.decide(0.8), Decision::Decline);
        assert_eq!(p.decide(f64::NAN), Decision::Review);
        assert_eq!(Policy::new(0.9, 0.5), Err(PolicyError::Thresholds));
        assert_eq!(Policy::new(f64::NAN, 0.5), Err(PolicyError::Thresholds));
    }

    #[test]
    fn every_rule_that_fires_is_reported() {
        let p = policy();
        assert_eq!(p.rules(10.0, &[EntityKey(1), EntityKey(2)]), RuleHits(0));
        let hits = p.rules(1000.5, &[EntityKey(7), EntityKey(9)]);
        assert_eq!(hits.iter().collect::<Vec<_>>(), vec![0, 1, 2]);
        let codes: Vec<&str> = hits.iter().filter_map(|i| p.rule_code(i)).map(ReasonCode::as_str).collect();
        assert_eq!(codes, ["AMOUNT_CAP", "BLOCKED_TERMINAL", "BLOCKED_CUSTOMER"]);
        assert_eq!(p.rules(1000.0, &[EntityKey(1), EntityKey(2)]), RuleHits(0), "the cap is strict");
    }

    #[test]
    fn refuses_unknown_fields_bad_codes_and_unsorted_keys() {
        assert_eq!(ReasonCode::new(""), Err(PolicyError::BadCode));
        assert_eq!(ReasonCode::new("A\"B"), Err(PolicyError::BadCode));
        assert_eq!(policy().check_entities(1), Err(PolicyError::UnknownEntity { list: 0, entity: 1 }));
        let mut bytes = policy().encode();
        bytes[0] += 1;
        let mut extra = ByteBuf::new();
        let _ = enc::write_str(&mut extra, "velocity_rule");
        let _ = enc::write_nil(&mut extra);
        bytes.extend_from_slice(extra.as_slice());
        assert_eq!(Policy::decode(&bytes), Err(PolicyError::UnknownField));
        // Keys 3, 9 of the first list, swapped in place.
        let mut bytes = policy().encode();
        let at = bytes.windows(8).position(|w| w == 3u64.to_le_bytes()).unwrap();
        bytes[at..at + 16].rotate_left(8);
        assert_eq!(Policy::decode(&bytes), Err(PolicyError::KeysOutOfOrder { list: 0 }));
    }
}
