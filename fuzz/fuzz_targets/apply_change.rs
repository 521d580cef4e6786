//! Bytes as a foreign automerge change applied to a document (and loaded as a snapshot).
//! See `blackboard::fuzzing::apply_change`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blackboard::fuzzing::init_fuzz_target();
    let _ = blackboard::fuzzing::apply_change(data);
});
