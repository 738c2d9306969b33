//! scikit-learn models exported to ONNX by skl2onnx, read at the protobuf level with tract-onnx
//! and folded into the scorer's models: `Scaler` + `LinearClassifier` (logistic regression, the
//! standardisation folded into the weights), `TreeEnsembleClassifier` (random forests, gradient
//! boosting) and the `MatMul`/`Gemm` + `Add` + `Relu`/`Tanh`/`Sigmoid`/`Softmax` chains of MLPs.
//!
//! The graph is evaluated symbolically from the input to the fraud-class probability: every value
//! is a constant, an affine map of the last dense layer's outputs, or a tree ensemble. Nodes that
//! only compute the predicted label are never visited. Any other operator on that path is refused
//! by name.

use super::{ImportError, Imported, RawNode, push_tree};
use scorer::model::{Activation, Dense, Logistic, Mlp, Model, TreeEnsemble, TreeOutput};
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};
use tract_onnx::prelude::Framework;

/// Reads an ONNX model (a binary scikit-learn classifier exported by skl2onnx) into the scorer's
/// logistic, tree or MLP model; its score is the probability of the second class (fraud).
pub fn from_bytes(bytes: &[u8]) -> Result<Imported, ImportError> {
    let proto: ModelProto = tract_onnx::onnx()
        .proto_model_for_read(&mut &bytes[..])
        .map_err(|e| ImportError::Onnx(format!("not an ONNX model: {e}")))?;
    let graph = proto.graph.as_ref().ok_or_else(|| ImportError::Onnx("the model has no graph".into()))?;
    let model = convert(graph)?;
    let producer = match (proto.producer_name.as_str(), proto.producer_version.as_str()) {
        ("", _) => "onnx".to_string(),
        (name, "") => name.to_string(),
        (name, version) => format!("{name} {version}"),
    };
    Ok(Imported { model, feature_names: None, source: format!("{producer}, graph `{}`", graph.name) })
}

/// A constant tensor (row-major values, as f64).
#[derive(Clone, Debug)]
struct Const {
    dims: Vec<usize>,
    data: Vec<f64>,
}

/// `rows` values, each an affine map `w x + b` of the `width` outputs of the last layer of
/// `layers` (of the model's input when there is no layer).
#[derive(Clone, Debug)]
struct Linear {
    layers: Vec<Dense>,
    width: usize,
    rows: usize,
    /// `rows * width`, row-major.
    w: Vec<f64>,
    b: Vec<f64>,
}

impl Linear {
    fn identity(layers: Vec<Dense>, width: usize) -> Linear {
        let mut w = vec![0.0; width * width];
        (0..width).for_each(|i| w[i * width + i] = 1.0);
        Linear { layers, width, rows: width, w, b: vec![0.0; width] }
    }

    fn same_base(&self, other: &Linear) -> bool {
        self.width == other.width && self.layers == other.layers
    }

    /// `out[o] = bias(o) + sum_i m(o, i) * self[i]`, `outputs` rows.
    fn map(&self, outputs: usize, m: impl Fn(usize, usize) -> f64, bias: impl Fn(usize) -> f64) -> Linear {
        let mut w = vec![0.0; outputs * self.width];
        let mut b = vec![0.0; outputs];
        for o in 0..outputs {
            let mut acc = bias(o);
            for i in 0..self.rows {
                let k = m(o, i);
                if k != 0.0 {
                    for c in 0..self.width {
                        w[o * self.width + c] += k * self.w[i * self.width + c];
                    }
                    acc += k * self.b[i];
                }
            }
            b[o] = acc;
        }
        Linear { layers: self.layers.clone(), width: self.width, rows: outputs, w, b }
    }

    /// Ends the affine map in a dense layer with `activation`; the result reads its outputs.
    fn activate(&self, activation: Activation) -> Linear {
        let mut layers = self.layers.clone();
        layers.push(Dense { inputs: self.width, weights: self.w.clone(), bias: self.b.clone(), activation });
        Linear::identity(layers, self.rows)
    }

    /// The softmax of two values as a sigmoid layer: `p1 = sigmoid(z1 - z0)`.
    fn softmax2(&self) -> Linear {
        self.map(2, |o, i| if o == i { 1.0 } else { -1.0 }, |_| 0.0).activate(Activation::Sigmoid)
    }
}

#[derive(Clone, Debug)]
enum Value {
    Const(Const),
    Linear(Linear),
    Trees(TreeEnsemble),
}

