//! Documents as resources: `blackboard://SPACE/DOC`, read as JSON, with subscriptions that
//! send `notifications/resources/updated` whenever the document changes (by any agent).

use blackboard_client::{Pattern, Start, WatchOptions as Options};
use futures::StreamExt as _;
use rmcp::model::{
    ListResourcesResult, ReadResourceResult, Resource, ResourceContents,
    ResourceUpdatedNotificationParam,
};
use rmcp::service::Peer;
use rmcp::{ErrorData, RoleServer};

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
        let task_uri = uri.clone();
        let task = tokio::spawn(async move {
            loop {
                let mut watch =
                    match replica.watch(Pattern::everything(), Options::start(Start::Now)) {
                        Ok(w) => w,
                        Err(e) => {
                            tracing::warn!(uri = %task_uri, error = %e, "cannot watch");
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
                        tracing::debug!(uri = %task_uri, error = %e, "watch restarts");
                    }
                    let sent = peer
                        .notify_resource_updated(ResourceUpdatedNotificationParam::new(
                            task_uri.clone(),
                        ))
                        .await;
                    if sent.is_err() {
                        return; // the client went away
                    }
                    if event.is_err() {
                        break;
                    }
                }
            }
        });
        self.subscriptions.insert(uri, task);
        Ok(())
    }
}
