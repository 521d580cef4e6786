//! Conversions between automerge values and JSON, and path-addressed reads and writes.
//!
//! Reads show the value each replica agrees on: where concurrent writes conflict, automerge's
//! deterministic winner. Counters read as their current number, text as a string, timestamps
//! as milliseconds, bytes as base64.

use automerge::transaction::Transactable;
use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};
use base64::Engine as _;
use serde_json::{Map, Number, Value as Json};

use super::{DocError, Path};

/// The whole of object `obj` as JSON.
pub fn object_to_json<R: ReadDoc>(doc: &R, obj: &ObjId) -> Json {
    match doc.object_type(obj) {
        Ok(ObjType::Map | ObjType::Table) => {
            let mut out = Map::new();
            for item in doc.map_range(obj, ..) {
                out.insert(
                    item.key.to_string(),
                    value_to_json(doc, item.value, &item.id),
                );
            }
            Json::Object(out)
        }
        Ok(ObjType::List) => Json::Array(
            doc.list_range(obj, ..)
                .map(|item| value_to_json(doc, item.value, &item.id))
                .collect(),
        ),
        Ok(ObjType::Text) => Json::String(doc.text(obj).unwrap_or_default()),
        Err(_) => Json::Null,
    }
}

/// One value (scalar, or the object with id `id`) as JSON.
pub fn value_to_json<R: ReadDoc>(doc: &R, value: Value<'_>, id: &ObjId) -> Json {
    match value {
        Value::Object(_) => object_to_json(doc, id),
        Value::Scalar(s) => scalar_to_json(&s),
    }
}

/// A scalar as JSON.
pub fn scalar_to_json(s: &ScalarValue) -> Json {
    match s {
        ScalarValue::Str(s) => Json::String(s.to_string()),
        ScalarValue::Int(i) | ScalarValue::Timestamp(i) => Json::from(*i),
        ScalarValue::Uint(u) => Json::from(*u),
        ScalarValue::F64(f) => Number::from_f64(*f).map_or(Json::Null, Json::Number),
        ScalarValue::Counter(c) => Json::from(i64::from(c)),
        ScalarValue::Boolean(b) => Json::Bool(*b),
        ScalarValue::Bytes(b) => Json::String(base64::engine::general_purpose::STANDARD.encode(b)),
        ScalarValue::Null | ScalarValue::Unknown { .. } => Json::Null,
    }
}

/// The value at `path`, or `None` when nothing is there.
pub fn get<R: ReadDoc>(doc: &R, path: &Path) -> Result<Option<Json>, DocError> {
    if path.is_root() {
        return Ok(Some(object_to_json(doc, &ROOT)));
    }
    Ok(resolve(doc, path)?.map(|(v, id)| value_to_json(doc, v, &id)))
}

/// Finds the value at a non-root `path`: `None` when some segment does not exist.
pub fn resolve<'a, R: ReadDoc>(
    doc: &'a R,
    path: &Path,
) -> Result<Option<(Value<'a>, ObjId)>, DocError> {
    let mut obj = ROOT;
    let mut here = Path::root();
    let mut found = None;
    for seg in path.segments() {
        if found.is_some() {
            // The previous segment was a scalar: there is nothing below it.
            return Err(DocError::NotAContainer {
                path: here.to_string(),
            });
        }
        let got = match doc.object_type(&obj)? {
            ObjType::Map | ObjType::Table => doc.get(&obj, seg.as_str())?,
            ObjType::List | ObjType::Text => doc.get(&obj, index(&here, seg)?)?,
        };
        here = here.join(seg.clone());
        match got {
            None => return Ok(None),
            Some((Value::Object(_), id)) => obj = id,
            Some((v, id)) => found = Some((v, id)),
        }
    }
    Ok(Some(match found {
        Some(f) => f,
        None => (Value::Object(doc.object_type(&obj)?), obj),
    }))
}

fn index(at: &Path, seg: &str) -> Result<usize, DocError> {
    seg.parse().map_err(|_| DocError::BadIndex {
        path: at.to_string(),
        segment: seg.to_owned(),
    })
}

/// How a JSON object is written where a map already is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PutMode {
    /// Merge key by key, at every depth: keys the value does not name stay. Concurrent object
    /// writes to one place from several agents all stay visible.
    #[default]
    Merge,
    /// Write the object as a fresh map that replaces whatever is there. Two agents replacing
    /// one place concurrently conflict: every replica shows the same one, and a `Conflict`
    /// patch names both.
    Replace,
}

