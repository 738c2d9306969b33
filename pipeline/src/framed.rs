//! The frame of the exporter's own files (checkpoints, shards): a 6-byte magic, the format
//! version (u16, little endian), the BLAKE3 hash of the body, then the body (MessagePack).

/// Bytes before the body.
const HEADER: usize = 6 + 2 + 32;

/// Why bytes are not a frame of the expected kind.
#[derive(Debug)]
pub(crate) enum FrameError {
    /// Cut short, another magic, or a body that does not match its hash: the reason.
    Damaged(String),
    /// A format version outside the range read.
    Version(u16),
}

/// `body` framed with `magic` and `version`.
pub(crate) fn seal(magic: &[u8; 6], version: u16, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(blake3::hash(body).as_bytes());
    out.extend_from_slice(body);
    out
}

/// The version and the body of a frame with `magic` and a version in `versions`, checked
/// against its hash.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    magic: &[u8; 6],
    versions: std::ops::RangeInclusive<u16>,
) -> Result<(u16, &'a [u8]), FrameError> {
    if bytes.len() < HEADER || &bytes[..6] != magic {
        let name = String::from_utf8_lossy(magic);
        return Err(FrameError::Damaged(format!("it does not start with the magic {name}")));
    }
    let version = u16::from_le_bytes([bytes[6], bytes[7]]);
    if !versions.contains(&version) {
        return Err(FrameError::Version(version));
    }
    let body = &bytes[HEADER..];
    if blake3::hash(body).as_bytes() != &bytes[8..HEADER] {
        return Err(FrameError::Damaged("its content does not match its hash (cut short or altered)".into()));
    }
    Ok((version, body))
}
