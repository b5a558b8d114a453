//! `cmi models`: list, show, add, remove, validate, sync (from ListImportedModels) and export the model registry.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result, bail};
use model_registry::{Availability, Category, ModelEntry, Registry, classify};

use crate::ctx::Ctx;

/// Arguments of `cmi models`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// List models (one line per way of calling each), filtered to `--region` when given.
    List {
        /// Print JSON (one object per model and profile).
        #[arg(long)]
        json: bool,
        /// List every profile, whatever the region.
        #[arg(long)]
        all: bool,
    },
    /// Show one model's entry and the model ID that would be sent.
    Show {
        /// Name, model ID or ARN.
        name: String,
        /// Print the entry as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add (or replace) user models: from a JSON/JSON5 file, `-` for stdin (a `models.ts` snippet pastes as is), or
    /// from flags.
    Add(AddArgs),
    /// Remove a user model.
    Remove {
        /// The model's name.
        name: String,
    },
    /// Check a JSON/JSON5 file of entries; prints every problem with file, line and field (exit 1 on errors).
    Validate {
        /// The file (`-` for stdin).
        file: PathBuf,
    },
    /// Add the account's imported models (ListImportedModels + GetImportedModel) to the registry, with their Converse
    /// capability.
    Sync {
        /// Print what would change without writing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Print an entry for another tool.
    Export {
        /// Name, model ID or ARN.
        name: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "bedrock-engineer")]
        format: ExportFormat,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// The TypeScript object Bedrock Engineer's `src/common/models/models.ts` expects.
    BedrockEngineer,
    /// The registry's own JSON.
    Json,
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// A JSON/JSON5 file of one entry or an array of entries; `-` reads stdin.
    file: Option<PathBuf>,
    /// The model ARN or foundation-model ID.
    #[arg(long, conflicts_with = "file", required_unless_present = "file")]
    base_id: Option<String>,
    /// Display name (defaults to the ARN's last part).
    #[arg(long)]
    name: Option<String>,
    /// Provider (`deepseek`, `meta`, …).
    #[arg(long, default_value = "custom")]
    provider: String,
    /// Category.
    #[arg(long, default_value = "text")]
    category: String,
    /// Whether the model may be given tools.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    tool_use: bool,
    /// Largest maxTokens to request.
    #[arg(long, default_value_t = 4096)]
    max_tokens_limit: u32,
    /// Whether ConverseStream works with tools (the guide recommends false for imported models).
    #[arg(long, action = clap::ArgAction::Set)]
    supports_streaming_tool_use: Option<bool>,
    /// Whether the model can use Converse (false: chat through InvokeModel and the model's own template).
    #[arg(long, action = clap::ArgAction::Set)]
    instruct_supported: Option<bool>,
    /// Regions the model is served in (defaults to the ARN's region).
    #[arg(long, value_delimiter = ',')]
    regions: Vec<String>,
    /// Model folder the import used (its chat template drives the InvokeModel path).
    #[arg(long)]
    model_source: Option<String>,
}

