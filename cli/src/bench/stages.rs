//! Where scenario 1's time goes, stage by stage (`scenarios --stages`).
//!
//! The engine emits a `TRACE` event with target `blackboard::stage` at each step of a
//! change's way from `put` to another replica's watch (the writer's transaction, its sled
//! batch and fsync, the outbox, the publish and its acknowledgement, each follower's arrival,
//! apply, sled batch and announcement). [`layer`] stamps them as they happen; scenario 1
//! then prints, for each stage, the median time since its `put` began. Disabled, the events
//! cost a callsite check each.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, Layer};

/// The engine's stage events' target.
const TARGET: &str = "blackboard::stage";

/// Stamped stages, once [`layer`] was installed.
static STAMPS: OnceLock<Mutex<Vec<(String, Instant)>>> = OnceLock::new();

/// A `tracing` layer that stamps the engine's stage events.
#[derive(Debug)]
pub struct StageLayer;

/// The layer to install (with `tracing_subscriber::registry().with(..)`) for scenario 1 to
/// print its stages.
pub fn layer() -> StageLayer {
    STAMPS.get_or_init(Mutex::default);
    StageLayer
}

impl<S: tracing::Subscriber> Layer<S> for StageLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != TARGET {
            return;
        }
        let at = Instant::now();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let label = match fields.agent {
            Some(agent) => format!("{agent}: {}", fields.stage),
            None => fields.stage,
        };
        stamp(label, at);
    }
}

#[derive(Default)]
struct Fields {
    agent: Option<String>,
    stage: String,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "stage" {
            self.stage = value.to_owned();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "agent" => self.agent = Some(format!("{value:?}")),
            "stage" => self.stage = format!("{value:?}"),
            _ => {}
        }
    }
}

fn stamp(label: String, at: Instant) {
    if let Some(stamps) = STAMPS.get() {
        stamps
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((label, at));
    }
}

/// Whether stages are being stamped.
pub(super) fn recording() -> bool {
    STAMPS.get().is_some()
}

/// Stamps a stage of the bench itself (when recording).
pub(super) fn mark(label: &str) {
    if recording() {
        stamp(label.to_owned(), Instant::now());
    }
}

/// Everything stamped so far, taken.
pub(super) fn take() -> Vec<(String, Instant)> {
    STAMPS.get().map_or_else(Vec::new, |s| {
        std::mem::take(&mut *s.lock().unwrap_or_else(|p| p.into_inner()))
    })
}

/// The table: each stage's median time since the start of the sample it falls in (the
/// latest start before it), in order. A stage seen twice in a sample (a writer reads its
/// own event back as well) is numbered; the count says in how many samples it was seen.
/// The next `put` starts as soon as the other replica's watch has the event, while that
/// replica still stores it, so the tail of one sample can fall in the next: a stage seen in
/// fewer samples than the rest, with an early median, is such a tail.
pub(super) fn table(starts: &[Instant], stamps: Vec<(String, Instant)>) -> String {
    let mut by_stage: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    let mut seen: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for (label, at) in stamps {
        let Some(sample) = starts.iter().rposition(|s| *s <= at) else {
            continue;
        };
        let n = seen.entry((sample, label.clone())).or_default();
        *n += 1;
        let label = match *n {
            1 => label,
            n => format!("{label} (#{n})"),
        };
        by_stage.entry(label).or_default().push(at - starts[sample]);
    }
    let mut rows: Vec<(Duration, String, usize)> = by_stage
        .into_iter()
        .map(|(label, mut times)| {
            times.sort();
            (times[times.len() / 2], label, times.len())
        })
        .collect();
    rows.sort();
    let mut out = format!(
        "stages, median time since put began ({} samples):\n",
        starts.len()
    );
    for (median, label, count) in rows {
        let _ = writeln!(
            out,
            "    {:>7} µs  {label}  (in {count})",
            median.as_micros()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_stage_is_timed_from_the_start_of_its_own_sample() {
        let t = Instant::now();
        let ms = |n| t + Duration::from_millis(n);
        let starts = [ms(0), ms(100)];
        let stamps = vec![
            ("a: write".to_owned(), ms(1)),
            ("b: follow".to_owned(), ms(5)),
            ("b: follow".to_owned(), ms(7)),
            ("a: write".to_owned(), ms(103)),
            ("b: follow".to_owned(), ms(109)),
        ];
        let table = table(&starts, stamps);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "{table}");
        // Medians of two samples each: the upper one (index len / 2).
        assert!(lines[1].contains("3000 µs  a: write  (in 2)"), "{table}");
        assert!(
            lines[2].contains("7000 µs  b: follow (#2)  (in 1)"),
            "{table}"
        );
        assert!(lines[3].contains("9000 µs  b: follow  (in 2)"), "{table}");
    }
}
