//! Memory taken by applying the text workload's changes, per automerge version.
//!
//! ```text
//! cargo run --release -p blackboard-bench --bin apply_memory [-- INSERTS...]
//! ```
//!
//! For each number of inserts (default: 1000 and 5000), each version (0.6.1, 0.12) and each
//! way of applying (one `apply_changes` call per change, as a replica does; and all changes in
//! one call, for comparison) this runs a fresh child process that builds the changes' bytes
//! with automerge 0.6.1, then decodes and applies them into a fresh document, and reports:
//!
//! * peak heap: the most bytes live on the heap at once while applying, above what was live
//!   before (counted by a global allocator wrapping the system one);
//! * retained heap: bytes still live once applied, with the document kept, above that same
//!   starting point;
//! * peak RSS: the process's resident-set high-water mark while applying (`VmHWM`, reset
//!   through `/proc/self/clear_refs` just before), above the resident set before;
//! * the wall time of the apply, single shot and under the counting allocator (the criterion
//!   bench `apply` is the place for throughput).
//!
//! A child per measurement keeps one version's freed-but-not-returned memory out of the
//! other's resident-set figures.

use std::process::{Command, ExitCode};
use std::time::Instant;

use blackboard_bench::{expected_text, text_changes, v012, v06};
use peak_alloc::PeakAlloc;

#[global_allocator]
static HEAP: PeakAlloc = PeakAlloc;

const VERSIONS: [&str; 2] = [v06::VERSION, v012::VERSION];
const MODES: [&str; 2] = ["one_at_a_time", "all_at_once"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return match child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("apply_memory child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let sizes: Vec<usize> = if args.is_empty() {
        vec![1_000, 5_000]
    } else {
        match args.iter().map(|a| a.parse()).collect() {
            Ok(sizes) => sizes,
            Err(e) => {
                eprintln!("usage: apply_memory [INSERTS...]: {e}");
                return ExitCode::FAILURE;
            }
        }
    };
    match parent(&sizes) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("apply_memory: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parent(sizes: &[usize]) -> Result<(), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    println!("| inserts | automerge | apply | peak heap (MiB) | retained heap (MiB) | peak RSS growth (MiB) | wall time, counting allocator (s) |");
    println!("| ---: | --- | --- | ---: | ---: | ---: | ---: |");
    for &n in sizes {
        for mode in MODES {
            for version in VERSIONS {
                let out = Command::new(&exe)
                    .args(["--child", version, mode, &n.to_string()])
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!(
                        "child {version} {mode} {n} failed: {}",
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                let line = String::from_utf8_lossy(&out.stdout);
                let field = |name: &str| -> Result<f64, String> {
                    line.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                        .ok_or_else(|| format!("no {name} in {line:?}"))?
                        .parse::<f64>()
                        .map_err(|e| e.to_string())
                };
                let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
                println!(
                    "| {n} | {version} | {mode} | {:.1} | {:.1} | {:.1} | {:.3} |",
                    mib(field("peak_heap_bytes")?),
                    mib(field("retained_heap_bytes")?),
                    mib(field("peak_rss_growth_bytes")?),
                    field("seconds")?,
                );
            }
        }
    }
    Ok(())
}

fn child(args: &[String]) -> Result<(), String> {
    let [version, mode, n] = args else {
        return Err(format!("expected VERSION MODE INSERTS, got {args:?}"));
    };
    let n: usize = n.parse().map_err(|e| format!("{e}"))?;
    let changes = text_changes(n);

    let heap_before = HEAP.current_usage();
    HEAP.reset_peak_usage();
    reset_peak_rss();
    let rss_before = status_kib("VmRSS:")? * 1024;

    let start = Instant::now();
    let doc = match (version.as_str(), mode.as_str()) {
        (v06::VERSION, "one_at_a_time") => Doc::V06(v06::apply_one_at_a_time(&changes).map_err(s)?),
        (v06::VERSION, "all_at_once") => Doc::V06(v06::apply_all_at_once(&changes).map_err(s)?),
        (v012::VERSION, "one_at_a_time") => {
            Doc::V012(v012::apply_one_at_a_time(&changes).map_err(s)?)
        }
        (v012::VERSION, "all_at_once") => Doc::V012(v012::apply_all_at_once(&changes).map_err(s)?),
        other => return Err(format!("unknown version and mode {other:?}")),
    };
    let seconds = start.elapsed().as_secs_f64();
    let peak_heap = HEAP.peak_usage().saturating_sub(heap_before);
    let retained_heap = HEAP.current_usage().saturating_sub(heap_before);
    let peak_rss = (status_kib("VmHWM:")? * 1024).saturating_sub(rss_before);

    let (text, history) = match &doc {
        Doc::V06(d) => (v06::text(d), v06::history_len(d)),
        Doc::V012(d) => (v012::text(d), v012::history_len(d)),
    };
    if text.as_deref() != Some(expected_text(n).as_str()) || history != changes.len() {
        return Err(format!(
            "{version} {mode}: wrong result (history {history} of {})",
            changes.len()
        ));
    }
    println!(
        "peak_heap_bytes={peak_heap} retained_heap_bytes={retained_heap} peak_rss_growth_bytes={peak_rss} seconds={seconds}"
    );
    Ok(())
}

/// A document of either version, kept alive while its memory is counted.
// Held on the stack once: boxing it would only add an allocation to what is measured.
#[allow(clippy::large_enum_variant)]
enum Doc {
    V06(automerge06::Automerge),
    V012(automerge012::Automerge),
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Resets the resident-set high-water mark (`VmHWM`) of this process; Linux 4.0 and later.
fn reset_peak_rss() {
    // Best effort: without it, VmHWM also covers building the changes, the same for every
    // version.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// A `kB` figure from `/proc/self/status`.
fn status_kib(key: &str) -> Result<usize, String> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .ok_or_else(|| format!("no {key} in /proc/self/status"))?
        .parse()
        .map_err(|e| format!("{key}: {e}"))
}
