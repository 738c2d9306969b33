//! The two wire formats of requests, read without allocation: a MessagePack reader and a JSON
//! reader behind one small pull interface (maps, keys, scalar values, skipping what is not needed),
//! and the two matching writers for responses.

use super::Problem;
use alloc::vec::Vec;

/// Deepest nesting of arrays and maps accepted in a request (extra fields included).
pub const MAX_DEPTH: u32 = 32;
/// Longest key that can name a field; longer keys are skipped as unknown.
pub(crate) const KEY_BUF: usize = 64;

/// How a request (and so its response) is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// MessagePack (the default).
    MsgPack,
    /// JSON: the input starts with `{`, `[` or JSON whitespace (none of which starts a MessagePack
    /// map or array).
    Json,
}

impl Format {
    /// The format of `input`, from its first byte.
    pub fn sniff(input: &[u8]) -> Format {
        match input.first() {
            Some(b'{' | b'[' | b' ' | b'\t' | b'\n' | b'\r') => Format::Json,
            _ => Format::MsgPack,
        }
    }

    /// `MessagePack` or `JSON`.
    pub fn name(self) -> &'static str {
        match self {
            Format::MsgPack => "MessagePack",
            Format::Json => "JSON",
        }
    }
}

/// One scalar value of a request; arrays and maps are skipped and reported as `Compound`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Scalar<'a> {
    Nil,
    Bool,
    /// An integer as sign and magnitude (`-0` has `neg` set and `abs` 0).
    Int {
        neg: bool,
        abs: u64,
    },
    Float(f64),
    /// Text: raw bytes (JSON: between the quotes, with escapes still in when `escaped`).
    Str {
        raw: &'a [u8],
        escaped: bool,
    },
    /// MessagePack binary data.
    Bin(&'a [u8]),
    Compound,
}

/// Iteration state of an open map or array.
pub(crate) struct Entries {
    remaining: u32,
    first: bool,
}

impl Entries {
    /// How many entries the container announced at its start: MessagePack says, JSON does not
    /// (0; the JSON writer needs no count).
    pub(crate) fn announced(&self) -> u32 {
        self.remaining
    }
}

/// A pull reader over one encoded value.
pub(crate) trait Reader<'a> {
    /// Opens a map, or fails with `NotAMap` when the value is something else.
    fn open_map(&mut self) -> Result<Entries, Problem>;
    /// The next key of an open map copied into `buf`: `None` at the end of the map,
    /// `Some(None)` for a key that cannot name a field (not text, or longer than `buf`).
    fn next_key(
        &mut self,
        entries: &mut Entries,
        buf: &mut [u8; KEY_BUF],
    ) -> Result<Option<Option<usize>>, Problem>;
    /// Reads one value, skipping it when it is an array or a map.
    fn value(&mut self) -> Result<Scalar<'a>, Problem>;
    /// Opens an array, or fails with `NotAnArray`.
    fn open_array(&mut self) -> Result<Entries, Problem>;
    /// Moves to the next item of an open array: false at its end.
    fn next_item(&mut self, entries: &mut Entries) -> Result<bool, Problem>;
    /// Checks that nothing but (JSON) whitespace follows.
    fn finish(&mut self) -> Result<(), Problem>;
    /// The byte offset reached.
    fn pos(&self) -> usize;
    /// Goes back to a byte offset that [`Reader::pos`] gave.
    fn seek(&mut self, pos: usize);
}

