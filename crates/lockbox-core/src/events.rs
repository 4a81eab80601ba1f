//! Object events for `/events`.

use lockbox_types::Timestamp;

/// One change to a replicated object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Object type: `secret`, `node`, ...
    pub kind: &'static str,
    /// `create`, `update` or `remove`.
    pub action: &'static str,
    /// Object ID.
    pub id: String,
    /// Object name.
    pub name: String,
    /// When it happened.
    pub time: Timestamp,
}
