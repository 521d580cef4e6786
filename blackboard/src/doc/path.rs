//! Paths into a document, written like JSON Pointer (RFC 6901): `/tasks/0/status`.
//!
//! The empty string and `/` both name the root. Each segment is a map key or a list index;
//! `~1` stands for `/` and `~0` for `~` inside a key. When writing into a list, `-` names the
//! position after the last element (append).

use std::fmt;

/// Why a path could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path did not start with `/`.
    #[error("path {0:?} must start with '/' (for example \"/tasks/0/status\")")]
    NoLeadingSlash(String),
    /// A `~` was not followed by `0` or `1`.
    #[error("path {0:?} has a '~' not followed by '0' or '1'")]
    BadEscape(String),
}

/// A parsed path: a list of segments from the root.
///
/// ```
/// use blackboard::doc::Path;
/// let p: Path = "/tasks/7/a~1b".parse().unwrap();
/// assert_eq!(p.segments(), ["tasks", "7", "a/b"]);
/// assert!(Path::root().is_root());
/// assert!("tasks".parse::<Path>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Path(Vec<String>);

impl Path {
    /// The root of the document.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Whether this is the root.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The segments, outermost first.
    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The parent path and the last segment, or `None` for the root.
    pub fn split_last(&self) -> Option<(Path, &str)> {
        let (last, parent) = self.0.split_last()?;
        Some((Path(parent.to_vec()), last.as_str()))
    }

    /// This path with one more segment.
    pub fn join(&self, segment: impl Into<String>) -> Path {
        let mut v = self.0.clone();
        v.push(segment.into());
        Path(v)
    }
}

impl std::str::FromStr for Path {
    type Err = PathError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s == "/" {
            return Ok(Self::root());
        }
        let Some(rest) = s.strip_prefix('/') else {
            return Err(PathError::NoLeadingSlash(s.to_owned()));
        };
        let mut segments = Vec::new();
        for raw in rest.split('/') {
            let mut seg = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => seg.push('~'),
                        Some('1') => seg.push('/'),
                        _ => return Err(PathError::BadEscape(s.to_owned())),
                    }
                } else {
                    seg.push(c);
                }
            }
            segments.push(seg);
        }
        Ok(Self(segments))
    }
}

impl TryFrom<&str> for Path {
    type Error = PathError;
    fn try_from(s: &str) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for seg in &self.0 {
            write!(f, "/{}", seg.replace('~', "~0").replace('/', "~1"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_round_trip_through_display_including_escapes() {
        for s in ["/", "/a", "/a/0/b", "/a~1b/~0c", "/a//b"] {
            let p: Path = s.parse().unwrap();
            assert_eq!(p.to_string(), s);
        }
    }

    #[test]
    fn malformed_paths_are_errors_that_quote_the_path() {
        assert_eq!(
            "a/b".parse::<Path>(),
            Err(PathError::NoLeadingSlash("a/b".into()))
        );
        let err = "/a~2".parse::<Path>().unwrap_err();
        assert!(err.to_string().contains("\"/a~2\""), "{err}");
    }
}
