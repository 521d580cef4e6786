//! The run's table: one row per figure, beside its baseline from the same run, with the
//! target and whether it was met; and the formatting of latencies, rates and sizes.

use std::time::Duration;

use anyhow::bail;

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario's number.
    pub id: String,
    /// What was measured.
    pub scenario: String,
    /// This project's figure.
    pub ours: String,
    /// The baseline's figure, from the same run.
    pub baseline: String,
    /// Ours over the baseline.
    pub ratio: String,
    /// The target on the ratio, or "report".
    pub target: String,
    /// "met", "missed: …", "error" or "—".
    pub verdict: String,
}

impl Row {
    pub fn new(id: &str, scenario: impl Into<String>) -> Self {
        Self {
            id: id.to_owned(),
            scenario: scenario.into(),
            ours: String::new(),
            baseline: String::new(),
            ratio: String::new(),
            target: "report".to_owned(),
            verdict: "—".to_owned(),
        }
    }

    pub fn figures(mut self, ours: String, baseline: String, ratio: f64) -> Self {
        self.ours = ours;
        self.baseline = baseline;
        self.ratio = format!("{ratio:.2}×");
        self
    }

    /// A target on the ratio: met when `ratio <= max`.
    pub fn at_most(mut self, target: &str, ratio: f64, max: f64) -> Self {
        self.target = target.to_owned();
        self.verdict = verdict(ratio <= max, ratio, max);
        self
    }

    /// A target on the ratio: met when `ratio >= min`.
    pub fn at_least(mut self, target: &str, ratio: f64, min: f64) -> Self {
        self.target = target.to_owned();
        self.verdict = verdict(ratio >= min, ratio, min);
        self
    }
}

pub fn verdict(met: bool, ratio: f64, bound: f64) -> String {
    match (met, ratio > bound) {
        (true, _) => "met".to_owned(),
        // An upper bound: how many times over it.
        (false, true) => format!("missed: {:.1}× over", ratio / bound),
        // A lower bound: how much of it was reached.
        (false, false) => format!("missed: {:.0}% of it", 100.0 * ratio / bound),
    }
}

/// Latency percentiles of a set of samples.
#[derive(Debug, Clone, Copy)]
pub struct Lat {
    pub p50: Duration,
    pub p99: Duration,
    pub n: usize,
}

impl Lat {
    pub fn of(mut samples: Vec<Duration>) -> anyhow::Result<Self> {
        if samples.is_empty() {
            bail!("no samples");
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        Ok(Self {
            p50: at(0.50),
            p99: at(0.99),
            n: samples.len(),
        })
    }
}

impl std::fmt::Display for Lat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {} / p99 {} (n={})",
            us(self.p50),
            us(self.p99),
            self.n
        )
    }
}

pub fn us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

pub fn rate(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

pub fn per_s(r: f64) -> String {
    if r >= 10_000.0 {
        format!("{:.0}k/s", r / 1000.0)
    } else {
        format!("{r:.0}/s")
    }
}

pub fn mib(bytes: usize) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
pub fn print_table(rows: &[Row]) {
    println!("| # | scenario | this project | baseline (same run) | ratio | target | result |");
    println!("|---|---|---|---|---|---|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.id, r.scenario, r.ours, r.baseline, r.ratio, r.target, r.verdict
        );
    }
}
