//! What the page's and the models' handlers share: the host.

use std::sync::Arc;

use crate::Host;

/// The handlers' state.
pub(crate) struct State {
    pub(crate) host: Arc<dyn Host>,
}