pub(crate) async fn run(args: Args, ctx: &Ctx) -> Result<ExitCode> {
    let file = ctx.paths.registry_file();
    match args.command {
        Command::List { json, all } => list(&load(&file)?, ctx.global.region.as_deref().filter(|_| !all), json),
        Command::Show { name, json } => show(&load(&file)?, &name, ctx, json),
        Command::Add(a) => add(&file, a),
        Command::Remove { name } => {
            let mut reg = load(&file)?;
            let e = reg.remove(&name)?;
            reg.save()?;
            eprintln!("removed `{}` from {}", e.name, file.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate { file: f } => validate(&f),
        Command::Sync { dry_run } => sync(&file, ctx, dry_run).await,
        Command::Export { name, format } => {
            let reg = load(&file)?;
            let e = reg
                .find(&name)
                .with_context(|| format!("no model `{name}` (see `cmi models list`)"))?;
            let out = match format {
                ExportFormat::BedrockEngineer => model_registry::export::bedrock_engineer(e),
                ExportFormat::Json => format!("{}\n", serde_json::to_string_pretty(e)?),
            };
            std::io::stdout().write_all(out.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Loads the registry and prints its warnings on stderr.
pub(crate) fn load(file: &Path) -> Result<Registry> {
    let reg = Registry::load(file).with_context(|| format!("reading the model registry {}", file.display()))?;
    for w in reg.warnings() {
        eprintln!("{w}");
    }
    Ok(reg)
}

fn list(reg: &Registry, region: Option<&str>, json: bool) -> Result<ExitCode> {
    let mut rows = vec![];
    for e in reg.entries() {
        let source = match reg.source_of(e) {
            model_registry::Source::Builtin => "builtin",
            model_registry::Source::User => "user",
        };
        let profiles = e.profiles();
        for p in &profiles {
            if region.is_some_and(|r| !p.regions.iter().any(|x| x == r)) {
                continue;
            }
            let name = match &p.display_suffix {
                Some(s) => format!("{} {s}", e.name),
                None => e.name.clone(),
            };
            rows.push(serde_json::json!({
                "name": name,
                "modelId": e.model_id_for_profile(p),
                "provider": e.provider,
                "category": e.category.as_str(),
                "toolUse": e.tool_use,
                "streamingToolUse": e.streams_with_tools(),
                "converse": e.uses_converse(),
                "maxTokensLimit": e.max_tokens_limit,
                "regions": p.regions,
                "source": source,
            }));
        }
    }
    let mut out = std::io::stdout().lock();
    if json {
        for r in rows {
            writeln!(out, "{r}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows
        .iter()
        .filter_map(|r| r["name"].as_str())
        .map(str::len)
        .max()
        .unwrap_or(4)
        .max(4);
    writeln!(
        out,
        "{:width$}  {:7}  {:>6}  {:8}  MODEL ID",
        "NAME", "SOURCE", "MAXTOK", "TOOLS"
    )?;
    for r in &rows {
        let tools = match (
            r["toolUse"].as_bool(),
            r["streamingToolUse"].as_bool(),
            r["converse"].as_bool(),
        ) {
            (Some(false), ..) => "no",
            (_, _, Some(false)) => "invoke",
            (_, Some(false), _) => "nostream",
            _ => "yes",
        };
        writeln!(
            out,
            "{:width$}  {:7}  {:>6}  {:8}  {}",
            r["name"].as_str().unwrap_or_default(),
            r["source"].as_str().unwrap_or_default(),
            r["maxTokensLimit"].as_u64().unwrap_or_default(),
            tools,
            r["modelId"].as_str().unwrap_or_default()
        )?;
    }
    if rows.is_empty() {
        eprintln!(
            "no models{}",
            region
                .map(|r| format!(" served in {r} (try --all)"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(reg: &Registry, name: &str, ctx: &Ctx, json: bool) -> Result<ExitCode> {
    let region = ctx.global.region.clone().unwrap_or_else(|| "us-east-1".to_string());
    let r = reg.resolve(name, &region)?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&r.entry)?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let e = &r.entry;
    let kind = classify(&r.model_id)
        .map(|k| k.describe())
        .unwrap_or_else(|e| format!("invalid: {e}"));
    writeln!(out, "name:            {}", e.name)?;
    writeln!(
        out,
        "source:          {}",
        if r.registered {
            format!("{:?}", reg.source_of(e)).to_lowercase()
        } else {
            "not registered (defaults)".into()
        }
    )?;
    writeln!(out, "model ID ({region}): {} ({kind})", r.model_id)?;
    writeln!(out, "provider:        {}", e.provider)?;
    writeln!(out, "category:        {}", e.category.as_str())?;
    writeln!(out, "tool use:        {}", e.tool_use)?;
    writeln!(out, "max tokens:      {}", e.max_tokens_limit)?;
    writeln!(out, "streams w/tools: {}", e.streams_with_tools())?;
    writeln!(
        out,
        "API:             {}",
        if e.uses_converse() {
            "Converse"
        } else {
            "InvokeModel (own chat template)"
        }
    )?;
    if let Some(s) = &e.model_source {
        writeln!(out, "model source:    {s}")?;
    }
    for p in e.profiles() {
        writeln!(
            out,
            "profile {:14} {}  [{}]",
            p.kind.as_str(),
            e.model_id_for_profile(&p),
            p.regions.join(", ")
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn read_input(file: &Path) -> Result<(String, Option<PathBuf>)> {
    if file == Path::new("-") {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).context("reading stdin")?;
        Ok((s, None))
    } else {
        let s = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        Ok((s, Some(file.to_path_buf())))
    }
}

fn print_problems(p: &model_registry::Problems) {
    for x in &p.0 {
        eprintln!("{x}");
    }
}

fn validate(file: &Path) -> Result<ExitCode> {
    let (text, origin) = read_input(file)?;
    let origin = origin.unwrap_or_else(|| PathBuf::from("<stdin>"));
    let parsed = match model_registry::parse_entries(&text, Some(&origin)) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    print_problems(&parsed.problems);
    let errors = parsed.problems.errors().count();
    let warnings = parsed.problems.warnings().count();
    eprintln!(
        "{}: {} valid entries, {errors} errors, {warnings} warnings",
        origin.display(),
        parsed.entries.len()
    );
    Ok(if errors > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn add(file: &Path, a: AddArgs) -> Result<ExitCode> {
    let mut reg = load(file)?;
    let entries = match &a.file {
        Some(f) => {
            let (text, origin) = read_input(f)?;
            let origin = origin.unwrap_or_else(|| PathBuf::from("<stdin>"));
            let parsed = model_registry::parse_entries(&text, Some(&origin))?;
            print_problems(&parsed.problems);
            if parsed.has_errors() {
                eprintln!("nothing added: fix the errors above");
                return Ok(ExitCode::from(1));
            }
            parsed.entries
        }
        None => vec![entry_from_flags(a)?],
    };
    for e in entries {
        let name = e.name.clone();
        let replaced = reg.user_entries().any(|u| u.name.eq_ignore_ascii_case(&name));
        let shadows = reg.is_builtin(&name);
        reg.upsert(e)?;
        eprintln!(
            "{} `{name}`{}",
            if replaced { "replaced" } else { "added" },
            if shadows {
                " (shadows the built-in entry of that name)"
            } else {
                ""
            }
        );
    }
    reg.save()?;
    eprintln!("saved {}", file.display());
    Ok(ExitCode::SUCCESS)
}

fn entry_from_flags(a: AddArgs) -> Result<ModelEntry> {
    // `required_unless_present` guarantees base_id when no file is given.
    let base_id = a.base_id.context("--base-id is required without FILE")?;
    let kind = classify(&base_id)?;
    let name = a
        .name
        .unwrap_or_else(|| base_id.rsplit(['/', ':']).next().unwrap_or(&base_id).to_string());
    let mut e = ModelEntry::new(base_id.clone(), name, a.provider);
    e.category = Category::parse(&a.category).with_context(|| {
        format!(
            "unknown category `{}` (expected text, image, video or embedding)",
            a.category
        )
    })?;
    e.tool_use = a.tool_use;
    e.max_tokens_limit = a.max_tokens_limit;
    e.supports_streaming_tool_use = a.supports_streaming_tool_use;
    e.instruct_supported = a.instruct_supported;
    e.model_source = a.model_source;
    let regions = if a.regions.is_empty() {
        match kind.arn() {
            Some(arn) => vec![arn.region.clone()],
            None => bail!("--regions is required for a model ID that is not an ARN"),
        }
    } else {
        a.regions
    };
    e.availability = Some(Availability { base: regions });
    Ok(e)
}

/// The provider to record for an imported model, from its architecture or name.
fn provider_for(architecture: Option<&str>, name: &str) -> String {
    let hay = format!("{} {}", architecture.unwrap_or_default(), name).to_lowercase();
    for (needle, provider) in [
        ("deepseek", "deepseek"),
        ("qwen", "qwen"),
        ("mistral", "mistral"),
        ("mixtral", "mistral"),
        ("llama", "meta"),
        ("gpt_oss", "openai"),
        ("gpt-oss", "openai"),
        ("t5", "google"),
    ] {
        if hay.contains(needle) {
            return provider.to_string();
        }
    }
    "custom".to_string()
}

async fn sync(file: &Path, ctx: &Ctx, dry_run: bool) -> Result<ExitCode> {
    let target = ctx.aws().await?;
    let client = aws_sdk_bedrock::Client::new(&target.sdk);
    let mut reg = load(file)?;
    let mut pages = client.list_imported_models().into_paginator().send();
    let mut summaries = vec![];
    while let Some(page) = pages.next().await {
        let page = page
            .map_err(|e| anyhow::anyhow!(aws_sdk_bedrock::error::DisplayErrorContext(e)))
            .context("ListImportedModels")?;
        summaries.extend(page.model_summaries().iter().cloned());
    }
    let mut changed = 0;
    for s in summaries {
        let got = client
            .get_imported_model()
            .model_identifier(s.model_arn())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!(aws_sdk_bedrock::error::DisplayErrorContext(e)))
            .with_context(|| format!("GetImportedModel {}", s.model_arn()))?;
        let arn = got.model_arn().unwrap_or(s.model_arn()).to_string();
        let name = got.model_name().unwrap_or(s.model_name()).to_string();
        let instruct = got.instruct_supported().or(s.instruct_supported());
        let arch = got.model_architecture().or(s.model_architecture()).map(str::to_string);
        let s3 = got
            .model_data_source()
            .and_then(|d| d.as_s3_data_source().ok())
            .map(|d| d.s3_uri().to_string());
        // Keep what the user (or the importer) already set for this model; refresh what Bedrock knows.
        let existing = reg
            .find(&arn)
            .or_else(|| reg.find(&name))
            .filter(|e| e.base_id == arn)
            .cloned();
        let region = classify(&arn)
            .ok()
            .and_then(|k| k.arn().map(|a| a.region.clone()))
            .unwrap_or(target.region.clone());
        let mut e = existing.clone().unwrap_or_else(|| {
            let mut e = ModelEntry::new(arn.clone(), name.clone(), provider_for(arch.as_deref(), &name));
            // The guide's advice for imported models: no streaming with tools until shown otherwise.
            e.supports_streaming_tool_use = Some(false);
            e.availability = Some(Availability {
                base: vec![region.clone()],
            });
            e
        });
        e.instruct_supported = instruct;
        e.architecture = arch;
        if e.model_source.is_none() {
            e.model_source = s3;
        }
        if existing.as_ref() == Some(&e) {
            continue;
        }
        changed += 1;
        let verb = if existing.is_some() { "update" } else { "add" };
        eprintln!(
            "{verb} `{}` ({}, {})",
            e.name,
            arn,
            if e.uses_converse() {
                "Converse"
            } else {
                "InvokeModel only"
            }
        );
        if reg.find(&e.name).is_some_and(|x| x.base_id != arn) {
            e.name = format!("{} ({})", e.name, arn.rsplit('/').next().unwrap_or_default());
        }
        reg.upsert(e)?;
    }
    if changed == 0 {
        eprintln!(
            "registry up to date ({})",
            if target.local {
                "local Bedrock"
            } else {
                target.region.as_str()
            }
        );
    } else if dry_run {
        eprintln!("dry run: {changed} change(s) not written");
    } else {
        reg.save()?;
        eprintln!("saved {} ({changed} change(s))", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
