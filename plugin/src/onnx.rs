//! Reading `model.onnx`: the part of ONNX's protobuf schema (`onnx.proto`, IR version 3 and
//! later) that the dense executor and the tree-ensemble reader need, decoded with prost. Field
//! numbers are the schema's; fields not listed here are skipped. Both builds read models
//! through here; the build with tract (the default) hands graphs the dense executor does not
//! run to tract, which parses the file again with its own reader.

use prost::Message;

/// `ModelProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ModelProto {
    #[prost(int64, tag = "1")]
    pub ir_version: i64,
    #[prost(message, optional, tag = "7")]
    pub graph: Option<GraphProto>,
}

/// `GraphProto`.
#[derive(Clone, PartialEq, Message)]
pub struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    pub node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(message, repeated, tag = "5")]
    pub initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    pub input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    pub output: Vec<ValueInfoProto>,
}

/// `NodeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    pub input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub output: Vec<String>,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(string, tag = "4")]
    pub op_type: String,
    #[prost(message, repeated, tag = "5")]
    pub attribute: Vec<AttributeProto>,
    #[prost(string, tag = "7")]
    pub domain: String,
}

/// `AttributeProto`; `r#type` is `AttributeProto.AttributeType` (0 when an old writer left it
/// out).
#[derive(Clone, PartialEq, Message)]
pub struct AttributeProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(float, tag = "2")]
    pub f: f32,
    #[prost(int64, tag = "3")]
    pub i: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub s: Vec<u8>,
    #[prost(message, optional, tag = "5")]
    pub t: Option<TensorProto>,
    #[prost(float, repeated, tag = "7")]
    pub floats: Vec<f32>,
    #[prost(int64, repeated, tag = "8")]
    pub ints: Vec<i64>,
    #[prost(bytes = "vec", repeated, tag = "9")]
    pub strings: Vec<Vec<u8>>,
    #[prost(int32, tag = "20")]
    pub r#type: i32,
}

/// `TensorProto` (dense; external data is recognised and refused).
#[derive(Clone, PartialEq, Message)]
pub struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    pub dims: Vec<i64>,
    #[prost(int32, tag = "2")]
    pub data_type: i32,
    #[prost(float, repeated, tag = "4")]
    pub float_data: Vec<f32>,
    #[prost(int32, repeated, tag = "5")]
    pub int32_data: Vec<i32>,
    #[prost(int64, repeated, tag = "7")]
    pub int64_data: Vec<i64>,
    #[prost(string, tag = "8")]
    pub name: String,
    #[prost(bytes = "vec", tag = "9")]
    pub raw_data: Vec<u8>,
    #[prost(double, repeated, tag = "10")]
    pub double_data: Vec<f64>,
    #[prost(uint64, repeated, tag = "11")]
    pub uint64_data: Vec<u64>,
    #[prost(int32, tag = "14")]
    pub data_location: i32,
}

/// `ValueInfoProto`.
#[derive(Clone, PartialEq, Message)]
pub struct ValueInfoProto {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub r#type: Option<TypeProto>,
}

/// `TypeProto`, tensor types only.
#[derive(Clone, PartialEq, Message)]
pub struct TypeProto {
    #[prost(message, optional, tag = "1")]
    pub tensor_type: Option<TensorTypeProto>,
}

/// `TypeProto.Tensor`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    pub elem_type: i32,
    #[prost(message, optional, tag = "2")]
    pub shape: Option<TensorShapeProto>,
}

/// `TensorShapeProto`.
#[derive(Clone, PartialEq, Message)]
pub struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    pub dim: Vec<Dimension>,
}

/// `TensorShapeProto.Dimension`: a size, a symbolic name, or neither.
#[derive(Clone, PartialEq, Message)]
pub struct Dimension {
    #[prost(int64, optional, tag = "1")]
    pub dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    pub dim_param: Option<String>,
}

/// The model in `bytes`, with its graph.
pub fn read(bytes: &[u8]) -> Result<GraphProto, String> {
    let model = ModelProto::decode(bytes).map_err(|e| format!("not a readable ONNX model: {e}"))?;
    model.graph.ok_or_else(|| "the ONNX model has no graph".to_string())
}

