//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the same entry points
//! as the cargo-fuzz targets (`blackboard::fuzzing`), so every input the fuzzer was seeded
//! with, or found, stays harmless: no panic, and a clean `Ok` or `Err`.
//!
//! Also a stable-Rust stand-in for the fuzzer (`poor_mans_fuzzer`, ignored by default) and
//! the generator of the seed corpus (`regenerate_seed_corpus`, ignored by default).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blackboard::fuzzing::{self, Outcome};
use rand::{Rng, SeedableRng};

/// A fuzz target's entry point.
type Target = fn(&[u8]) -> Outcome;

const TARGETS: [(&str, Target); 5] = [
    ("envelope", fuzzing::decode_envelope),
    ("apply_change", fuzzing::apply_change),
    ("signature", fuzzing::verify_signature),
    ("roster", fuzzing::roster_event),
    ("touched", fuzzing::touched_change),
];

fn corpus_dir() -> PathBuf {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus")).to_path_buf()
}

/// Every file of a target's corpus, sorted by name.
fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_input_is_accepted_or_refused_cleanly_and_valid_seeds_are_accepted() {
    for (target, run) in TARGETS {
        let files = corpus(target);
        assert!(
            files.len() >= 10,
            "the {target} corpus has only {} files: the replay would prove little",
            files.len()
        );
        let (mut accepted, mut refused) = (0, 0);
        for (name, bytes) in &files {
            match run(bytes) {
                Outcome::Accepted => accepted += 1,
                Outcome::Rejected(_) => refused += 1,
                Outcome::CaughtPanic(e) => panic!("{target}/{name}: {e}"),
            }
            if name.starts_with("valid-") {
                assert_eq!(run(bytes), Outcome::Accepted, "{target}/{name}");
            }
        }
        assert!(
            accepted > 0 && refused > 0,
            "{target}: {accepted} accepted, {refused} refused"
        );
    }
}

#[test]
fn the_committed_seed_corpus_is_what_the_generator_makes() {
    // The generator is deterministic; a change to it (or to automerge's encoding) shows here.
    for seed in fuzzing::seed_corpus() {
        let path = corpus_dir().join(seed.target).join(&seed.name);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run regenerate_seed_corpus)", path.display()));
        assert_eq!(
            committed,
            seed.bytes,
            "{} is stale (run regenerate_seed_corpus)",
            path.display()
        );
    }
}

/// Writes the seed corpus: `cargo test -p blackboard --test fuzz_corpus -- --ignored
/// regenerate_seed_corpus`. Files the fuzzer added are left alone.
#[test]
#[ignore = "writes fuzz/corpus; run by hand"]
fn regenerate_seed_corpus() {
    for seed in fuzzing::seed_corpus() {
        let dir = corpus_dir().join(seed.target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(&seed.name), &seed.bytes).unwrap();
    }
}

/// A stand-in for cargo-fuzz on stable Rust: mutates corpus entries at random and runs them
/// through the fuzz targets' entry points. `FUZZ_SECONDS` (default 60) per target, `FUZZ_SEED`
/// for the random seed. A panic is a finding: the input is written to
/// `fuzz/artifacts/<target>/`, as cargo-fuzz does; copy it into the corpus once fixed, so the
/// replay keeps it as a regression case.
///
/// `cargo test -p blackboard --test fuzz_corpus --release -- --ignored --nocapture poor_mans_fuzzer`
#[test]
#[ignore = "runs for minutes; run by hand"]
fn poor_mans_fuzzer() {
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    println!("seed {seed}, {seconds} s per target");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Panics automerge makes and the core catches would each print a backtrace; a panic that
    // escapes is reported below, with its input.
    std::panic::set_hook(Box::new(|_| {}));
    for (target, run) in TARGETS {
        let mut pool: Vec<Vec<u8>> = corpus(target).into_iter().map(|(_, b)| b).collect();
        let (mut runs, mut accepted, mut caught) = (0u64, 0u64, Vec::new());
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(seconds) {
            let parent = &pool[rng.gen_range(0..pool.len())];
            let input = fuzzing::mutate(&mut rng, parent);
            let result = std::panic::catch_unwind(|| run(&input));
            runs += 1;
            match result {
                Ok(Outcome::Accepted) => {
                    accepted += 1;
                    // Accepted mutants are interesting parents: they reach deeper code.
                    if pool.len() < 5000 {
                        pool.push(input);
                    }
                }
                Ok(Outcome::Rejected(_)) => {}
                Ok(Outcome::CaughtPanic(e)) => {
                    if caught.len() < 5 {
                        println!("{target}: caught automerge panic ({e}) on {input:?}");
                    }
                    caught.push(input);
                }
                Err(panic) => {
                    let _ = std::panic::take_hook();
                    let what = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
                    println!("{target}: {}", what.unwrap_or_default());
                    let dir = corpus_dir().join("../artifacts").join(target);
                    std::fs::create_dir_all(&dir).unwrap();
                    let path = dir.join(format!("crash-{seed}-{runs}"));
                    std::fs::write(&path, &input).unwrap();
                    panic!(
                        "{target}: the entry point panicked; input in {}",
                        path.display()
                    );
                }
            }
        }
        println!(
            "{target}: {runs} inputs in {:.0?}, {accepted} accepted, {} automerge panics caught",
            start.elapsed(),
            caught.len()
        );
    }
}
