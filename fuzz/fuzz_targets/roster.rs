//! Bytes as a roster event read from a space's log, folded on top of a roster in force:
//! `RosterEvent::decode`, the signature check, the body's parse and the admin rules. See
//! `blackboard::fuzzing::roster_event`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blackboard::fuzzing::init_fuzz_target();
    let _ = blackboard::fuzzing::roster_event(data);
});
