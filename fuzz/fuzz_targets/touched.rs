//! Bytes as a change whose touched paths the trust verdict tells (`doc::touched`). See
//! `blackboard::fuzzing::touched_change`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blackboard::fuzzing::init_fuzz_target();
    let _ = blackboard::fuzzing::touched_change(data);
});
