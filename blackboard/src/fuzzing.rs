//! Entry points for fuzzing the decoders of foreign bytes, shared by the cargo-fuzz targets
//! in `fuzz/` and the corpus regression test (`blackboard/tests/fuzz_corpus.rs`), so the two
//! cannot drift apart. Not part of the engine's API.
//!
//! Each entry point feeds its input through the same path the replica uses and checks the
//! promises that path makes: nothing panics (automerge's own panics are caught by the core and
//! come back as [`DocError::Panicked`]), a refused input leaves the document exactly as it
//! was, and an accepted one leaves a document that can still be read. A broken promise is a
//! panic, which the fuzzer reports as a crash and the regression test as a failure.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, AutomergeError, ChangeHash, ObjType, ScalarValue, ROOT};
use blackboard_schemas::{AgentId, DocumentId, Envelope, SpaceId};
use rand::Rng;

use crate::codec;
use crate::doc::{Applied, DocCore, DocError, LocalChange};

/// The space every fuzzed envelope is decoded for.
pub const SPACE: &str = "fuzz";
/// The document every fuzzed envelope is decoded for.
pub const DOCUMENT: &str = "doc";

/// What an entry point made of its input. Anything else is a panic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The input was accepted (decoded, and its change applied or held back).
    Accepted,
    /// The input was refused with an error; the document was not changed.
    Rejected(String),
    /// automerge panicked on the input and the core caught it (the replica then reloads its
    /// document from disk). Handled, but worth a look: it is a bug in automerge.
    CaughtPanic(String),
}

/// Called first by each cargo-fuzz target. libFuzzer's panic hook aborts on every panic, even
/// one the core catches (automerge's own, which come back as [`DocError::Panicked`] and make
/// the replica reload its document); this puts the default hook back, so that only a panic
/// escaping the guards is a crash. With `BB_FUZZ_STRICT=1` libFuzzer's hook stays, to hunt
/// automerge's own panics too.
pub fn init_fuzz_target() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("BB_FUZZ_STRICT").is_none() {
            drop(std::panic::take_hook());
        }
    });
}

fn outcome<T>(result: Result<T, DocError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Accepted,
        Err(e @ DocError::Panicked(_)) => Outcome::CaughtPanic(e.to_string()),
        Err(e) => Outcome::Rejected(e.to_string()),
    }
}

/// The fuzz target `envelope`: `data` as an event read from the log of [`SPACE`]/[`DOCUMENT`].
///
/// Runs [`Envelope::decode`] and [`codec::decode_event`], checks that they agree and that an
/// accepted envelope survives re-encoding unchanged, then applies the event's change to
/// [`base_doc`] as [`apply_change`] would.
pub fn decode_envelope(data: &[u8]) -> Outcome {
    let envelope = Envelope::decode(data);
    if let Ok(env) = &envelope {
        let again = Envelope::decode(&env.encode());
        assert_eq!(again.as_ref(), Ok(env), "re-encoding changed an envelope");
    }
    let (space, document) = ids();
    match codec::decode_event(&space, &document, data) {
        Ok(event) => {
            assert!(
                envelope.is_ok(),
                "decode_event accepted what decode refused"
            );
            assert_eq!(event.change.hash().to_string(), event.envelope.change_hash);
            let mut core = base_doc();
            let before = State::of(&core);
            let hash = event.change.hash();
            let result = core.apply(event.change);
            before.check(&core, hash, &result);
            match outcome(result) {
                Outcome::Rejected(e) => Outcome::Rejected(format!("the change: {e}")),
                other => other,
            }
        }
        Err(e) => Outcome::Rejected(e.to_string()),
    }
}

