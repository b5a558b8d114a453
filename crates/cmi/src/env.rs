//! Every environment variable `cmi` reads, in one place (flags win over these, these win over defaults).

/// Endpoint of a Bedrock-compatible service (a local Bedrock, or any compatible endpoint).
pub(crate) const CMI_ENDPOINT_URL: &str = "CMI_ENDPOINT_URL";
/// Data directory of the local Bedrock (objects, state database, generated credentials).
pub(crate) const CMI_DATA_DIR: &str = "CMI_DATA_DIR";
/// Standard AWS region variable, honoured as the AWS CLI does.
pub(crate) const AWS_REGION: &str = "AWS_REGION";
/// Standard AWS profile variable.
pub(crate) const AWS_PROFILE: &str = "AWS_PROFILE";
/// Log filter, as `tracing_subscriber::EnvFilter` reads it.
pub(crate) const CMI_LOG: &str = "CMI_LOG";
/// Caps the engine's instruction sets (`auto`, `avx512`, `avx2`, `none`), to reproduce on one machine the arithmetic
/// of another.
pub(crate) const CMI_SIMD: &str = "CMI_SIMD";
/// Any non-empty value turns colour and other terminal styling off (<https://no-color.org>).
pub(crate) const NO_COLOR: &str = "NO_COLOR";

/// Whether `NO_COLOR` asks for no colour (set and non-empty, as no-color.org defines it).
pub(crate) fn no_color() -> bool {
    std::env::var_os(NO_COLOR).is_some_and(|v| !v.is_empty())
}

/// Hugging Face home (`$HF_HOME/hub` is the download cache), as `huggingface_hub` reads it.
pub(crate) const HF_HOME: &str = "HF_HOME";
/// The hub cache itself, overriding `$HF_HOME/hub`.
pub(crate) const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
/// Base URL of the hub (a mirror, or a local one in tests).
pub(crate) const HF_ENDPOINT: &str = "HF_ENDPOINT";
/// A user access token for private and gated repositories.
pub(crate) const HF_TOKEN: &str = "HF_TOKEN";

/// Hub download settings from `HF_HUB_CACHE`/`HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN`, defaulting as `huggingface_hub`
/// does (`~/.cache/huggingface/hub`, the public hub, the token file written by `hf auth login`).
pub(crate) fn hub_settings() -> bedrock_import::HubSettings {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let cache_dir = var(HF_HUB_CACHE).map(std::path::PathBuf::from).unwrap_or_else(|| {
        var(HF_HOME)
            .map(std::path::PathBuf::from)
            .or_else(|| dirs::home_dir().map(|h| h.join(".cache").join("huggingface")))
            .unwrap_or_else(|| std::path::PathBuf::from(".cache/huggingface"))
            .join("hub")
    });
    let mut s = bedrock_import::HubSettings::new(cache_dir, var(HF_TOKEN));
    if let Some(e) = var(HF_ENDPOINT) {
        s.endpoint = e.trim_end_matches('/').to_string();
    }
    s
}
