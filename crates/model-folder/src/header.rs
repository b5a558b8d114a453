//! Reading `.safetensors` headers without touching tensor data.
//!
//! The safetensors crate's `SafeTensors::read_metadata` wants the whole file in one buffer (it checks that the data
//! section ends exactly at the end of the buffer), which would mean reading or mapping gigabytes. The format's header
//! is only `u64 little-endian length` + JSON, so we read those bytes ourselves and deserialize each entry into the
//! crate's own `TensorInfo` (dtype names and sizes stay the library's).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorInfo;

/// The safetensors crate refuses headers above 100 MB; so do we (a bigger one is a corrupt or hostile file).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// One tensor's entry in a header.
#[derive(Debug, Clone)]
pub(crate) struct Tensor {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) bytes: u64,
}

/// A parsed header: tensors by name and the file size.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) tensors: BTreeMap<String, Tensor>,
}

/// Why a header could not be used (becomes a finding, not an `Err`).
#[derive(Debug)]
pub(crate) enum HeaderProblem {
    Io(std::io::Error),
    Invalid(String),
}

impl std::fmt::Display for HeaderProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderProblem::Io(e) => write!(f, "{e}"),
            HeaderProblem::Invalid(s) => f.write_str(s),
        }
    }
}

/// Reads and validates the header of one `.safetensors` file: length prefix, JSON, dtypes, offsets contiguous from 0
/// and ending exactly at the end of the file, byte counts matching `shape × dtype`.
pub(crate) fn read_header(path: &Path) -> Result<Header, HeaderProblem> {
    let mut file = File::open(path).map_err(HeaderProblem::Io)?;
    let file_len = file.metadata().map_err(HeaderProblem::Io)?.len();
    if file_len < 8 {
        return Err(HeaderProblem::Invalid(format!(
            "file is {file_len} bytes, shorter than the 8-byte header length"
        )));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(HeaderProblem::Io)?;
    let n = u64::from_le_bytes(len_bytes);
    if n > MAX_HEADER_BYTES || n + 8 > file_len {
        return Err(HeaderProblem::Invalid(format!(
            "header length {n} is impossible for a file of {file_len} bytes"
        )));
    }
    // `n` is at most MAX_HEADER_BYTES, so it fits a usize on every supported target.
    let mut json = vec![0u8; n as usize];
    file.read_exact(&mut json).map_err(HeaderProblem::Io)?;
    let raw: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&json)
        .map_err(|e| HeaderProblem::Invalid(format!("header is not a JSON object: {e}")))?;

    let mut tensors = BTreeMap::new();
    let mut spans: Vec<(u64, u64, String)> = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let info: TensorInfo =
            serde_json::from_value(value).map_err(|e| HeaderProblem::Invalid(format!("tensor `{name}`: {e}")))?;
        let elements = info.shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d as u64));
        let bits = elements.and_then(|e| e.checked_mul(info.dtype.bitsize() as u64));
        let Some(bits) = bits else {
            return Err(HeaderProblem::Invalid(format!(
                "tensor `{name}`: shape {:?} overflows",
                info.shape
            )));
        };
        let bytes = bits.div_ceil(8);
        let (start, end) = (info.data_offsets.0 as u64, info.data_offsets.1 as u64);
        if end < start || end - start != bytes {
            return Err(HeaderProblem::Invalid(format!(
                "tensor `{name}`: data_offsets [{start}, {end}] hold {} bytes, but {:?} {:?} needs {bytes}",
                end.saturating_sub(start),
                info.dtype,
                info.shape
            )));
        }
        spans.push((start, end, name.clone()));
        tensors.insert(
            name,
            Tensor {
                dtype: info.dtype,
                shape: info.shape,
                bytes,
            },
        );
    }
    spans.sort();
    let mut cursor = 0u64;
    for (start, end, name) in &spans {
        if *start != cursor {
            return Err(HeaderProblem::Invalid(format!(
                "tensor `{name}` starts at byte {start} of the data section, expected {cursor} (gap or overlap)"
            )));
        }
        cursor = *end;
    }
    let data_len = file_len - 8 - n;
    if cursor != data_len {
        return Err(HeaderProblem::Invalid(format!(
            "tensors end at byte {cursor} of the data section, but the file holds {data_len} data bytes (truncated or padded)"
        )));
    }
    Ok(Header { tensors })
}