/// The fuzz target `signature`: `data` as an envelope whose signature is checked, as
/// [`codec::decode_event`] checks every event's.
///
/// Runs [`Envelope::decode`], then [`Envelope::verify`] and [`codec::Signature::of`], and
/// checks that they agree; for an envelope that verifies, that it names its signer, and that
/// changing a signed field (the time) or the signer's key breaks it. `Accepted` means the
/// signature verified; anything else (undecodable, unsigned, invalid) is `Rejected`.
pub fn verify_signature(data: &[u8]) -> Outcome {
    let mut env = match Envelope::decode(data) {
        Ok(env) => env,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let verified = env.verify().map(str::to_owned);
    let status = codec::Signature::of(&env);
    match &verified {
        Ok(signer) => {
            assert_eq!(status, codec::Signature::Verified(signer.clone()));
            assert_eq!(env.signer.as_deref(), Some(signer.as_str()));
            assert!(env.signature.is_some());
        }
        Err(blackboard_schemas::SignatureError::Unsigned) => {
            assert_eq!(status, codec::Signature::Unsigned);
        }
        Err(e) => assert_eq!(
            status.error(),
            Some(e.to_string().as_str()),
            "Signature::of disagrees with verify"
        ),
    }
    let signer = match verified {
        Ok(signer) => signer,
        Err(e) => return Outcome::Rejected(e.to_string()),
    };
    let mut moved = env.clone();
    moved.time_ms = moved.time_ms.wrapping_add(1);
    assert!(
        moved.verify().is_err(),
        "a signature survived a changed time"
    );
    env.signer = Some(
        blackboard_schemas::nkeys::KeyPair::new_from_raw(
            blackboard_schemas::nkeys::KeyPairType::User,
            [7; 32],
        )
        .map(|k| k.public_key())
        .unwrap_or_default(),
    );
    if env.signer.as_deref() != Some(signer.as_str()) {
        assert!(
            env.verify().is_err(),
            "a signature verified for another key"
        );
    }
    Outcome::Accepted
}

/// The fuzz target `apply_change`: `data` as a foreign automerge change.
///
/// Applies it to [`base_doc`] with [`DocCore::apply_bytes`], and again with
/// [`DocCore::apply_with_patches`] (the replica uses one or the other), and loads it as a
/// snapshot with [`DocCore::load`] (bytes read back from disk take that path). Returns the
/// outcome of `apply_bytes`.
pub fn apply_change(data: &[u8]) -> Outcome {
    let mut plain = base_doc();
    let before = State::of(&plain);
    let result = plain.apply_bytes(data);
    let hash = DocCore::decode_change(data).map(|c| c.hash()).ok();
    if let Some(hash) = hash {
        before.check(&plain, hash, &result);
    } else {
        assert!(result.is_err(), "a change that does not decode was applied");
        before.assert_unchanged(&plain, "an undecodable change");
    }

    if let Ok(change) = DocCore::decode_change(data) {
        let mut patched = base_doc();
        let result = patched
            .apply_with_patches(change)
            .map(|(applied, _)| applied);
        if let Some(hash) = hash {
            before.check(&patched, hash, &result);
        }
    }

    // Any panic inside automerge's loader is caught; an error is fine.
    if let Ok((doc, _)) = DocCore::load(Some(data), []) {
        let _ = doc.to_json();
    }
    outcome(result)
}

fn ids() -> (SpaceId, DocumentId) {
    (
        SpaceId::new(SPACE).expect("a valid space id"),
        DocumentId::new(DOCUMENT).expect("a valid document id"),
    )
}

/// What must not change when a change is refused or held back.
struct State {
    heads: Vec<ChangeHash>,
    json: serde_json::Value,
    history: usize,
}

impl State {
    fn of(core: &DocCore) -> Self {
        Self {
            heads: core.heads(),
            json: core.to_json(),
            history: core.history_len(),
        }
    }

    fn assert_unchanged(&self, core: &DocCore, why: &str) {
        assert_eq!(core.heads(), self.heads, "{why} changed the heads");
        assert_eq!(
            core.history_len(),
            self.history,
            "{why} changed the history"
        );
        assert_eq!(core.to_json(), self.json, "{why} changed the document");
    }

    fn check(&self, core: &DocCore, hash: ChangeHash, result: &Result<Applied, DocError>) {
        match result {
            Ok(Applied::New) => {
                assert!(core.has_change(&hash), "an applied change is missing");
                // The document must still be readable: a panic here would escape the guards.
                let _ = core.to_json();
            }
            Ok(Applied::Pending) => {
                assert_eq!(core.pending_len(), 1);
                self.assert_unchanged(core, "a held-back change");
            }
            Ok(Applied::Duplicate) => self.assert_unchanged(core, "a duplicate"),
            // The replica rebuilds its document from disk after a caught panic.
            Err(DocError::Panicked(_)) => {}
            Err(_) => self.assert_unchanged(core, "a refused change"),
        }
    }
}

/// The actor of the base document's change, so that its hash is the same in every run.
const BASE_ACTOR: &[u8] = b"fuzz-base";

fn base_automerge() -> Automerge {
    let mut doc = Automerge::new().with_actor(ActorId::from(BASE_ACTOR));
    doc.transact_with(
        |_| CommitOptions::default().with_time(1),
        |tx| {
            let map = tx.put_object(ROOT, "map", ObjType::Map)?;
            tx.put(&map, "k", "v")?;
            tx.put(&map, "n", 1)?;
            let list = tx.put_object(ROOT, "list", ObjType::List)?;
            for i in 0..3 {
                tx.insert(&list, i, i as i64)?;
            }
            let text = tx.put_object(ROOT, "text", ObjType::Text)?;
            tx.splice_text(&text, 0, 0, "hello")?;
            tx.put(ROOT, "hits", ScalarValue::counter(0))?;
            Ok::<_, AutomergeError>(())
        },
    )
    .expect("building the base document cannot fail");
    doc
}

/// The document every fuzzed change is applied to: one change by a fixed actor that makes a
/// map (`/map`), a list (`/list`), a text (`/text`) and a counter (`/hits`), so that a change
/// generated on top of it (as the seed corpus is) applies, and a mutated one reaches real
/// objects. The same bytes, and so the same hash, in every run.
pub fn base_doc() -> DocCore {
    let bytes = base_change();
    let mut core = DocCore::new();
    core.apply_bytes(&bytes)
        .expect("the base change applies to an empty document");
    core
}

fn base_change() -> Vec<u8> {
    let doc = base_automerge();
    doc.get_last_local_change()
        .expect("the base document has a change")
        .raw_bytes()
        .to_vec()
}

/// One file of the seed corpus.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The fuzz target, and the corpus folder: `envelope` or `apply_change`.
    pub target: &'static str,
    /// The file name. Names starting with `valid-` must be accepted.
    pub name: String,
    /// The contents.
    pub bytes: Vec<u8>,
}

