//! Result rows: the printed table and `bench/results/<name>.json`.

use std::path::PathBuf;

use serde::Serialize;

/// One measured figure.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) metric: String,
    pub(crate) value: f64,
    pub(crate) unit: &'static str,
    pub(crate) baseline: Option<f64>,
    pub(crate) ratio: Option<f64>,
    pub(crate) target: Option<f64>,
    pub(crate) pass: Option<bool>,
    /// The target is a ceiling, not a floor (not in the JSON: `pass` says it).
    #[serde(skip)]
    pub(crate) ceiling: bool,
}

impl Row {
    /// A figure with no baseline and no target.
    pub(crate) fn info(metric: impl Into<String>, value: f64, unit: &'static str) -> Self {
        Self {
            metric: metric.into(),
            value,
            unit,
            baseline: None,
            ratio: None,
            target: None,
            pass: None,
            ceiling: false,
        }
    }

    /// A figure compared with a same-run baseline; passes when `ratio >= min_ratio`. The caller gives the
    /// ratio: the median of per-round ratios, which cancels drift between rounds better than the ratio of
    /// two medians.
    pub(crate) fn against(
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: f64,
        ratio: f64,
        min_ratio: f64,
    ) -> Self {
        Self {
            baseline: Some(baseline),
            ratio: Some(ratio),
            target: Some(min_ratio),
            pass: Some(ratio >= min_ratio),
            ..Self::info(metric, value, unit)
        }
    }

    /// A figure compared with a same-run baseline, with no target: the ratio informs.
    pub(crate) fn compared(
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: f64,
        ratio: f64,
    ) -> Self {
        Self { baseline: Some(baseline), ratio: Some(ratio), ..Self::info(metric, value, unit) }
    }

    /// A figure compared with a same-run baseline; passes when `ratio <= max_ratio` (printed as `≤`).
    pub(crate) fn against_at_most(
        metric: impl Into<String>,
        value: f64,
        unit: &'static str,
        baseline: f64,
        ratio: f64,
        max_ratio: f64,
    ) -> Self {
        Self {
            baseline: Some(baseline),
            ratio: Some(ratio),
            target: Some(max_ratio),
            pass: Some(ratio <= max_ratio),
            ceiling: true,
            ..Self::info(metric, value, unit)
        }
    }

    /// A figure with an absolute target: passes when `value >= min`.
    pub(crate) fn at_least(metric: impl Into<String>, value: f64, unit: &'static str, min: f64) -> Self {
        Self { target: Some(min), pass: Some(value >= min), ..Self::info(metric, value, unit) }
    }

    /// A figure with an absolute ceiling: passes when `value <= max` (printed as `≤ max`; the JSON's
    /// target is the ceiling).
    pub(crate) fn at_most(metric: impl Into<String>, value: f64, unit: &'static str, max: f64) -> Self {
        Self { target: Some(max), pass: Some(value <= max), ceiling: true, ..Self::info(metric, value, unit) }
    }
}

fn number(v: f64) -> String {
    if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.2}") }
}

/// Prints the rows as a Markdown table (so it can be pasted into the README).
pub(crate) fn print(name: &str, rows: &[Row]) {
    println!("\n## bench {name}\n");
    println!("| metric | value | unit | baseline | ratio | target | pass |");
    println!("|---|---:|---|---:|---:|---:|---|");
    for r in rows {
        let opt = |v: Option<f64>| v.map(number).unwrap_or_else(|| "–".into());
        let pass = match r.pass {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let target = match (r.target, r.ratio) {
            (Some(t), Some(_)) if r.ceiling => format!("≤ {t:.2}×"),
            (Some(t), Some(_)) => format!("≥ {t:.2}×"),
            (Some(t), None) if r.ceiling => format!("≤ {}", number(t)),
            (Some(t), None) => format!("≥ {}", number(t)),
            (None, _) => "–".into(),
        };
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            r.metric,
            number(r.value),
            r.unit,
            opt(r.baseline),
            r.ratio.map(|x| format!("{x:.2}×")).unwrap_or_else(|| "–".into()),
            target,
            pass
        );
    }
}

/// Writes `bench/results/<name>.json`.
pub(crate) fn write(name: &str, rows: &[Row]) -> anyhow::Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(rows)? + "\n")?;
    Ok(path)
}
