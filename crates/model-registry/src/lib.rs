//! The model registry: entries in the fields Bedrock Engineer users know, a built-in foundation-model catalogue, the
//! user's own file (JSON5 accepted, so a `models.ts` snippet pastes as written) and model-ID classification.
//!
//! Reading order: [`ModelEntry`] (one model), [`Registry`] (built-ins + the user's file), [`parse_entries`] (text →
//! entries + problems with file, line and field), [`classify`] (what a model ID is), [`export`] (Bedrock Engineer).

#![warn(missing_docs)]

mod catalogue;
mod entry;
mod error;
pub mod export;
mod id;
mod parse;
mod positions;
mod regions;

pub use entry::{Availability, Category, InferenceProfile, ModelEntry, ProfileType, ResolvedModel, Source};
pub use error::{Error, Problem, Problems, Severity};
pub use id::{Arn, ArnResource, Geo, ModelId, classify};
pub use parse::{Parsed, parse_entries};
pub use regions::{BEDROCK_REGIONS, CMI_REGIONS, is_bedrock_region};

use std::path::{Path, PathBuf};

use indexmap::IndexMap;

/// Built-in foundation models plus the user's models; the user's entries win over built-ins of the same name.
#[derive(Debug, Clone)]
pub struct Registry {
    /// Where the user's entries are saved.
    user_file: PathBuf,
    /// The compiled-in catalogue, in catalogue order.
    builtins: Vec<ModelEntry>,
    /// The user's entries keyed by lower-cased name, in file order.
    user: IndexMap<String, ModelEntry>,
    /// Warnings found while loading (unknown fields, placeholders); the caller decides how to show them.
    warnings: Vec<Problem>,
}

