//! Replays the fuzz seed corpus (`fuzz/corpus/mqtt_decode/`) through the fuzz target's own
//! oracle on stable Rust, so CI checks it without cargo-fuzz.

use std::path::Path;

use crate::fuzzing::round_trip;
use crate::MAX_PACKET_SIZE;

#[test]
fn fuzz_corpus_round_trips() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/mqtt_decode");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read the fuzz corpus at {}: {e}", dir.display()));
    let mut files = 0;
    let mut decoded = 0;
    for entry in entries {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let data = std::fs::read(&path).unwrap();
        round_trip(&data);
        files += 1;
        if crate::fuzzing::VERSIONS
            .iter()
            .any(|&v| matches!(crate::decode_slice(&data, v, MAX_PACKET_SIZE), Ok(Some(_))))
        {
            decoded += 1;
        }
    }
    assert!(files > 0, "the fuzz corpus at {} is empty", dir.display());
    // The seeds are valid packets: if none decodes, the test is not testing anything.
    assert!(decoded > 0, "no file in the fuzz corpus decodes");
}