impl GraphProto {
    /// The graph's inputs that are not initializers (what a caller feeds).
    pub fn fed_inputs(&self) -> Vec<&ValueInfoProto> {
        self.input.iter().filter(|i| !self.initializer.iter().any(|t| t.name == i.name)).collect()
    }
}

impl ValueInfoProto {
    /// Dimension `axis` when the graph declares it as a number.
    pub fn dim(&self, axis: usize) -> Option<i64> {
        let shape = self.r#type.as_ref()?.tensor_type.as_ref()?.shape.as_ref()?;
        shape.dim.get(axis)?.dim_value.filter(|&d| d > 0)
    }
}

// `AttributeProto.AttributeType`.
const FLOAT: i32 = 1;
const INT: i32 = 2;
const STRING: i32 = 3;
const FLOATS: i32 = 6;
const INTS: i32 = 7;
const STRINGS: i32 = 8;

impl NodeProto {
    fn attr(&self, name: &str, ty: i32) -> Result<Option<&AttributeProto>, String> {
        match self.attribute.iter().find(|a| a.name == name) {
            None => Ok(None),
            Some(a) if a.r#type == ty || a.r#type == 0 => Ok(Some(a)),
            Some(a) => {
                Err(format!("attribute {name:?} has type {}, expected {ty} (onnx.proto AttributeType)", a.r#type))
            }
        }
    }

    pub fn has_attr(&self, name: &str) -> bool {
        self.attribute.iter().any(|a| a.name == name)
    }

    pub fn attr_i(&self, name: &str) -> Result<Option<i64>, String> {
        Ok(self.attr(name, INT)?.map(|a| a.i))
    }

    pub fn attr_f(&self, name: &str) -> Result<Option<f32>, String> {
        Ok(self.attr(name, FLOAT)?.map(|a| a.f))
    }

    pub fn attr_s(&self, name: &str) -> Result<Option<&str>, String> {
        match self.attr(name, STRING)? {
            None => Ok(None),
            Some(a) => std::str::from_utf8(&a.s).map(Some).map_err(|_| format!("attribute {name:?} is not UTF-8")),
        }
    }

    pub fn attr_ints(&self, name: &str) -> Result<Option<&[i64]>, String> {
        Ok(self.attr(name, INTS)?.map(|a| &a.ints[..]))
    }

    pub fn attr_floats(&self, name: &str) -> Result<Option<&[f32]>, String> {
        Ok(self.attr(name, FLOATS)?.map(|a| &a.floats[..]))
    }

    pub fn attr_strings(&self, name: &str) -> Result<Option<Vec<&str>>, String> {
        match self.attr(name, STRINGS)? {
            None => Ok(None),
            Some(a) => a
                .strings
                .iter()
                .map(|s| {
                    std::str::from_utf8(s).map_err(|_| format!("attribute {name:?} holds a string that is not UTF-8"))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
        }
    }
}

// `TensorProto.DataType`.
const T_FLOAT: i32 = 1;
const T_UINT8: i32 = 2;
const T_INT8: i32 = 3;
const T_UINT16: i32 = 4;
const T_INT16: i32 = 5;
const T_INT32: i32 = 6;
const T_INT64: i32 = 7;
const T_BOOL: i32 = 9;
const T_DOUBLE: i32 = 11;
const T_UINT32: i32 = 12;
const T_UINT64: i32 = 13;

impl TensorProto {
    /// The tensor's shape and its numbers as f32 (as tract's cast does: integers and doubles
    /// rounded to the nearest f32), or why not.
    pub fn to_f32(&self) -> Result<(Vec<usize>, Vec<f32>), String> {
        if self.data_location == 1 {
            return Err(format!("tensor {:?} keeps its data in an external file", self.name));
        }
        let shape: Vec<usize> = self
            .dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| format!("tensor {:?} has a negative dimension", self.name)))
            .collect::<Result<_, _>>()?;
        let len: usize = shape.iter().product();
        let raw = &self.raw_data;
        let from_raw = |size: usize, f: &dyn Fn(&[u8]) -> f32| -> Vec<f32> { raw.chunks_exact(size).map(f).collect() };
        let data: Vec<f32> = match (self.data_type, raw.is_empty()) {
            (T_FLOAT, true) => self.float_data.clone(),
            (T_FLOAT, false) => from_raw(4, &|b| f32::from_le_bytes(b.try_into().expect("4 bytes"))),
            (T_DOUBLE, true) => self.double_data.iter().map(|&v| v as f32).collect(),
            (T_DOUBLE, false) => from_raw(8, &|b| f64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            (T_INT64, true) => self.int64_data.iter().map(|&v| v as f32).collect(),
            (T_INT64, false) => from_raw(8, &|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            (T_UINT64, true) => self.uint64_data.iter().map(|&v| v as f32).collect(),
            (T_UINT64, false) => from_raw(8, &|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as f32),
            (T_UINT32, true) => self.uint64_data.iter().map(|&v| v as f32).collect(),
            (T_UINT32, false) => from_raw(4, &|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) as f32),
            (T_INT32, false) => from_raw(4, &|b| i32::from_le_bytes(b.try_into().expect("4 bytes")) as f32),
            (T_INT16, false) => from_raw(2, &|b| i16::from_le_bytes(b.try_into().expect("2 bytes")) as f32),
            (T_UINT16, false) => from_raw(2, &|b| u16::from_le_bytes(b.try_into().expect("2 bytes")) as f32),
            (T_INT8, false) => from_raw(1, &|b| b[0] as i8 as f32),
            (T_UINT8 | T_BOOL, false) => from_raw(1, &|b| f32::from(b[0])),
            (T_INT32 | T_INT16 | T_UINT16 | T_INT8 | T_UINT8 | T_BOOL, true) => {
                self.int32_data.iter().map(|&v| v as f32).collect()
            }
            (other, _) => return Err(format!("tensor {:?} has data type {other}, not a number type", self.name)),
        };
        if data.len() != len {
            return Err(format!("tensor {:?} has {} numbers for shape {shape:?}", self.name, data.len()));
        }
        Ok((shape, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_read_from_typed_fields_and_raw_bytes() {
        let typed =
            TensorProto { dims: vec![2], data_type: T_FLOAT, float_data: vec![1.5, -2.0], ..Default::default() };
        assert_eq!(typed.to_f32().unwrap(), (vec![2], vec![1.5, -2.0]));
        let raw: Vec<u8> = [3i64, -4].iter().flat_map(|v| v.to_le_bytes()).collect();
        let ints = TensorProto { dims: vec![1, 2], data_type: T_INT64, raw_data: raw, ..Default::default() };
        assert_eq!(ints.to_f32().unwrap(), (vec![1, 2], vec![3.0, -4.0]));
        let short = TensorProto { dims: vec![3], data_type: T_FLOAT, float_data: vec![1.0], ..Default::default() };
        assert!(short.to_f32().unwrap_err().contains("1 numbers for shape [3]"));
        let external = TensorProto { data_location: 1, name: "w".into(), ..Default::default() };
        assert!(external.to_f32().unwrap_err().contains("external"));
        let strings = TensorProto { data_type: 8, ..Default::default() };
        assert!(strings.to_f32().is_err());
    }

    #[test]
    fn attributes_are_typed() {
        let node = NodeProto {
            attribute: vec![
                AttributeProto { name: "alpha".into(), f: 0.5, r#type: FLOAT, ..Default::default() },
                AttributeProto { name: "ids".into(), ints: vec![1, 2], r#type: INTS, ..Default::default() },
                AttributeProto {
                    name: "modes".into(),
                    strings: vec![b"LEAF".to_vec()],
                    r#type: STRINGS,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(node.attr_f("alpha").unwrap(), Some(0.5));
        assert_eq!(node.attr_ints("ids").unwrap(), Some(&[1i64, 2][..]));
        assert_eq!(node.attr_strings("modes").unwrap(), Some(vec!["LEAF"]));
        assert_eq!(node.attr_i("missing").unwrap(), None);
        assert!(node.attr_i("alpha").is_err(), "a float is not an int");
    }
}
