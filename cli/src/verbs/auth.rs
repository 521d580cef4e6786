//! `blackboard auth`: print a nats-server `authorization` block for a space from its roster
//! (issue 15 §5): one nkey user per key the roster lists, with the permissions of
//! `docs/nats-permissions.conf` for what the roster lets that key do.
//!
//! - every listed key may read the space (the stream, snapshots), watch it, claim and say
//!   it is present (the reader set);
//! - a key of an agent with write grants also publishes the space's change subjects and
//!   creates its stream on the first write;
//! - a key the roster trusts with snapshots (an admin's, or an agent's with
//!   `"snapshots": true`) also writes the snapshot store: other keys' snapshots would be
//!   ignored by every replica anyway;
//! - an admin's key also publishes the space's roster.
//!
//! A read-only agent's key publishes no change subject: the server refuses its writes
//! before they reach the log. The roster is read from FILE (a body as `roster set` takes)
//! or, without FILE, from the space's log (the roster in force).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use blackboard_client::schemas::subject;
use blackboard_client::{Roster, SpaceId};

use super::open::{LogArgs, Mode};

/// Options of `blackboard auth`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A roster body (JSON, as `roster set` takes); without it, the roster in force in
    /// --space is read from the log.
    file: Option<PathBuf>,
    #[command(flatten)]
    log: LogArgs,
}

