//! The short lists of newest entries the handlers keep as they record (`Recent`), each one
//! item, so that the status page reads them by key only.

use crate::domain::HistoryEntry;

use super::{Recent, StoreError};

/// A short list kept as one item (`Recent`): its name and how many of the
/// newest entries it keeps.
pub struct RecentList {
    /// Its name in the store.
    pub name: &'static str,
    /// How many entries it keeps.
    pub keep: usize,
}

impl RecentList {
    /// Puts `entry` in the list, under `id` (replacing what was there) or a new place.
    pub async fn note(
        &self,
        store: &dyn Recent,
        id: Option<&str>,
        entry: &HistoryEntry,
    ) -> Result<(), StoreError> {
        store.note_recent(self.name, id, entry, self.keep).await
    }
}

/// The deploy history's newest entries (each also in the `deploy` stream).
pub const DEPLOY_MOVES: RecentList = RecentList {
    name: "deploy",
    keep: 20,
};
/// Every pull request's events and merge decisions, whatever the PR (each is also in its
/// PR's own stream): enough to find the open bot PRs and the last decisions.
pub const PULL_EVENTS: RecentList = RecentList {
    name: "pulls",
    keep: 200,
};
/// The webhook deliveries the relay answered (refused ones are not recorded).
pub const DELIVERIES: RecentList = RecentList {
    name: "deliveries",
    keep: 50,
};
/// The CI contexts results were recorded for lately, one entry each (by name): the ones
/// the page shows for each deploy commit.
pub const CI_CONTEXTS: RecentList = RecentList {
    name: "contexts",
    keep: 20,
};