struct Ctx<'a> {
    node: &'a NodeProto,
}

impl Ctx<'_> {
    fn op(&self) -> String {
        match self.node.domain.as_str() {
            "" | "ai.onnx" => self.node.op_type.clone(),
            domain => format!("{domain}.{}", self.node.op_type),
        }
    }

    fn name(&self) -> String {
        if self.node.name.is_empty() {
            self.node.output.first().cloned().unwrap_or_default()
        } else {
            self.node.name.clone()
        }
    }

    fn unsupported(&self, detail: &str) -> ImportError {
        let detail = if detail.is_empty() { String::new() } else { format!(": {detail}") };
        ImportError::UnsupportedOperator { op: self.op(), node: self.name(), detail }
    }

    fn invalid(&self, what: &str) -> ImportError {
        ImportError::Invalid(format!("ONNX node `{}` ({}): {what}", self.name(), self.op()))
    }

    fn attr(&self, name: &str) -> Option<&AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.attr(name).map_or(default, |a| a.i)
    }

    fn float(&self, name: &str, default: f64) -> f64 {
        self.attr(name).map_or(default, |a| f64::from(a.f))
    }

    fn string(&self, name: &str) -> Option<String> {
        self.attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    fn ints(&self, name: &str) -> Vec<i64> {
        self.attr(name).map(|a| a.ints.clone()).unwrap_or_default()
    }

    fn strings(&self, name: &str) -> Vec<String> {
        self.attr(name)
            .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default()
    }

    /// A float list attribute, or its `<name>_as_tensor` form (doubles).
    fn floats(&self, name: &str) -> Result<Vec<f64>, ImportError> {
        if let Some(a) = self.attr(name) {
            return Ok(a.floats.iter().map(|&f| f64::from(f)).collect());
        }
        match self.attr(&format!("{name}_as_tensor")).and_then(|a| a.t.as_ref()) {
            Some(t) => Ok(tensor(t).map_err(|e| self.invalid(&format!("{name}_as_tensor: {e}")))?.data),
            None => Ok(Vec::new()),
        }
    }

    /// Float values that must stay f32 (thresholds, leaf weights): rounding doubles to f32.
    fn floats32(&self, name: &str) -> Result<Vec<f32>, ImportError> {
        Ok(self.floats(name)?.into_iter().map(|f| f as f32).collect())
    }
}

fn tensor(t: &TensorProto) -> Result<Const, String> {
    if t.data_location == Some(1) {
        return Err(format!("tensor `{}` keeps its data in an external file", t.name));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| format!("tensor `{}` has a negative dimension", t.name)))
        .collect::<Result<Vec<usize>, String>>()?;
    let raw = &t.raw_data;
    let data: Vec<f64> = match t.data_type {
        1 if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| f64::from(f32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        1 => t.float_data.iter().map(|&f| f64::from(f)).collect(),
        11 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
            .collect(),
        11 => t.double_data.clone(),
        7 if !raw.is_empty() => raw
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64)
            .collect(),
        7 => t.int64_data.iter().map(|&i| i as f64).collect(),
        6 if !raw.is_empty() => {
            raw.chunks_exact(4).map(|c| f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]]))).collect()
        }
        6 => t.int32_data.iter().map(|&i| f64::from(i)).collect(),
        other => return Err(format!("tensor `{}` has data type {other}, not a number type", t.name)),
    };
    if dims.iter().product::<usize>() != data.len() {
        return Err(format!("tensor `{}`: {} values for dimensions {dims:?}", t.name, data.len()));
    }
    Ok(Const { dims, data })
}

/// The fraud-probability output of the graph.
fn probability_output(graph: &GraphProto) -> Result<&str, ImportError> {
    let outputs: Vec<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    for preferred in ["probabilities", "output_probability"] {
        if outputs.contains(&preferred) {
            return Ok(preferred);
        }
    }
    match outputs[..] {
        [only] => Ok(only),
        [_, probabilities] => Ok(probabilities),
        _ => {
            Err(ImportError::Onnx(format!("cannot tell which of the outputs {outputs:?} is the probability")))
        }
    }
}

