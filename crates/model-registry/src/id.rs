//! Model-ID classification: foundation IDs, cross-region profile IDs, and every Bedrock ARN form in every partition.
//!
//! Bedrock's own pattern for model IDs ends in a catch-all (`[a-zA-Z0-9-:.]+`), so it validates nothing useful;
//! classification goes by prefix and resource type, and a malformed ARN is rejected naming the part that is wrong.

use crate::error::Error;
use crate::regions;

/// A cross-region inference-profile geography (the ID prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geo {
    /// `us.`
    Us,
    /// `eu.`
    Eu,
    /// `apac.` (also routes to me-central-1)
    Apac,
    /// `jp.`
    Jp,
    /// `au.`
    Au,
    /// `us-gov.`
    UsGov,
    /// `global.`
    Global,
}

impl Geo {
    /// Every geography with its prefix.
    pub const ALL: [(Geo, &'static str); 7] = [
        (Geo::Us, "us"),
        (Geo::Eu, "eu"),
        (Geo::Apac, "apac"),
        (Geo::Jp, "jp"),
        (Geo::Au, "au"),
        (Geo::UsGov, "us-gov"),
        (Geo::Global, "global"),
    ];

    /// Parses a prefix (`us`, `us-gov`, …).
    pub fn from_prefix(p: &str) -> Option<Geo> {
        Geo::ALL.iter().find(|(_, s)| *s == p).map(|(g, _)| *g)
    }

    /// The prefix.
    pub fn prefix(self) -> &'static str {
        // Every variant is in ALL.
        Geo::ALL
            .iter()
            .find(|(g, _)| *g == self)
            .map(|(_, s)| *s)
            .unwrap_or("global")
    }
}

/// A parsed Bedrock (or SageMaker endpoint) ARN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arn {
    /// `aws`, `aws-cn` or `aws-us-gov`.
    pub partition: String,
    /// `bedrock` (or `sagemaker` for endpoints).
    pub service: String,
    /// The region.
    pub region: String,
    /// The 12-digit account; empty for foundation models.
    pub account: String,
    /// Resource type and ID.
    pub resource: ArnResource,
}

/// The resource part of an ARN: `imported-model/abc123def456` → kind `imported-model`, id `abc123def456`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnResource {
    /// The resource type.
    pub kind: String,
    /// Everything after the first `/`.
    pub id: String,
}

/// What a model ID is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelId {
    /// A foundation-model ID: `anthropic.claude-3-haiku-20240307-v1:0`.
    Foundation {
        /// `anthropic`.
        provider: String,
        /// `claude-3-haiku-20240307-v1:0`.
        model: String,
    },
    /// A cross-region (system) inference-profile ID: `us.anthropic.claude-…`.
    InferenceProfile {
        /// The geography.
        geo: Geo,
        /// The provider.
        provider: String,
        /// The model without provider.
        model: String,
    },
    /// `arn:…:bedrock:REGION::foundation-model/…`
    FoundationModelArn(Arn),
    /// `arn:…:inference-profile/…` (system profile by ARN)
    InferenceProfileArn(Arn),
    /// `arn:…:application-inference-profile/…`
    ApplicationInferenceProfile(Arn),
    /// `arn:…:imported-model/…` (Custom Model Import)
    ImportedModel(Arn),
    /// `arn:…:custom-model/…` (fine-tuned)
    CustomModel(Arn),
    /// `arn:…:custom-model-deployment/…` (on-demand deployment of a custom model)
    CustomModelDeployment(Arn),
    /// `arn:…:provisioned-model/…` (provisioned throughput)
    ProvisionedModel(Arn),
    /// `arn:…:prompt-router/…` or `default-prompt-router/…`
    PromptRouter(Arn),
    /// `arn:…:prompt/…` (prompt management)
    Prompt(Arn),
    /// `arn:…:sagemaker:…:endpoint/…`
    SageMakerEndpoint(Arn),
    /// A bare name (an imported model's name, or a registry name); not an ID Bedrock resolves everywhere.
    Name {
        /// The name.
        name: String,
    },
}

impl ModelId {
    /// The ARN, for ARN forms.
    pub fn arn(&self) -> Option<&Arn> {
        match self {
            ModelId::FoundationModelArn(a)
            | ModelId::InferenceProfileArn(a)
            | ModelId::ApplicationInferenceProfile(a)
            | ModelId::ImportedModel(a)
            | ModelId::CustomModel(a)
            | ModelId::CustomModelDeployment(a)
            | ModelId::ProvisionedModel(a)
            | ModelId::PromptRouter(a)
            | ModelId::Prompt(a)
            | ModelId::SageMakerEndpoint(a) => Some(a),
            _ => None,
        }
    }

