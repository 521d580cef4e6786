//! The scenarios binary's smoke test (CI): `scenarios --quick` against a nats-server of its
//! own must finish and print a number for every scenario. No timing is asserted.

use std::collections::BTreeSet;
use std::process::Command;

#[test]
fn every_scenario_prints_figures_in_quick_mode() {
    let out = Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .arg("--quick")
        .output()
        .expect("run the scenarios binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "scenarios --quick failed ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    let mut seen = BTreeSet::new();
    for line in stdout.lines().skip(2) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert_eq!(cells.len(), 7, "not a table row: {line}");
        let id: u8 = cells[0]
            .parse()
            .unwrap_or_else(|_| panic!("bad id: {line}"));
        let number = |s: &str| s.chars().any(|c| c.is_ascii_digit());
        assert!(
            number(cells[2]) && number(cells[3]) && number(cells[4]),
            "scenario {id} printed no figures: {line}\nstderr:\n{stderr}"
        );
        assert_ne!(cells[6], "error", "{line}");
        seen.insert(id);
    }
    let all: BTreeSet<u8> = (1..=12).collect();
    assert_eq!(seen, all, "scenarios missing from the table:\n{stdout}");
}

#[test]
fn bad_arguments_are_refused_without_a_panic() {
    for args in [&["--only", "13"][..], &["--bogus"], &["--only", "x"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(args)
            .output()
            .expect("run the scenarios binary");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn on_a_three_server_cluster_scenarios_1_to_3_print_figures_beside_raw_r3_baselines() {
    let out = Command::new(env!("CARGO_BIN_EXE_scenarios"))
        .args(["--quick", "--cluster", "--only", "1,2,3"])
        .output()
        .expect("run the scenarios binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let ids: BTreeSet<&str> = stdout
        .lines()
        .skip(2)
        .map(|l| l.trim_matches('|').split(" | ").next().unwrap_or("").trim())
        .collect();
    assert_eq!(ids, BTreeSet::from(["1", "2", "3"]), "{stdout}");
    assert!(!stdout.contains("error"), "{stdout}\n{stderr}");
    // The streams were made with three replicas.
    assert!(stderr.contains("stream has 3 replicas"), "{stderr}");
}

#[test]
fn histories_over_other_key_counts_catch_up_to_the_same_document_as_automerge() {
    // Scenario 4 fails unless the caught-up replica's document equals automerge's.
    for keys in ["1", "1000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_scenarios"))
            .args(["--quick", "--only", "4", "--keys", keys])
            .output()
            .expect("run the scenarios binary");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "--keys {keys}: {stdout}\n{stderr}");
        assert!(stdout.contains("| 4 | catch-up"), "{stdout}");
        assert!(!stdout.contains("error"), "{stdout}\n{stderr}");
    }
}