/// The seed corpus: valid changes made on top of [`base_doc`] (every kind of edit), the same
/// wrapped in envelopes, and truncated, mutated and garbage variants of both. Deterministic:
/// the same bytes in every run.
pub fn seed_corpus() -> Vec<Seed> {
    let changes = seed_changes();
    let mut seeds = Vec::new();
    let mut add = |target, name: String, bytes| {
        seeds.push(Seed {
            target,
            name,
            bytes,
        })
    };
    add("apply_change", "valid-base".into(), base_change());
    for (name, bytes) in &changes {
        add("apply_change", format!("valid-{name}"), bytes.clone());
    }
    let (space, document) = ids();
    let agent = AgentId::new("fuzzer").expect("a valid agent id");
    let envelope = |bytes: &[u8], message: Option<String>| {
        let change = LocalChange {
            hash: DocCore::decode_change(bytes)
                .expect("seed changes decode")
                .hash(),
            bytes: bytes.to_vec(),
        };
        codec::encode_event(&space, &document, &agent, &change, 1_000, message).encode()
    };
    for (name, bytes) in &changes {
        add(
            "envelope",
            format!("valid-{name}"),
            envelope(bytes, Some(format!("seed {name}"))),
        );
    }

    // Broken variants, from a fixed seed so the corpus is stable.
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(6);
    let (_, sample) = &changes[0];
    let (_, multi) = &changes[changes.len() - 1];
    for (i, cut) in [0, 1, 4, 8, 9, sample.len() / 2, sample.len() - 1]
        .into_iter()
        .enumerate()
    {
        add(
            "apply_change",
            format!("truncated-{i}"),
            sample[..cut].to_vec(),
        );
    }
    for i in 0..6 {
        add(
            "apply_change",
            format!("mutated-{i}"),
            mutate(&mut rng, multi),
        );
    }
    add(
        "apply_change",
        "garbage-body".into(),
        garbage_body(&mut rng),
    );
    add(
        "apply_change",
        "random".into(),
        (0..48).map(|_| rng.gen()).collect(),
    );

    let env = envelope(sample, None);
    for (i, cut) in [1, 10, env.len() / 2, env.len() - 1]
        .into_iter()
        .enumerate()
    {
        add("envelope", format!("truncated-{i}"), env[..cut].to_vec());
    }
    let text = String::from_utf8_lossy(&env).into_owned();
    let edits = [
        ("version-2", r#""v":1"#, r#""v":2"#),
        ("version-0", r#""v":1"#, r#""v":0"#),
        ("version-negative", r#""v":1"#, r#""v":-1"#),
        ("wrong-space", r#""space":"fuzz""#, r#""space":"other""#),
        ("bad-space", r#""space":"fuzz""#, r#""space":"a.b""#),
        ("no-agent", r#""agent":"fuzzer","#, ""),
        ("null-change", r#""change":""#, r#""change":null,"x":""#),
        ("time-as-string", r#""time_ms":1000"#, r#""time_ms":"1000""#),
    ];
    for (name, from, to) in edits {
        add(
            "envelope",
            name.into(),
            text.replacen(from, to, 1).into_bytes(),
        );
    }
    let hash = DocCore::decode_change(sample)
        .map(|c| c.hash().to_string())
        .unwrap_or_default();
    add(
        "envelope",
        "forged-hash".into(),
        text.replacen(&hash, &"0".repeat(64), 1).into_bytes(),
    );
    add(
        "envelope",
        "garbage-change".into(),
        envelope_with_change(&text, sample, &garbage_body(&mut rng)),
    );
    add(
        "envelope",
        "truncated-change".into(),
        envelope_with_change(&text, sample, &sample[..sample.len() / 2]),
    );
    for i in 0..4 {
        add("envelope", format!("mutated-{i}"), mutate(&mut rng, &env));
    }
    add("envelope", "empty".into(), Vec::new());
    add(
        "envelope",
        "not-json".into(),
        b"\xff\x00\x13 not json".to_vec(),
    );

    // Signed envelopes (ed25519 is deterministic, so these bytes are stable) and broken
    // signatures, for the `signature` target.
    let key = |byte: u8| {
        blackboard_schemas::nkeys::KeyPair::new_from_raw(
            blackboard_schemas::nkeys::KeyPairType::User,
            [byte; 32],
        )
        .expect("a raw seed makes a key")
    };
    let signed = |bytes: &[u8], byte: u8, provenance: Option<blackboard_schemas::Provenance>| {
        let change = LocalChange {
            hash: DocCore::decode_change(bytes)
                .expect("seed changes decode")
                .hash(),
            bytes: bytes.to_vec(),
        };
        let mut env = codec::encode_event(&space, &document, &agent, &change, 1_000, None);
        env.provenance = provenance;
        env.sign(&key(byte)).expect("a user key signs");
        env
    };
    for (i, (name, bytes)) in changes.iter().enumerate().take(4) {
        let provenance = (i % 2 == 1).then(|| blackboard_schemas::Provenance {
            on_behalf_of: Some("someone".into()),
            model: Some("a-model".into()),
            tool_call: None,
        });
        add(
            "signature",
            format!("valid-{name}"),
            signed(bytes, i as u8 + 1, provenance).encode(),
        );
    }
    let base = signed(sample, 9, None);
    let mut variant = |name: &str, f: &dyn Fn(&mut Envelope)| {
        let mut env = base.clone();
        f(&mut env);
        add("signature", name.into(), env.encode());
    };
    variant("unsigned", &|e| {
        e.signer = None;
        e.signature = None;
    });
    variant("no-signature", &|e| e.signature = None);
    variant("no-signer", &|e| e.signer = None);
    variant("truncated-signature", &|e| {
        e.signature = e.signature.as_ref().map(|s| s[..40].to_owned())
    });
    variant("short-signature", &|e| e.signature = Some("AAAA".into()));
    variant("other-key", &|e| e.signer = Some(key(10).public_key()));
    variant("account-key", &|e| {
        e.signer = Some(
            blackboard_schemas::nkeys::KeyPair::new_from_raw(
                blackboard_schemas::nkeys::KeyPairType::Account,
                [9; 32],
            )
            .expect("a raw seed makes a key")
            .public_key(),
        )
    });
    variant("moved-time", &|e| e.time_ms += 1);
    variant("bad-signer", &|e| e.signer = Some("U123".into()));
    add(
        "signature",
        "not-json".into(),
        b"{\"v\":1,\"signer\":".to_vec(),
    );
    for (name, bytes) in roster_seeds() {
        add("roster", name, bytes);
    }
    // `touched`: changes made on an empty document (their paths are told), the base-relative
    // seed changes (objects the empty document lacks), and broken variants.
    add("touched", "valid-base".into(), base_change());
    add(
        "touched",
        "valid-fresh-nested".into(),
        fresh_nested_change(),
    );
    for (name, bytes) in &changes {
        add("touched", format!("on-base-{name}"), bytes.clone());
    }
    let fresh = fresh_nested_change();
    for (i, cut) in [0, 8, fresh.len() / 2, fresh.len() - 1]
        .into_iter()
        .enumerate()
    {
        add("touched", format!("truncated-{i}"), fresh[..cut].to_vec());
    }
    for i in 0..4 {
        add("touched", format!("mutated-{i}"), mutate(&mut rng, &fresh));
    }
    add("touched", "garbage-body".into(), garbage_body(&mut rng));
    seeds
}

/// A change on an empty document that makes nested maps, a list and a text: every path
/// kind [`crate::doc::touched`] tells.
fn fresh_nested_change() -> Vec<u8> {
    let mut doc = Automerge::new().with_actor(ActorId::from(b"fuzz-fresh".to_vec()));
    doc.transact_with(
        |_| CommitOptions::default().with_time(1),
        |tx| {
            let tasks = tx.put_object(ROOT, "tasks", ObjType::Map)?;
            let one = tx.put_object(&tasks, "1", ObjType::Map)?;
            tx.put(&one, "status", "open")?;
            let tags = tx.put_object(&one, "tags", ObjType::List)?;
            tx.insert(&tags, 0, "a")?;
            let notes = tx.put_object(ROOT, "notes", ObjType::Text)?;
            tx.splice_text(&notes, 0, 0, "hi")?;
            Ok::<_, AutomergeError>(())
        },
    )
    .expect("building the fresh change cannot fail");
    doc.get_last_local_change()
        .expect("the fresh document has a change")
        .raw_bytes()
        .to_vec()
}

/// Seeds of the `roster` target ([`roster_event`]): updates signed by the admin of the
/// fold's genesis (valid), and events every replica must ignore (another signer, another
/// space, a moved time, missing or cut signatures, bad bodies, bad JSON).
fn roster_seeds() -> Vec<(String, Vec<u8>)> {
    use crate::trust::RosterEvent;
    let key = |byte: u8| {
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [byte; 32])
            .expect("a raw seed makes a key")
    };
    let (admin, alice, auditor) = (key(7), key(8), key(9));
    let space: SpaceId = SPACE.parse().expect("the fuzz space is a valid id");
    let full = format!(
        r#"{{"admins":["{a}"],"agents":{{"alice":{{"keys":["{b}"],"write":["/tasks/**","/notes/{{agent}}/**","/x/*/y"]}},"auditor":{{"keys":["{c}"],"write":[]}}}}}}"#,
        a = admin.public_key(),
        b = alice.public_key(),
        c = auditor.public_key()
    );
    let sign = |space: &SpaceId, body: &str, key: &nkeys::KeyPair| {
        RosterEvent::sign(space, 5, body.to_owned(), key).expect("a user key signs")
    };
    let valid = sign(&space, &full, &admin);
    let mut out = vec![
        ("valid-update".to_owned(), valid.encode()),
        (
            "valid-admins-only".to_owned(),
            sign(
                &space,
                &format!(r#"{{"admins":["{}"]}}"#, admin.public_key()),
                &admin,
            )
            .encode(),
        ),
        ("not-admin".to_owned(), sign(&space, &full, &alice).encode()),
        (
            "wrong-space".to_owned(),
            sign(&"other".parse().expect("a valid id"), &full, &admin).encode(),
        ),
    ];
    let bodies = [
        ("no-admins", r#"{"admins":[]}"#.to_owned()),
        ("bad-key", r#"{"admins":["nope"]}"#.to_owned()),
        ("bad-grant", full.replacen("/tasks/**", "tasks", 1)),
        ("bad-agent", full.replacen("\"alice\"", "\"a b\"", 1)),
        ("unknown-field", full.replacen("\"admins\"", "\"admin\"", 1)),
        ("body-not-json", "{".to_owned()),
    ];
    for (name, body) in bodies {
        out.push((name.to_owned(), sign(&space, &body, &admin).encode()));
    }
    let variant = |f: &dyn Fn(&mut RosterEvent)| {
        let mut e = valid.clone();
        f(&mut e);
        e.encode()
    };
    out.push(("moved-time".into(), variant(&|e| e.time_ms += 1)));
    out.push(("no-signature".into(), variant(&|e| e.signature = None)));
    out.push((
        "unsigned".into(),
        variant(&|e| {
            e.signer = None;
            e.signature = None
        }),
    ));
    out.push((
        "truncated-signature".into(),
        variant(&|e| e.signature = e.signature.as_ref().map(|s| s[..40].to_owned())),
    ));
    out.push((
        "other-signer".into(),
        variant(&|e| e.signer = Some(alice.public_key())),
    ));
    out.push(("version-2".into(), variant(&|e| e.v = 2)));
    let bytes = valid.encode();
    for (i, cut) in [1, bytes.len() / 2, bytes.len() - 1]
        .into_iter()
        .enumerate()
    {
        out.push((format!("truncated-{i}"), bytes[..cut].to_vec()));
    }
    out.push(("empty".into(), Vec::new()));
    out.push(("not-json".into(), b"\xff roster".to_vec()));
    out
}

/// `text` (an encoded envelope for `old`) with its change replaced by `new`, hash unchanged.
fn envelope_with_change(text: &str, old: &[u8], new: &[u8]) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    text.replacen(&b64.encode(old), &b64.encode(new), 1)
        .into_bytes()
}

/// An automerge change chunk with a valid header (magic bytes, a checksum, the change chunk
/// type and a correct length) around a random body.
fn garbage_body(rng: &mut impl Rng) -> Vec<u8> {
    let body: Vec<u8> = (0..40).map(|_| rng.gen()).collect();
    let mut bytes = vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3, 4, 1, body.len() as u8];
    bytes.extend(body);
    bytes
}

/// Changes on top of [`base_doc`], one for each kind of edit, by two actors, named.
fn seed_changes() -> Vec<(&'static str, Vec<u8>)> {
    let doc = base_automerge();
    let base_heads = doc.get_heads();
    let get = |doc: &Automerge, key: &str| {
        automerge::ReadDoc::get(doc, ROOT, key)
            .ok()
            .flatten()
            .expect("the base document has its objects")
            .1
    };
    let (map, list, text) = (get(&doc, "map"), get(&doc, "list"), get(&doc, "text"));
    type Edit =
        Box<dyn Fn(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>>;
    let edits: Vec<(&'static str, Edit)> = vec![
        ("map-put", {
            let map = map.clone();
            Box::new(move |tx| tx.put(&map, "k", "w"))
        }),
        ("map-delete", {
            let map = map.clone();
            Box::new(move |tx| tx.delete(&map, "n"))
        }),
        ("list-insert", {
            let list = list.clone();
            Box::new(move |tx| tx.insert(&list, 1, "x"))
        }),
        ("list-delete", {
            let list = list.clone();
            Box::new(move |tx| tx.delete(&list, 0))
        }),
        ("text-splice", {
            let text = text.clone();
            Box::new(move |tx| tx.splice_text(&text, 1, 2, "EY"))
        }),
        ("counter", Box::new(|tx| tx.increment(ROOT, "hits", 3))),
        ("nested", {
            Box::new(move |tx| {
                let obj = tx.put_object(ROOT, "new", ObjType::Map)?;
                let inner = tx.put_object(&obj, "items", ObjType::List)?;
                tx.insert(&inner, 0, 1.5)?;
                tx.put(&obj, "flag", true)?;
                tx.put(&map, "k", ScalarValue::Null)?;
                tx.splice_text(&text, 0, 0, ">> ")?;
                tx.insert(&list, 3, ScalarValue::Bytes(vec![1, 2, 3]))
            })
        }),
    ];
    let mut out = Vec::new();
    for (i, (name, edit)) in edits.into_iter().enumerate() {
        // Each edit by its own actor, concurrent with the others on top of the base.
        let mut fork = doc
            .fork_at(&base_heads)
            .expect("forking at the base heads")
            .with_actor(ActorId::from(format!("fuzz-{i}").into_bytes()));
        fork.transact_with(
            |_| {
                CommitOptions::default()
                    .with_time(2)
                    .with_message(name.to_owned())
            },
            |tx| edit(tx),
        )
        .expect("seed edits apply");
        let change = fork
            .get_last_local_change()
            .expect("the edit made a change");
        out.push((name, change.raw_bytes().to_vec()));
    }
    // A second change by one actor: applied alone to the base it waits for the first.
    let mut chain = doc.fork().with_actor(ActorId::from(b"fuzz-chain".to_vec()));
    for n in 0..2 {
        chain
            .transact_with(
                |_| CommitOptions::default().with_time(3),
                |tx| tx.increment(ROOT, "hits", n + 1),
            )
            .expect("the chain edits apply");
    }
    let second = chain
        .get_last_local_change()
        .expect("the chain has changes");
    out.push(("waits-for-its-dependency", second.raw_bytes().to_vec()));
    // Keep "nested" (several ops and objects) last: the mutations start from it.
    let nested = out.iter().position(|(n, _)| *n == "nested");
    if let Some(i) = nested {
        let n = out.remove(i);
        out.push(n);
    }
    out
}

/// A random mutation of `bytes`, the kind a byte-level fuzzer makes: flip bits, overwrite,
/// insert or delete a byte or a run, truncate, duplicate a slice, or set "interesting" values.
pub fn mutate(rng: &mut impl Rng, bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let len = out.len();
        let at = if len == 0 { 0 } else { rng.gen_range(0..len) };
        match rng.gen_range(0..8) {
            0 if len > 0 => out[at] ^= 1 << rng.gen_range(0..8),
            1 if len > 0 => out[at] = rng.gen(),
            2 => out.insert(at, rng.gen()),
            3 if len > 0 => {
                let end = (at + rng.gen_range(1..=8)).min(len);
                out.drain(at..end);
            }
            4 if len > 0 => out.truncate(at),
            5 if len > 0 => {
                let end = (at + rng.gen_range(1..=16)).min(len);
                let slice = out[at..end].to_vec();
                let to = rng.gen_range(0..=len);
                out.splice(to..to, slice);
            }
            6 if len > 0 => {
                out[at] = [0, 1, 0x7f, 0x80, 0xff][rng.gen_range(0..5)];
            }
            _ => {
                let run: Vec<u8> = (0..rng.gen_range(1..=8)).map(|_| rng.gen()).collect();
                out.splice(at..at, run);
            }
        }
    }
    out
}

/// The fuzz target `roster`: `data` as a roster
/// event read from the log of [`SPACE`], folded into a fold with a roster in force. Nothing
/// may panic, and an ignored event must leave the roster in force as it was.
pub fn roster_event(data: &[u8]) -> Outcome {
    use crate::trust::{RosterEvent, RosterFold};
    let space: SpaceId = SPACE.parse().expect("the fuzz space is a valid id");
    let admin =
        nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [7; 32]).expect("a fixed user seed");
    let body = format!(r#"{{"admins":["{}"]}}"#, admin.public_key());
    let genesis = RosterEvent::sign(&space, 0, body, &admin).expect("the fixed key signs");
    let mut fold = RosterFold::new(space, None);
    fold.apply(1, &genesis.encode())
        .expect("a self-signed genesis is adopted");
    let before = fold.current().cloned();
    match fold.apply(2, data) {
        Ok(_) => Outcome::Accepted,
        Err(e) => {
            assert_eq!(
                fold.current(),
                before.as_ref(),
                "an ignored event changed the roster"
            );
            Outcome::Rejected(e.to_string())
        }
    }
}

/// The fuzz target `touched`: `data` as a change's bytes, its paths told
/// against an empty document. Nothing may panic.
pub fn touched_change(data: &[u8]) -> Outcome {
    let change = match DocCore::decode_change(data) {
        Ok(change) => change,
        Err(e) => return outcome::<()>(Err(e)),
    };
    match crate::doc::touched::touched(DocCore::new().automerge(), &change) {
        Ok(_) => Outcome::Accepted,
        Err(e) => Outcome::Rejected(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_and_mutated_roster_events_and_changes_never_panic() {
        let mut rng = rand::thread_rng();
        let admin = nkeys::KeyPair::new_from_raw(nkeys::KeyPairType::User, [7; 32]).unwrap();
        let body = format!(
            r#"{{"admins":["{}"],"agents":{{"a":{{"keys":[],"write":["/x/**"]}}}}}}"#,
            admin.public_key()
        );
        let space: SpaceId = SPACE.parse().unwrap();
        let valid = crate::trust::RosterEvent::sign(&space, 5, body, &admin)
            .unwrap()
            .encode();
        assert_eq!(roster_event(&valid), Outcome::Accepted);
        let mut doc = DocCore::new();
        let (_, change) = doc
            .transact(0, None, |tx| {
                let m = tx.put_object(ROOT, "m", ObjType::Map)?;
                tx.put(&m, "k", 1)
            })
            .unwrap();
        let change = change.unwrap().bytes;
        assert_eq!(touched_change(&change), Outcome::Accepted);
        for _ in 0..2000 {
            let mut r = valid.clone();
            let mut c = change.clone();
            for _ in 0..rng.gen_range(1..4) {
                let i = rng.gen_range(0..r.len());
                r[i] = rng.gen();
                let j = rng.gen_range(0..c.len());
                c[j] = rng.gen();
            }
            r.truncate(rng.gen_range(0..=r.len()));
            let _ = roster_event(&r);
            let _ = touched_change(&c);
            let noise: Vec<u8> = (0..rng.gen_range(0..64)).map(|_| rng.gen()).collect();
            let _ = roster_event(&noise);
            let _ = touched_change(&noise);
        }
    }
}