/// Writes `value` at `path` ([`PutMode::Merge`]), creating missing maps on the way. JSON
/// objects and arrays become automerge maps and lists; strings become scalar strings (last
/// writer wins; use text objects for collaborative editing). Writing into a list at its length,
/// or at `-`, appends.
///
/// Maps this creates are plain automerge maps, which concurrent creators would each make
/// their own of: [`DocCore::edit`](super::DocCore::edit) first creates them by the container
/// recipe so that they merge. Use this inside a transaction only where that is not needed.
pub fn put<T: Transactable>(tx: &mut T, path: &Path, value: &Json) -> Result<(), DocError> {
    put_with(tx, path, value, PutMode::Merge)
}

/// Writes `value` at `path` with an explicit [`PutMode`]; see [`put`].
pub fn put_with<T: Transactable>(
    tx: &mut T,
    path: &Path,
    value: &Json,
    mode: PutMode,
) -> Result<(), DocError> {
    let Some((parent, last)) = path.split_last() else {
        // Writing the root: it is a map, so merge the object's keys into it.
        let Json::Object(map) = value else {
            return Err(DocError::RootNotObject);
        };
        for (k, v) in map {
            put_in_map(tx, &ROOT, k, v, mode)?;
        }
        return Ok(());
    };
    let obj = ensure_container(tx, &parent)?;
    match tx.object_type(&obj)? {
        ObjType::Map | ObjType::Table => put_in_map(tx, &obj, last, value, mode),
        ObjType::List => {
            let len = tx.length(&obj);
            let i = if last == "-" {
                len
            } else {
                index(&parent, last)?
            };
            if i > len {
                return Err(DocError::OutOfBounds {
                    path: path.to_string(),
                    len,
                });
            }
            if mode == PutMode::Merge && i < len {
                if let (Json::Object(map), Some((Value::Object(ObjType::Map), child))) =
                    (value, tx.get(&obj, i)?)
                {
                    return merge_into(tx, &child, map);
                }
            }
            insert_or_put_in_list(tx, &obj, i, i == len, value)
        }
        ObjType::Text => Err(DocError::NotAContainer {
            path: parent.to_string(),
        }),
    }
}

/// Appends `value` to the list at `path`, creating the list when nothing is there (a plain
/// list: see [`put`] on why [`DocCore::edit`](super::DocCore::edit) creates it first).
pub fn append<T: Transactable>(tx: &mut T, path: &Path, value: &Json) -> Result<(), DocError> {
    let list = match resolve_or_root(tx, path)? {
        Some((Value::Object(ObjType::List), id)) => id,
        Some(_) => {
            return Err(DocError::NotAList {
                path: path.to_string(),
            })
        }
        None => {
            let (parent, last) = path.split_last().ok_or(DocError::RootNotObject)?;
            let obj = ensure_container(tx, &parent)?;
            match tx.object_type(&obj)? {
                ObjType::Map | ObjType::Table => tx.put_object(&obj, last, ObjType::List)?,
                _ => {
                    return Err(DocError::NotAList {
                        path: path.to_string(),
                    })
                }
            }
        }
    };
    let len = tx.length(&list);
    insert_or_put_in_list(tx, &list, len, true, value)
}

/// Adds `by` to the counter at `path`, creating it at 0 when nothing is there (a plain
/// counter: see [`put`] on why [`DocCore::edit`](super::DocCore::edit) creates it first).
/// A sum past the range of an `i64` is refused rather than wrapped.
pub fn increment<T: Transactable>(tx: &mut T, path: &Path, by: i64) -> Result<i64, DocError> {
    let (parent, last) = path.split_last().ok_or(DocError::NotACounter {
        path: path.to_string(),
    })?;
    let obj = ensure_container(tx, &parent)?;
    if !matches!(tx.object_type(&obj)?, ObjType::Map | ObjType::Table) {
        return Err(DocError::NotAContainer {
            path: parent.to_string(),
        });
    }
    let current = match tx.get(&obj, last)? {
        None => {
            tx.put(&obj, last, ScalarValue::counter(0))?;
            0
        }
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Counter(c) => i64::from(c),
            _ => {
                return Err(DocError::NotACounter {
                    path: path.to_string(),
                })
            }
        },
        Some(_) => {
            return Err(DocError::NotACounter {
                path: path.to_string(),
            })
        }
    };
    let Some(sum) = current.checked_add(by) else {
        return Err(DocError::Overflow {
            path: path.to_string(),
            value: current,
            by,
        });
    };
    tx.increment(&obj, last, by)?;
    Ok(sum)
}

