//! The tools' output schemas (`outputSchema`): the shape of each structured answer, so a
//! client can validate and use the fields without reading the text. Deliberately loose
//! where an answer varies (optional fields are not required, values are any JSON): a
//! client that validates must never reject a real answer.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::{json, Value as Json};

fn object(properties: Json, required: &[&str]) -> Arc<JsonObject> {
    let schema = json!({
        "type": "object",
        "properties": properties,
        "required": required,
    });
    match schema {
        Json::Object(map) => Arc::new(map),
        // json!({...}) is an object.
        _ => Arc::new(JsonObject::new()),
    }
}

fn position() -> Json {
    json!({
        "type": "object",
        "description": "A position in the document's history: `seq` is the log position to pass \
                        as read_at, since or at",
        "properties": {
            "seq": {"type": "integer", "minimum": 0},
            "heads": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["seq", "heads"],
    })
}

/// `list_documents`.
pub fn documents() -> Arc<JsonObject> {
    object(
        json!({
            "space": {"type": "string"},
            "documents": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "document": {"type": "string"},
                    "events": {"type": "integer"},
                    "uri": {"type": "string"},
                },
            }},
        }),
        &["space", "documents"],
    )
}

/// `read`.
pub fn read() -> Arc<JsonObject> {
    object(
        json!({
            "document": {"type": "string"},
            "path": {"type": "string"},
            "value": {"description": "The JSON value at the path"},
            "position": position(),
            "conflicts": {"type": "array"},
        }),
        &["document", "path", "value", "position"],
    )
}

/// The writes: `put`, `delete`, `append`, `splice_text`, `increment`.
pub fn write() -> Arc<JsonObject> {
    object(
        json!({
            "document": {"type": "string"},
            "change": {"type": ["string", "null"], "description": "The change's hash; null when nothing changed"},
            "position": position(),
            "acknowledged": {"type": "boolean", "description": "Whether the log holds the write; when false it is made and durable locally, and published when the log is reachable: do not make it again"},
            "status": {"type": "string"},
            "value": {"description": "increment: the counter's value after it"},
            "note": {"type": "string"},
            "warning": {"type": "string", "description": "A stale read: another agent changed what you wrote after read_at"},
            "stale": {"type": "array"},
            "replayed": {"type": "boolean", "description": "Answered from the first call with this idempotency_key; nothing written again"},
        }),
        &["document", "position", "acknowledged"],
    )
}

/// `wait_for_change`.
pub fn wait() -> Arc<JsonObject> {
    object(
        json!({
            "changed": {"type": "boolean"},
            "events": {"type": "array"},
            "message": {"type": "string"},
            "position": position(),
        }),
        &["changed", "position"],
    )
}

/// `history`.
pub fn history() -> Arc<JsonObject> {
    object(
        json!({
            "document": {"type": "string"},
            "events": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "seq": {"type": "integer"},
                    "agent": {"type": "string"},
                    "reason": {"type": ["string", "null"]},
                    "time": {"type": "string"},
                    "paths": {"type": "array", "items": {"type": "string"}},
                    "change": {"type": "string"},
                    "signer": {"type": ["string", "null"], "description": "The public key (U…) the event was signed with, if any"},
                    "verified": {"type": "boolean", "description": "Whether the signature checks out"},
                    "signature_error": {"type": "string"},
                    "provenance": {"type": "object", "description": "Who acted through the agent, as the change declares: on_behalf_of, model, tool_call"},
                    "rejected": {"type": "string", "description": "Set on a change the space's roster rejected: why. It was not applied and touched no path"},
                },
            }},
            "omitted_earlier": {"type": "integer"},
            "position": position(),
        }),
        &["document", "events", "position"],
    )
}

/// `diff`.
pub fn diff() -> Arc<JsonObject> {
    object(
        json!({
            "document": {"type": "string"},
            "from": {"type": "string"},
            "to": {"type": "string"},
            "changes": {},
            "position": position(),
        }),
        &["document", "changes", "position"],
    )
}

/// `blame`.
pub fn blame() -> Arc<JsonObject> {
    object(
        json!({
            "document": {"type": "string"},
            "blame": {},
            "position": position(),
        }),
        &["document", "blame", "position"],
    )
}

/// `claim` and `renew`.
pub fn claim() -> Arc<JsonObject> {
    object(
        json!({
            "resource": {"type": "string"},
            "holder": {"type": "string"},
            "token": {"type": "integer", "description": "The fencing token"},
            "since": {"type": "string"},
            "expires": {"type": "string"},
            "ttl_seconds": {"type": "number"},
            "note_from_previous_holder": {"type": ["string", "null"]},
            "renewed": {"type": "boolean"},
            "note": {"type": "string"},
        }),
        &["resource", "holder", "expires"],
    )
}

/// `release`.
pub fn release() -> Arc<JsonObject> {
    object(
        json!({
            "resource": {"type": "string"},
            "released": {"type": "boolean"},
        }),
        &["resource", "released"],
    )
}

/// `presence`.
pub fn presence() -> Arc<JsonObject> {
    object(
        json!({
            "space": {"type": "string"},
            "you": {"type": "string"},
            "members": {"type": "array", "items": {
                "type": "object",
                "properties": {
                    "agent": {"type": "string"},
                    "since": {"type": "string"},
                    "last_heartbeat": {"type": "string"},
                    "status": {"type": ["string", "null"]},
                },
            }},
        }),
        &["space", "you", "members"],
    )
}
