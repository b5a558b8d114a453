//! Global options, paths and the choice of AWS target (real AWS, an explicit endpoint, or the local Bedrock).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use clap::Args;

use crate::env;

/// Options every subcommand accepts.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// Endpoint of a Bedrock-compatible service (for example a local Bedrock started by `cmi serve`).
    #[arg(long, global = true, env = env::CMI_ENDPOINT_URL)]
    pub(crate) endpoint_url: Option<String>,
    /// AWS region.
    #[arg(long, global = true, env = env::AWS_REGION)]
    pub(crate) region: Option<String>,
    /// AWS profile from the shared config files.
    #[arg(long, global = true, env = env::AWS_PROFILE)]
    pub(crate) profile: Option<String>,
    /// Data directory of the local Bedrock (defaults to the platform data directory).
    #[arg(long, global = true, env = env::CMI_DATA_DIR)]
    pub(crate) data_dir: Option<PathBuf>,
    /// More log output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,
    /// Less output: errors only.
    #[arg(short, long, global = true)]
    pub(crate) quiet: bool,
}

/// Installs the tracing subscriber (stderr only; stdout carries data).
pub(crate) fn init_tracing(global: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        _ => "trace",
    };
    let filter = std::env::var(env::CMI_LOG)
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Where `cmi` keeps things; `HOME` and `XDG_*` overrides are honoured through `dirs`.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    /// User configuration, including the model registry (`models.json`).
    pub(crate) config_dir: PathBuf,
    /// Local Bedrock data: objects, state database, generated credentials.
    pub(crate) data_dir: PathBuf,
    /// Caches: the demo model, downloads, bench environments.
    pub(crate) cache_dir: PathBuf,
}

impl Paths {
    fn resolve(data_dir: Option<PathBuf>) -> Result<Self> {
        let home_hint = "set HOME (or XDG_CONFIG_HOME / XDG_DATA_HOME / XDG_CACHE_HOME)";
        let config_dir = dirs::config_dir()
            .with_context(|| format!("no config directory: {home_hint}"))?
            .join("cmi");
        let data_dir = match data_dir {
            Some(dir) => dir,
            None => dirs::data_dir()
                .with_context(|| format!("no data directory: {home_hint}"))?
                .join("cmi")
                .join("server"),
        };
        let cache_dir = dirs::cache_dir()
            .with_context(|| format!("no cache directory: {home_hint}"))?
            .join("cmi");
        Ok(Self {
            config_dir,
            data_dir,
            cache_dir,
        })
    }

    /// The user's model registry file.
    pub(crate) fn registry_file(&self) -> PathBuf {
        self.config_dir.join("models.json")
    }
}

/// Everything a subcommand needs from the command line and the environment.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) global: GlobalArgs,
    pub(crate) paths: Paths,
    /// A local Bedrock this process already runs (set by `cmi quickstart`); wins over every other target.
    local: Option<LocalEndpoint>,
}

/// Endpoint, region and credentials of a local Bedrock running in this process.
#[derive(Debug, Clone)]
pub(crate) struct LocalEndpoint {
    pub(crate) endpoint_url: String,
    pub(crate) region: String,
    pub(crate) credentials: bedrock_server::Credentials,
}

/// Which service a command talks to.
pub(crate) struct AwsTarget {
    /// SDK configuration to build clients from (endpoint, region and credentials already applied).
    pub(crate) sdk: SdkConfig,
    /// The region requests go to.
    pub(crate) region: String,
    /// Set when the target is a local Bedrock (ours), which accepts no IAM role and needs none.
    pub(crate) local: bool,
    /// The endpoint, when not the AWS default.
    pub(crate) endpoint_url: Option<String>,
    /// Keeps an in-process local Bedrock alive for as long as the command runs.
    pub(crate) _server: Option<bedrock_server::RunningServer>,
}

const DEFAULT_REGION: &str = "us-east-1";

impl Ctx {
    pub(crate) fn new(global: GlobalArgs) -> Result<Self> {
        let paths = Paths::resolve(global.data_dir.clone())?;
        Ok(Self {
            global,
            paths,
            local: None,
        })
    }

    /// The same context, pointed at a local Bedrock that this process runs.
    pub(crate) fn with_local(&self, local: LocalEndpoint) -> Self {
        Self {
            global: self.global.clone(),
            paths: self.paths.clone(),
            local: Some(local),
        }
    }

