//! Trust: a space's roster, its write grants, and the verdict on each change (issue 15).
//!
//! Pure logic, no I/O: [`roster`] reads, signs and folds roster events; [`grants`] matches
//! paths against an agent's grant patterns; [`verdict`] judges one change against the roster
//! in force at its stream position. The paths a change touches come from
//! [`crate::doc::touched`].

pub mod grants;
pub mod roster;
pub mod verdict;

pub use grants::{Grant, GrantError};
pub use roster::{AgentEntry, Roster, RosterError, RosterEvent, RosterFold};
pub use verdict::{judge, Reason, Verdict};
