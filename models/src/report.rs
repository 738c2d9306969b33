//! What an evaluation leaves behind: a report page (HTML with the plots inline, or Markdown
//! linking them) with ROC and precision-recall curves, score histograms per class, the confusion
//! matrix and the threshold table; the per-transaction scores file anyone can recompute the
//! metrics from; and the model card, the JSON sidecar of a model file.

mod card;
mod plots;
mod scores;

pub use card::ModelCard;
pub use scores::{ScoresFile, read_scores, write_scores};

use crate::metrics::{self, ConfusionMatrix, MetricError};
use crate::threshold::{Outcomes, ThresholdChoice, ThresholdError};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Why a report, scores file or model card could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file could not be created, written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A plot could not be drawn.
    #[error("{path}: drawing the plot failed: {message}")]
    Plot {
        /// The plot's file.
        path: PathBuf,
        /// What plotters said.
        message: String,
    },
    /// A scores file is malformed.
    #[error("{path}: {message}")]
    Scores {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (line or row).
        message: String,
    },
    /// A model card is not the JSON this version writes.
    #[error("{path}: not a model card: {source}")]
    Card {
        /// The file.
        path: PathBuf,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The file extension names no format this writes.
    #[error("{path}: unknown extension; use .csv or .parquet")]
    Extension {
        /// The file.
        path: PathBuf,
    },
    /// The scores cannot be evaluated.
    #[error("report: {0}")]
    Metric(#[from] MetricError),
    /// A threshold could not be chosen.
    #[error("report: {0}")]
    Threshold(#[from] ThresholdError),
}

/// The report page's format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PageFormat {
    /// One self-contained `index.html`, the SVGs inline.
    Html,
    /// `index.md`, linking the SVG files beside it.
    Markdown,
}

/// Everything a report shows, borrowed from the evaluation.
#[derive(Clone, Debug)]
pub struct Report<'a> {
    /// The page's title.
    pub title: String,
    /// One score per transaction.
    pub scores: &'a [f64],
    /// True for fraud.
    pub labels: &'a [bool],
    /// Each transaction's day (for alerts per day and card precision).
    pub days: &'a [i64],
    /// Each transaction's card (for card precision@100).
    pub cards: &'a [u32],
    /// Each transaction's amount (for the cost of a threshold).
    pub amounts: &'a [f64],
    /// The threshold of the confusion matrix.
    pub threshold: f64,
    /// The cost of reviewing one alert, for the net saving column.
    pub review_cost: f64,
    /// Thresholds chosen by some rule, with the rule's name.
    pub choices: Vec<(String, ThresholdChoice)>,
    /// Lines shown under the title (model file, features, training period ...).
    pub notes: Vec<String>,
}

/// Fixed thresholds of the threshold table.
const TABLE_THRESHOLDS: [f64; 9] = [0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9];
/// Alert budgets (per day) of the threshold table.
const TABLE_BUDGETS: [usize; 6] = [10, 25, 50, 100, 200, 500];