/// Runs `blackboard auth`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let space = args.log.space.clone();
    let roster = match &args.file {
        Some(file) => {
            let body = std::fs::read_to_string(file)
                .with_context(|| format!("reading the roster body {}", file.display()))?;
            Roster::parse(&body).with_context(|| format!("{}", file.display()))?
        }
        None => {
            let board = args.log.connect(Mode::Listing).await?;
            let place = board.place();
            let in_force = args
                .log
                .within(
                    format_args!("{place} to read the roster of {space}"),
                    async {
                        board.board.roster(space.as_str()).await.with_context(|| {
                            format!("reading the roster of space {space} on {place}")
                        })
                    },
                )
                .await?;
            board.close().await?;
            match in_force {
                Some(in_force) => in_force.roster,
                None => {
                    return Err(super::Usage(format!(
                        "space {space} on {place} has no roster in force: set one with \
                         `blackboard roster set FILE --key ADMIN.nk`, or give a roster body \
                         FILE"
                    ))
                    .into())
                }
            }
        }
    };
    let mut out = super::stdout();
    out.write_all(authorization(&space, &roster).as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What the roster lets one key do.
#[derive(Debug, Default)]
struct Roles {
    /// The agents it signs for, with what each may write.
    agents: Vec<String>,
    admin: bool,
    writes: bool,
    snapshots: bool,
}

/// The `authorization` block for `space`'s `roster`.
pub fn authorization(space: &SpaceId, roster: &Roster) -> String {
    let mut keys: BTreeMap<&str, Roles> = BTreeMap::new();
    for key in &roster.admins {
        keys.entry(key).or_default().admin = true;
    }
    for (agent, entry) in &roster.agents {
        for key in &entry.keys {
            let roles = keys.entry(key).or_default();
            let grants: Vec<String> = entry.write.iter().map(ToString::to_string).collect();
            roles.agents.push(match grants.is_empty() {
                true => format!("{agent} (read-only)"),
                false => format!("{agent} (writes {})", grants.join(" ")),
            });
            roles.writes |= !entry.write.is_empty();
        }
    }
    for (key, roles) in keys.iter_mut() {
        roles.snapshots = roster.may_snapshot(key);
    }
    let mut out = format!(
        "# nats-server authorization for the Blackboard space `{space}`, written by \
         `blackboard auth` from its roster:\n# one nkey user per key the roster lists, with \
         the permissions of docs/nats-permissions.conf.\n# Keep any operator users of your \
         own (with full access) in the list.\nauthorization {{\n  users = [\n"
    );
    for (key, roles) in &keys {
        let mut what: Vec<String> = roles.agents.clone();
        if roles.admin {
            what.push("admin".into());
        }
        if roles.snapshots {
            what.push("writes snapshots".into());
        }
        out.push_str(&format!("    # {}\n", what.join(", ")));
        out.push_str(&format!("    {{ nkey: {key}, permissions: {{\n"));
        out.push_str("      publish: { allow: [\n");
        let mut publish: BTreeSet<String> = reading(space).into_iter().collect();
        if roles.writes {
            publish.insert(format!("bb.{space}.doc.*.ch"));
            publish.insert(format!(
                "$JS.API.STREAM.CREATE.{}",
                subject::stream_name(space)
            ));
        }
        if roles.snapshots {
            let bucket = subject::snapshot_bucket(space);
            publish.insert(format!("$JS.API.STREAM.CREATE.OBJ_{bucket}"));
            publish.insert(format!("$JS.API.STREAM.PURGE.OBJ_{bucket}"));
            publish.insert(format!("$O.{bucket}.>"));
        }
        if roles.admin {
            publish.insert(format!("bb.{space}.roster"));
            publish.insert(format!(
                "$JS.API.STREAM.CREATE.{}",
                subject::stream_name(space)
            ));
        }
        for subject in &publish {
            out.push_str(&format!("        \"{subject}\"\n"));
        }
        out.push_str("      ] }\n");
        out.push_str(&format!(
            "      subscribe: {{ allow: [\"_INBOX.>\", \"$JS.EVENT.ADVISORY.STREAM.CREATED.{}\"] }}\n",
            subject::stream_name(space)
        ));
        out.push_str("    } }\n");
    }
    out.push_str("  ]\n}\n");
    out
}

/// What every key of the space publishes, writer or not: the JetStream API calls that read
/// the stream and the snapshots, and claims and presence (docs/nats-permissions.conf's
/// READER).
fn reading(space: &SpaceId) -> Vec<String> {
    let stream = subject::stream_name(space);
    let snapshots = format!("OBJ_{}", subject::snapshot_bucket(space));
    let mut out = vec!["$JS.API.INFO".to_owned()];
    let read = |s: &str| {
        vec![
            format!("$JS.API.STREAM.INFO.{s}"),
            format!("$JS.API.CONSUMER.CREATE.{s}"),
            format!("$JS.API.CONSUMER.CREATE.{s}.>"),
            format!("$JS.API.CONSUMER.DELETE.{s}.>"),
            format!("$JS.API.CONSUMER.MSG.NEXT.{s}.>"),
            format!("$JS.API.CONSUMER.INFO.{s}.>"),
            format!("$JS.API.DIRECT.GET.{s}"),
            format!("$JS.API.DIRECT.GET.{s}.>"),
            format!("$JS.API.STREAM.MSG.GET.{s}"),
            format!("$JS.FC.{s}.>"),
        ]
    };
    out.extend(read(&stream));
    out.extend(read(&snapshots));
    for bucket in [
        subject::claims_bucket(space),
        subject::presence_bucket(space),
    ] {
        out.extend(read(&format!("KV_{bucket}")));
        out.push(format!("$JS.API.STREAM.CREATE.KV_{bucket}"));
        out.push(format!("$KV.{bucket}.>"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_read_only_key_publishes_no_change_subject_and_only_admins_publish_the_roster() {
        let (admin, alice, auditor) = (
            blackboard_client::schemas::nkeys::KeyPair::new_user().public_key(),
            blackboard_client::schemas::nkeys::KeyPair::new_user().public_key(),
            blackboard_client::schemas::nkeys::KeyPair::new_user().public_key(),
        );
        let body = serde_json::json!({
            "admins": [admin],
            "agents": {
                "alice": {"keys": [alice], "write": ["/tasks/**"]},
                "auditor": {"keys": [auditor], "write": []},
            }
        });
        let roster = Roster::parse(&body.to_string()).unwrap();
        let text = authorization(&"team".parse().unwrap(), &roster);
        let block = |key: &str| {
            let start = text.find(&format!("nkey: {key}")).unwrap();
            let end = text[start..].find("} }").unwrap();
            text[start..start + end].to_owned()
        };
        assert!(block(&alice).contains("\"bb.team.doc.*.ch\""));
        assert!(!block(&alice).contains("bb.team.roster"));
        assert!(
            !block(&alice).contains("$O.BB_SNAP_team"),
            "not trusted with snapshots"
        );
        assert!(!block(&auditor).contains("bb.team.doc"));
        assert!(!block(&auditor).contains("STREAM.CREATE.BB_team"));
        assert!(block(&auditor).contains("$KV.BB_PRESENCE_team.>"));
        assert!(block(&admin).contains("\"bb.team.roster\""));
        assert!(block(&admin).contains("$O.BB_SNAP_team.>"));
        assert!(text.contains("# auditor (read-only)"), "{text}");
    }
}
