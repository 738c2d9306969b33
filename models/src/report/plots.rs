//! The report's plots, drawn with plotters into SVG text: ROC curve, precision-recall curve and
//! score histograms per class. Curves are thinned to about a thousand points (a step smaller than
//! a pixel is invisible), so a plot stays a few tens of kilobytes whatever the test set's size.

use super::ReportError;
use crate::metrics::{PrPoint, RocPoint};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

const SIZE: (u32, u32) = (640, 480);
const FRAUD: RGBColor = RGBColor(200, 40, 40);
const GENUINE: RGBColor = RGBColor(40, 90, 200);

fn plot_error(path: &Path) -> impl Fn(&dyn std::fmt::Display) -> ReportError + '_ {
    move |e| ReportError::Plot { path: path.to_path_buf(), message: e.to_string() }
}

/// Keeps the first and last points and every point at least `step` away (in either coordinate)
/// from the last one kept.
fn thin(points: impl IntoIterator<Item = (f64, f64)>, step: f64) -> Vec<(f64, f64)> {
    let mut out: Vec<(f64, f64)> = Vec::new();
    let mut pending = None;
    for p in points {
        match out.last() {
            Some(&(x, y)) if (p.0 - x).abs() < step && (p.1 - y).abs() < step => pending = Some(p),
            _ => {
                out.push(p);
                pending = None;
            }
        }
    }
    out.extend(pending);
    out
}

fn curve(
    path: PathBuf,
    caption: &str,
    (x_desc, y_desc): (&str, &str),
    label: String,
    points: Vec<(f64, f64)>,
    diagonal: bool,
) -> Result<String, ReportError> {
    let err = plot_error(&path);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..1f64, 0f64..1.02f64)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(|e| err(&e))?;
        if diagonal {
            chart
                .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], BLACK.mix(0.3)))
                .map_err(|e| err(&e))?;
        }
        chart
            .draw_series(LineSeries::new(points, GENUINE.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(label)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], GENUINE.stroke_width(2)));
        chart
            .configure_series_labels()
            .position(if diagonal {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The ROC curve, with the diagonal of a random score.
pub(super) fn roc(path: PathBuf, points: &[RocPoint], auc: f64) -> Result<String, ReportError> {
    let points = thin(points.iter().map(|p| (p.fpr, p.tpr)), 1e-3);
    curve(
        path,
        "ROC curve",
        ("false positive rate", "true positive rate (recall)"),
        format!("AUC ROC {auc:.4}"),
        points,
        true,
    )
}

/// The precision-recall curve.
pub(super) fn pr(path: PathBuf, points: &[PrPoint], ap: f64) -> Result<String, ReportError> {
    let points = thin(points.iter().map(|p| (p.recall, p.precision)), 1e-3);
    curve(
        path,
        "Precision-recall curve",
        ("recall", "precision"),
        format!("average precision {ap:.4}"),
        points,
        false,
    )
}

/// Score histograms of the two classes, each as the share of its class per bin (frauds are
/// rare: counts would hide them).
pub(super) fn histograms(path: PathBuf, scores: &[f64], labels: &[bool]) -> Result<String, ReportError> {
    const BINS: usize = 40;
    let err = plot_error(&path);
    let (mut lo, mut hi) =
        scores.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &s| (l.min(s), h.max(s)));
    if lo >= 0.0 && hi <= 1.0 {
        (lo, hi) = (0.0, 1.0);
    } else if hi <= lo {
        hi = lo + 1.0;
    }
    let width = (hi - lo) / BINS as f64;
    let mut counts = [[0u64; BINS]; 2];
    for (&s, &y) in scores.iter().zip(labels) {
        let bin = (((s - lo) / width) as usize).min(BINS - 1);
        counts[usize::from(y)][bin] += 1;
    }
    let shares: Vec<Vec<f64>> = counts
        .iter()
        .map(|c| {
            let total = c.iter().sum::<u64>().max(1) as f64;
            c.iter().map(|&n| n as f64 / total).collect()
        })
        .collect();
    let top = shares.iter().flatten().fold(0.0f64, |a, &b| a.max(b)).max(1e-9) * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("Score histograms per class", ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(50)
            .build_cartesian_2d(lo..hi, 0f64..top)
            .map_err(|e| err(&e))?;
        chart.configure_mesh().x_desc("score").y_desc("share of the class").draw().map_err(|e| err(&e))?;
        for (class, color, name) in [(0, GENUINE, "genuine"), (1, FRAUD, "fraud")] {
            let n: u64 = counts[class].iter().sum();
            chart
                .draw_series(shares[class].iter().enumerate().map(|(b, &h)| {
                    let x0 = lo + b as f64 * width;
                    Rectangle::new([(x0, 0.0), (x0 + width, h)], color.mix(0.45).filled())
                }))
                .map_err(|e| err(&e))?
                .label(format!("{name} ({n})"))
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.mix(0.45).filled())
                });
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::thin;

    #[test]
    fn thinning_keeps_the_ends_and_drops_sub_step_moves() {
        let points: Vec<(f64, f64)> = (0..=1000).map(|i| (i as f64 / 1000.0, 0.0)).collect();
        let kept = thin(points, 0.01);
        assert_eq!(kept.first(), Some(&(0.0, 0.0)));
        assert_eq!(kept.last(), Some(&(1.0, 0.0)));
        assert!(kept.len() <= 102, "{} points kept", kept.len());
    }
}