    /// The provider, when the ID says it.
    pub fn provider(&self) -> Option<&str> {
        match self {
            ModelId::Foundation { provider, .. } | ModelId::InferenceProfile { provider, .. } => Some(provider),
            ModelId::FoundationModelArn(a) => a.resource.id.split('.').next(),
            _ => None,
        }
    }

    /// A short description for listings (`imported model`, `cross-region profile (us)`).
    pub fn describe(&self) -> String {
        match self {
            ModelId::Foundation { .. } => "foundation model".into(),
            ModelId::InferenceProfile { geo, .. } => format!("cross-region inference profile ({})", geo.prefix()),
            ModelId::FoundationModelArn(_) => "foundation model (ARN)".into(),
            ModelId::InferenceProfileArn(_) => "inference profile (ARN)".into(),
            ModelId::ApplicationInferenceProfile(_) => "application inference profile".into(),
            ModelId::ImportedModel(_) => "imported model".into(),
            ModelId::CustomModel(_) => "custom model".into(),
            ModelId::CustomModelDeployment(_) => "custom model deployment".into(),
            ModelId::ProvisionedModel(_) => "provisioned model".into(),
            ModelId::PromptRouter(_) => "prompt router".into(),
            ModelId::Prompt(_) => "prompt".into(),
            ModelId::SageMakerEndpoint(_) => "SageMaker endpoint".into(),
            ModelId::Name { .. } => "name".into(),
        }
    }
}

/// Classifies a model ID. ARNs are checked part by part (partition, service, region, account, resource type and ID);
/// other IDs by their shape.
pub fn classify(id: &str) -> Result<ModelId, Error> {
    let bad = |reason: String| Error::BadModelId {
        id: id.to_string(),
        reason,
    };
    if id.is_empty() {
        return Err(bad("empty".into()));
    }
    if id.len() > 2048 {
        return Err(bad(format!("{} characters long (at most 2048)", id.len())));
    }
    if id.starts_with("arn:") {
        return classify_arn(id);
    }
    if let Some((first, rest)) = id.split_once('.')
        && let Some(geo) = Geo::from_prefix(first)
    {
        let (provider, model) =
            foundation_parts(rest).map_err(|r| bad(format!("after the `{first}.` profile prefix: {r}")))?;
        return Ok(ModelId::InferenceProfile { geo, provider, model });
    }
    if id.contains('.') {
        let (provider, model) = foundation_parts(id).map_err(bad)?;
        return Ok(ModelId::Foundation { provider, model });
    }
    let name_ok = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if name_ok {
        Ok(ModelId::Name { name: id.to_string() })
    } else {
        Err(bad(
            "not an ARN, a foundation-model ID (`provider.model`) nor a name of letters, digits, `-` and `_`".into(),
        ))
    }
}

/// `provider.model…` per Bedrock's foundation-model pattern.
fn foundation_parts(s: &str) -> Result<(String, String), String> {
    let (provider, model) = s
        .split_once('.')
        .ok_or_else(|| format!("`{s}` has no `provider.` part"))?;
    let ok_part = |p: &str| {
        !p.is_empty()
            && p.len() <= 63
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if !ok_part(provider) {
        return Err(format!(
            "provider `{provider}` should be 1-63 lowercase letters, digits or `-`"
        ));
    }
    let model_ok = !model.is_empty()
        && model.len() <= 130
        && model
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':'));
    if !model_ok {
        return Err(format!(
            "model `{model}` should be lowercase letters, digits, `-`, `.` and `:`"
        ));
    }
    Ok((provider.to_string(), model.to_string()))
}

/// Splits an ARN into its parts without checking them.
pub(crate) fn parse_arn_lenient(s: &str) -> Option<Arn> {
    let mut it = s.splitn(6, ':');
    let (arn, partition, service, region, account, resource) =
        (it.next()?, it.next()?, it.next()?, it.next()?, it.next()?, it.next()?);
    if arn != "arn" {
        return None;
    }
    let (kind, rid) = resource.split_once('/').unwrap_or((resource, ""));
    Some(Arn {
        partition: partition.into(),
        service: service.into(),
        region: region.into(),
        account: account.into(),
        resource: ArnResource {
            kind: kind.into(),
            id: rid.into(),
        },
    })
}

/// The guide's placeholders left in an ARN: `{{AWS_ACCOUNT_ID}}`-style templates and all-`x` resource IDs (`xxxxx`).
pub(crate) fn placeholders(s: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = s;
    while let Some(start) = rest.find("{{") {
        match rest[start..].find("}}") {
            Some(end) => {
                out.push(rest[start..start + end + 2].to_string());
                rest = &rest[start + end + 2..];
            }
            None => break,
        }
    }
    if let Some(last) = s.rsplit('/').next()
        && s.contains('/')
        && !last.is_empty()
        && last.chars().all(|c| c == 'x' || c == 'X')
    {
        out.push(last.to_string());
    }
    out
}

