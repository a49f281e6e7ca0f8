//! The Markdown report: one table per workload (figure, casella, each peer, ratio),
//! then per-server details, errors and what each column is.

use anyhow::{Result, bail};

use crate::server::Target;
use crate::workloads::{Better, Figure, Outcome};

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// The median over rounds of the figure `name`, and its shape.
fn value(rounds: &[Outcome], name: &str) -> (Option<f64>, Option<Figure>) {
    let figs: Vec<&Figure> = rounds
        .iter()
        .filter_map(|o| o.figures.iter().find(|f| f.name == name))
        .collect();
    let v = median(figs.iter().filter_map(|f| f.value).collect());
    (v, figs.first().map(|f| (*f).clone()))
}

fn fmt(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    // Thousands separators for the integer part.
    let (int, frac) = s
        .split_once('.')
        .map_or((s.as_str(), None), |(i, f)| (i, Some(f)));
    let (sign, digits) = int.strip_prefix('-').map_or(("", int), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

pub fn render(
    title: &str,
    targets: &[Target],
    results: &[Vec<Outcome>],
    notes: &[String],
) -> String {
    let mut md = format!("### {title}\n\n");
    // Figure names in order of first appearance.
    let mut names: Vec<String> = Vec::new();
    for rounds in results {
        for o in rounds {
            for f in &o.figures {
                if !names.contains(&f.name) {
                    names.push(f.name.clone());
                }
            }
        }
    }
    md.push_str("| figure |");
    let mut align = String::from("|---|");
    for (i, t) in targets.iter().enumerate() {
        md.push_str(&format!(" {} |", t.name));
        align.push_str("---:|");
        if i > 0 {
            md.push_str(&format!(" ratio {} |", t.name));
            align.push_str("---:|");
        }
    }
    md.push('\n');
    md.push_str(&align);
    md.push('\n');
    let errors: Vec<u64> = results
        .iter()
        .map(|r| r.iter().map(|o| o.errors.count).sum())
        .collect();
    for name in &names {
        let cells: Vec<(Option<f64>, Option<Figure>)> =
            results.iter().map(|r| value(r, name)).collect();
        let shape = cells.iter().find_map(|c| c.1.clone());
        let Some(shape) = shape else { continue };
        md.push_str(&format!("| {name} |"));
        let base = cells[0].0;
        for (i, (v, f)) in cells.iter().enumerate() {
            let cell = match (v, f) {
                (Some(v), _) => {
                    let mut s = fmt(*v, shape.decimals);
                    if errors[i] > 0 {
                        s.push_str(" (invalid)");
                    }
                    s
                }
                (None, Some(f)) => f.na.clone().map_or("n/a".into(), |w| format!("n/a ({w})")),
                (None, None) => "n/a".into(),
            };
            md.push_str(&format!(" {cell} |"));
            if i > 0 {
                let ratio = match (shape.better, base, v) {
                    (Better::Higher, Some(c), Some(d)) if *d > 0.0 => Some(c / d),
                    (Better::Lower, Some(c), Some(d)) if c > 0.0 => Some(d / c),
                    _ => None,
                };
                md.push_str(&match ratio {
                    Some(r) => format!(" {r:.2}× |"),
                    None => " |".into(),
                });
            }
        }
        md.push('\n');
    }
    md.push_str("| protocol errors |");
    for (i, e) in errors.iter().enumerate() {
        md.push_str(&format!(" {e} |"));
        if i > 0 {
            md.push_str(" |");
        }
    }
    md.push_str("\n\n");
    md.push_str(
        "ratio: how many times better casella is than that server (casella ÷ it for rates, \
         it ÷ casella for times and memory); above 1 casella is better.\n\n",
    );
    let mut details = String::new();
    for (t, rounds) in targets.iter().zip(results) {
        for (r, o) in rounds.iter().enumerate() {
            if o.details.is_empty() && o.errors.count == 0 {
                continue;
            }
            details.push_str(&format!("{} (round {}):\n", t.name, r + 1));
            for d in &o.details {
                details.push_str(&format!("  {d}\n"));
            }
            if o.errors.count > 0 {
                details.push_str(&format!(
                    "  {} protocol errors; first ones:\n",
                    o.errors.count
                ));
                for e in &o.errors.first {
                    details.push_str(&format!("    {e}\n"));
                }
            }
        }
    }
    if !details.is_empty() {
        md.push_str("```\n");
        md.push_str(&details);
        md.push_str("```\n\n");
    }
    for t in targets {
        md.push_str(&format!("- {}: {}\n", t.name, t.description));
    }
    for n in notes {
        md.push_str(&format!("- {n}\n"));
    }
    md
}

/// Quick mode's own check: no errors, and the first figure of each server has a
/// positive value (the workload did something).
pub fn check_quick(title: &str, results: &[Vec<Outcome>]) -> Result<()> {
    for rounds in results {
        for o in rounds {
            if o.errors.count > 0 {
                bail!("{title}: {} errors: {:?}", o.errors.count, o.errors.first);
            }
            match o.figures.first() {
                Some(f) if f.value.is_some_and(|v| v > 0.0) => {}
                other => bail!("{title}: no result ({other:?})"),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(fmt(1234567.891, 1), "1,234,567.9");
        assert_eq!(fmt(999.0, 0), "999");
        assert_eq!(fmt(-1234.0, 0), "-1,234");
        assert_eq!(fmt(0.5, 2), "0.50");
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![]), None);
    }
}
