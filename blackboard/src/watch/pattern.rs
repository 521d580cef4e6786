//! Path patterns: which parts of a document a watch is interested in.
//!
//! A pattern is a path (see [`Path`](crate::doc::Path)) whose segments may also be:
//! - `*`: exactly one segment (any map key or list index);
//! - `**`: any number of segments, including none.
//!
//! | pattern | matches | does not match |
//! | --- | --- | --- |
//! | `/tasks/7/status` | `/tasks/7/status` | `/tasks/8/status` |
//! | `/tasks/*/status` | `/tasks/7/status`, `/tasks/x/status` | `/tasks/7/title` |
//! | `/tasks/**` | `/tasks`, `/tasks/7`, `/tasks/7/notes/0` | `/users/1` |
//! | `/**/status` | `/status`, `/a/b/status` | `/a/b/state` |
//! | `/log/0` | the first element of list `/log` | |
//! | `/` or `/**` | everything | |
//!
//! A change is reported to a watch when its path matches the pattern, **or** when it replaces
//! or deletes something above a matching path: `/tasks/*/status` hears about `/tasks/7` being
//! deleted or replaced, since task 7's status changed with it (this holds where the rest of
//! the pattern has a fixed depth: `/tasks/**/status` does not hear about `/tasks` itself).
//! A change below a matched path is reported too: `/tasks/7` hears about `/tasks/7/status`. Segments are literal otherwise:
//! a map key that is really `*` can be matched with `~2` (and `**` with `~2~2`).

use std::fmt;

use crate::doc::{Path, PathError};

/// One segment of a pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Seg {
    Literal(String),
    One,
    Any,
}

/// A parsed, validated path pattern.
///
/// ```
/// use blackboard::watch::Pattern;
///
/// let p: Pattern = "/tasks/*/status".parse().unwrap();
/// assert!(p.matches(&"/tasks/7/status".parse().unwrap()));
/// assert!(p.matches(&"/tasks/7".parse().unwrap()));     // task 7 replaced or deleted
/// assert!(!p.matches(&"/tasks/7/title".parse().unwrap()));
/// assert!("tasks/*".parse::<Pattern>().is_err());         // must start with '/'
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    segs: Vec<Seg>,
}

/// Why a pattern is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// The pattern is not a valid path.
    #[error("bad watch pattern: {0}")]
    Path(#[from] PathError),
    /// A segment mixes a wildcard with other characters, like `task*`.
    #[error("bad watch pattern {pattern:?}: segment {segment:?} mixes '*' with other characters; wildcards are whole segments ('*' or '**')")]
    PartialWildcard {
        /// The pattern.
        pattern: String,
        /// The offending segment.
        segment: String,
    },
}

impl Pattern {
    /// The pattern that matches everything (`/**`).
    pub fn everything() -> Self {
        Self {
            text: "/**".into(),
            segs: vec![Seg::Any],
        }
    }

    /// Whether a change at `path` concerns this pattern: the path matches, lies below a match,
    /// or lies above something that could match.
    pub fn matches(&self, path: &Path) -> bool {
        matches_from(&self.segs, path.segments())
    }
}

/// Whether `path` (a change) concerns `segs`. Running out of pattern while the path goes on
/// means the change is below a match. Running out of path while the pattern goes on means the
/// change is above a possible match, which counts when the rest of the pattern has a fixed
/// depth: below a `**` anything could match, and every change would concern `/**/status`.
fn matches_from(segs: &[Seg], path: &[String]) -> bool {
    match (segs.first(), path.first()) {
        (None, _) => true,
        (Some(_), None) => segs.iter().all(|s| *s != Seg::Any) || segs == [Seg::Any],
        (Some(Seg::Any), Some(_)) => {
            // `**` absorbs zero segments, or one more.
            matches_from(&segs[1..], path) || matches_from(segs, &path[1..])
        }
        (Some(Seg::One), Some(_)) => matches_from(&segs[1..], &path[1..]),
        (Some(Seg::Literal(l)), Some(p)) => l == p && matches_from(&segs[1..], &path[1..]),
    }
}

impl std::str::FromStr for Pattern {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `~2` escapes a literal '*' inside a segment; translate it after splitting, so the
        // path parser's '~0'/'~1' rules stay as they are.
        let path: Path = s.replace("~2", "\u{0}").parse()?;
        let mut segs = Vec::new();
        for seg in path.segments() {
            let seg = match seg.as_str() {
                "*" => Seg::One,
                "**" => Seg::Any,
                other if other.contains('*') => {
                    return Err(PatternError::PartialWildcard {
                        pattern: s.to_owned(),
                        segment: other.to_owned(),
                    })
                }
                other => Seg::Literal(other.replace('\u{0}', "*")),
            };
            segs.push(seg);
        }
        Ok(Self {
            text: s.to_owned(),
            segs,
        })
    }
}

impl TryFrom<&str> for Pattern {
    type Error = PatternError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, path: &str) -> bool {
        pattern
            .parse::<Pattern>()
            .unwrap()
            .matches(&path.parse().unwrap())
    }

    #[test]
    fn pattern_table() {
        let table = [
            ("/tasks/7/status", "/tasks/7/status", true),
            ("/tasks/7/status", "/tasks/8/status", false),
            ("/tasks/7/status", "/tasks/7", true), // parent replaced
            ("/tasks/7/status", "/tasks", true),
            ("/tasks/7/status", "/", true), // root: everything
            ("/tasks/7/status", "/tasks/7/status/detail", true), // below a match
            ("/tasks/7/status", "/tasks/7/title", false),
            ("/tasks/*/status", "/tasks/7/status", true),
            ("/tasks/*/status", "/tasks/abc/status", true),
            ("/tasks/*/status", "/tasks/7/title", false),
            ("/tasks/*/status", "/users/7/status", false),
            ("/tasks/**", "/tasks", true),
            ("/tasks/**", "/tasks/1/2/3", true),
            ("/tasks/**", "/task", false),
            ("/**/status", "/a/b/status", true),
            ("/**/status", "/status", true),
            ("/**/status", "/a/b/state", false),
            ("/**/status", "/a", false),
            ("/tasks/**/status", "/tasks", false),
            ("/tasks/**/status", "/tasks/1/x/status", true),
            ("/log/0", "/log/0", true),
            ("/log/0", "/log/1", false),
            ("/log/*", "/log/1", true),
            ("/**", "/anything/at/all", true),
            ("/", "/x", true),
        ];
        for (pattern, path, want) in table {
            assert_eq!(m(pattern, path), want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn malformed_patterns_are_errors_that_say_why() {
        let err = "tasks/*".parse::<Pattern>().unwrap_err();
        assert!(err.to_string().contains("must start with '/'"), "{err}");
        let err = "/tasks/t*".parse::<Pattern>().unwrap_err();
        assert!(err.to_string().contains("\"t*\""), "{err}");
        let err = "/a~3".parse::<Pattern>().unwrap_err();
        assert!(err.to_string().contains("'~'"), "{err}");
    }

    #[test]
    fn an_escaped_star_is_a_literal_key() {
        assert!(m("/~2", "/*"));
        assert!(!m("/~2", "/x"));
    }
}