fn convert(graph: &GraphProto) -> Result<Model, ImportError> {
    let mut values: HashMap<&str, Value> = HashMap::new();
    for init in &graph.initializer {
        let c = tensor(init).map_err(|e| ImportError::Onnx(format!("initializer: {e}")))?;
        values.insert(init.name.as_str(), Value::Const(c));
    }
    let inputs: Vec<_> = graph.input.iter().filter(|i| !values.contains_key(i.name.as_str())).collect();
    let [input] = inputs[..] else {
        return Err(ImportError::Onnx(format!(
            "the graph has {} inputs; the importer needs one",
            inputs.len()
        )));
    };
    let n_features = input_width(input)?;
    values.insert(input.name.as_str(), Value::Linear(Linear::identity(Vec::new(), n_features)));

    // Only the nodes the probability depends on.
    let output = probability_output(graph)?;
    let producer: HashMap<&str, usize> = graph
        .node
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut needed = HashSet::new();
    let mut todo = vec![output];
    while let Some(name) = todo.pop() {
        if let Some(&i) = producer.get(name)
            && needed.insert(i)
        {
            todo.extend(graph.node[i].input.iter().map(String::as_str).filter(|s| !s.is_empty()));
        }
    }
    for (i, node) in graph.node.iter().enumerate() {
        if needed.contains(&i) {
            let ctx = Ctx { node };
            let args = node
                .input
                .iter()
                .map(|name| {
                    values.get(name.as_str()).ok_or_else(|| {
                        ctx.invalid(&format!(
                            "reads `{name}`, which is not a number tensor computed before it"
                        ))
                    })
                })
                .collect::<Result<Vec<&Value>, _>>()?;
            let (slot, value) = eval(&ctx, &args, n_features)?;
            let name = node.output.get(slot).ok_or_else(|| ctx.invalid("has too few outputs"))?;
            values.insert(name.as_str(), value);
        }
    }
    let result = values.remove(output).ok_or_else(|| {
        ImportError::Onnx(format!("no node computes the output `{output}` as a number tensor"))
    })?;
    let model = finish(result, n_features)?;
    Model::decode(&model.encode())
        .map_err(|e| ImportError::Invalid(format!("ONNX: the converted model breaks a scorer rule: {e}")))
}

fn input_width(input: &tract_onnx::pb::ValueInfoProto) -> Result<usize, ImportError> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value as Dim;
    use tract_onnx::pb::type_proto::Value as Type;
    let dims = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Type::TensorType(t)) => t.shape.as_ref().map(|s| s.dim.clone()).unwrap_or_default(),
        _ => Vec::new(),
    };
    match dims.get(1).and_then(|d| d.value.as_ref()) {
        Some(Dim::DimValue(n)) if dims.len() == 2 && *n > 0 => Ok(*n as usize),
        _ => Err(ImportError::Onnx(format!(
            "the input `{}` is not a [rows, features] tensor with a known number of features",
            input.name
        ))),
    }
}

/// The probability of the second class, as a scorer model.
fn finish(value: Value, n_features: usize) -> Result<Model, ImportError> {
    let linear = match value {
        Value::Trees(t) => return Ok(Model::Trees(t)),
        Value::Const(_) => return Err(ImportError::Onnx("the probability output is a constant".into())),
        Value::Linear(l) => l,
    };
    let row = match linear.rows {
        1 => 0,
        2 => 1,
        n => {
            return Err(ImportError::Onnx(format!(
                "the probability output has {n} classes; binary models only"
            )));
        }
    };
    let weights = &linear.w[row * linear.width..(row + 1) * linear.width];
    let picked = weights.iter().position(|&w| w == 1.0);
    let one_hot =
        picked.is_some() && weights.iter().filter(|&&w| w != 0.0).count() == 1 && linear.b[row] == 0.0;
    let mut layers = linear.layers;
    let (Some(j), true, Some(last)) = (picked, one_hot, layers.last_mut()) else {
        return Err(ImportError::Onnx(
            "the fraud probability is not the output of a sigmoid or softmax".into(),
        ));
    };
    if last.activation != Activation::Sigmoid {
        return Err(ImportError::Onnx(
            "the fraud probability is not the output of a sigmoid or softmax".into(),
        ));
    }
    // Keep only the output that is the probability.
    last.weights = last.weights[j * last.inputs..(j + 1) * last.inputs].to_vec();
    last.bias = vec![last.bias[j]];
    Ok(match &layers[..] {
        [only] => Model::Logistic(Logistic { weights: only.weights.clone(), intercept: only.bias[0] }),
        _ => {
            Model::Mlp(Mlp { input_mean: vec![0.0; n_features], input_scale: vec![1.0; n_features], layers })
        }
    })
}

