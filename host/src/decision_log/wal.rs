//! Write-ahead segments: the file rows go to before they are rolled into Parquet (a Parquet file
//! cannot be appended to, nor read back after a crash mid-write). A segment is the 8-byte magic,
//! then records of `[u32 length][u32 checksum][MessagePack row]` (little-endian; the checksum is
//! the first 4 bytes of the row's blake3). Reading stops at the first torn or corrupt record: the
//! writer abandons a segment after any failed write, so only its tail can be torn.

use super::record::DecisionRecord;
use std::io;
use std::path::Path;

/// The first bytes of every segment (`TGDLOG` and the format version).
pub(crate) const MAGIC: &[u8; 8] = b"TGDLOG1\n";

/// Largest record a reader accepts: beyond, the length field is garbage.
const MAX_RECORD: usize = 16 << 20;

fn checksum(payload: &[u8]) -> u32 {
    let hash = blake3::hash(payload);
    let b = hash.as_bytes();
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends `record`, framed, to `out`; false (and `out` unchanged) when it cannot be encoded.
pub(crate) fn encode(record: &DecisionRecord, out: &mut Vec<u8>) -> bool {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    if rmp_serde::encode::write(out, record).is_err() {
        out.truncate(start);
        return false;
    }
    let payload = &out[start + 8..];
    let (Ok(len), sum) = (u32::try_from(payload.len()), checksum(payload)) else {
        out.truncate(start);
        return false;
    };
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&sum.to_le_bytes());
    true
}

/// What a segment holds.
pub(crate) struct Contents {
    /// Every whole record, in order.
    pub records: Vec<DecisionRecord>,
    /// Bytes after the last whole record (a torn write), 0 for a clean segment.
    pub torn_bytes: u64,
}

/// Reads a segment back.
pub(crate) fn read(path: &Path) -> io::Result<Contents> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        if MAGIC.starts_with(&bytes) {
            // Created, then killed before the magic was whole.
            return Ok(Contents { records: Vec::new(), torn_bytes: bytes.len() as u64 });
        }
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a decision log segment (bad magic)"));
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let Some(payload) = bytes.get(at + 8..at + 8 + len).filter(|_| len <= MAX_RECORD) else { break };
        if checksum(payload) != sum {
            break;
        }
        let Ok(record) = rmp_serde::from_slice::<DecisionRecord>(payload) else { break };
        records.push(record);
        at += 8 + len;
    }
    Ok(Contents { records, torn_bytes: (bytes.len() - at) as u64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision_log::tests::row;

    #[test]
    fn reads_whole_records_and_stops_at_a_torn_tail() -> io::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("s.wal");
        let mut bytes = MAGIC.to_vec();
        for i in 0..3 {
            assert!(encode(&row(i), &mut bytes));
        }
        let whole = bytes.len();
        assert!(encode(&row(3), &mut bytes));
        // Torn in the middle of the fourth record.
        std::fs::write(&path, &bytes[..whole + 11])?;
        let contents = read(&path)?;
        assert_eq!(contents.records, (0..3).map(row).collect::<Vec<_>>());
        assert_eq!(contents.torn_bytes, 11);
        // A flipped bit is caught by the checksum.
        let mut corrupt = bytes.clone();
        corrupt[whole + 20] ^= 1;
        std::fs::write(&path, &corrupt)?;
        assert_eq!(read(&path)?.records.len(), 3);
        std::fs::write(&path, &MAGIC[..3])?;
        assert!(read(&path)?.records.is_empty());
        std::fs::write(&path, b"garbage!")?;
        assert!(read(&path).is_err());
        Ok(())
    }
}
