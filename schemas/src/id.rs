//! Validated identifiers: spaces, documents and agents.
//!
//! Ids appear inside NATS subjects, JetStream stream names and sled tree names, so they are
//! restricted to characters that are safe in all three: ASCII letters, digits, `-` and `_`,
//! 1 to 64 characters long. A `.`, `*`, `>` or space would change the meaning of a subject,
//! which is why they are refused here rather than escaped.

use std::fmt;
use std::str::FromStr;

/// The longest id accepted, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The string was empty.
    #[error("{kind} id is empty")]
    Empty {
        /// Which kind of id was being parsed.
        kind: &'static str,
    },
    /// The string was longer than [`MAX_ID_LEN`].
    #[error("{kind} id is {len} bytes long, the limit is {MAX_ID_LEN}")]
    TooLong {
        /// Which kind of id was being parsed.
        kind: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The string held a character outside `[A-Za-z0-9_-]`.
    #[error(
        "{kind} id {id:?} contains {ch:?}; only ASCII letters, digits, '-' and '_' are allowed"
    )]
    BadChar {
        /// Which kind of id was being parsed.
        kind: &'static str,
        /// The rejected id.
        id: String,
        /// The first character that is not allowed.
        ch: char,
    },
}

fn validate(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { kind, len: s.len() });
    }
    if let Some(ch) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar {
            kind,
            id: s.to_owned(),
            ch,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates `id` and wraps it.
            pub fn new(id: impl Into<String>) -> Result<Self, IdError> {
                let id = id.into();
                validate($kind, &id)?;
                Ok(Self(id))
            }

            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::new(s)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = IdError;
            fn try_from(s: &str) -> Result<Self, Self::Error> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl schemars::JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "description": concat!("The ", $kind, " id: 1 to 64 ASCII letters, digits, '-' or '_'."),
                    "type": "string",
                    "minLength": 1,
                    "maxLength": MAX_ID_LEN,
                    "pattern": "^[A-Za-z0-9_-]{1,64}$"
                })
            }
        }
    };
}

id_type!(
    /// A space: a namespace for documents (one team, one run). Each space has its own stream.
    ///
    /// ```
    /// use blackboard_schemas::SpaceId;
    /// let space: SpaceId = "team-1".parse().unwrap();
    /// assert_eq!(space.as_str(), "team-1");
    /// assert!("a.b".parse::<SpaceId>().is_err());
    /// ```
    SpaceId,
    "space"
);

id_type!(
    /// A document in a space.
    ///
    /// ```
    /// use blackboard_schemas::DocumentId;
    /// assert!(DocumentId::new("tasks").is_ok());
    /// assert!(DocumentId::new("").is_err());
    /// ```
    DocumentId,
    "document"
);

id_type!(
    /// An agent: the identity that makes a change.
    ///
    /// ```
    /// use blackboard_schemas::AgentId;
    /// let agent = AgentId::new("planner_7").unwrap();
    /// assert_eq!(agent.to_string(), "planner_7");
    /// ```
    AgentId,
    "agent"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_letters_digits_dash_and_underscore() {
        for ok in ["a", "A-z_0", &"x".repeat(MAX_ID_LEN)] {
            assert!(SpaceId::new(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn ids_reject_subject_metacharacters_with_the_offending_character() {
        for (bad, ch) in [
            ("a.b", '.'),
            ("a*", '*'),
            ("a>", '>'),
            ("a b", ' '),
            ("é", 'é'),
        ] {
            match DocumentId::new(bad) {
                Err(IdError::BadChar { ch: got, .. }) => assert_eq!(got, ch),
                other => panic!("{bad:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn ids_reject_empty_and_overlong_strings() {
        assert_eq!(AgentId::new(""), Err(IdError::Empty { kind: "agent" }));
        assert!(matches!(
            AgentId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong { len: 65, .. })
        ));
    }

    #[test]
    fn ids_deserialize_through_validation() {
        assert!(serde_json::from_str::<SpaceId>("\"ok\"").is_ok());
        let err = serde_json::from_str::<SpaceId>("\"not.ok\"").unwrap_err();
        assert!(err.to_string().contains("'.'"), "{err}");
    }
}
