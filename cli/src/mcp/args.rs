//! Checking a tool call's arguments against the tool's input schema before rmcp deserializes
//! them, so a wrong type is answered naming the argument ("argument `read_at` of put: expected
//! an integer, got the string "abc"") rather than serde's bare `invalid type: string "abc",
//! expected u64`; and the nesting depth of values, whose limit the descriptions state.

use serde_json::{Map, Value as Json};

/// How deep a value given to a tool may nest (objects and arrays inside each other). JSON
/// parsers stop at about 128 levels; a tool refuses anything deeper than this, naming the
/// limit, instead of a request that gets no answer.
pub const MAX_DEPTH: usize = 100;

/// How deep `value` nests: 0 for a scalar, 1 for a flat array or object.
pub fn depth(value: &Json) -> usize {
    // Iterative: the point is to measure values too deep for recursion to be safe.
    let mut deepest = 0;
    let mut stack = vec![(value, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Json::Array(items) => {
                deepest = deepest.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
            Json::Object(map) => {
                deepest = deepest.max(d + 1);
                stack.extend(map.values().map(|i| (i, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Checks `args` against `schema` (a tool's input schema, as schemars writes it): every
/// argument of a known type has that type, no value nests deeper than [`MAX_DEPTH`]. Returns
/// the message for the model, naming the tool and the argument.
pub fn check(
    tool: &str,
    schema: &Map<String, Json>,
    args: &Map<String, Json>,
) -> Result<(), String> {
    let properties = schema.get("properties").and_then(Json::as_object);
    for (name, value) in args {
        let levels = depth(value);
        if levels > MAX_DEPTH {
            return Err(format!(
                "argument `{name}` of {tool} nests {levels} levels deep; values may nest at most \
                 {MAX_DEPTH} levels (objects and arrays inside each other): flatten it, for \
                 example write the inner parts at deeper paths"
            ));
        }
        let Some(spec) = properties.and_then(|p| p.get(name)) else {
            let known = properties
                .map(|p| {
                    p.keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            return Err(format!(
                "{tool} has no argument `{name}`; its arguments are {known}"
            ));
        };
        let types: Vec<&str> = match spec.get("type") {
            Some(Json::String(t)) => vec![t.as_str()],
            Some(Json::Array(ts)) => ts.iter().filter_map(Json::as_str).collect(),
            // anyOf, $ref, or any JSON at all: left to the tool, which names the argument.
            _ => continue,
        };
        let unsigned = spec.get("minimum").and_then(Json::as_f64) == Some(0.0);
        if types.iter().any(|t| fits(t, value, unsigned)) {
            continue;
        }
        let expected = types
            .iter()
            .filter(|t| **t != "null")
            .map(|t| match *t {
                "integer" if unsigned => "a whole number ≥ 0",
                "integer" => "a whole number",
                "number" => "a number",
                "string" => "a string",
                "boolean" => "true or false",
                "array" => "an array",
                "object" => "an object",
                other => other,
            })
            .collect::<Vec<_>>()
            .join(" or ");
        let optional = if types.contains(&"null") {
            " (or leave it out)"
        } else {
            ""
        };
        return Err(format!(
            "argument `{name}` of {tool}: expected {expected}{optional}, got {}",
            describe(value)
        ));
    }
    Ok(())
}

fn fits(ty: &str, value: &Json, unsigned: bool) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "string" => value.is_string(),
        "integer" if unsigned => value.is_u64(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        _ => true,
    }
}

fn describe(value: &Json) -> String {
    match value {
        Json::Null => "null".into(),
        Json::Bool(b) => format!("{b}"),
        Json::Number(n) => format!("the number {n}"),
        Json::String(s) if s.chars().count() > 40 => {
            format!("the string {:?}…", s.chars().take(40).collect::<String>())
        }
        Json::String(s) => format!("the string {s:?}"),
        Json::Array(_) => "an array".into(),
        Json::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Map<String, Json> {
        json!({"properties": {
            "read_at": {"type": ["integer", "null"], "format": "uint64", "minimum": 0},
            "by": {"type": "integer", "format": "int64"},
            "reason": {"type": "string"},
            "value": true,
        }})
        .as_object()
        .unwrap()
        .clone()
    }

    fn args(v: Json) -> Map<String, Json> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn a_wrong_type_is_named_with_its_argument_and_tool() {
        let e = check("put", &schema(), &args(json!({"read_at": "abc"}))).unwrap_err();
        assert!(e.contains("argument `read_at` of put"), "{e}");
        assert!(e.contains("whole number ≥ 0"), "{e}");
        assert!(e.contains("\"abc\""), "{e}");
        let e = check("increment", &schema(), &args(json!({"by": 1.5}))).unwrap_err();
        assert!(e.contains("argument `by`"), "{e}");
        assert!(check(
            "increment",
            &schema(),
            &args(json!({"by": -3, "read_at": null}))
        )
        .is_ok());
        let e = check("put", &schema(), &args(json!({"raeson": "x"}))).unwrap_err();
        assert!(e.contains("no argument `raeson`"), "{e}");
    }

    #[test]
    fn values_deeper_than_the_limit_are_refused_naming_it() {
        let mut deep = json!(1);
        for _ in 0..MAX_DEPTH {
            deep = json!([deep]);
        }
        assert_eq!(depth(&deep), MAX_DEPTH);
        assert!(check("put", &schema(), &args(json!({"value": deep.clone()}))).is_ok());
        let e = check("put", &schema(), &args(json!({"value": [deep]}))).unwrap_err();
        assert!(e.contains(&format!("at most {MAX_DEPTH} levels")), "{e}");
    }
}