const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];

fn classify_arn(id: &str) -> Result<ModelId, Error> {
    let bad = |reason: String| Error::BadModelId {
        id: id.to_string(),
        reason,
    };
    let parts: Vec<&str> = id.splitn(6, ':').collect();
    if parts.len() < 6 {
        return Err(bad(format!(
            "an ARN has 6 `:`-separated parts (arn:PARTITION:bedrock:REGION:ACCOUNT:RESOURCE), found {}",
            parts.len()
        )));
    }
    let arn = parse_arn_lenient(id).ok_or_else(|| bad("not an ARN".into()))?;
    if !PARTITIONS.contains(&arn.partition.as_str()) {
        return Err(bad(format!(
            "partition `{}` is not one of {}",
            arn.partition,
            PARTITIONS.join(", ")
        )));
    }
    let sagemaker = arn.service == "sagemaker";
    if arn.service != "bedrock" && !sagemaker {
        return Err(bad(format!("service `{}` should be `bedrock`", arn.service)));
    }
    if !regions::looks_like_region(&arn.region) {
        return Err(bad(format!(
            "region `{}` is not a region name like `us-east-1`",
            arn.region
        )));
    }
    let expected_partition = regions::partition_of(&arn.region);
    if expected_partition != arn.partition {
        return Err(bad(format!(
            "region `{}` belongs to partition `{expected_partition}`, but the ARN says `{}`",
            arn.region, arn.partition
        )));
    }
    let kind = arn.resource.kind.as_str();
    if kind == "foundation-model" {
        if !arn.account.is_empty() {
            return Err(bad(format!(
                "account `{}` must be empty for a foundation model (`…::foundation-model/…`)",
                arn.account
            )));
        }
        foundation_parts(&arn.resource.id).map_err(|r| bad(format!("resource ID: {r}")))?;
        return Ok(ModelId::FoundationModelArn(arn));
    }
    if arn.account.len() != 12 || !arn.account.chars().all(|c| c.is_ascii_digit()) {
        return Err(bad(format!("account `{}` should be 12 digits", arn.account)));
    }
    let rid = arn.resource.id.as_str();
    let id12 = |s: &str| s.len() == 12 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let free = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | ':' | '.'))
    };
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(bad(format!("{kind} ID `{rid}` should be {what}")))
        }
    };
    if sagemaker {
        need(kind == "endpoint", "an endpoint (`endpoint/NAME`)").map_err(|_| {
            bad(format!(
                "resource type `{kind}` is not a SageMaker endpoint (`endpoint/NAME`)"
            ))
        })?;
        need(free(rid), "letters, digits and `-`")?;
        return Ok(ModelId::SageMakerEndpoint(arn));
    }
    match kind {
        "imported-model" => {
            need(id12(rid), "12 lowercase letters or digits")?;
            Ok(ModelId::ImportedModel(arn))
        }
        "provisioned-model" => {
            need(id12(rid), "12 lowercase letters or digits")?;
            Ok(ModelId::ProvisionedModel(arn))
        }
        "custom-model-deployment" => {
            need(id12(rid), "12 lowercase letters or digits")?;
            Ok(ModelId::CustomModelDeployment(arn))
        }
        "custom-model" => {
            let last = rid.rsplit('/').next().unwrap_or(rid);
            need(id12(last), "`BASE-MODEL/` followed by 12 lowercase letters or digits")?;
            Ok(ModelId::CustomModel(arn))
        }
        "application-inference-profile" => {
            need(free(rid), "letters, digits, `-`, `:` and `.`")?;
            Ok(ModelId::ApplicationInferenceProfile(arn))
        }
        "inference-profile" => {
            need(
                free(rid),
                "a profile ID such as `us.anthropic.claude-3-haiku-20240307-v1:0`",
            )?;
            Ok(ModelId::InferenceProfileArn(arn))
        }
        "prompt-router" | "default-prompt-router" => {
            need(free(rid), "letters, digits, `-`, `:` and `.`")?;
            Ok(ModelId::PromptRouter(arn))
        }
        "prompt" => {
            let (pid, version) = rid.split_once(':').unwrap_or((rid, "0"));
            need(
                pid.len() == 10
                    && pid.chars().all(|c| c.is_ascii_alphanumeric())
                    && (1..=5).contains(&version.len())
                    && version.chars().all(|c| c.is_ascii_digit()),
                "10 letters or digits, optionally `:VERSION`",
            )?;
            Ok(ModelId::Prompt(arn))
        }
        other => Err(bad(format!(
            "resource type `{other}` is not a model (expected imported-model, custom-model, custom-model-deployment, provisioned-model, foundation-model, inference-profile, application-inference-profile, prompt-router)"
        ))),
    }
}
