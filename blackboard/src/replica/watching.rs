//! What watches get from the replica: [`Replica::watch`] and the replica's side of
//! [`watch::Source`]. The watch asks through these methods; only the replica locks its state.

use std::sync::Arc;

use automerge::{Change, ChangeHash};

use super::{Position, Replica, Shared};
use crate::doc::{DocCore, DocError};
use crate::store::ReplicaStore;
use crate::watch::listeners::{LiveReceiver, Wants};
use crate::watch::{self, Pattern, Watch};
use crate::Error;

impl Replica {
    /// Watches the changes that touch `pattern` (see [`Pattern`] for the syntax), from
    /// `options.start`. See [`crate::watch`] for the guarantees.
    ///
    /// ```
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// # use std::sync::Arc;
    /// # use blackboard::{log::EmbeddedLog, replica::{Config, Replica}};
    /// use blackboard::watch::{Options, PatchOp};
    /// use futures::StreamExt;
    /// # let dir = tempfile::tempdir()?;
    /// # let db = sled::open(dir.path())?;
    /// # let log = Arc::new(EmbeddedLog::open(db.clone())?);
    /// # let doc = Replica::open(log, &db, Config::new("team".parse()?, "plan".parse()?, "me".parse()?))?;
    /// let mut statuses = doc.watch("/tasks/*/status".parse()?, Options::default())?;
    /// doc.put("/tasks/7", serde_json::json!({"title": "docs", "status": "open"})).await?;
    /// // /tasks and /tasks/7 were created (above the pattern), each by a change of its own
    /// // (the container recipe), then the status was set; the title is not watched.
    /// let mut paths = Vec::new();
    /// for _ in 0..3 {
    ///     let event = statuses.next().await.unwrap()?;
    ///     assert!(event.local);
    ///     paths.extend(event.patches.iter().map(|p| (p.path.to_string(), p.op.clone())));
    /// }
    /// assert_eq!(paths[0].0, "/tasks");
    /// assert_eq!(paths[1].0, "/tasks/7");
    /// assert_eq!(paths[2], ("/tasks/7/status".to_owned(), PatchOp::Put { value: "open".into() }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn watch(&self, pattern: Pattern, options: watch::Options) -> Result<Watch, Error> {
        let s = &self.handle.shared;
        let mut start = options.start;
        let cursor = match options.durable {
            Some(name) => {
                if let Some(position) = s.store.get_cursor(&name)? {
                    start = watch::Start::After(position);
                }
                Some((Box::new(s.store.clone()) as Box<dyn watch::Cursors>, name))
            }
            None => None,
        };
        let source: Arc<dyn watch::Source> = s.clone();
        let feed = watch::Feed {
            source: Arc::downgrade(&source),
            log: s.log.clone(),
            space: s.config.space.clone(),
            document: s.config.document.clone(),
            agent: s.config.agent.clone(),
            stamp: s.config.stamp.clone(),
            pinned_admins: s.config.pinned_admins.clone(),
            rejections: options.rejections,
        };
        Ok(watch::spawn(
            &source,
            feed,
            pattern,
            start,
            options.buffer,
            cursor,
        ))
    }
}

impl watch::Source for Shared {
    fn listen_now(&self, wants: Wants) -> (LiveReceiver, Position) {
        let mut st = self.lock();
        (st.listeners.listen(wants), st.position_now())
    }

    fn fork_at(&self, heads: &[ChangeHash]) -> Option<Result<DocCore, DocError>> {
        let st = self.lock();
        st.core.contains(heads).then(|| st.core.fork_at(heads))
    }

    fn listen_if_caught_up(
        &self,
        read: u64,
        copy: &DocCore,
        wants: Wants,
    ) -> Option<(LiveReceiver, Vec<Change>)> {
        let mut st = self.lock();
        if st.position > read {
            return None;
        }
        let live = st.listeners.listen(wants);
        Some((live, st.core.changes_missing_from(copy)))
    }
}

impl watch::Cursors for ReplicaStore {
    fn save(&self, name: &str, position: &Position) -> Result<(), String> {
        self.put_cursor(name, position).map_err(|e| e.to_string())
    }
}