/// Evaluates one node: the index of the output it defines and that output's value.
fn eval(ctx: &Ctx<'_>, args: &[&Value], n_features: usize) -> Result<(usize, Value), ImportError> {
    let arg = |i: usize| args.get(i).copied().ok_or_else(|| ctx.invalid(&format!("needs input {i}")));
    let linear = |i: usize| match arg(i)? {
        Value::Linear(l) => Ok(l),
        _ => Err(ctx.unsupported("reads something other than the features or a layer's outputs")),
    };
    let constant = |i: usize| match arg(i)? {
        Value::Const(c) => Ok(c),
        _ => Err(ctx.unsupported("needs a constant operand")),
    };
    let op = ctx.node.op_type.as_str();
    let ml = ctx.node.domain == "ai.onnx.ml";
    let value = match (ml, op) {
        (false, "Identity") | (_, "Cast") | (true, "ZipMap") => {
            if op == "Cast" && !matches!(ctx.int("to", 1), 1 | 10 | 11 | 16) {
                return Err(ctx.unsupported("casts to a non-float type"));
            }
            arg(0)?.clone()
        }
        (false, "Constant") => match ctx.attr("value").and_then(|a| a.t.as_ref()) {
            Some(t) => Value::Const(tensor(t).map_err(|e| ctx.invalid(&e))?),
            None => return Err(ctx.unsupported("only `value` tensors")),
        },
        (true, "Scaler") => {
            let x = linear(0)?;
            let offset = ctx.floats("offset")?;
            let scale = ctx.floats("scale")?;
            let pick = |v: &[f64], i: usize, default: f64| match v.len() {
                0 => Ok(default),
                1 => Ok(v[0]),
                n if n == x.rows => Ok(v[i]),
                n => Err(ctx.invalid(&format!("{n} offsets or scales for {} values", x.rows))),
            };
            for i in 0..x.rows {
                pick(&offset, i, 0.0)?;
                pick(&scale, i, 1.0)?;
            }
            let s = |i: usize| pick(&scale, i, 1.0).unwrap_or(1.0);
            let o = |i: usize| pick(&offset, i, 0.0).unwrap_or(0.0);
            // y_i = (x_i - offset_i) * scale_i
            Value::Linear(x.map(x.rows, |r, i| if r == i { s(i) } else { 0.0 }, |r| -o(r) * s(r)))
        }
        (true, "LinearClassifier") => {
            return linear_classifier(ctx, linear(0)?).map(|l| (1, Value::Linear(l)));
        }
        (true, "TreeEnsembleClassifier") => {
            let x = linear(0)?;
            let input = Linear::identity(Vec::new(), n_features);
            if !x.same_base(&input) || x.rows != n_features || x.w != input.w || x.b != input.b {
                return Err(ctx.unsupported("the trees must read the model's input directly"));
            }
            return Ok((1, Value::Trees(tree_ensemble(ctx, n_features)?)));
        }
        (false, "MatMul") => {
            let (x, m) = (linear(0)?, constant(1)?);
            let [rows, cols] = m.dims[..] else { return Err(ctx.unsupported("needs a 2-D weight matrix")) };
            if rows != x.rows {
                return Err(ctx.invalid(&format!("a {rows}x{cols} matrix times {} values", x.rows)));
            }
            Value::Linear(x.map(cols, |o, i| m.data[i * cols + o], |_| 0.0))
        }
        (false, "Gemm") => {
            let x = linear(0)?;
            let m = constant(1)?;
            if ctx.int("transA", 0) != 0 {
                return Err(ctx.unsupported("transA = 1"));
            }
            let (alpha, beta, trans_b) =
                (ctx.float("alpha", 1.0), ctx.float("beta", 1.0), ctx.int("transB", 0) != 0);
            let [r, c] = m.dims[..] else { return Err(ctx.unsupported("needs a 2-D weight matrix")) };
            let (inner, cols) = if trans_b { (c, r) } else { (r, c) };
            if inner != x.rows {
                return Err(ctx.invalid(&format!("a {r}x{c} matrix times {} values", x.rows)));
            }
            let bias = match args.get(2) {
                Some(Value::Const(b)) => broadcast(ctx, b, cols)?,
                Some(_) => return Err(ctx.unsupported("needs a constant C")),
                None => vec![0.0; cols],
            };
            let at = |o: usize, i: usize| if trans_b { m.data[o * c + i] } else { m.data[i * c + o] };
            Value::Linear(x.map(cols, |o, i| alpha * at(o, i), |o| beta * bias[o]))
        }
        (false, "Add" | "Sub") => {
            let sign = if op == "Sub" { -1.0 } else { 1.0 };
            match (arg(0)?, arg(1)?) {
                (Value::Linear(x), Value::Const(c)) => {
                    let c = broadcast(ctx, c, x.rows)?;
                    Value::Linear(x.map(x.rows, |o, i| f64::from(u8::from(o == i)), |o| sign * c[o]))
                }
                (Value::Const(c), Value::Linear(x)) => {
                    let c = broadcast(ctx, c, x.rows)?;
                    Value::Linear(x.map(x.rows, |o, i| if o == i { sign } else { 0.0 }, |o| c[o]))
                }
                (Value::Linear(x), Value::Linear(y)) if x.same_base(y) && x.rows == y.rows => {
                    let w = x.w.iter().zip(&y.w).map(|(a, b)| a + sign * b).collect();
                    let b = x.b.iter().zip(&y.b).map(|(a, b)| a + sign * b).collect();
                    Value::Linear(Linear { w, b, ..x.clone() })
                }
                _ => return Err(ctx.unsupported("operands other than a layer's values and a constant")),
            }
        }
        (false, "Mul" | "Div") => {
            let (x, c) = match (arg(0)?, arg(1)?) {
                (Value::Linear(x), Value::Const(c)) => (x, c),
                (Value::Const(c), Value::Linear(x)) if op == "Mul" => (x, c),
                _ => return Err(ctx.unsupported("operands other than a layer's values and a constant")),
            };
            let c = broadcast(ctx, c, x.rows)?;
            if op == "Div" && c.contains(&0.0) {
                return Err(ctx.invalid("divides by zero"));
            }
            let k = |o: usize| if op == "Div" { 1.0 / c[o] } else { c[o] };
            Value::Linear(x.map(x.rows, |o, i| if o == i { k(o) } else { 0.0 }, |_| 0.0))
        }
        (false, "Relu") => Value::Linear(linear(0)?.activate(Activation::Relu)),
        (false, "Tanh") => Value::Linear(linear(0)?.activate(Activation::Tanh)),
        (false, "Sigmoid") => Value::Linear(linear(0)?.activate(Activation::Sigmoid)),
        (false, "Softmax") => {
            let x = linear(0)?;
            if !matches!(ctx.int("axis", -1), -1 | 1) || x.rows != 2 {
                return Err(ctx.unsupported("a softmax other than over two classes"));
            }
            Value::Linear(x.softmax2())
        }
        (false, "Concat") => {
            if !matches!(ctx.int("axis", 0), -1 | 1) {
                return Err(ctx.unsupported("a concatenation other than along the last axis"));
            }
            let parts = (0..args.len()).map(linear).collect::<Result<Vec<_>, _>>()?;
            let Some(first) = parts.first() else { return Err(ctx.invalid("has no input")) };
            if parts.iter().any(|p| !p.same_base(first)) {
                return Err(ctx.unsupported("concatenates values of different layers"));
            }
            let mut out = Linear { w: Vec::new(), b: Vec::new(), rows: 0, ..(*first).clone() };
            for p in parts {
                out.w.extend_from_slice(&p.w);
                out.b.extend_from_slice(&p.b);
                out.rows += p.rows;
            }
            Value::Linear(out)
        }
        _ => return Err(ctx.unsupported("")),
    };
    Ok((0, value))
}

