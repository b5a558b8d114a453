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
