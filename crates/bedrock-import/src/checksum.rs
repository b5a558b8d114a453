//! CRC32C of files and file ranges, computed in parallel chunks and combined (`crc32c_combine`), base64-encoded the
//! way S3 carries checksums.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use base64::Engine as _;

/// Encodes a CRC32C the way S3 headers carry it (base64 of the big-endian bytes).
pub fn crc32c_base64(crc: u32) -> String {
    base64::engine::general_purpose::STANDARD.encode(crc.to_be_bytes())
}

/// Fills `buf` from `offset`, returning the CRC32C of what was read.
pub(crate) fn read_range(path: &Path, offset: u64, buf: &mut [u8]) -> std::io::Result<u32> {
    let file = File::open(path)?;
    file.read_exact_at(buf, offset)?;
    Ok(crc32c::crc32c(buf))
}

/// CRC32C of `len` bytes at `offset`, streamed through a small buffer; `on_bytes` sees progress.
pub(crate) fn crc_range(path: &Path, offset: u64, len: u64, on_bytes: &dyn Fn(u64)) -> std::io::Result<u32> {
    thread_local! {
        // One buffer per blocking-pool thread, reused across ranges: a fresh one per range costs page faults and
        // page clears comparable to the hashing itself.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let file = File::open(path)?;
    SCRATCH.with_borrow_mut(|buf| {
        buf.resize(CRC_BUF, 0);
        crc_with(&file, offset, len, buf, on_bytes)
    })
}

/// The streaming buffer of [`crc_range`].
const CRC_BUF: usize = 4 << 20;

fn crc_with(file: &File, offset: u64, len: u64, buf: &mut [u8], on_bytes: &dyn Fn(u64)) -> std::io::Result<u32> {
    let mut crc = 0u32;
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        file.read_exact_at(&mut buf[..n], offset + done)?;
        crc = crc32c::crc32c_append(crc, &buf[..n]);
        done += n as u64;
        on_bytes(n as u64);
    }
    Ok(crc)
}

/// Combines CRC32Cs of consecutive ranges (`(crc, len)` in order) into the CRC32C of the whole.
pub(crate) fn combine(parts: impl IntoIterator<Item = (u32, u64)>) -> u32 {
    let mut iter = parts.into_iter();
    let Some((mut crc, _)) = iter.next() else { return 0 };
    for (c, len) in iter {
        crc = crc32c::crc32c_combine(crc, c, len as usize);
    }
    crc
}
