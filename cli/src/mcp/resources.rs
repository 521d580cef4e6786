//! Documents as resources: `blackboard://SPACE/DOC`, read as JSON, with subscriptions that
//! send `notifications/resources/updated` whenever the document changes (by any agent):
//! `resources/subscribe` for the revisions with a session (2025-11-25 and before), and
//! `subscriptions/listen` for 2026-07-28, where one listen request carries the documents
//! watched and `resources/list_changed`, until the client cancels it.

use blackboard_client::{DocumentId, Pattern, Replica, Start, WatchOptions as Options};
use futures::StreamExt as _;
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents,
    ResourceUpdatedNotificationParam, SubscriptionFilter,
};
use rmcp::service::{Peer, SubscriptionContext, SubscriptionSink};
use rmcp::{ErrorData, RoleServer};
use tokio::sync::broadcast::error::RecvError;

use super::server::Server;

const MIME: &str = "application/json";

impl Server {
    fn uri(&self, document: &str) -> String {
        format!("blackboard://{}/{document}", self.board.space)
    }

    /// The document a `blackboard://SPACE/DOC` URI names, if it is one of this space.
    fn document_of<'a>(&self, uri: &'a str) -> Result<&'a str, ErrorData> {
        let rest = uri.strip_prefix("blackboard://").ok_or_else(|| {
            ErrorData::invalid_params(
                format!("{uri} is not a blackboard resource (blackboard://SPACE/DOC)"),
                None,
            )
        })?;
        match rest.split_once('/') {
            Some((space, doc)) if space == self.board.space.as_str() && !doc.is_empty() => Ok(doc),
            _ => Err(ErrorData::resource_not_found(
                format!(
                    "{uri}: this server serves space {} (blackboard://{}/DOC)",
                    self.board.space, self.board.space
                ),
                None,
            )),
        }
    }

    pub(crate) async fn list_documents_as_resources(
        &self,
    ) -> Result<ListResourcesResult, ErrorData> {
        let docs = self.board.list().await.map_err(|e| {
            ErrorData::internal_error(format!("could not list the documents: {e}"), None)
        })?;
        let resources = docs
            .iter()
            .map(|d| {
                Resource::new(self.uri(d.document.as_str()), d.document.to_string())
                    .with_mime_type(MIME)
                    .with_description(format!(
                        "document {} of space {} ({} events)",
                        d.document, self.board.space, d.events
                    ))
            })
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    pub(crate) async fn read_document_resource(
        &self,
        uri: &str,
    ) -> Result<ReadResourceResult, ErrorData> {
        let doc = self.document_of(uri)?;
        let (replica, position) = self
            .board
            .existing(doc)
            .await
            .map_err(|e| ErrorData::resource_not_found(e.0, None))?;
        let text = serde_json::to_string_pretty(&replica.to_json())
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
        tracing::debug!(%uri, seq = position.seq, "read resource");
        Ok(ReadResourceResult::new(vec![ResourceContents::text(
            text, uri,
        )
        .with_mime_type(MIME)]))
    }

    pub(crate) async fn subscribe_document(
        &self,
        uri: String,
        peer: Peer<RoleServer>,
    ) -> Result<(), ErrorData> {
        let doc = self.document_of(&uri)?;
        let replica = self
            .board
            .replica(doc)
            .await
            .map_err(|e| ErrorData::invalid_params(e.0, None))?;
        let task = tokio::spawn(watch_document(replica, uri.clone(), Updates::Session(peer)));
        self.subscriptions.insert(uri, task);
        Ok(())
    }

    /// What this server accepts of a `subscriptions/listen` filter: `resources/list_changed`,
    /// and the requested URIs that name a document of this space (the acknowledgment leaves
    /// out the others). Tools and prompts never change.
    pub(crate) fn acceptable(&self, requested: &SubscriptionFilter) -> SubscriptionFilter {
        let documents: Vec<String> = requested
            .resource_subscriptions
            .iter()
            .flatten()
            .filter(|uri| {
                let ok = self
                    .document_of(uri)
                    .is_ok_and(|doc| DocumentId::new(doc).is_ok());
                if !ok {
                    tracing::debug!(%uri, "not a document of this space: left out of the listen");
                }
                ok
            })
            .cloned()
            .collect();
        let mut accepted = SubscriptionFilter::new();
        accepted.resources_list_changed = requested.resources_list_changed;
        accepted.resource_subscriptions = (!documents.is_empty()).then_some(documents);
        accepted
    }

    /// One `subscriptions/listen`: a watch per accepted document and, when accepted, the
    /// documents that appear, all sent on the listen's stream until the client cancels it
    /// (on HTTP: closes the stream) or the server stops; then the watches stop.
    pub(crate) async fn listen_to(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let sink = context.sink().clone();
        let accepted = context.accepted().clone();
        let mut tasks = tokio::task::JoinSet::new();
        let uris: Vec<String> = accepted
            .resource_subscriptions
            .into_iter()
            .flatten()
            .collect();
        for uri in &uris {
            let doc = self.document_of(uri)?;
            let replica = self
                .board
                .replica(doc)
                .await
                .map_err(|e| ErrorData::invalid_params(e.0, None))?;
            tasks.spawn(watch_document(
                replica,
                uri.clone(),
                Updates::Listen(sink.clone()),
            ));
        }
        if accepted.resources_list_changed == Some(true) {
            let mut found = self.board.new_documents();
            let sink = sink.clone();
            tasks.spawn(async move {
                // A lagged receiver missed some names: the list changed all the same.
                while let Ok(_) | Err(RecvError::Lagged(_)) = found.recv().await {
                    if sink.notify_resource_list_changed().await.is_err() {
                        break; // the listen ended
                    }
                }
            });
        }
        let id = sink.id().clone();
        tracing::info!(?id, documents = ?uris, "listening");
        let stopped = tokio::select! {
            () = context.cancelled() => false,
            () = self.board.stopping() => true,
        };
        tasks.abort_all();
        tracing::info!(?id, stopped, "listen ended");
        Ok(())
    }
}

/// Where a document's updates go: a session's peer (`resources/subscribe`) or a listen's
/// stream (`subscriptions/listen`).
enum Updates {
    Session(Peer<RoleServer>),
    Listen(SubscriptionSink),
}

impl Updates {
    /// Sends `notifications/resources/updated` for `uri`; false once nobody receives it.
    async fn send(&self, uri: &str) -> bool {
        match self {
            Updates::Session(peer) => peer
                .notify_resource_updated(ResourceUpdatedNotificationParam::new(uri))
                .await
                .is_ok(),
            Updates::Listen(sink) => sink.notify_resource_updated(uri).await.is_ok(),
        }
    }
}

/// Watches `replica` and sends an update for `uri` after each change, until the replica
/// closes or nobody receives the updates.
async fn watch_document(replica: Replica, uri: String, updates: Updates) {
    loop {
        let mut watch = match replica.watch(Pattern::everything(), Options::start(Start::Now)) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(%uri, error = %e, "cannot watch");
                return;
            }
        };
        loop {
            // The stream ends only when the replica closes: nothing more to watch.
            let Some(event) = watch.next().await else {
                return;
            };
            if let Err(e) = &event {
                // Fell behind: say it changed, and watch again from now.
                tracing::debug!(%uri, error = %e, "watch restarts");
            }
            if !updates.send(&uri).await {
                return; // the client went away
            }
            if event.is_err() {
                break;
            }
        }
    }
}