impl Report<'_> {
    /// Writes `roc.svg`, `pr.svg`, `histogram.svg` and the page (`index.html` or `index.md`) into
    /// `dir`, creating it; returns the page's path.
    pub fn write(&self, dir: &Path, format: PageFormat) -> Result<PathBuf, ReportError> {
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;
        let roc = metrics::roc_curve(self.scores, self.labels)?;
        let pr = metrics::precision_recall_curve(self.scores, self.labels)?;
        let auc = metrics::roc_auc(self.scores, self.labels)?;
        let ap = metrics::average_precision(self.scores, self.labels)?;
        let cp = metrics::card_precision_at_k(self.scores, self.labels, self.cards, self.days, 100)?;
        let svgs = [
            ("roc.svg", "ROC curve", plots::roc(dir.join("roc.svg"), &roc, auc)?),
            ("pr.svg", "Precision-recall curve", plots::pr(dir.join("pr.svg"), &pr, ap)?),
            (
                "histogram.svg",
                "Score histograms per class",
                plots::histograms(dir.join("histogram.svg"), self.scores, self.labels)?,
            ),
        ];
        for (name, _, svg) in &svgs {
            let path = dir.join(name);
            std::fs::write(&path, svg).map_err(|source| ReportError::Io { path, source })?;
        }
        let m = ConfusionMatrix::at_threshold(self.scores, self.labels, self.threshold)?;
        let outcomes = Outcomes::new(self.scores, self.labels, self.days, self.amounts)?
            .with_review_cost(self.review_cost)?;
        let mut rows: Vec<(String, ThresholdChoice)> = self.choices.clone();
        rows.extend(TABLE_BUDGETS.iter().map(|&k| (format!("{k} alerts/day"), outcomes.by_alert_budget(k))));
        rows.extend(TABLE_THRESHOLDS.iter().map(|&t| (format!("fixed {t}"), outcomes.at(t))));

        let frauds = self.labels.iter().filter(|&&y| y).count();
        let mut body = Body::new(format);
        body.heading(1, &self.title);
        for note in &self.notes {
            body.para(note);
        }
        body.heading(2, "Headline metrics");
        body.table(
            &["transactions", "frauds", "days", "AUC ROC", "Average precision", "Card precision@100"],
            &[vec![
                self.scores.len().to_string(),
                frauds.to_string(),
                outcomes.days().to_string(),
                format!("{auc:.4}"),
                format!("{ap:.4}"),
                format!("{:.4}", cp.mean),
            ]],
        );
        body.heading(2, &format!("Confusion matrix at threshold {:.6}", self.threshold));
        body.table(
            &["", "flagged", "passed"],
            &[
                vec!["fraud".into(), m.true_positives.to_string(), m.false_negatives.to_string()],
                vec!["genuine".into(), m.false_positives.to_string(), m.true_negatives.to_string()],
            ],
        );
        body.para(&format!(
            "precision {:.4}, recall {:.4}, F1 {:.4}, false positive rate {:.6}",
            m.precision(),
            m.recall(),
            m.f1(),
            m.false_positive_rate()
        ));
        body.heading(2, "Thresholds");
        body.para("Each row flags every transaction scoring at or above its threshold. Net saving = fraud amount flagged - review cost x alerts.");
        let table_rows: Vec<Vec<String>> = rows
            .iter()
            .map(|(name, c)| {
                vec![
                    name.clone(),
                    format!("{:.6}", c.threshold),
                    c.flagged.to_string(),
                    format!("{:.1}", c.alerts_per_day),
                    format!("{:.4}", c.precision),
                    format!("{:.4}", c.recall),
                    format!("{:.2}", c.fraud_amount_flagged),
                    format!("{:.2}", c.net_saving),
                ]
            })
            .collect();
        body.table(
            &[
                "rule",
                "threshold",
                "alerts",
                "alerts/day",
                "precision",
                "recall",
                "fraud amount flagged",
                "net saving",
            ],
            &table_rows,
        );
        for (name, title, svg) in &svgs {
            body.heading(2, title);
            body.image(name, title, svg);
        }
        let page = dir.join(match format {
            PageFormat::Html => "index.html",
            PageFormat::Markdown => "index.md",
        });
        std::fs::write(&page, body.finish(&self.title))
            .map_err(|source| ReportError::Io { path: page.clone(), source })?;
        Ok(page)
    }
}

/// The page being written, in one of the two formats.
struct Body {
    format: PageFormat,
    text: String,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Body {
    fn new(format: PageFormat) -> Body {
        Body { format, text: String::new() }
    }

    fn heading(&mut self, level: usize, text: &str) {
        match self.format {
            PageFormat::Html => {
                let _ = writeln!(self.text, "<h{level}>{}</h{level}>", escape(text));
            }
            PageFormat::Markdown => {
                let _ = writeln!(self.text, "{} {text}\n", "#".repeat(level));
            }
        }
    }

    fn para(&mut self, text: &str) {
        match self.format {
            PageFormat::Html => {
                let _ = writeln!(self.text, "<p>{}</p>", escape(text));
            }
            PageFormat::Markdown => {
                let _ = writeln!(self.text, "{text}\n");
            }
        }
    }

    fn table(&mut self, header: &[&str], rows: &[Vec<String>]) {
        match self.format {
            PageFormat::Html => {
                self.text.push_str("<table>\n<tr>");
                for h in header {
                    let _ = write!(self.text, "<th>{}</th>", escape(h));
                }
                self.text.push_str("</tr>\n");
                for row in rows {
                    self.text.push_str("<tr>");
                    for cell in row {
                        let _ = write!(self.text, "<td>{}</td>", escape(cell));
                    }
                    self.text.push_str("</tr>\n");
                }
                self.text.push_str("</table>\n");
            }
            PageFormat::Markdown => {
                let _ = writeln!(self.text, "| {} |", header.join(" | "));
                let _ = writeln!(self.text, "|{}", " --- |".repeat(header.len()));
                for row in rows {
                    let _ = writeln!(self.text, "| {} |", row.join(" | "));
                }
                self.text.push('\n');
            }
        }
    }

    fn image(&mut self, file: &str, title: &str, svg: &str) {
        match self.format {
            PageFormat::Html => {
                // The SVG inline (its XML declaration dropped), so the page stands alone.
                let start = svg.find("<svg").unwrap_or(0);
                let _ = writeln!(self.text, "<figure>{}</figure>", &svg[start..]);
            }
            PageFormat::Markdown => {
                let _ = writeln!(self.text, "![{title}]({file})\n");
            }
        }
    }

    fn finish(self, title: &str) -> String {
        match self.format {
            PageFormat::Html => format!(
                "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>body{{font-family:sans-serif;max-width:960px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style>\n</head>\n<body>\n{}</body>\n</html>\n",
                escape(title),
                self.text
            ),
            PageFormat::Markdown => self.text,
        }
    }
}