/// A constant broadcast to `n` values (a scalar, or `n` values in any shape like `[1, n]`).
fn broadcast(ctx: &Ctx<'_>, c: &Const, n: usize) -> Result<Vec<f64>, ImportError> {
    match c.data.len() {
        1 => Ok(vec![c.data[0]; n]),
        len if len == n => Ok(c.data.clone()),
        len => Err(ctx.invalid(&format!("{len} constants for {n} values"))),
    }
}

fn linear_classifier(ctx: &Ctx<'_>, x: &Linear) -> Result<Linear, ImportError> {
    let coefficients = ctx.floats("coefficients")?;
    let intercepts = ctx.floats("intercepts")?;
    let classes = ctx.ints("classlabels_ints").len().max(ctx.strings("classlabels_strings").len());
    if x.rows == 0 || coefficients.len() % x.rows != 0 {
        return Err(ctx.invalid(&format!("{} coefficients for {} inputs", coefficients.len(), x.rows)));
    }
    let scores = coefficients.len() / x.rows;
    if classes > 2 || scores > 2 || scores == 0 {
        return Err(ctx.unsupported(&format!(
            "{} classes; the scorer imports binary classifiers",
            classes.max(scores)
        )));
    }
    if !intercepts.is_empty() && intercepts.len() != scores {
        return Err(ctx.invalid(&format!("{} intercepts for {scores} classes", intercepts.len())));
    }
    let n = x.rows;
    let z = x.map(scores, |o, i| coefficients[o * n + i], |o| intercepts.get(o).copied().unwrap_or(0.0));
    let post = ctx.string("post_transform").unwrap_or_else(|| "NONE".into());
    match (post.as_str(), scores) {
        // One score for two classes: onnxruntime reports [1 - p, p].
        ("LOGISTIC", 1) => {
            let p = z.activate(Activation::Sigmoid);
            Ok(p.map(2, |o, _| if o == 0 { -1.0 } else { 1.0 }, |o| if o == 0 { 1.0 } else { 0.0 }))
        }
        ("LOGISTIC", _) => Ok(z.activate(Activation::Sigmoid)),
        ("SOFTMAX", 2) => Ok(z.softmax2()),
        _ => Err(ctx
            .unsupported(&format!("post_transform {post} with {scores} scores does not give a probability"))),
    }
}

