//! The conversation list's assignee filter, one vocabulary for the API (`?assignee=`) and the web
//! inbox's tabs (`/inbox?assignee=`): `me`, `none` (unassigned), `all`, or an agent's id.

use inbox_core::ids::AgentId;

/// Whose conversations a list shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum AssigneeFilter {
    #[default]
    All,
    /// The agent asking.
    Me,
    /// Unassigned conversations.
    Nobody,
    Agent(AgentId),
}

impl AssigneeFilter {
    /// What [`AssigneeFilter::parse`] accepts, for error messages.
    pub const EXPECTED: &'static str = "me, none, all or an agent id";

    /// Blank is `all`; anything else not in the vocabulary is `None`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "" | "all" => Some(AssigneeFilter::All),
            "me" => Some(AssigneeFilter::Me),
            "none" => Some(AssigneeFilter::Nobody),
            id => id.parse().ok().map(AssigneeFilter::Agent),
        }
    }

    /// The query-string value.
    pub fn as_param(&self) -> String {
        match self {
            AssigneeFilter::All => "all".to_owned(),
            AssigneeFilter::Me => "me".to_owned(),
            AssigneeFilter::Nobody => "none".to_owned(),
            AssigneeFilter::Agent(id) => id.to_string(),
        }
    }

    /// The store's filter for `viewer`: `None` any, `Some(None)` unassigned, `Some(Some(id))`.
    pub fn for_viewer(self, viewer: AgentId) -> Option<Option<AgentId>> {
        match self {
            AssigneeFilter::All => None,
            AssigneeFilter::Me => Some(Some(viewer)),
            AssigneeFilter::Nobody => Some(None),
            AssigneeFilter::Agent(id) => Some(Some(id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_vocabulary_round_trips() {
        let agent = AgentId::new();
        for filter in [
            AssigneeFilter::All,
            AssigneeFilter::Me,
            AssigneeFilter::Nobody,
            AssigneeFilter::Agent(agent),
        ] {
            assert_eq!(AssigneeFilter::parse(&filter.as_param()), Some(filter));
        }
        assert_eq!(AssigneeFilter::parse(""), Some(AssigneeFilter::All));
        assert_eq!(AssigneeFilter::parse("mine"), None);
        let me = AgentId::new();
        assert_eq!(AssigneeFilter::Me.for_viewer(me), Some(Some(me)));
        assert_eq!(AssigneeFilter::Nobody.for_viewer(me), Some(None));
        assert_eq!(AssigneeFilter::All.for_viewer(me), None);
    }
}
