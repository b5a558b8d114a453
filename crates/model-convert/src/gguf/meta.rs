//! Typed access to GGUF metadata values, with errors that name the key and what was expected.

use std::collections::HashMap;

use candle_core::quantized::gguf_file::Value;

use crate::Error;

/// Borrowed GGUF metadata with typed getters.
pub(crate) struct Meta<'a> {
    map: &'a HashMap<String, Value>,
}

fn describe(v: &Value) -> String {
    match v {
        Value::String(s) => format!("the string {s:?}"),
        Value::Array(a) => format!("an array of {} values", a.len()),
        other => format!("{other:?}"),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match *v {
        Value::U8(x) => Some(x.into()),
        Value::U16(x) => Some(x.into()),
        Value::U32(x) => Some(x.into()),
        Value::U64(x) => i64::try_from(x).ok(),
        Value::I8(x) => Some(x.into()),
        Value::I16(x) => Some(x.into()),
        Value::I32(x) => Some(x.into()),
        Value::I64(x) => Some(x),
        _ => None,
    }
}

/// The shortest decimal that reads back as the same `f32`, as an `f64` (so `1e-5` stays `1e-5` in JSON instead of
/// becoming `9.999999747378752e-6`).
pub(crate) fn f32_to_f64_shortest(x: f32) -> f64 {
    // `Display` for f32 prints the shortest round-trip representation, which always parses as f64.
    format!("{x}").parse().unwrap_or(f64::from(x))
}

impl<'a> Meta<'a> {
    pub(crate) fn new(map: &'a HashMap<String, Value>) -> Self {
        Meta { map }
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn require(&self, key: &str, expected: &'static str) -> Result<&'a Value, Error> {
        self.map.get(key).ok_or_else(|| Error::MissingKey {
            key: key.to_owned(),
            expected,
        })
    }

    fn bad(key: &str, expected: &'static str, v: &Value) -> Error {
        Error::BadKey {
            key: key.to_owned(),
            expected,
            found: describe(v),
        }
    }

    pub(crate) fn u64_opt(&self, key: &str) -> Result<Option<u64>, Error> {
        const EXPECTED: &str = "a non-negative integer";
        match self.map.get(key) {
            None => Ok(None),
            Some(v) => as_u64(v).map(Some).ok_or_else(|| Self::bad(key, EXPECTED, v)),
        }
    }

    /// A positive count that fits in `usize` (layers, heads, sizes).
    pub(crate) fn count(&self, key: &str) -> Result<usize, Error> {
        const EXPECTED: &str = "a positive integer";
        let v = self.require(key, EXPECTED)?;
        match as_u64(v).and_then(|x| usize::try_from(x).ok()) {
            Some(x) if x > 0 && x <= (1 << 40) => Ok(x),
            _ => Err(Self::bad(key, EXPECTED, v)),
        }
    }

    pub(crate) fn count_opt(&self, key: &str) -> Result<Option<usize>, Error> {
        if self.contains(key) {
            self.count(key).map(Some)
        } else {
            Ok(None)
        }
    }

    pub(crate) fn f64_opt(&self, key: &str) -> Result<Option<f64>, Error> {
        const EXPECTED: &str = "a finite number";
        let Some(v) = self.map.get(key) else { return Ok(None) };
        let x = match *v {
            Value::F32(x) => f32_to_f64_shortest(x),
            Value::F64(x) => x,
            _ => match as_i64(v) {
                // Integers are accepted where a float is expected (some writers store `rope.freq_base` so).
                #[allow(clippy::cast_precision_loss)]
                Some(i) => i as f64,
                None => return Err(Self::bad(key, EXPECTED, v)),
            },
        };
        if x.is_finite() {
            Ok(Some(x))
        } else {
            Err(Self::bad(key, EXPECTED, v))
        }
    }

    pub(crate) fn bool_opt(&self, key: &str) -> Result<Option<bool>, Error> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(Self::bad(key, "a boolean", v)),
        }
    }

    pub(crate) fn str_opt(&self, key: &str) -> Result<Option<&'a str>, Error> {
        match self.map.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(v) => Err(Self::bad(key, "a string", v)),
        }
    }

    pub(crate) fn str(&self, key: &str) -> Result<&'a str, Error> {
        const EXPECTED: &str = "a string";
        match self.require(key, EXPECTED)? {
            Value::String(s) => Ok(s.as_str()),
            v => Err(Self::bad(key, EXPECTED, v)),
        }
    }

    pub(crate) fn str_array(&self, key: &str) -> Result<Vec<&'a str>, Error> {
        const EXPECTED: &str = "an array of strings";
        let v = self.require(key, EXPECTED)?;
        let Value::Array(items) = v else {
            return Err(Self::bad(key, EXPECTED, v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s.as_str()),
                other => Err(Error::BadKey {
                    key: format!("{key}[{i}]"),
                    expected: "a string",
                    found: describe(other),
                }),
            })
            .collect()
    }

    /// An array whose items `item` converts (`None`: the item is not what `expected_item` says).
    fn array_opt<T>(
        &self,
        key: &str,
        expected: &'static str,
        expected_item: &'static str,
        item: impl Fn(&Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, Error> {
        let Some(v) = self.map.get(key) else { return Ok(None) };
        let Value::Array(items) = v else {
            return Err(Self::bad(key, expected, v));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                item(v).ok_or_else(|| Error::BadKey {
                    key: format!("{key}[{i}]"),
                    expected: expected_item,
                    found: describe(v),
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    pub(crate) fn int_array_opt(&self, key: &str) -> Result<Option<Vec<i64>>, Error> {
        self.array_opt(key, "an array of integers", "an integer", as_i64)
    }

    /// An array of numbers (`tokenizer.ggml.scores`), as f64.
    pub(crate) fn f64_array_opt(&self, key: &str) -> Result<Option<Vec<f64>>, Error> {
        self.array_opt(key, "an array of numbers", "a number", |v| match *v {
            Value::F32(x) => Some(f64::from(x)),
            Value::F64(x) => Some(x),
            #[allow(clippy::cast_precision_loss)]
            _ => as_i64(v).map(|x| x as f64),
        })
    }
}
