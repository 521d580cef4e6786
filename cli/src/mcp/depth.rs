//! Messages nested too deep for JSON parsing get an answer naming the limit.
//!
//! serde_json stops at 128 levels of nesting. A request deeper than that used to get no
//! answer at all over stdio (rmcp drops the line it cannot parse) and 415 over HTTP. Both
//! transports now look at each message's depth before rmcp parses it, and answer a message
//! deeper than [`MAX_MESSAGE_DEPTH`] with a JSON-RPC error (`-32602`, invalid params) for its
//! `id`, naming the limit tools state ([`super::args::MAX_DEPTH`]).

use super::args::MAX_DEPTH;

/// The deepest message passed on to rmcp: a tool call's envelope (`{"params": {"arguments":
/// {"value": ...}}}`) is 3 levels around a value of [`MAX_DEPTH`], with room to spare, and
/// well below serde_json's 128.
pub const MAX_MESSAGE_DEPTH: usize = MAX_DEPTH + 8;

/// A message's nesting depth and, when it is an object, the raw text of its top-level `id`
/// (a number or a quoted string), found without parsing it as a whole.
pub fn scan(message: &[u8]) -> (usize, Option<String>) {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut in_string = false;
    let mut escaped = false;
    // The top-level key just read, and where the value of `"id"` started.
    let mut key_start = None;
    let mut last_key: Option<(usize, usize)> = None;
    let mut id_start = None;
    let mut id = None;
    for (i, &b) in message.iter().enumerate() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
                if let Some(start) = key_start.take() {
                    last_key = Some((start, i));
                }
            }
            continue;
        }
        match b {
            b'"' => {
                in_string = true;
                if depth == 1 && id_start.is_none() {
                    key_start = Some(i + 1);
                }
            }
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' | b',' if depth == 1 && id_start.is_some() => {
                let start = id_start.take().unwrap_or(i);
                id = Some(
                    String::from_utf8_lossy(&message[start..i])
                        .trim()
                        .to_owned(),
                );
                if b != b',' {
                    depth -= 1;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b':' if depth == 1 => {
                if last_key.is_some_and(|(s, e)| &message[s..e] == b"id") {
                    id_start = Some(i + 1);
                }
                last_key = None;
            }
            _ => {}
        }
        // A key string is only a key when a ':' follows; a string value clears it.
        if b == b',' && depth == 1 {
            last_key = None;
        }
    }
    (deepest, id)
}

/// The JSON-RPC error answering a message nested `depth` levels deep, for request `id`
/// (raw JSON text; `null` when the message had none).
pub fn refusal(depth: usize, id: Option<&str>) -> String {
    let message = format!(
        "this request nests {depth} levels deep, too deep to read: values given to tools may \
         nest at most {MAX_DEPTH} levels (objects and arrays inside each other); flatten the \
         value, for example write its inner parts at deeper paths"
    );
    let id = id
        .and_then(|raw| serde_json::from_str::<serde_json::Value>(raw).ok())
        .unwrap_or(serde_json::Value::Null);
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32602, "message": message},
    })
    .to_string()
}

/// The stdio transport with the depth check: lines from stdin too deep to parse are
/// answered on stdout by this filter; the others go to rmcp. rmcp's output passes through
/// one writer with the filter's answers, a line at a time, so they never interleave.
pub fn stdio() -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
    use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};

    let (to_rmcp, rmcp_in) = tokio::io::duplex(1 << 16);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(1 << 16);
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

    // stdin -> rmcp, or a refusal to the writer.
    let refusals = lines_tx.clone();
    tokio::spawn(async move {
        let mut to_rmcp = to_rmcp;
        let mut lines = BufReader::new(tokio::io::stdin()).split(b'\n');
        while let Ok(Some(line)) = lines.next_segment().await {
            let (depth, id) = scan(&line);
            if depth > MAX_MESSAGE_DEPTH {
                tracing::warn!(depth, "refused a message nested too deep");
                let _ = refusals.send(refusal(depth, id.as_deref()));
                continue;
            }
            if to_rmcp.write_all(&line).await.is_err() || to_rmcp.write_all(b"\n").await.is_err() {
                break;
            }
        }
        // Dropping `to_rmcp` ends rmcp's input: the session closes as with stdin closed.
    });
    // rmcp -> the writer.
    tokio::spawn(async move {
        let mut lines = BufReader::new(from_rmcp).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if lines_tx.send(line).is_err() {
                break;
            }
        }
    });
    // The one writer of stdout.
    tokio::spawn(async move {
        let mut stdout = tokio::io::stdout();
        while let Some(line) = lines_rx.recv().await {
            let written = async {
                stdout.write_all(line.as_bytes()).await?;
                stdout.write_all(b"\n").await?;
                stdout.flush().await
            };
            if written.await.is_err() {
                break;
            }
        }
    });
    (rmcp_in, rmcp_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_depth_and_the_top_level_id_are_found_without_parsing() {
        let msg = br#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"arguments":{"value":[[["a]]]\"{"]]]}}}"#;
        assert_eq!(scan(msg), (6, Some("7".into())));
        let msg = br#"{"params":{"id":1},"id":"abc"}"#;
        assert_eq!(scan(msg), (2, Some("\"abc\"".into())));
        let msg = br#"{"method":"notifications/initialized","jsonrpc":"2.0"}"#;
        assert_eq!(scan(msg), (1, None));
        let deep = format!(
            r#"{{"id":3,"params":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let (depth, id) = scan(deep.as_bytes());
        assert_eq!(depth, 201);
        let answer: serde_json::Value =
            serde_json::from_str(&refusal(depth, id.as_deref())).unwrap();
        assert_eq!(answer["id"], serde_json::json!(3));
        let says = answer["error"]["message"].as_str().unwrap();
        assert!(
            says.contains(&format!("at most {MAX_DEPTH} levels")),
            "{says}"
        );
    }
}
