//! How patches read in a table: their kind, and their value in a few words.

use blackboard_client::PatchOp;
use serde_json::Value as Json;

/// The kind of a patch, as `--json` spells it.
pub fn kind(op: &PatchOp) -> &'static str {
    match op {
        PatchOp::Put { .. } => "put",
        PatchOp::Insert { .. } => "insert",
        PatchOp::Delete { .. } => "delete",
        PatchOp::SpliceText { .. } => "splice_text",
        PatchOp::Increment { .. } => "increment",
        PatchOp::Conflict { .. } => "conflict",
    }
}

/// What a patch did, in a few words: the new value as compact JSON, where text went, how
/// much was deleted.
pub fn describe(op: &PatchOp) -> String {
    match op {
        PatchOp::Put { value } => compact(value),
        PatchOp::Insert { values } => compact(&Json::from(values.clone())),
        PatchOp::Delete { index: None, .. } => "(key removed)".to_owned(),
        PatchOp::Delete {
            index: Some(i),
            count,
        } => format!("{count} from index {i}"),
        PatchOp::SpliceText { index, text } => {
            format!("{} at {index}", compact(&text.as_str().into()))
        }
        PatchOp::Increment { by, value } => format!("{by:+}, now {}", compact(value)),
        PatchOp::Conflict { winner, values } => {
            format!(
                "{} wins of {}",
                compact(winner),
                compact(&Json::from(values.clone()))
            )
        }
    }
}

fn compact(v: &Json) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_patch_kind_reads_in_a_few_words() {
        let cases = [
            (
                PatchOp::Put {
                    value: json!({"a": 1}),
                },
                "put",
                r#"{"a":1}"#,
            ),
            (
                PatchOp::Delete {
                    index: None,
                    count: 1,
                },
                "delete",
                "(key removed)",
            ),
            (
                PatchOp::Delete {
                    index: Some(2),
                    count: 3,
                },
                "delete",
                "3 from index 2",
            ),
            (
                PatchOp::SpliceText {
                    index: 0,
                    text: "hi".into(),
                },
                "splice_text",
                r#""hi" at 0"#,
            ),
            (
                PatchOp::Increment {
                    by: 2,
                    value: json!(5),
                },
                "increment",
                "+2, now 5",
            ),
        ];
        for (op, k, d) in cases {
            assert_eq!((kind(&op), describe(&op).as_str()), (k, d));
            // The kind is the one --json prints.
            assert_eq!(serde_json::to_value(&op).unwrap()["kind"], k);
        }
    }
}