/// A MessagePack reader.
pub(crate) struct MsgPackReader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> MsgPackReader<'a> {
    pub(crate) fn new(b: &'a [u8]) -> MsgPackReader<'a> {
        MsgPackReader { b, i: 0 }
    }

    fn byte(&mut self) -> Result<u8, Problem> {
        let c = *self.b.get(self.i).ok_or(Problem::Malformed)?;
        self.i += 1;
        Ok(c)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Problem> {
        let end = self.i.checked_add(n).filter(|&e| e <= self.b.len()).ok_or(Problem::Malformed)?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }

    fn be(&mut self, n: usize) -> Result<u64, Problem> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, &c| acc << 8 | u64::from(c)))
    }

    fn container(&mut self, marker: u8) -> Option<Result<(bool, u32), Problem>> {
        let (map, width) = match marker {
            0x80..=0x8f => return Some(Ok((true, u32::from(marker & 0x0f)))),
            0x90..=0x9f => return Some(Ok((false, u32::from(marker & 0x0f)))),
            0xdc => (false, 2),
            0xdd => (false, 4),
            0xde => (true, 2),
            0xdf => (true, 4),
            _ => return None,
        };
        Some(self.be(width).map(|n| (map, n as u32)))
    }

    fn value_at(&mut self, depth: u32) -> Result<Scalar<'a>, Problem> {
        let marker = self.byte()?;
        let int = |neg: bool, v: i64| Scalar::Int { neg, abs: v.unsigned_abs() };
        Ok(match marker {
            0x00..=0x7f => Scalar::Int { neg: false, abs: u64::from(marker) },
            0xe0..=0xff => int(true, i64::from(marker as i8)),
            0xa0..=0xbf => Scalar::Str { raw: self.take(usize::from(marker & 0x1f))?, escaped: false },
            0xc0 => Scalar::Nil,
            0xc2 | 0xc3 => Scalar::Bool,
            0xc4..=0xc6 => {
                let n = self.be(1 << (marker - 0xc4))? as usize;
                Scalar::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = self.be(1 << (marker - 0xc7))? as usize;
                self.take(n.checked_add(1).ok_or(Problem::Malformed)?)?;
                Scalar::Compound
            }
            0xca => Scalar::Float(f64::from(f32::from_bits(self.be(4)? as u32))),
            0xcb => Scalar::Float(f64::from_bits(self.be(8)?)),
            0xcc..=0xcf => Scalar::Int { neg: false, abs: self.be(1 << (marker - 0xcc))? },
            0xd0..=0xd3 => {
                let width = 1usize << (marker - 0xd0);
                let raw = self.be(width)?;
                let shift = 64 - 8 * width as u32;
                let v = ((raw << shift) as i64) >> shift;
                int(v < 0, v)
            }
            0xd4..=0xd8 => {
                self.take((1usize << (marker - 0xd4)) + 1)?;
                Scalar::Compound
            }
            0xd9..=0xdb => {
                let n = self.be(1 << (marker - 0xd9))? as usize;
                Scalar::Str { raw: self.take(n)?, escaped: false }
            }
            0xc1 => return Err(Problem::Malformed),
            _ => {
                let Some(container) = self.container(marker) else { return Err(Problem::Malformed) };
                let (map, n) = container?;
                if depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                let items = if map { 2 * u64::from(n) } else { u64::from(n) };
                if items > (self.b.len() - self.i) as u64 {
                    return Err(Problem::Malformed);
                }
                for _ in 0..items {
                    self.value_at(depth + 1)?;
                }
                Scalar::Compound
            }
        })
    }
}

/// Typed reads for the snapshot's MessagePack sections (META, POLICY): `None` when the next value
/// is not of the type asked for.
impl<'a> MsgPackReader<'a> {
    /// A map header: the number of entries.
    pub(crate) fn map_len(&mut self) -> Option<u32> {
        self.open_map().ok().map(|e| e.remaining)
    }

    /// An array header: the number of items.
    pub(crate) fn array_len(&mut self) -> Option<u32> {
        self.open_array().ok().map(|e| e.remaining)
    }

    /// A UTF-8 string.
    pub(crate) fn str(&mut self) -> Option<&'a str> {
        match self.value_at(1) {
            Ok(Scalar::Str { raw, .. }) => core::str::from_utf8(raw).ok(),
            _ => None,
        }
    }

    /// An integer as sign and magnitude.
    pub(crate) fn int(&mut self) -> Option<(bool, u64)> {
        match self.value_at(1) {
            Ok(Scalar::Int { neg, abs }) => Some((neg, abs)),
            _ => None,
        }
    }

    /// A float (f32 or f64).
    pub(crate) fn float(&mut self) -> Option<f64> {
        match self.value_at(1) {
            Ok(Scalar::Float(v)) => Some(v),
            _ => None,
        }
    }

    /// Binary data.
    pub(crate) fn bin(&mut self) -> Option<&'a [u8]> {
        match self.value_at(1) {
            Ok(Scalar::Bin(raw)) => Some(raw),
            _ => None,
        }
    }

    /// Skips one value of any type.
    pub(crate) fn skip(&mut self) -> Option<()> {
        self.value_at(1).ok().map(drop)
    }

    /// True when every byte was read.
    pub(crate) fn at_end(&self) -> bool {
        self.i == self.b.len()
    }
}