/// Deletes what is at `path`. Deleting something that is not there is not an error.
pub fn delete<T: Transactable>(tx: &mut T, path: &Path) -> Result<(), DocError> {
    let Some((parent, last)) = path.split_last() else {
        return Err(DocError::RootNotObject);
    };
    let Some((Value::Object(ty), obj)) = resolve_or_root(tx, &parent)? else {
        return Ok(());
    };
    match ty {
        ObjType::Map | ObjType::Table => Ok(tx.delete(&obj, last)?),
        ObjType::List | ObjType::Text => {
            let i = index(&parent, last)?;
            if i < tx.length(&obj) {
                tx.delete(&obj, i)?;
            }
            Ok(())
        }
    }
}

/// The text object at `path`, creating it (with empty content) when nothing is there.
pub fn ensure_text<T: Transactable>(tx: &mut T, path: &Path) -> Result<ObjId, DocError> {
    match resolve_or_root(tx, path)? {
        Some((Value::Object(ObjType::Text), id)) => Ok(id),
        Some(_) => Err(DocError::NotText {
            path: path.to_string(),
        }),
        None => {
            let (parent, last) = path.split_last().ok_or(DocError::RootNotObject)?;
            let obj = ensure_container(tx, &parent)?;
            match tx.object_type(&obj)? {
                ObjType::Map | ObjType::Table => Ok(tx.put_object(&obj, last, ObjType::Text)?),
                _ => Err(DocError::NotAContainer {
                    path: parent.to_string(),
                }),
            }
        }
    }
}

/// Like [`resolve`], with the root as a map.
pub fn resolve_or_root<'a, R: ReadDoc>(
    doc: &'a R,
    path: &Path,
) -> Result<Option<(Value<'a>, ObjId)>, DocError> {
    if path.is_root() {
        Ok(Some((Value::Object(ObjType::Map), ROOT)))
    } else {
        resolve(doc, path)
    }
}

/// The map or list at `path`, creating maps for missing segments.
fn ensure_container<T: Transactable>(tx: &mut T, path: &Path) -> Result<ObjId, DocError> {
    let mut obj = ROOT;
    let mut here = Path::root();
    for seg in path.segments() {
        let next = match tx.object_type(&obj)? {
            ObjType::Map | ObjType::Table => match tx.get(&obj, seg.as_str())? {
                Some((Value::Object(ObjType::Map | ObjType::Table | ObjType::List), id)) => id,
                Some(_) => {
                    return Err(DocError::NotAContainer {
                        path: here.join(seg.clone()).to_string(),
                    })
                }
                None => tx.put_object(&obj, seg.as_str(), ObjType::Map)?,
            },
            ObjType::List => {
                let i = index(&here, seg)?;
                match tx.get(&obj, i)? {
                    Some((Value::Object(ObjType::Map | ObjType::Table | ObjType::List), id)) => id,
                    Some(_) => {
                        return Err(DocError::NotAContainer {
                            path: here.join(seg.clone()).to_string(),
                        })
                    }
                    None => {
                        return Err(DocError::OutOfBounds {
                            path: here.join(seg.clone()).to_string(),
                            len: tx.length(&obj),
                        })
                    }
                }
            }
            ObjType::Text => {
                return Err(DocError::NotAContainer {
                    path: here.to_string(),
                })
            }
        };
        here = here.join(seg.clone());
        obj = next;
    }
    Ok(obj)
}