impl Registry {
    /// Loads the built-ins and the user's file; a missing file means no user models. Invalid entries fail the load with
    /// every problem (file, line, field); warnings are kept in [`Registry::warnings`].
    pub fn load(user_file: &Path) -> Result<Registry, Error> {
        let builtins = catalogue::builtins();
        let mut reg = Registry {
            user_file: user_file.to_path_buf(),
            builtins,
            user: IndexMap::new(),
            warnings: vec![],
        };
        let text = match std::fs::read_to_string(user_file) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(reg),
            Err(source) => {
                return Err(Error::Io {
                    path: user_file.to_path_buf(),
                    source,
                });
            }
        };
        let parsed = parse_entries(&text, Some(user_file))?;
        if parsed.has_errors() {
            return Err(Error::Invalid(parsed.problems));
        }
        reg.warnings = parsed.problems.0;
        for e in parsed.entries {
            reg.user.insert(e.name.to_lowercase(), e);
        }
        Ok(reg)
    }

    /// A registry with only the built-ins, saving to `user_file` (for tests and first runs).
    pub fn builtin_only(user_file: &Path) -> Registry {
        Registry {
            user_file: user_file.to_path_buf(),
            builtins: catalogue::builtins(),
            user: IndexMap::new(),
            warnings: vec![],
        }
    }

    /// The file user entries are saved to.
    pub fn user_file(&self) -> &Path {
        &self.user_file
    }

    /// Warnings from loading the user's file.
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// Every entry: the user's first, then the built-ins they do not shadow.
    pub fn entries(&self) -> impl Iterator<Item = &ModelEntry> {
        self.user.values().chain(
            self.builtins
                .iter()
                .filter(|b| !self.user.contains_key(&b.name.to_lowercase())),
        )
    }

    /// The user's entries.
    pub fn user_entries(&self) -> impl Iterator<Item = &ModelEntry> {
        self.user.values()
    }

    /// Whether `name` is a built-in entry (possibly shadowed by a user entry).
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtins.iter().any(|b| b.name.eq_ignore_ascii_case(name))
    }

    /// Where an entry comes from.
    pub fn source_of(&self, entry: &ModelEntry) -> Source {
        if self.user.contains_key(&entry.name.to_lowercase()) {
            Source::User
        } else {
            Source::Builtin
        }
    }

    /// Finds an entry by display name (case-insensitive, with or without a profile's display suffix such as
    /// `(US)`), by `baseId`, by ARN, or by any model ID the entry produces (`us.anthropic.…`, `anthropic.…`).
    pub fn find(&self, name_or_id: &str) -> Option<&ModelEntry> {
        self.lookup(name_or_id).map(|(e, _)| e)
    }

    /// Finds the entry and, when the name or ID selected one, the profile.
    fn lookup(&self, name_or_id: &str) -> Option<(&ModelEntry, Option<InferenceProfile>)> {
        let wanted = name_or_id.trim();
        let entries: Vec<&ModelEntry> = self.entries().collect();
        if let Some(e) = entries.iter().find(|e| e.name.eq_ignore_ascii_case(wanted)) {
            return Some((e, None));
        }
        for e in &entries {
            for p in e.profiles() {
                if let Some(suffix) = &p.display_suffix
                    && format!("{} {}", e.name, suffix).eq_ignore_ascii_case(wanted)
                {
                    return Some((e, Some(p)));
                }
            }
        }
        if let Some(e) = entries
            .iter()
            .find(|e| e.base_id == wanted || e.foundation_id() == wanted)
        {
            return Some((e, None));
        }
        for e in &entries {
            for p in e.profiles() {
                if e.model_id_for_profile(&p) == wanted {
                    return Some((e, Some(p)));
                }
            }
        }
        None
    }

    /// Resolves what the user typed (`--model`) into the ID to send from `region`. Registered names and IDs use their
    /// entry; an unregistered but well-formed model ID (an ARN, `us.…`, `anthropic.…`) is used as-is with default
    /// settings, so any model can be tried before it is added.
    pub fn resolve(&self, name_or_id: &str, region: &str) -> Result<ResolvedModel, Error> {
        if let Some((entry, profile)) = self.lookup(name_or_id) {
            let (model_id, profile) = match profile {
                Some(p) => (entry.model_id_for_profile(&p), Some(p)),
                None if entry.is_arn() => (entry.base_id.clone(), None),
                None => {
                    let p = entry.profile_for_region(region).ok_or_else(|| Error::RegionNotServed {
                        name: entry.name.clone(),
                        region: region.to_string(),
                        served: entry.regions(),
                    })?;
                    (entry.model_id_for_profile(&p), Some(p))
                }
            };
            return Ok(ResolvedModel {
                model_id,
                entry: entry.clone(),
                profile,
                registered: true,
            });
        }
        let id = name_or_id.trim();
        let unknown = || Error::UnknownModel {
            name: id.to_string(),
            file: self.user_file.clone(),
        };
        let kind = match classify(id) {
            Ok(ModelId::Name { .. }) => return Err(unknown()),
            Ok(k) => k,
            // A malformed ARN is explained part by part; anything else was meant as a name.
            Err(e) if id.starts_with("arn:") => return Err(e),
            Err(_) => return Err(unknown()),
        };
        let provider = kind.provider().unwrap_or("custom").to_string();
        let entry = ModelEntry::new(id, id, provider);
        Ok(ResolvedModel {
            model_id: id.to_string(),
            entry,
            profile: None,
            registered: false,
        })
    }

    /// Adds or replaces the user entry with this name after validating it; a user entry may shadow a built-in.
    pub fn upsert(&mut self, e: ModelEntry) -> Result<(), Error> {
        let problems = parse::validate_entry(&e, None, None);
        if problems.iter().any(|p| p.severity == Severity::Error) {
            return Err(Error::Invalid(Problems(problems)));
        }
        self.user.insert(e.name.to_lowercase(), e);
        Ok(())
    }

    /// Removes a user entry; built-ins cannot be removed (a user entry of the same name can).
    pub fn remove(&mut self, name: &str) -> Result<ModelEntry, Error> {
        match self.user.shift_remove(&name.to_lowercase()) {
            Some(e) => Ok(e),
            None if self.is_builtin(name) => Err(Error::Builtin { name: name.to_string() }),
            None => Err(Error::NotFound {
                name: name.to_string(),
                file: self.user_file.clone(),
            }),
        }
    }

    /// Writes the user's entries atomically (temporary file in the same directory, synced, renamed).
    pub fn save(&self) -> Result<(), Error> {
        let entries: Vec<&ModelEntry> = self.user.values().collect();
        let doc = serde_json::json!({ "models": entries });
        // Serialising plain data with string keys cannot fail.
        let mut text = serde_json::to_string_pretty(&doc).expect("registry entries serialise to JSON");
        text.push('\n');
        write_atomic(&self.user_file, text.as_bytes())
    }
}

/// Writes `bytes` to `path` through a synced temporary file in the same directory and a rename, so a crash leaves
/// either the old file or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    use std::io::Write as _;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(io)?;
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests;
