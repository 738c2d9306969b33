//! Maps keyed by id bytes (entity and transaction ids, canonical form), with decimal numbers
//! keyed as integers: the handbook's ids (and most real ones) are numbers, and a `u64` key hashes
//! and compares in a few instructions, with no allocation for a lookup.

use std::collections::HashMap;

type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// An id as a map key: a canonical decimal number (no sign, no leading zero, fits a u64) as the
/// number, anything else as its bytes. The two forms never collide: bytes that are such a number
/// always take the first.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum IdKey {
    /// Canonical decimal digits, as their value.
    Number(u64),
    /// Any other bytes.
    Bytes(Box<[u8]>),
}

impl IdKey {
    /// The key of `id`.
    pub(crate) fn new(id: &[u8]) -> IdKey {
        match number(id) {
            Some(n) => IdKey::Number(n),
            None => IdKey::Bytes(id.into()),
        }
    }

    /// The id's bytes, as text (ids are checked UTF-8 by the readers; numbers are decimal).
    pub(crate) fn text(&self) -> String {
        match self {
            IdKey::Number(n) => n.to_string(),
            IdKey::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        }
    }
}

/// The value of `id` if it is a canonical decimal number that fits a u64: exactly the bytes
/// `n.to_string()` gives for some `n`.
#[inline]
pub(crate) fn number(id: &[u8]) -> Option<u64> {
    match id {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ if id.len() > 20 => None,
        _ => {
            let mut n: u64 = 0;
            for &b in id {
                let digit = b.wrapping_sub(b'0');
                if digit > 9 {
                    return None;
                }
                n = n.checked_mul(10)?.checked_add(u64::from(digit))?;
            }
            Some(n)
        }
    }
}

/// A hash map from ids to `V`, numbers and other bytes kept apart.
#[derive(Clone, Debug)]
pub(crate) struct IdMap<V> {
    numbers: Map<u64, V>,
    bytes: Map<Box<[u8]>, V>,
}

impl<V> Default for IdMap<V> {
    fn default() -> Self {
        IdMap { numbers: Map::default(), bytes: Map::default() }
    }
}

impl<V: Copy> IdMap<V> {
    /// The value of `id`, if any (no allocation).
    #[inline]
    pub(crate) fn get(&self, id: &[u8]) -> Option<V> {
        match number(id) {
            Some(n) => self.numbers.get(&n).copied(),
            None => self.bytes.get(id).copied(),
        }
    }

    /// Sets the value of `key`.
    #[inline]
    pub(crate) fn insert(&mut self, key: IdKey, value: V) {
        match key {
            IdKey::Number(n) => self.numbers.insert(n, value),
            IdKey::Bytes(b) => self.bytes.insert(b, value),
        };
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.numbers.len() + self.bytes.len()
    }

    /// Keeps the ids whose value passes `keep`.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(V) -> bool) {
        self.numbers.retain(|_, v| keep(*v));
        self.bytes.retain(|_, v| keep(*v));
    }

    /// Gives every id the value `to` maps its value to, and drops the ids it maps to `None`.
    pub(crate) fn remap(&mut self, mut to: impl FnMut(V) -> Option<V>) {
        let mut step = |v: &mut V| match to(*v) {
            Some(new) => {
                *v = new;
                true
            }
            None => false,
        };
        self.numbers.retain(|_, v| step(v));
        self.bytes.retain(|_, v| step(v));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_decimal_numbers_are_keyed_as_numbers() {
        for n in [0u64, 1, 7, 10, 596, 3156, u64::MAX / 10, u64::MAX - 1, u64::MAX] {
            assert_eq!(number(n.to_string().as_bytes()), Some(n), "{n}");
        }
        for text in [
            "",
            "00",
            "007",
            "-1",
            "+1",
            "1.0",
            "1e3",
            " 1",
            "1 ",
            "abc",
            "18446744073709551616",
            "99999999999999999999",
            "123456789012345678901",
        ] {
            assert_eq!(number(text.as_bytes()), None, "{text:?}");
        }
    }

    #[test]
    fn numbers_and_other_bytes_are_kept_apart() {
        let mut map = IdMap::default();
        for (i, id) in ["12", "012", "x12", "18446744073709551616", "0"].iter().enumerate() {
            map.insert(IdKey::new(id.as_bytes()), i);
        }
        assert_eq!(map.len(), 5);
        assert_eq!(map.get(b"12"), Some(0));
        assert_eq!(map.get(b"012"), Some(1));
        assert_eq!(map.get(b"x12"), Some(2));
        assert_eq!(map.get(b"18446744073709551616"), Some(3));
        assert_eq!(map.get(b"0"), Some(4));
        assert_eq!(map.get(b"00"), None);
        map.retain(|v| v != 1 && v != 2);
        assert_eq!(map.get(b"012"), None);
        assert_eq!(map.get(b"x12"), None);
        assert_eq!(map.get(b"12"), Some(0));
        assert_eq!(map.len(), 3);
        assert_eq!(IdKey::new(b"012").text(), "012");
        assert_eq!(IdKey::new(b"12").text(), "12");
    }
}