impl<'a> Reader<'a> for MsgPackReader<'a> {
    fn open_map(&mut self) -> Result<Entries, Problem> {
        let marker = self.byte()?;
        match self.container(marker) {
            Some(Ok((true, n))) => Ok(Entries { remaining: n, first: true }),
            Some(Err(e)) => Err(e),
            _ => Err(Problem::NotAMap),
        }
    }

    fn next_key(
        &mut self,
        entries: &mut Entries,
        buf: &mut [u8; KEY_BUF],
    ) -> Result<Option<Option<usize>>, Problem> {
        if entries.remaining == 0 {
            return Ok(None);
        }
        entries.remaining -= 1;
        Ok(Some(match self.value_at(1)? {
            Scalar::Str { raw, .. } if raw.len() <= KEY_BUF => {
                buf[..raw.len()].copy_from_slice(raw);
                Some(raw.len())
            }
            _ => None,
        }))
    }

    fn value(&mut self) -> Result<Scalar<'a>, Problem> {
        self.value_at(1)
    }

    fn open_array(&mut self) -> Result<Entries, Problem> {
        let marker = self.byte()?;
        match self.container(marker) {
            Some(Ok((false, n))) => Ok(Entries { remaining: n, first: true }),
            Some(Err(e)) => Err(e),
            _ => Err(Problem::NotAnArray),
        }
    }

    fn next_item(&mut self, entries: &mut Entries) -> Result<bool, Problem> {
        if entries.remaining == 0 {
            return Ok(false);
        }
        entries.remaining -= 1;
        Ok(true)
    }

    fn finish(&mut self) -> Result<(), Problem> {
        if self.i == self.b.len() { Ok(()) } else { Err(Problem::TrailingBytes) }
    }

    fn pos(&self) -> usize {
        self.i
    }

    fn seek(&mut self, pos: usize) {
        self.i = pos;
    }
}