    /// Resolves the target: `--endpoint-url` if given; real AWS when credentials are configured; otherwise the local
    /// Bedrock — the one `cmi serve` runs (found through its data directory), or one started in this process.
    pub(crate) async fn aws(&self) -> Result<AwsTarget> {
        let region = self.global.region.clone();
        if let Some(local) = &self.local {
            return Ok(self.local_aws(local.clone(), None).await);
        }
        if let Some(url) = &self.global.endpoint_url {
            let local_creds = bedrock_server::read_credentials(&self.paths.data_dir).ok().flatten();
            let mut loader = self.loader(region.clone()).endpoint_url(url);
            if !aws_credentials_configured()
                && let Some(c) = &local_creds
            {
                loader = loader.credentials_provider(static_credentials(c));
            }
            let sdk = loader.load().await;
            let region = sdk
                .region()
                .map(|r| r.to_string())
                .unwrap_or_else(|| DEFAULT_REGION.into());
            return Ok(AwsTarget {
                sdk,
                region,
                local: local_creds.is_some(),
                endpoint_url: Some(url.clone()),
                _server: None,
            });
        }
        if aws_credentials_configured() {
            let sdk = self.loader(region).load().await;
            let region = sdk
                .region()
                .map(|r| r.to_string())
                .context("no AWS region configured\n\nhint: pass --region or set AWS_REGION")?;
            return Ok(AwsTarget {
                sdk,
                region,
                local: false,
                endpoint_url: None,
                _server: None,
            });
        }
        self.local_target(region).await
    }

    async fn local_target(&self, region: Option<String>) -> Result<AwsTarget> {
        let (local, server) = self.find_or_start_local(region, None).await?;
        match &server {
            None => eprintln!("using the local Bedrock at {} (no AWS configured)", local.endpoint_url),
            Some(_) => eprintln!(
                "no AWS configured: using a local Bedrock in this process ({})",
                local.endpoint_url
            ),
        }
        Ok(self.local_aws(local, server).await)
    }

    /// The local Bedrock that `cmi serve` runs on this data directory, or a new one started in this process (returned
    /// too, so the caller keeps it alive).
    pub(crate) async fn find_or_start_local(
        &self,
        region: Option<String>,
        quantize: Option<infer_engine::Quantize>,
    ) -> Result<(LocalEndpoint, Option<bedrock_server::RunningServer>)> {
        let data_dir = &self.paths.data_dir;
        if let Some(running) = bedrock_server::find_running(data_dir).await {
            tracing::info!(endpoint = %running.endpoint_url, "using the local Bedrock started by `cmi serve`");
            let local = LocalEndpoint {
                endpoint_url: running.endpoint_url,
                region: running.region,
                credentials: running.credentials,
            };
            return Ok((local, None));
        }
        let mut config = bedrock_server::ServerConfig::new(data_dir.clone());
        if let Some(r) = region {
            config.region = r;
        }
        config.quantize = quantize;
        let server = bedrock_server::start(config)
            .await
            .with_context(|| format!("starting the local Bedrock in {}", data_dir.display()))?;
        let local = LocalEndpoint {
            endpoint_url: server.endpoint_url(),
            region: server.region().to_string(),
            credentials: server.credentials().clone(),
        };
        Ok((local, Some(server)))
    }

    /// SDK configuration for a local Bedrock: its endpoint, region and key pair.
    async fn local_aws(&self, local: LocalEndpoint, server: Option<bedrock_server::RunningServer>) -> AwsTarget {
        let sdk = self
            .loader(Some(local.region.clone()))
            .endpoint_url(&local.endpoint_url)
            .credentials_provider(static_credentials(&local.credentials))
            .load()
            .await;
        AwsTarget {
            sdk,
            region: local.region,
            local: true,
            endpoint_url: Some(local.endpoint_url),
            _server: server,
        }
    }

    fn loader(&self, region: Option<String>) -> aws_config::ConfigLoader {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(region.unwrap_or_else(|| DEFAULT_REGION.to_string())));
        if let Some(profile) = &self.global.profile {
            loader = loader.profile_name(profile);
        }
        loader.timeout_config(
            aws_config::timeout::TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .build(),
        )
    }
}

fn static_credentials(c: &bedrock_server::Credentials) -> Credentials {
    Credentials::new(
        c.access_key_id.clone(),
        c.secret_access_key.clone(),
        None,
        None,
        "cmi-local",
    )
}

/// True when the standard AWS credential sources are configured (environment or shared files); the check is cheap and
/// offline, so a machine without AWS never waits on instance-metadata timeouts.
pub(crate) fn aws_credentials_configured() -> bool {
    let env_set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    if env_set("AWS_ACCESS_KEY_ID") || env_set("AWS_PROFILE") || env_set("AWS_WEB_IDENTITY_TOKEN_FILE") {
        return true;
    }
    let aws_dir = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".aws").join("credentials")));
    let config = std::env::var_os("AWS_CONFIG_FILE")
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".aws").join("config")));
    aws_dir.is_some_and(|p| p.exists()) || config.is_some_and(|p| p.exists())
}
