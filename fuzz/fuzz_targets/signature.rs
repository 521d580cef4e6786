//! Bytes as a signed envelope: `Envelope::decode`, then `Envelope::verify` and
//! `codec::Signature::of`. See `blackboard::fuzzing::verify_signature`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    blackboard::fuzzing::init_fuzz_target();
    let _ = blackboard::fuzzing::verify_signature(data);
});