/// Where the first byte that a JSON string cannot hold as is (`"`, `\\` or a control byte) lies
/// in `s`. Eight bytes at a time: in each word, the lowest flagged byte is exact (a borrow can only
/// flag bytes above a true hit), so the first hit is the answer.
pub(crate) fn first_special(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut at = 0;
    while let Some(chunk) = s.get(at..).and_then(|rest| rest.first_chunk::<8>()) {
        let w = u64::from_le_bytes(*chunk);
        let (quote, backslash) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
        let control = w.wrapping_sub(ONES * 0x20) & !w;
        let hits =
            (control | (quote.wrapping_sub(ONES) & !quote) | (backslash.wrapping_sub(ONES) & !backslash))
                & HIGH;
        if hits != 0 {
            return Some(at + (hits.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = s.get(at..).unwrap_or_default();
    tail.iter().position(|&c| c < 0x20 || c == b'"' || c == b'\\').map(|p| at + p)
}

/// A JSON reader (RFC 8259; the whole input must be UTF-8).
pub(crate) struct JsonReader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> JsonReader<'a> {
    /// A reader over `b`, which is checked to be UTF-8.
    pub(crate) fn new(b: &'a [u8]) -> Result<JsonReader<'a>, Problem> {
        core::str::from_utf8(b).map_err(|_| Problem::Malformed)?;
        Ok(JsonReader { b, i: 0 })
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), Problem> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(Problem::Malformed)
        }
    }

    /// A string, the reader at its opening quote: the raw bytes inside and whether they hold escapes.
    fn string(&mut self) -> Result<(&'a [u8], bool), Problem> {
        self.i += 1;
        let start = self.i;
        let mut escaped = false;
        loop {
            let rest = self.b.get(self.i..).unwrap_or_default();
            self.i += first_special(rest).ok_or(Problem::Malformed)?;
            match *self.b.get(self.i).ok_or(Problem::Malformed)? {
                b'"' => {
                    self.i += 1;
                    return Ok((&self.b[start..self.i - 1], escaped));
                }
                b'\\' => {
                    escaped = true;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                        Some(b'u') => {
                            let hex = self.b.get(self.i + 2..self.i + 6).ok_or(Problem::Malformed)?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(Problem::Malformed);
                            }
                            self.i += 6;
                        }
                        _ => return Err(Problem::Malformed),
                    }
                }
                // A control byte: the only other byte `first_special` stops at.
                _ => return Err(Problem::Malformed),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    fn number(&mut self) -> Result<Scalar<'a>, Problem> {
        let start = self.i;
        let neg = self.b[self.i] == b'-';
        self.i += usize::from(neg);
        let int_start = self.i;
        match self.digits() {
            0 => return Err(Problem::Malformed),
            n if n > 1 && self.b[int_start] == b'0' => return Err(Problem::Malformed),
            _ => {}
        }
        let int_end = self.i;
        let mut integer = true;
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            integer = false;
            if self.digits() == 0 {
                return Err(Problem::Malformed);
            }
        }
        if let Some(b'e' | b'E') = self.b.get(self.i) {
            self.i += 1;
            integer = false;
            if let Some(b'+' | b'-') = self.b.get(self.i) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Problem::Malformed);
            }
        }
        if integer {
            let abs = self.b[int_start..int_end]
                .iter()
                .try_fold(0u64, |acc, &c| acc.checked_mul(10)?.checked_add(u64::from(c - b'0')));
            if let Some(abs) = abs {
                return Ok(Scalar::Int { neg, abs });
            }
        }
        Ok(Scalar::Float(super::decimal::parse(&self.b[start..self.i])))
    }

    fn literal(&mut self, word: &[u8], value: Scalar<'a>) -> Result<Scalar<'a>, Problem> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(value)
        } else {
            Err(Problem::Malformed)
        }
    }

    fn value_at(&mut self, depth: u32) -> Result<Scalar<'a>, Problem> {
        match self.peek().ok_or(Problem::Malformed)? {
            b'"' => self.string().map(|(raw, escaped)| Scalar::Str { raw, escaped }),
            b'-' | b'0'..=b'9' => self.number(),
            b't' => self.literal(b"true", Scalar::Bool),
            b'f' => self.literal(b"false", Scalar::Bool),
            b'n' => self.literal(b"null", Scalar::Nil),
            open @ (b'{' | b'[') => {
                if depth >= MAX_DEPTH {
                    return Err(Problem::TooDeep);
                }
                let close = if open == b'{' { b'}' } else { b']' };
                self.i += 1;
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok(Scalar::Compound);
                }
                // After a comma an item must follow, so a trailing comma fails on the close.
                loop {
                    if open == b'{' {
                        if self.peek() != Some(b'"') {
                            return Err(Problem::Malformed);
                        }
                        self.string()?;
                        self.expect(b':')?;
                    }
                    self.value_at(depth + 1)?;
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            return Ok(Scalar::Compound);
                        }
                        _ => return Err(Problem::Malformed),
                    }
                }
            }
            _ => Err(Problem::Malformed),
        }
    }

    fn open(&mut self, open: u8, wrong: Problem) -> Result<Entries, Problem> {
        match self.peek() {
            Some(c) if c == open => {
                self.i += 1;
                Ok(Entries { remaining: 0, first: true })
            }
            Some(b'{' | b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => Err(wrong),
            _ => Err(Problem::Malformed),
        }
    }

    /// Before the next entry of an open map or array: false at its end.
    fn more(&mut self, entries: &mut Entries, close: u8) -> Result<bool, Problem> {
        let c = self.peek().ok_or(Problem::Malformed)?;
        if c == close && entries.first {
            self.i += 1;
            return Ok(false);
        }
        if !entries.first {
            if c == close {
                self.i += 1;
                return Ok(false);
            }
            if c != b',' {
                return Err(Problem::Malformed);
            }
            self.i += 1;
        }
        entries.first = false;
        Ok(true)
    }
}

impl<'a> Reader<'a> for JsonReader<'a> {
    fn open_map(&mut self) -> Result<Entries, Problem> {
        self.open(b'{', Problem::NotAMap)
    }

    fn next_key(
        &mut self,
        entries: &mut Entries,
        buf: &mut [u8; KEY_BUF],
    ) -> Result<Option<Option<usize>>, Problem> {
        if !self.more(entries, b'}')? {
            return Ok(None);
        }
        if self.peek() != Some(b'"') {
            return Err(Problem::Malformed);
        }
        let (raw, escaped) = self.string()?;
        self.expect(b':')?;
        let len = if escaped {
            unescape(raw, buf)
        } else if raw.len() <= KEY_BUF {
            buf[..raw.len()].copy_from_slice(raw);
            Some(raw.len())
        } else {
            None
        };
        Ok(Some(len))
    }

    fn value(&mut self) -> Result<Scalar<'a>, Problem> {
        self.value_at(1)
    }

    fn open_array(&mut self) -> Result<Entries, Problem> {
        self.open(b'[', Problem::NotAnArray)
    }

    fn next_item(&mut self, entries: &mut Entries) -> Result<bool, Problem> {
        // After a comma `more` leaves a close for the item reader, which refuses it.
        self.more(entries, b']')
    }

    fn finish(&mut self) -> Result<(), Problem> {
        if self.peek().is_none() { Ok(()) } else { Err(Problem::TrailingBytes) }
    }

    fn pos(&self) -> usize {
        self.i
    }

    fn seek(&mut self, pos: usize) {
        self.i = pos;
    }
}

