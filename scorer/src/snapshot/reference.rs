//! The reference distribution a snapshot carries for drift monitoring: for each feature of the
//! schema (and the model's score), fixed bin edges and the share of the training window's
//! transactions in each bin. The exporter computes it; hosts compare live traffic against it.

use crate::Timestamp;
#[cfg(feature = "meta-extras")]
use crate::score::wire::MsgPackReader;
use alloc::vec::Vec;
use rmp::encode::{self as enc, ByteBuf};

/// Most bin edges one distribution may have (deciles need at most 9).
pub const MAX_EDGES: usize = 64;

/// One distribution cut into bins: bin 0 is `(-inf, edges[0])`, bin `i` is
/// `[edges[i - 1], edges[i])`, the last is `[edges[last], +inf)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Bins {
    /// Strictly increasing, finite cut points.
    pub edges: Vec<f64>,
    /// The share of reference values in each bin (`edges.len() + 1` of them, summing to 1).
    pub proportions: Vec<f64>,
}

impl Bins {
    /// The number of bins.
    pub fn len(&self) -> usize {
        self.edges.len() + 1
    }

    /// Always false: there is at least one bin.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The bin of `value` (`None` for NaN).
    #[inline]
    pub fn bin(&self, value: f64) -> Option<usize> {
        (!value.is_nan()).then(|| self.edges.partition_point(|&e| e <= value))
    }
}

/// The training-window distributions of a snapshot's features and score.
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    /// The window the reference was taken over: transactions at `from` or later, before `to`.
    pub from: Timestamp,
    /// End of the window (exclusive).
    pub to: Timestamp,
    /// Transactions in the window.
    pub rows: u64,
    /// One distribution per feature, in schema order.
    pub features: Vec<Bins>,
    /// The model's score over the same transactions (present when the snapshot has a model).
    pub score: Option<Bins>,
}

impl Reference {
    /// Appends the reference as a MessagePack map.
    pub(crate) fn encode(&self, b: &mut ByteBuf) {
        let _ = enc::write_map_len(b, 4 + u32::from(self.score.is_some()));
        let _ = enc::write_str(b, "from");
        let _ = enc::write_sint(b, self.from.0);
        let _ = enc::write_str(b, "to");
        let _ = enc::write_sint(b, self.to.0);
        let _ = enc::write_str(b, "rows");
        let _ = enc::write_uint(b, self.rows);
        let _ = enc::write_str(b, "features");
        let _ = enc::write_array_len(b, self.features.len() as u32);
        for bins in &self.features {
            put_bins(b, bins);
        }
        if let Some(score) = &self.score {
            let _ = enc::write_str(b, "score");
            put_bins(b, score);
        }
    }

    /// Reads a reference (the caller checks it has one distribution per feature); the error
    /// names what is wrong.
    #[cfg(feature = "meta-extras")]
    pub(crate) fn decode(r: &mut MsgPackReader<'_>) -> Result<Reference, &'static str> {
        let fields = r.map_len().ok_or("reference")?;
        let (mut from, mut to, mut rows, mut features, mut score) = (None, None, None, None, None);
        for _ in 0..fields {
            match r.str().ok_or("reference: a key")? {
                "from" => from = Some(int(r).ok_or("reference.from")?),
                "to" => to = Some(int(r).ok_or("reference.to")?),
                "rows" => rows = Some(r.int().filter(|(neg, _)| !neg).ok_or("reference.rows")?.1),
                "features" => {
                    let n = r.array_len().filter(|&n| n <= 4096).ok_or("reference.features")?;
                    features = Some((0..n).map(|_| get_bins(r)).collect::<Result<Vec<_>, _>>()?);
                }
                "score" => score = Some(get_bins(r)?),
                _ => r.skip().ok_or("reference: an unknown field")?,
            }
        }
        Ok(Reference {
            from: Timestamp(from.ok_or("reference.from")?),
            to: Timestamp(to.ok_or("reference.to")?),
            rows: rows.ok_or("reference.rows")?,
            features: features.ok_or("reference.features")?,
            score,
        })
    }
}

#[cfg(feature = "meta-extras")]
fn int(r: &mut MsgPackReader<'_>) -> Option<i64> {
    match r.int()? {
        (false, abs) => i64::try_from(abs).ok(),
        (true, abs) => i64::try_from(abs).ok().map(|v| -v),
    }
}

fn put_bins(b: &mut ByteBuf, bins: &Bins) {
    let _ = enc::write_array_len(b, 2);
    for values in [&bins.edges, &bins.proportions] {
        let _ = enc::write_array_len(b, values.len() as u32);
        for &v in values.iter() {
            let _ = enc::write_f64(b, v);
        }
    }
}

#[cfg(feature = "meta-extras")]
fn get_bins(r: &mut MsgPackReader<'_>) -> Result<Bins, &'static str> {
    const WHAT: &str = "reference: a distribution";
    if r.array_len() != Some(2) {
        return Err(WHAT);
    }
    let mut floats = |max: usize| -> Result<Vec<f64>, &'static str> {
        let n = r.array_len().filter(|&n| n as usize <= max).ok_or(WHAT)?;
        (0..n).map(|_| r.float().filter(|v| v.is_finite()).ok_or(WHAT)).collect()
    };
    let edges = floats(MAX_EDGES)?;
    let proportions = floats(MAX_EDGES + 1)?;
    if proportions.len() != edges.len() + 1
        || edges.windows(2).any(|w| w[0] >= w[1])
        || proportions.iter().any(|p| !(0.0..=1.0).contains(p))
    {
        return Err(WHAT);
    }
    Ok(Bins { edges, proportions })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_fall_in_the_bin_whose_lower_edge_they_reach() {
        let bins = Bins { edges: alloc::vec![1.0, 2.0, 5.0], proportions: alloc::vec![0.25; 4] };
        let at = |v: f64| bins.bin(v);
        assert_eq!(at(f64::NEG_INFINITY), Some(0));
        assert_eq!(at(0.999), Some(0));
        assert_eq!(at(1.0), Some(1));
        assert_eq!(at(1.5), Some(1));
        assert_eq!(at(2.0), Some(2));
        assert_eq!(at(4.99), Some(2));
        assert_eq!(at(5.0), Some(3));
        assert_eq!(at(1e300), Some(3));
        assert_eq!(at(f64::NAN), None);
        let one = Bins { edges: Vec::new(), proportions: alloc::vec![1.0] };
        assert_eq!((one.len(), one.bin(-3.0), one.bin(7.0)), (1, Some(0), Some(0)));
    }
}
