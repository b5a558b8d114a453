//! The built-in catalogue of Bedrock foundation text models, compiled in from `data/catalogue.json5`.

use std::path::Path;

use crate::entry::ModelEntry;
use crate::parse::parse_entries;

/// The catalogue's text, in the same JSON5 shape users write.
pub(crate) const CATALOGUE: &str = include_str!("../data/catalogue.json5");

/// The built-in entries. The catalogue is checked by a unit test (`catalogue_is_valid`), so a broken edit fails the
/// build's tests rather than a user's session; entries with problems are dropped here rather than panicking.
pub(crate) fn builtins() -> Vec<ModelEntry> {
    match parse_entries(CATALOGUE, Some(Path::new("catalogue.json5"))) {
        Ok(p) => p.entries,
        Err(e) => {
            tracing::error!(error = %e, "the built-in model catalogue does not parse");
            vec![]
        }
    }
}