/// Decodes the escapes of a JSON string body (already checked by the reader) into `out`: the
/// length written, or `None` when it does not fit or holds a lone surrogate.
pub(crate) fn unescape(raw: &[u8], out: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    let mut i = 0;
    let mut put = |bytes: &[u8], n: &mut usize| -> Option<()> {
        out.get_mut(*n..*n + bytes.len())?.copy_from_slice(bytes);
        *n += bytes.len();
        Some(())
    };
    let hex4 = |at: usize| -> Option<u32> {
        let h = raw.get(at..at + 4)?;
        h.iter().try_fold(0u32, |acc, &c| Some(acc * 16 + (c as char).to_digit(16)?))
    };
    while i < raw.len() {
        if raw[i] != b'\\' {
            put(&raw[i..i + 1], &mut n)?;
            i += 1;
            continue;
        }
        let simple = match *raw.get(i + 1)? {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(8),
            b'f' => Some(12),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        };
        if let Some(c) = simple {
            put(&[c], &mut n)?;
            i += 2;
            continue;
        }
        let mut code = hex4(i + 2)?;
        i += 6;
        if (0xd800..0xdc00).contains(&code) {
            if raw.get(i..i + 2) != Some(b"\\u") {
                return None;
            }
            let low = hex4(i + 2)?;
            if !(0xdc00..0xe000).contains(&low) {
                return None;
            }
            code = 0x10000 + ((code - 0xd800) << 10) + (low - 0xdc00);
            i += 6;
        }
        let c = char::from_u32(code)?;
        let mut utf8 = [0u8; 4];
        put(c.encode_utf8(&mut utf8).as_bytes(), &mut n)?;
    }
    Some(n)
}

/// A response writer: the response layout is written once, against this interface.
pub(crate) trait Sink {
    /// Starts a map of `n` entries.
    fn map(&mut self, n: u32);
    /// Ends the current map.
    fn end_map(&mut self);
    /// Starts an array of `n` items.
    fn array(&mut self, n: u32);
    /// Ends the current array.
    fn end_array(&mut self);
    /// A map key.
    fn key(&mut self, k: &str);
    /// A text value (UTF-8).
    fn str(&mut self, s: &[u8]);
    /// A float value.
    fn f64(&mut self, v: f64);
    /// A boolean value.
    fn bool(&mut self, v: bool);
    /// The null value.
    fn nil(&mut self);
    /// An integer value as sign and magnitude.
    fn int(&mut self, neg: bool, abs: u64);
}

/// Writes MessagePack.
pub(crate) struct MsgPackWriter<'o>(pub &'o mut Vec<u8>);

impl MsgPackWriter<'_> {
    fn head(&mut self, fix: u8, fix_max: u32, m16: u8, m32: u8, n: u32) {
        if n <= fix_max {
            self.0.push(fix | n as u8);
        } else if n <= 0xffff {
            self.0.push(m16);
            self.0.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            self.0.push(m32);
            self.0.extend_from_slice(&n.to_be_bytes());
        }
    }
}

impl Sink for MsgPackWriter<'_> {
    fn map(&mut self, n: u32) {
        self.head(0x80, 15, 0xde, 0xdf, n);
    }
    fn end_map(&mut self) {}
    fn array(&mut self, n: u32) {
        self.head(0x90, 15, 0xdc, 0xdd, n);
    }
    fn end_array(&mut self) {}
    fn key(&mut self, k: &str) {
        self.str(k.as_bytes());
    }
    fn str(&mut self, s: &[u8]) {
        let n = s.len() as u32;
        if (32..=0xff).contains(&n) {
            self.0.extend_from_slice(&[0xd9, n as u8]);
        } else {
            self.head(0xa0, 31, 0xda, 0xdb, n);
        }
        self.0.extend_from_slice(s);
    }
    fn f64(&mut self, v: f64) {
        self.0.push(0xcb);
        self.0.extend_from_slice(&v.to_bits().to_be_bytes());
    }
    fn bool(&mut self, v: bool) {
        self.0.push(if v { 0xc3 } else { 0xc2 });
    }
    fn nil(&mut self) {
        self.0.push(0xc0);
    }
    fn int(&mut self, neg: bool, abs: u64) {
        if !neg || abs == 0 {
            match abs {
                0..=0x7f => self.0.push(abs as u8),
                _ => {
                    self.0.push(0xcf);
                    self.0.extend_from_slice(&abs.to_be_bytes());
                }
            }
        } else {
            self.0.push(0xd3);
            self.0.extend_from_slice(&(abs as i64).wrapping_neg().to_be_bytes());
        }
    }
}