/// Picks a leaf's value from its per-class weights.
type LeafColumn = fn(&[f64; 2]) -> f64;

fn tree_ensemble(ctx: &Ctx<'_>, n_features: usize) -> Result<TreeEnsemble, ImportError> {
    let classes = ctx.ints("classlabels_int64s").len().max(ctx.strings("classlabels_strings").len());
    if classes != 2 {
        return Err(ctx.unsupported(&format!("{classes} classes; the scorer imports binary classifiers")));
    }
    let tree_ids = ctx.ints("nodes_treeids");
    let node_ids = ctx.ints("nodes_nodeids");
    let features = ctx.ints("nodes_featureids");
    let thresholds = ctx.floats32("nodes_values")?;
    let modes = ctx.strings("nodes_modes");
    let true_ids = ctx.ints("nodes_truenodeids");
    let false_ids = ctx.ints("nodes_falsenodeids");
    let tracks_true = ctx.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    let same =
        [node_ids.len(), features.len(), thresholds.len(), modes.len(), true_ids.len(), false_ids.len()];
    if n == 0 || same.iter().any(|&l| l != n) || (!tracks_true.is_empty() && tracks_true.len() != n) {
        return Err(ctx.invalid("node attributes of different lengths, or none"));
    }
    let class_trees = ctx.ints("class_treeids");
    let class_nodes = ctx.ints("class_nodeids");
    let class_ids = ctx.ints("class_ids");
    let weights = ctx.floats("class_weights")?;
    if [class_nodes.len(), class_ids.len(), weights.len()].iter().any(|&l| l != class_trees.len()) {
        return Err(ctx.invalid("class attributes of different lengths"));
    }
    if let Some(c) = class_ids.iter().find(|&&c| !(0..=1).contains(&c)) {
        return Err(ctx.invalid(&format!("class id {c} in a binary classifier")));
    }
    let base_values = ctx.floats("base_values")?;
    let post = ctx.string("post_transform").unwrap_or_else(|| "NONE".into());
    let has_class1 = class_ids.contains(&1);

    // Trees in order of first appearance; nodes numbered within their tree.
    let mut tree_order: Vec<i64> = Vec::new();
    let mut tree_index: HashMap<i64, usize> = HashMap::new();
    let mut tree_sizes: Vec<usize> = Vec::new();
    let mut local: HashMap<(i64, i64), (usize, usize)> = HashMap::new();
    for k in 0..n {
        let t = *tree_index.entry(tree_ids[k]).or_insert_with(|| {
            tree_order.push(tree_ids[k]);
            tree_sizes.push(0);
            tree_order.len() - 1
        });
        let index = tree_sizes[t];
        tree_sizes[t] += 1;
        if local.insert((tree_ids[k], node_ids[k]), (t, index)).is_some() {
            return Err(ctx.invalid(&format!("tree {} has node {} twice", tree_ids[k], node_ids[k])));
        }
    }
    // Leaf weights per class.
    let mut leaf = vec![[0.0f64; 2]; n];
    let position: HashMap<(i64, i64), usize> = (0..n).map(|k| ((tree_ids[k], node_ids[k]), k)).collect();
    for c in 0..class_trees.len() {
        let k = position.get(&(class_trees[c], class_nodes[c])).ok_or_else(|| {
            ctx.invalid(&format!(
                "a class weight names node {} of tree {}, which does not exist",
                class_nodes[c], class_trees[c]
            ))
        })?;
        leaf[*k][class_ids[c] as usize] += weights[c];
    }
    let base = |c: usize| base_values.get(c).copied().unwrap_or(0.0);
    let n_trees = tree_order.len();
    // How leaf weights become the scorer's leaf values, and how those combine.
    let (column, output, base_margin): (LeafColumn, TreeOutput, f64) = match (post.as_str(), has_class1) {
        ("LOGISTIC", true) => (|w| w[1], TreeOutput::Logistic, base(1)),
        ("LOGISTIC", false) => (|w| w[0], TreeOutput::Logistic, base(0)),
        ("SOFTMAX", true) => (|w| w[1] - w[0], TreeOutput::Logistic, base(1) - base(0)),
        // The probability is the sum of the weights; the scorer averages, so scale by the count.
        ("NONE", true) => (|w| w[1], TreeOutput::Average, base(1)),
        ("NONE", false) => (|w| w[0], TreeOutput::Average, base(0)),
        _ => return Err(ctx.unsupported(&format!("post_transform {post}"))),
    };
    let scale = if output == TreeOutput::Average { n_trees as f64 } else { 1.0 };

    let mut raw: Vec<Vec<RawNode>> = vec![Vec::new(); n_trees];
    let mut is_child: Vec<Vec<bool>> = vec![Vec::new(); n_trees];
    for k in 0..n {
        let (t, i) = local[&(tree_ids[k], node_ids[k])];
        let child = |id: i64| {
            local.get(&(tree_ids[k], id)).map(|&(_, c)| c).ok_or_else(|| {
                ctx.invalid(&format!("tree {}, node {}: child {id} does not exist", tree_ids[k], node_ids[k]))
            })
        };
        let tracks = tracks_true.get(k).is_some_and(|&v| v != 0);
        let node = match modes[k].as_str() {
            "LEAF" => RawNode::Leaf((column(&leaf[k]) * scale) as f32, 0.0),
            mode => {
                let (yes, no) = (child(true_ids[k])?, child(false_ids[k])?);
                let feature =
                    usize::try_from(features[k]).map_err(|_| ctx.invalid("a negative feature id"))?;
                let t = thresholds[k];
                // The scorer goes left when x < threshold; NaN goes `default_left`.
                let (threshold, left, right, default_left) = match mode {
                    "BRANCH_LT" => (t, yes, no, tracks),
                    "BRANCH_LEQ" => (t.next_up(), yes, no, tracks),
                    "BRANCH_GTE" => (t, no, yes, !tracks),
                    "BRANCH_GT" => (t.next_up(), no, yes, !tracks),
                    other => return Err(ctx.unsupported(&format!("node mode {other}"))),
                };
                RawNode::Split { feature, threshold, default_left, left, right }
            }
        };
        if raw[t].len() != i {
            return Err(ctx.invalid("nodes are numbered inconsistently"));
        }
        raw[t].push(node);
        is_child[t].push(false);
    }
    for t in 0..n_trees {
        for node in &raw[t] {
            if let RawNode::Split { left, right, .. } = *node {
                is_child[t][left] = true;
                is_child[t][right] = true;
            }
        }
    }
    let (mut nodes, mut roots) = (Vec::new(), Vec::new());
    for t in 0..n_trees {
        let candidates: Vec<usize> = (0..raw[t].len()).filter(|&i| !is_child[t][i]).collect();
        let [root] = candidates[..] else {
            return Err(ctx.invalid(&format!("tree {} has {} roots", tree_order[t], candidates.len())));
        };
        let at = |i: usize| format!("ONNX node `{}`, tree {}, node {i}", ctx.name(), tree_order[t]);
        push_tree(&mut nodes, &mut roots, &raw[t], root, n_features, &at)?;
    }
    Ok(TreeEnsemble { n_features, nodes, roots, base_margin, output })
}
