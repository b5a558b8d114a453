//! Tool names as Bedrock takes them (`[a-zA-Z0-9_-]{1,64}`): `<server>__<tool>`, other characters replaced by `_`,
//! and a name too long cut and given a hash of the whole, so that two long names stay apart.

/// The longest tool name Bedrock accepts.
pub const MAX_LEN: usize = 64;

/// `name` with every character outside `[a-zA-Z0-9_-]` replaced by `_` (never empty).
pub fn clean(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() { "_".into() } else { s }
}

/// The prefix of every tool of `server`: `<server>__`.
pub fn prefix(server: &str) -> String {
    format!("{}__", clean(server))
}

/// The name the model sees for `tool` of `server`.
pub fn tool_name(server: &str, tool: &str) -> String {
    fit(format!("{}{}", prefix(server), clean(tool)))
}

/// `name` with `_N` appended (within the length limit), to set apart a name already taken.
pub fn with_suffix(name: &str, n: usize) -> String {
    let suffix = format!("_{n}");
    let mut base = name.to_string();
    base.truncate(MAX_LEN - suffix.len());
    base + &suffix
}

/// Cuts a name longer than [`MAX_LEN`] and ends it with 8 hex digits of a hash of the whole (ASCII only by now).
fn fit(name: String) -> String {
    if name.len() <= MAX_LEN {
        return name;
    }
    // FNV-1a: stable across runs and builds, which a session resumed later needs.
    let hash = name
        .bytes()
        .fold(0x811c_9dc5u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193));
    format!("{}_{hash:08x}", &name[..MAX_LEN - 9])
}