fn scalar(value: &Json) -> Option<ScalarValue> {
    Some(match value {
        Json::Null => ScalarValue::Null,
        Json::Bool(b) => ScalarValue::Boolean(*b),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                ScalarValue::Int(i)
            } else if let Some(u) = n.as_u64() {
                ScalarValue::Uint(u)
            } else {
                ScalarValue::F64(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => ScalarValue::Str(s.as_str().into()),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

fn put_in_map<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    value: &Json,
    mode: PutMode,
) -> Result<(), DocError> {
    if let (PutMode::Merge, Json::Object(map)) = (mode, value) {
        if let Some((Value::Object(ObjType::Map | ObjType::Table), child)) = tx.get(obj, key)? {
            return merge_into(tx, &child, map);
        }
    }
    match (value, scalar(value)) {
        (_, Some(s)) => tx.put(obj, key, s)?,
        (Json::Array(items), _) => {
            let list = tx.put_object(obj, key, ObjType::List)?;
            fill_list(tx, &list, items)?;
        }
        (Json::Object(map), _) => {
            let child = tx.put_object(obj, key, ObjType::Map)?;
            for (k, v) in map {
                put_in_map(tx, &child, k, v, PutMode::Replace)?;
            }
        }
        _ => unreachable!("scalar() covers every other JSON value"),
    }
    Ok(())
}

/// Writes the keys of `map` into the existing map `obj`, merging objects into maps there.
fn merge_into<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    map: &serde_json::Map<String, Json>,
) -> Result<(), DocError> {
    for (k, v) in map {
        put_in_map(tx, obj, k, v, PutMode::Merge)?;
    }
    Ok(())
}

fn insert_or_put_in_list<T: Transactable>(
    tx: &mut T,
    list: &ObjId,
    i: usize,
    insert: bool,
    value: &Json,
) -> Result<(), DocError> {
    let new_obj = |tx: &mut T, ty| {
        if insert {
            tx.insert_object(list, i, ty)
        } else {
            tx.put_object(list, i, ty)
        }
    };
    match (value, scalar(value)) {
        (_, Some(s)) if insert => tx.insert(list, i, s)?,
        (_, Some(s)) => tx.put(list, i, s)?,
        (Json::Array(items), _) => {
            let child = new_obj(tx, ObjType::List)?;
            fill_list(tx, &child, items)?;
        }
        (Json::Object(map), _) => {
            let child = new_obj(tx, ObjType::Map)?;
            for (k, v) in map {
                put_in_map(tx, &child, k, v, PutMode::Replace)?;
            }
        }
        _ => unreachable!("scalar() covers every other JSON value"),
    }
    Ok(())
}

fn fill_list<T: Transactable>(tx: &mut T, list: &ObjId, items: &[Json]) -> Result<(), DocError> {
    for (i, item) in items.iter().enumerate() {
        insert_or_put_in_list(tx, list, i, true, item)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::Automerge;
    use serde_json::json;

    fn p(s: &str) -> Path {
        s.parse().unwrap()
    }

    fn with_tx(doc: &mut Automerge, f: impl FnOnce(&mut automerge::transaction::Transaction<'_>)) {
        let mut tx = doc.transaction();
        f(&mut tx);
        tx.commit();
    }

    #[test]
    fn json_written_at_a_path_reads_back_identically() {
        let mut doc = Automerge::new();
        let value = json!({"a": [1, -2, 3.5, "x", null, true, {"b": []}], "c": {"d": u64::MAX}});
        with_tx(&mut doc, |tx| put(tx, &p("/v"), &value).unwrap());
        assert_eq!(get(&doc, &p("/v")).unwrap(), Some(value));
        assert_eq!(get(&doc, &p("/v/a/3")).unwrap(), Some(json!("x")));
        assert_eq!(get(&doc, &p("/v/nope")).unwrap(), None);
    }

    #[test]
    fn put_creates_missing_maps_and_appends_to_lists() {
        let mut doc = Automerge::new();
        with_tx(&mut doc, |tx| {
            put(tx, &p("/tasks/7/status"), &json!("open")).unwrap();
            put(tx, &p("/log"), &json!([])).unwrap();
            put(tx, &p("/log/-"), &json!("one")).unwrap();
            put(tx, &p("/log/1"), &json!("two")).unwrap();
            put(tx, &p("/log/0"), &json!("uno")).unwrap();
        });
        assert_eq!(
            get(&doc, &Path::root()).unwrap(),
            Some(json!({"tasks": {"7": {"status": "open"}}, "log": ["uno", "two"]}))
        );
    }

    #[test]
    fn writes_through_scalars_or_past_list_ends_are_clear_errors() {
        let mut doc = Automerge::new();
        let mut tx = doc.transaction();
        put(&mut tx, &p("/s"), &json!("scalar")).unwrap();
        put(&mut tx, &p("/l"), &json!([1])).unwrap();
        assert!(matches!(
            put(&mut tx, &p("/s/x"), &json!(1)),
            Err(DocError::NotAContainer { path }) if path == "/s"
        ));
        assert!(matches!(
            put(&mut tx, &p("/l/5"), &json!(1)),
            Err(DocError::OutOfBounds { len: 1, .. })
        ));
        assert!(matches!(
            put(&mut tx, &p("/l/x"), &json!(1)),
            Err(DocError::BadIndex { .. })
        ));
        assert!(matches!(
            put(&mut tx, &Path::root(), &json!(1)),
            Err(DocError::RootNotObject)
        ));
    }

    #[test]
    fn text_and_counters_read_as_strings_and_numbers() {
        let mut doc = Automerge::new();
        with_tx(&mut doc, |tx| {
            let t = ensure_text(tx, &p("/notes/body")).unwrap();
            tx.splice_text(&t, 0, 0, "hello").unwrap();
            tx.put(ROOT, "n", ScalarValue::counter(1)).unwrap();
            tx.increment(ROOT, "n", 41).unwrap();
        });
        assert_eq!(
            get(&doc, &Path::root()).unwrap(),
            Some(json!({"notes": {"body": "hello"}, "n": 42}))
        );
        with_tx(&mut doc, |tx| delete(tx, &p("/notes/body")).unwrap());
        assert_eq!(get(&doc, &p("/notes")).unwrap(), Some(json!({})));
    }
}
