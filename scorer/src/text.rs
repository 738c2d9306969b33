//! Numbers written as text through [`fmt::Write::write_str`] alone, without `core::fmt`'s
//! formatting machinery (`fmt::write`, `Formatter::pad`, the integer `Display` impls): the error
//! texts that `scorer.wasm` writes and the JSON writer's integers use these, which keeps that
//! machinery out of the module. Native code gets the same texts through `Display`.

use core::fmt;

/// Writes `n` in decimal.
pub fn write_u64<W: fmt::Write + ?Sized>(out: &mut W, n: u64) -> fmt::Result {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Digit by digit as chars: `str::from_utf8` over the buffer would bring a UTF-8 validator
    // into scorer.wasm for text that is ASCII by construction.
    digits[at..].iter().try_for_each(|&d| out.write_char(char::from(d)))
}

/// Writes `bytes` as lower-case hex, two digits a byte.
pub fn write_hex<W: fmt::Write + ?Sized>(out: &mut W, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for &b in bytes {
        out.write_char(char::from(DIGITS[usize::from(b >> 4)]))?;
        out.write_char(char::from(DIGITS[usize::from(b & 15)]))?;
    }
    Ok(())
}

/// Writes `n` as 16 lower-case hex digits (`{n:016x}`).
pub fn write_hex_u64<W: fmt::Write + ?Sized>(out: &mut W, n: u64) -> fmt::Result {
    write_hex(out, &n.to_be_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;
    use alloc::string::{String, ToString};

    #[test]
    fn numbers_read_as_core_fmt_writes_them() {
        for n in [0, 1, 9, 10, 99, 100, 12_345, u64::from(u32::MAX), u64::MAX - 1, u64::MAX] {
            let mut s = String::new();
            write_u64(&mut s, n).unwrap();
            assert_eq!(s, format!("{n}"));
            let mut s = String::new();
            write_hex_u64(&mut s, n).unwrap();
            assert_eq!(s, format!("{n:016x}"));
        }
        let mut s = String::new();
        write_hex(&mut s, &[0, 0x0f, 0xa0, 0xff]).unwrap();
        assert_eq!(s, "000fa0ff");
    }

    #[test]
    fn error_texts_with_numbers_read_as_before() {
        use crate::snapshot::{KeyError, KeyListError, MetaError, SnapshotError};
        let cases: [(String, &str); 7] = [
            (
                SnapshotError::PartLength { entity: 1, part: 12, expected: 4096, found: 40 }.to_string(),
                "snapshot entity table 1, part 12: 40 bytes, the section table says 4096",
            ),
            (
                SnapshotError::UnknownSigner { key_id: [0xde, 0xad, 0, 1, 2, 3, 4, 0xff] }.to_string(),
                "snapshot signed by key dead0001020304ff, which this edge does not trust",
            ),
            (
                SnapshotError::UnsupportedVersion { found: 7, supported: 1 }.to_string(),
                "snapshot format version 7 is not supported (this reader reads version 1); upgrade the scorer",
            ),
            (
                SnapshotError::Meta(MetaError::SchemaHash { recorded: 0xabc, computed: u64::MAX })
                    .to_string(),
                "snapshot meta: schema hash 0000000000000abc does not match its definitions (ffffffffffffffff)",
            ),
            (
                SnapshotError::Model(crate::model::ModelError::FeatureCount { model: 3, schema: 15 })
                    .to_string(),
                "snapshot model reads 3 features but the schema has 15",
            ),
            (KeyListError::TooMany(9).to_string(), "9 keys given, at most 8 can be trusted"),
            (
                KeyListError::Key(2, KeyError::BadLine(10)).to_string(),
                "key 2: line 10: expected `name = value`",
            ),
        ];
        for (got, want) in cases {
            assert_eq!(got, want);
        }
    }
}
