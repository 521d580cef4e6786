//! Write grants: the path patterns a roster gives an agent.
//!
//! A pattern is written like a path (`/tasks/**`, `/notes/{agent}/**`, `/board/*/status`):
//! `/`-separated segments, `~1` for a `/` and `~0` for a `~` inside a key. Segments:
//! - a key matches that map key only;
//! - `*` matches exactly one segment (any key, or a list element);
//! - `{agent}` matches the key equal to the agent's id;
//! - `**`, only as the last segment, matches the path so far itself and everything below it.
//!
//! A list element is matched only by `*` or `**`: which index it has is not something every
//! replica agrees on (see [`crate::doc::touched`]).

use std::fmt;

use crate::doc::touched::{Segment, TouchedPath};

/// Why a grant pattern is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// It does not start with `/`.
    #[error("grant {0:?} must start with '/' (for example \"/tasks/**\")")]
    NoLeadingSlash(String),
    /// A segment is empty (`//`, or a trailing `/`).
    #[error("grant {0:?} has an empty segment")]
    EmptySegment(String),
    /// `**` somewhere other than last.
    #[error("grant {0:?} has '**' before its last segment")]
    InnerDoubleStar(String),
    /// A segment mixes `*`, `{` or `}` with other characters (`a*`, `{agents}`).
    #[error("grant {0:?} has segment {1:?}: '*', '**' and '{{agent}}' must be whole segments")]
    BadWildcard(String, String),
    /// A `~` not followed by `0` or `1`.
    #[error("grant {0:?} has a '~' not followed by '0' or '1'")]
    BadEscape(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Key(String),
    One,
    Agent,
    Rest,
}

/// One parsed grant pattern.
///
/// ```
/// use blackboard::trust::Grant;
/// let g: Grant = "/notes/{agent}/**".parse().unwrap();
/// assert_eq!(g.to_string(), "/notes/{agent}/**");
/// assert!("notes".parse::<Grant>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    text: String,
    parts: Vec<Part>,
}

impl std::str::FromStr for Grant {
    type Err = GrantError;

    fn from_str(s: &str) -> Result<Self, GrantError> {
        let Some(rest) = s.strip_prefix('/') else {
            return Err(GrantError::NoLeadingSlash(s.to_owned()));
        };
        let mut parts = Vec::new();
        if !rest.is_empty() {
            for raw in rest.split('/') {
                if raw.is_empty() {
                    return Err(GrantError::EmptySegment(s.to_owned()));
                }
                if matches!(parts.last(), Some(Part::Rest)) {
                    return Err(GrantError::InnerDoubleStar(s.to_owned()));
                }
                let part = match raw {
                    "*" => Part::One,
                    "**" => Part::Rest,
                    "{agent}" => Part::Agent,
                    _ if raw.contains(['*', '{', '}']) => {
                        return Err(GrantError::BadWildcard(s.to_owned(), raw.to_owned()))
                    }
                    _ => Part::Key(unescape(raw).ok_or_else(|| GrantError::BadEscape(s.into()))?),
                };
                parts.push(part);
            }
        }
        Ok(Self {
            text: s.to_owned(),
            parts,
        })
    }
}