/// Writes compact JSON.
pub(crate) struct JsonWriter<'o> {
    out: &'o mut Vec<u8>,
    // Per open container: whether an item was written (so the next needs a comma).
    started: [bool; 8],
    depth: usize,
    after_key: bool,
}

impl<'o> JsonWriter<'o> {
    pub(crate) fn new(out: &'o mut Vec<u8>) -> JsonWriter<'o> {
        JsonWriter { out, started: [false; 8], depth: 0, after_key: false }
    }

    fn sep(&mut self) {
        if self.after_key {
            self.after_key = false;
            return;
        }
        if self.depth > 0 {
            if self.started[self.depth - 1] {
                self.out.push(b',');
            }
            self.started[self.depth - 1] = true;
        }
    }

    fn open(&mut self, c: u8) {
        self.sep();
        self.out.push(c);
        self.depth += 1;
        if let Some(s) = self.started.get_mut(self.depth - 1) {
            *s = false;
        }
    }

    fn close(&mut self, c: u8) {
        self.out.push(c);
        self.depth = self.depth.saturating_sub(1);
    }

    fn text(&mut self, s: &[u8]) {
        self.out.reserve(s.len() + 2);
        self.out.push(b'"');
        // Runs of bytes that need no escape are copied whole.
        let mut rest = s;
        while let Some(at) = first_special(rest) {
            self.out.extend_from_slice(&rest[..at]);
            match rest[at] {
                b'"' => self.out.extend_from_slice(b"\\\""),
                b'\\' => self.out.extend_from_slice(b"\\\\"),
                c => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    let esc = [b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 15)]];
                    self.out.extend_from_slice(&esc);
                }
            }
            rest = &rest[at + 1..];
        }
        self.out.extend_from_slice(rest);
        self.out.push(b'"');
    }
}

struct VecWrite<'v>(&'v mut Vec<u8>);

impl core::fmt::Write for VecWrite<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
    /// A push for ASCII, which is all `crate::text` writes (digits): no UTF-8 encoding step.
    fn write_char(&mut self, c: char) -> core::fmt::Result {
        match u8::try_from(c) {
            Ok(b) if b.is_ascii() => self.0.push(b),
            _ => self.0.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
        Ok(())
    }
}

impl Sink for JsonWriter<'_> {
    fn map(&mut self, _: u32) {
        self.open(b'{');
    }
    fn end_map(&mut self) {
        self.close(b'}');
    }
    fn array(&mut self, _: u32) {
        self.open(b'[');
    }
    fn end_array(&mut self) {
        self.close(b']');
    }
    fn key(&mut self, k: &str) {
        self.sep();
        self.text(k.as_bytes());
        self.out.push(b':');
        self.after_key = true;
    }
    fn str(&mut self, s: &[u8]) {
        self.sep();
        self.text(s);
    }
    fn f64(&mut self, v: f64) {
        self.sep();
        let whole = v.abs();
        if whole < 1e15 && (whole as u64) as f64 == whole {
            // A whole number below 1e15 reads as ryu writes it (`31.0`, `-0.0`), without
            // ryu's digit search: counts and flags are most feature values in reasons.
            if v.is_sign_negative() {
                self.out.push(b'-');
            }
            let _ = crate::text::write_u64(&mut VecWrite(self.out), whole as u64);
            self.out.extend_from_slice(b".0");
        } else if v.is_finite() {
            // Ryu prints the shortest text that reads back to the same bits (`0.1`, `1e-7`,
            // `1.0`): always a valid JSON number, and a few kilobytes of code in wasm.
            self.out.extend_from_slice(ryu::Buffer::new().format_finite(v).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
    }
    fn bool(&mut self, v: bool) {
        self.sep();
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
    }
    fn nil(&mut self) {
        self.sep();
        self.out.extend_from_slice(b"null");
    }
    fn int(&mut self, neg: bool, abs: u64) {
        self.sep();
        if neg && abs != 0 {
            self.out.push(b'-');
        }
        let _ = crate::text::write_u64(&mut VecWrite(self.out), abs);
    }
}
