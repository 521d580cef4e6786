//! Bytes as an event read from a log: `Envelope::decode`, `codec::decode_event`, then the
//! change applied to a document. See `blackboard::fuzzing::decode_envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blackboard::fuzzing::init_fuzz_target();
    let _ = blackboard::fuzzing::decode_envelope(data);
});