fn unescape(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '~' => match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

impl fmt::Display for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl serde::Serialize for Grant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl Grant {
    /// Whether one segment of a path matches one part (`**` aside).
    fn one(part: &Part, seg: &Segment, agent: &str) -> bool {
        match (part, seg) {
            (Part::One, _) | (Part::Rest, _) => true,
            (Part::Key(k), Segment::Key(s)) => k == s,
            (Part::Agent, Segment::Key(s)) => s == agent,
            (_, Segment::Element) => false,
        }
    }

    /// Whether `path`, written by `agent`, is inside this grant.
    pub fn matches(&self, agent: &str, path: &TouchedPath) -> bool {
        let segs = path.segments();
        for (i, part) in self.parts.iter().enumerate() {
            if *part == Part::Rest {
                return true;
            }
            match segs.get(i) {
                Some(seg) if Self::one(part, seg, agent) => {}
                _ => return false,
            }
        }
        segs.len() == self.parts.len()
    }

    /// Whether `path` is a proper ancestor of some path this grant gives `agent`: making an
    /// empty container there only builds the way down to where the agent may write.
    pub fn is_below(&self, agent: &str, path: &TouchedPath) -> bool {
        let segs = path.segments();
        for (i, seg) in segs.iter().enumerate() {
            match self.parts.get(i) {
                // The grant covers this path and everything below: an ancestor of its paths.
                Some(Part::Rest) => return true,
                Some(part) if Self::one(part, seg, agent) => {}
                _ => return false,
            }
        }
        self.parts.len() > segs.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> TouchedPath {
        TouchedPath(
            s.split('/')
                .skip(1)
                .filter(|x| !x.is_empty())
                .map(|x| match x {
                    "[]" => Segment::Element,
                    k => Segment::Key(k.to_owned()),
                })
                .collect(),
        )
    }

    fn g(s: &str) -> Grant {
        s.parse().unwrap()
    }

    #[test]
    fn a_final_double_star_matches_the_prefix_itself_and_everything_below() {
        let t = g("/tasks/**");
        assert!(t.matches("a", &path("/tasks")));
        assert!(t.matches("a", &path("/tasks/[]/title")));
        assert!(t.matches("a", &path("/tasks/x/y/z")));
        assert!(!t.matches("a", &path("/task")));
        assert!(!t.matches("a", &path("/other/tasks")));
        assert!(g("/**").matches("a", &path("/anything/at/all")));
    }

    #[test]
    fn a_star_matches_exactly_one_segment_key_or_list_element() {
        let t = g("/board/*/status");
        assert!(t.matches("a", &path("/board/x/status")));
        assert!(t.matches("a", &path("/board/[]/status")));
        assert!(!t.matches("a", &path("/board/status")));
        assert!(!t.matches("a", &path("/board/x/y/status")));
        assert!(!t.matches("a", &path("/board/x/status/more")));
    }

    #[test]
    fn agent_is_replaced_by_the_writing_agents_id() {
        let t = g("/notes/{agent}/**");
        assert!(t.matches("alice", &path("/notes/alice/today")));
        assert!(t.matches("alice", &path("/notes/alice")));
        assert!(!t.matches("bob", &path("/notes/alice/today")));
        assert!(!t.matches("alice", &path("/notes/[]/today")));
    }

    #[test]
    fn a_literal_key_never_matches_a_list_element() {
        assert!(!g("/tasks/0").matches("a", &path("/tasks/[]")));
        assert!(!g("/tasks/0/**").matches("a", &path("/tasks/[]/title")));
    }

    #[test]
    fn proper_ancestors_of_granted_paths_are_below_the_grant_and_nothing_else_is() {
        let t = g("/notes/{agent}/**");
        assert!(t.is_below("alice", &path("/notes")));
        assert!(t.is_below("alice", &path("/notes/alice")));
        assert!(!t.is_below("alice", &path("/notes/bob")));
        assert!(!t.is_below("alice", &path("/tasks")));
        let exact = g("/a/b");
        assert!(exact.is_below("x", &path("/a")));
        assert!(!exact.is_below("x", &path("/a/b")), "not a proper ancestor");
        assert!(!exact.is_below("x", &path("/a/b/c")));
        assert!(!exact.is_below("x", &path("/a/c")));
    }

    #[test]
    fn malformed_patterns_are_refused_with_what_is_wrong() {
        assert!(matches!(
            "tasks/**".parse::<Grant>(),
            Err(GrantError::NoLeadingSlash(_))
        ));
        assert!(matches!(
            "/a//b".parse::<Grant>(),
            Err(GrantError::EmptySegment(_))
        ));
        assert!(matches!(
            "/a/".parse::<Grant>(),
            Err(GrantError::EmptySegment(_))
        ));
        assert!(matches!(
            "/**/a".parse::<Grant>(),
            Err(GrantError::InnerDoubleStar(_))
        ));
        assert!(matches!(
            "/a*".parse::<Grant>(),
            Err(GrantError::BadWildcard(..))
        ));
        assert!(matches!(
            "/{agents}".parse::<Grant>(),
            Err(GrantError::BadWildcard(..))
        ));
        assert!(matches!(
            "/a~2".parse::<Grant>(),
            Err(GrantError::BadEscape(_))
        ));
        assert!(!g("/a~1b").matches("x", &path("/a/b")));
        assert!(g("/a~1b").matches("x", &TouchedPath(vec![Segment::Key("a/b".into())])));
    }
}
