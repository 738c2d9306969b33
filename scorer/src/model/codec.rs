//! The MODEL section's bytes: encoding and validating decoding of every [`Model`].
//! Layout in `docs/snapshot-format.md`; everything little-endian.

use super::trees::LEAF;
use super::{Activation, Dense, Logistic, MAX_WIDTH, Mlp, Model, Node, TreeEnsemble, TreeOutput};
use alloc::vec::Vec;
use core::fmt;

const FAMILY_LOGISTIC: u8 = 1;
const FAMILY_TREES: u8 = 2;
const FAMILY_MLP: u8 = 3;
const CODEC_VERSION: u8 = 1;

/// Why model bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The bytes end before the model does.
    Truncated,
    /// Bytes remain after the model.
    TrailingBytes,
    /// An unknown model family or codec version.
    Unsupported(&'static str),
    /// A structural rule is broken; the text says which.
    Invalid(&'static str),
    /// The model reads another number of features than the snapshot's schema has.
    FeatureCount {
        /// Features the model reads.
        model: usize,
        /// Features the schema has.
        schema: usize,
    },
}

impl ModelError {
    /// Writes the `Display` text through `write_str` alone (no `core::fmt` formatter).
    pub fn write_to<W: fmt::Write + ?Sized>(&self, f: &mut W) -> fmt::Result {
        use crate::text::write_u64;
        match self {
            ModelError::Truncated => f.write_str("model: the bytes end too early"),
            ModelError::TrailingBytes => f.write_str("model: unexpected bytes after the model"),
            ModelError::Unsupported(what) => {
                f.write_str("model: unsupported ")?;
                f.write_str(what)
            }
            ModelError::Invalid(what) => {
                f.write_str("model: ")?;
                f.write_str(what)
            }
            ModelError::FeatureCount { model, schema } => {
                f.write_str("model reads ")?;
                write_u64(f, *model as u64)?;
                f.write_str(" features but the schema has ")?;
                write_u64(f, *schema as u64)
            }
        }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_to(f)
    }
}

impl core::error::Error for ModelError {}

struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.0.extend_from_slice(&v.to_bits().to_le_bytes());
    }
    fn f64s(&mut self, v: &[f64]) {
        v.iter().for_each(|&x| self.f64(x));
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ModelError> {
        if n > self.0.len() {
            return Err(ModelError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, ModelError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, ModelError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, ModelError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn len(&mut self, max: usize) -> Result<usize, ModelError> {
        let n = self.u32()? as usize;
        if n > max || n > self.0.len() {
            return Err(ModelError::Invalid("a length is larger than the model"));
        }
        Ok(n)
    }
    fn f32(&mut self) -> Result<f32, ModelError> {
        Ok(f32::from_bits(self.u32()?))
    }
    fn f64(&mut self) -> Result<f64, ModelError> {
        let b = self.take(8)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        let v = f64::from_bits(u64::from_le_bytes(a));
        if v.is_finite() { Ok(v) } else { Err(ModelError::Invalid("a parameter is NaN or infinite")) }
    }
    fn f64s(&mut self, n: usize) -> Result<Vec<f64>, ModelError> {
        if n.checked_mul(8).is_none_or(|bytes| bytes > self.0.len()) {
            return Err(ModelError::Truncated);
        }
        (0..n).map(|_| self.f64()).collect()
    }
}

impl Model {
    /// The MODEL section bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        let family = match self {
            Model::Logistic(_) => FAMILY_LOGISTIC,
            Model::Trees(_) => FAMILY_TREES,
            Model::Mlp(_) => FAMILY_MLP,
        };
        w.u8(family);
        w.u8(CODEC_VERSION);
        w.u16(0);
        w.u32(self.n_features() as u32);
        match self {
            Model::Logistic(m) => {
                w.f64(m.intercept);
                w.f64s(&m.weights);
            }
            Model::Trees(m) => {
                w.u8(match m.output {
                    TreeOutput::Logistic => 1,
                    TreeOutput::Average => 2,
                });
                w.u8(0);
                w.u16(0);
                w.u32(m.roots.len() as u32);
                w.u32(m.nodes.len() as u32);
                w.f64(m.base_margin);
                m.roots.iter().for_each(|&r| w.u32(r));
                for n in &m.nodes {
                    w.u16(n.feature);
                    w.u8(u8::from(n.default_left));
                    w.u8(0);
                    w.f32(n.value);
                    w.u32(n.left);
                    w.u32(n.right);
                }
            }
            Model::Mlp(m) => {
                w.u32(m.layers.len() as u32);
                w.f64s(&m.input_mean);
                w.f64s(&m.input_scale);
                for layer in &m.layers {
                    w.u32(layer.inputs as u32);
                    w.u32(layer.bias.len() as u32);
                    w.u8(match layer.activation {
                        Activation::Identity => 0,
                        Activation::Relu => 1,
                        Activation::Tanh => 2,
                        Activation::Sigmoid => 3,
                    });
                    w.f64s(&layer.weights);
                    w.f64s(&layer.bias);
                }
            }
        }
        w.0
    }

    /// Reads and validates MODEL section bytes: every index in bounds, every tree acyclic, layer
    /// shapes consistent, no NaN or infinite parameter.
    pub fn decode(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut r = Reader(bytes);
        let family = r.u8()?;
        if r.u8()? != CODEC_VERSION {
            return Err(ModelError::Unsupported("model codec version"));
        }
        r.u16()?;
        let n_features = r.u32()? as usize;
        if n_features == 0 || n_features > usize::from(LEAF) {
            return Err(ModelError::Invalid("the feature count is 0 or above 65534"));
        }
        let model = match family {
            FAMILY_LOGISTIC => {
                let intercept = r.f64()?;
                Model::Logistic(Logistic { intercept, weights: r.f64s(n_features)? })
            }
            FAMILY_TREES => Model::Trees(decode_trees(&mut r, n_features)?),
            FAMILY_MLP => Model::Mlp(decode_mlp(&mut r, n_features)?),
            _ => return Err(ModelError::Unsupported("model family")),
        };
        if !r.0.is_empty() {
            return Err(ModelError::TrailingBytes);
        }
        Ok(model)
    }
}

fn decode_trees(r: &mut Reader<'_>, n_features: usize) -> Result<TreeEnsemble, ModelError> {
    let output = match r.u8()? {
        1 => TreeOutput::Logistic,
        2 => TreeOutput::Average,
        _ => return Err(ModelError::Unsupported("tree output")),
    };
    r.take(3)?;
    let n_trees = r.len(usize::MAX)?;
    let n_nodes = r.u32()? as usize;
    let base_margin = r.f64()?;
    if n_trees == 0 || n_nodes.checked_mul(16).is_none_or(|b| b > r.0.len()) {
        return Err(ModelError::Invalid("a tree ensemble needs trees and nodes"));
    }
    let roots = (0..n_trees).map(|_| r.u32()).collect::<Result<Vec<u32>, _>>()?;
    let mut nodes = Vec::with_capacity(n_nodes);
    for _ in 0..n_nodes {
        let feature = r.u16()?;
        let default_left = r.u8()? != 0;
        r.u8()?;
        let value = r.f32()?;
        let (left, right) = (r.u32()?, r.u32()?);
        if !value.is_finite() {
            return Err(ModelError::Invalid("a threshold or leaf value is NaN or infinite"));
        }
        // A leaf's `left` is its cover (f32 bits, 0 = unknown): finite and positive when given.
        let cover = f32::from_bits(left);
        if feature == LEAF && left != 0 && !(cover.is_finite() && cover > 0.0) {
            return Err(ModelError::Invalid("a leaf's cover is not a finite number above 0"));
        }
        if feature != LEAF && usize::from(feature) >= n_features {
            return Err(ModelError::Invalid("a split reads a feature the model does not have"));
        }
        nodes.push(Node { feature, default_left, value, left, right });
    }
    // Trees are contiguous, in root order, and every child comes after its parent within its
    // tree: then every walk ends at a leaf inside its own tree.
    for (t, &root) in roots.iter().enumerate() {
        let end = roots.get(t + 1).map_or(n_nodes, |&next| next as usize);
        let expected_start = if t == 0 { 0 } else { roots[t - 1] as usize + 1 };
        if (root as usize) < expected_start || root as usize >= end || (t == 0 && root != 0) {
            return Err(ModelError::Invalid("tree roots are not in order"));
        }
        for (i, node) in nodes.iter().enumerate().take(end).skip(root as usize) {
            if node.feature != LEAF {
                let inside = |c: u32| (c as usize) > i && (c as usize) < end;
                if !inside(node.left) || !inside(node.right) {
                    return Err(ModelError::Invalid(
                        "a tree node's child is outside its tree or not after it",
                    ));
                }
            }
        }
    }
    Ok(TreeEnsemble { n_features, nodes, roots, base_margin, output })
}

fn decode_mlp(r: &mut Reader<'_>, n_features: usize) -> Result<Mlp, ModelError> {
    let n_layers = r.len(64)?;
    if n_layers == 0 || n_features > MAX_WIDTH {
        return Err(ModelError::Invalid("an MLP needs 1 to 64 layers and at most 256 inputs"));
    }
    let input_mean = r.f64s(n_features)?;
    let input_scale = r.f64s(n_features)?;
    if input_scale.contains(&0.0) {
        return Err(ModelError::Invalid("an input scale is 0"));
    }
    let mut layers = Vec::with_capacity(n_layers);
    let mut width = n_features;
    for _ in 0..n_layers {
        let inputs = r.u32()? as usize;
        let outputs = r.u32()? as usize;
        if inputs != width || outputs == 0 || outputs > MAX_WIDTH {
            return Err(ModelError::Invalid("MLP layer shapes do not chain"));
        }
        let activation = match r.u8()? {
            0 => Activation::Identity,
            1 => Activation::Relu,
            2 => Activation::Tanh,
            3 => Activation::Sigmoid,
            _ => return Err(ModelError::Unsupported("activation")),
        };
        let weights = r.f64s(inputs * outputs)?;
        let bias = r.f64s(outputs)?;
        layers.push(Dense { inputs, weights, bias, activation });
        width = outputs;
    }
    if width != 1 {
        return Err(ModelError::Invalid("an MLP's last layer must have one output"));
    }
    Ok(Mlp { input_mean, input_scale, layers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn stump() -> TreeEnsemble {
        // One tree: x0 < 1.5 ? (x1 < 0.5 ? -1 : 1) : 2; missing x0 goes right.
        let n = |feature, value, left, right| Node { feature, default_left: false, value, left, right };
        TreeEnsemble {
            n_features: 2,
            nodes: vec![
                n(0, 1.5, 1, 2),
                n(1, 0.5, 3, 4),
                n(LEAF, 2.0, 0, 0),
                n(LEAF, -1.0, 0, 0),
                n(LEAF, 1.0, 0, 0),
            ],
            roots: vec![0],
            base_margin: 0.25,
            output: TreeOutput::Logistic,
        }
    }

    fn models() -> Vec<Model> {
        vec![
            Model::Logistic(Logistic { weights: vec![0.5, -2.0], intercept: 0.1 }),
            Model::Trees(stump()),
            Model::Mlp(Mlp {
                input_mean: vec![1.0, 2.0],
                input_scale: vec![2.0, 4.0],
                layers: vec![
                    Dense {
                        inputs: 2,
                        weights: vec![1.0, -1.0, 0.5, 0.5, 2.0, 0.0],
                        bias: vec![0.0, 0.1, -0.1],
                        activation: Activation::Relu,
                    },
                    Dense {
                        inputs: 3,
                        weights: vec![1.0, 1.0, -1.0],
                        bias: vec![0.2],
                        activation: Activation::Sigmoid,
                    },
                ],
            }),
        ]
    }

    #[test]
    fn every_model_round_trips() {
        for m in models() {
            assert_eq!(Model::decode(&m.encode()), Ok(m.clone()));
        }
    }

    #[test]
    fn trees_follow_xgboost_rules() {
        let t = stump();
        assert_eq!(t.leaf_sum(&[1.0, 0.0]), -1.0);
        assert_eq!(t.leaf_sum(&[1.0, 0.5]), 1.0, "x < threshold goes left; equal goes right");
        assert_eq!(t.leaf_sum(&[f64::NAN, 0.0]), 2.0, "missing goes its default way");
        assert_eq!(Model::Trees(t).score(&[1.0, 0.0]), crate::model::sigmoid(0.25 - 1.0));
    }

    #[test]
    fn refuses_cyclic_or_out_of_bounds_trees_and_truncation() {
        let mut t = stump();
        t.nodes[1].left = 0; // back to the root: a cycle
        assert!(matches!(Model::decode(&Model::Trees(t).encode()), Err(ModelError::Invalid(_))));
        let mut t = stump();
        t.nodes[2].left = f32::NAN.to_bits(); // a leaf's cover
        assert!(matches!(Model::decode(&Model::Trees(t).encode()), Err(ModelError::Invalid(_))));
        let mut t = stump();
        t.nodes[0].feature = 7;
        assert!(matches!(Model::decode(&Model::Trees(t).encode()), Err(ModelError::Invalid(_))));
        for m in models() {
            let bytes = m.encode();
            for cut in 0..bytes.len() {
                assert!(Model::decode(&bytes[..cut]).is_err(), "cut at {cut}");
            }
        }
    }

    #[test]
    fn mlp_matches_a_hand_computation() {
        let Model::Mlp(m) = &models()[2] else { unreachable!() };
        // inputs standardised: (3-1)/2 = 1, (2-2)/4 = 0
        let h = [1.0f64.max(0.0), (0.5 + 0.1f64).max(0.0), (2.0 - 0.1f64).max(0.0)];
        let expected = crate::model::sigmoid(0.2 + h[0] + h[1] - h[2]);
        assert_eq!(m.output(&[3.0, 2.0]), expected);
    }
}
