//! HTML and Markdown views of a [`Report`].
//!
//! `report.html` is one self-contained file (inline CSS and SVG, no scripts, no external
//! references) so that it can be mailed or opened on a ward machine without network access.
//! Every piece of text that comes from user data (labels, file names, messages, model names) is
//! escaped: labels are whatever the training file said.

use std::error::Error;
use std::fmt::Write as _;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{AverageReport, ClassReport, ConfusionMatrix, HistoryPoint, Report, ReportTask, ThresholdSource};

/// Rows left out are listed up to this many; report.json has them all.
const MAX_PROBLEMS: usize = 200;
/// Chart legends cut labels to this many characters.
const LEGEND_CHARS: usize = 40;
const CHART_SIZE: (u32, u32) = (560, 420);
/// More curves than this get no legend (it would cover the chart); the AUCs are in the table.
const MAX_LEGEND: usize = 12;
/// Points drawn per ROC curve.
const MAX_CURVE_POINTS: usize = 1000;

const CLASS_HEADERS: [&str; 9] =
    ["Label", "Precision", "Recall", "F1", "Support", "Sensitivity", "Specificity", "ROC-AUC", "AP"];

// ---------------------------------------------------------------------------------------------
// Text shared by both formats (plain, unescaped: each format escapes on output)
// ---------------------------------------------------------------------------------------------

/// A threshold as written in rules: exact, because a rounded cut-off would not reproduce.
pub(super) fn threshold_text(t: f64) -> String {
    format!("{t}")
}

fn f3(x: f64) -> String {
    format!("{x:.3}")
}

fn opt3(x: Option<f64>) -> String {
    x.map_or_else(|| "n/a".to_string(), f3)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn task_name(task: ReportTask) -> &'static str {
    match task {
        ReportTask::Multiclass => "multi-class (one label per note)",
        ReportTask::Binary => "binary",
        ReportTask::Multilabel => "multi-label (any number of labels per note)",
    }
}

fn or_unknown(s: &str) -> &str {
    if s.is_empty() {
        "not recorded"
    } else {
        s
    }
}

/// Header facts: (field, value).
fn header_rows(r: &Report) -> Vec<(&'static str, String)> {
    let mut rows = vec![
        ("Model", or_unknown(&r.model).to_string()),
        ("Data", or_unknown(&r.data).to_string()),
        ("Split", r.split.clone()),
        ("Notes", r.n.to_string()),
        (
            "Task",
            match r.positive_label() {
                Some(pos) => format!("{} (positive label: {pos})", task_name(r.task)),
                None => task_name(r.task).to_string(),
            },
        ),
        ("Labels", r.labels.len().to_string()),
    ];
    if let Some(e) = r.best_epoch {
        let by = r.selection_metric.as_deref().map(|m| format!(" (selected by validation {m})")).unwrap_or_default();
        rows.push(("Best epoch", format!("{e}{by}")));
    }
    rows.push(("Created by", or_unknown(&r.created_by).to_string()));
    rows
}

/// Headline numbers: (name, value, what it means).
fn headline(r: &Report) -> Vec<(String, String, &'static str)> {
    let mut items = vec![
        match r.task {
            ReportTask::Multilabel => {
                ("Exact-match accuracy".into(), f3(r.accuracy), "share of notes with every label right")
            }
            _ => ("Accuracy".into(), f3(r.accuracy), "share of notes whose predicted label is right"),
        },
        ("Macro-F1".into(), f3(r.macro_f1), "F1 averaged over labels, each label counting equally"),
        ("Weighted-F1".into(), f3(r.weighted_f1), "F1 averaged over labels, weighted by how often they occur"),
        ("ROC-AUC (macro)".into(), opt3(r.roc_auc_macro), "ranking quality: 0.5 is chance, 1 is perfect"),
        ("PR-AUC (macro)".into(), opt3(r.pr_auc_macro), "average precision; compare with how common each label is"),
        ("ECE".into(), f3(r.calibration.ece), "calibration error: 0 means confidence matches accuracy"),
    ];
    if let (Some(pos_label), ReportTask::Binary) = (r.positive_label(), r.task) {
        let neg_label = &r.labels[0];
        if let (Some(pos), Some(neg)) = (r.per_class.get(pos_label), r.per_class.get(neg_label)) {
            items.push(("Sensitivity".into(), f3(pos.sensitivity), "share of positive notes flagged"));
            items.push(("Specificity".into(), f3(pos.specificity), "share of negative notes not flagged"));
            items.push(("PPV".into(), f3(pos.precision), "share of flagged notes that are positive"));
            items.push(("NPV".into(), f3(neg.precision), "share of unflagged notes that are negative"));
        }
    }
    let threshold = r.decision.threshold.map_or_else(|| "most probable label".to_string(), threshold_text);
    items.push(("Decision threshold".into(), threshold, "see the decision rule below"));
    items.push(match (r.decision.min_confidence, r.decision.uncertain_share) {
        (Some(min), Some(share)) => (
            format!("Uncertain (below {})", threshold_text(min)),
            pct(share),
            "notes below the minimum confidence, left for a human",
        ),
        _ => ("Uncertain".into(), "not set".into(), "no minimum confidence was set"),
    });
    items
}

/// The decision rule and its provenance, one sentence each.
fn decision_lines(r: &Report) -> Vec<String> {
    let d = &r.decision;
    let mut lines = vec![format!("Prediction: {}.", d.rule)];
    match d.chosen_by {
        ThresholdSource::Default if d.threshold.is_some() => lines.push("The threshold is the default.".into()),
        ThresholdSource::Default => {}
        ThresholdSource::Given => lines.push("The threshold was set by the user.".into()),
        ThresholdSource::TargetSensitivity => lines.push(format!(
            "The threshold was chosen on the {} split as the strictest that reaches sensitivity {}: there it \
             reached sensitivity {} and specificity {}.",
            d.chosen_on.as_deref().unwrap_or("?"),
            d.target_sensitivity.map_or_else(|| "?".into(), threshold_text),
            opt3(d.reached_sensitivity),
            opt3(d.reached_specificity),
        )),
    }
    if let (Some(min), Some(n), Some(share)) = (d.min_confidence, d.uncertain, d.uncertain_share) {
        lines.push(format!(
            "{} ({}) have confidence below {} and would be left for a human; accuracy on the rest: {}.",
            plural(n, "note", "notes"),
            pct(share),
            threshold_text(min),
            opt3(d.accuracy_on_confident),
        ));
    }
    lines.extend(d.notes.iter().map(|n| format!("Note: {n}.")));
    lines
}

/// The head's features, how a probe was fitted, the probe beside fine-tuning, and the
/// recipe warnings, as sentences.
fn recipe_lines(r: &Report) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(f) = &r.head_features {
        lines.push(format!("The classifier reads {f} features."));
    }
    if let Some(p) = &r.probe {
        let scaling = if p.standardize { ", standardised features" } else { "" };
        let how = if p.c_auto { format!("chosen on validation by {}", p.metric) } else { "given".into() };
        lines.push(format!("Logistic regression with C = {} ({how}){scaling}.", p.c));
        if p.c_auto {
            let grid: Vec<String> = p.c_grid.iter().map(|g| format!("C {}: {}", g.c, opt3(g.validation))).collect();
            lines.push(format!("Validation {} per C: {}.", p.metric, grid.join(", ")));
        }
    }
    if let Some(b) = &r.baseline_probe {
        lines.push(format!(
            "Frozen-encoder probe ({} features, C = {}) on validation: {} {}; fine-tuned: {}.",
            b.features,
            b.c,
            b.metric,
            opt3(b.probe_validation),
            opt3(b.fine_tuned_validation)
        ));
    }
    lines.extend(r.warnings.iter().map(|w| format!("Warning: {w}")));
    lines
}

fn class_cells(c: &ClassReport) -> [String; 8] {
    [
        f3(c.precision),
        f3(c.recall),
        f3(c.f1),
        c.support.to_string(),
        f3(c.sensitivity),
        f3(c.specificity),
        opt3(c.roc_auc),
        opt3(c.average_precision),
    ]
}

fn average_cells(a: &AverageReport) -> [String; 8] {
    let blank = String::new;
    [f3(a.precision), f3(a.recall), f3(a.f1), a.support.to_string(), blank(), blank(), blank(), blank()]
}

/// Per-class rows in label order, then the averages: (label, is an average, cells).
fn class_table(r: &Report) -> Vec<(String, bool, [String; 8])> {
    let mut rows: Vec<_> =
        r.labels.iter().filter_map(|l| r.per_class.get(l).map(|c| (l.clone(), false, class_cells(c)))).collect();
    if let Some(micro) = &r.micro_avg {
        rows.push(("micro avg".into(), true, average_cells(micro)));
    }
    rows.push(("macro avg".into(), true, average_cells(&r.macro_avg)));
    rows.push(("weighted avg".into(), true, average_cells(&r.weighted_avg)));
    rows
}

/// Epochs when each appears once, else steps (several points per epoch).
fn history_by_epoch(history: &[HistoryPoint]) -> bool {
    history.windows(2).all(|w| w[0].epoch < w[1].epoch)
}

fn problem_intro(r: &Report) -> String {
    match r.problems.len() {
        0 => "No rows were left out of the data.".into(),
        n => format!("{} left out of the data (file:line, kind, message).", plural(n, "row was", "rows were")),
    }
}

fn problem_rest(r: &Report) -> Option<String> {
    let rest = r.problems.len().checked_sub(MAX_PROBLEMS).filter(|&n| n > 0)?;
    Some(format!("… and {rest} more (report.json lists all {}).", r.problems.len()))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTML
// ---------------------------------------------------------------------------------------------

/// Escapes text for HTML element content and quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;color:#1f2933;background:#f7f8fa;margin:0;line-height:1.45}
main{max-width:1100px;margin:0 auto;padding:1.5rem}
h1{margin:.2rem 0 1rem;font-size:1.6rem}h2{font-size:1.2rem;margin:2rem 0 .6rem;border-bottom:1px solid #d9dee5;padding-bottom:.3rem}
section,header{background:#fff;border-radius:8px;padding:1rem 1.2rem;margin-bottom:1rem;box-shadow:0 1px 2px rgba(0,0,0,.06)}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:0}dl.meta dt{font-weight:600;color:#52606d}dl.meta dd{margin:0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(165px,1fr));gap:.7rem}
.card{border:1px solid #d9dee5;border-radius:6px;padding:.6rem .8rem}.card .v{font-size:1.5rem;font-weight:650}.card .n{font-weight:600}.card .h{font-size:.8rem;color:#616e7c}
table{border-collapse:collapse;margin:.4rem 0;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d9dee5;padding:.3rem .6rem;text-align:right}th{background:#eef1f5}
td.l,th.l{text-align:left}tr.avg td{font-weight:600;background:#f5f7fa}
table.confusion td{min-width:3.5rem;text-align:center}table.confusion small{display:block;color:#3e4c59;font-size:.75rem}
.confusions{display:flex;flex-wrap:wrap;gap:1.2rem}caption{font-weight:600;text-align:left;padding-bottom:.2rem}
.hint{color:#616e7c;font-size:.9rem}svg{max-width:100%;height:auto}
ol.problems{font-size:.9rem}code{font-size:.85rem}footer{color:#616e7c;font-size:.85rem;margin-top:1rem}
";

/// The whole report as one self-contained HTML page.
pub fn render_html(r: &Report) -> String {
    let mut h = String::new();
    let title = format!("Evaluation report: {} on {}", or_unknown(&r.model), r.split);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        esc(&title)
    );

    h.push_str("<header>\n<h1>Evaluation report</h1>\n<dl class=\"meta\">\n");
    for (k, v) in header_rows(r) {
        let _ = writeln!(h, "<dt>{k}</dt><dd>{}</dd>", esc(&v));
    }
    h.push_str("</dl>\n</header>\n");

    h.push_str("<section>\n<h2>Headline</h2>\n<div class=\"cards\">\n");
    for (name, value, hint) in headline(r) {
        let _ = writeln!(
            h,
            "<div class=\"card\"><div class=\"n\">{}</div><div class=\"v\">{}</div><div class=\"h\">{}</div></div>",
            esc(&name),
            esc(&value),
            esc(hint)
        );
    }
    h.push_str("</div>\n<h2>Decision rule</h2>\n");
    for line in decision_lines(r) {
        let _ = writeln!(h, "<p>{}</p>", esc(&line));
    }
    let recipe = recipe_lines(r);
    if !recipe.is_empty() {
        h.push_str("<h2>Recipe</h2>\n");
        for line in recipe {
            let _ = writeln!(h, "<p>{}</p>", esc(&line));
        }
    }
    h.push_str("</section>\n");

    html_class_table(&mut h, r);
    html_confusion(&mut h, r);

    h.push_str("<section>\n<h2>ROC curves</h2>\n");
    match roc_chart(r) {
        Some(svg) => h.push_str(&svg),
        None => h.push_str("<p class=\"hint\">No label has both positive and negative notes: no ROC curve.</p>"),
    }
    h.push_str(
        "\n<p class=\"hint\">Each curve shows, for one label against the rest, the sensitivity reached \
                (up) for the share of other notes flagged (right). The dashed diagonal is chance.</p>\n",
    );
    if r.roc_curves.len() > MAX_LEGEND {
        let _ = writeln!(
            h,
            "<p class=\"hint\">{} curves: too many for a legend; each label's ROC-AUC is in the per-class table.</p>",
            r.roc_curves.len()
        );
    }
    h.push_str("</section>\n");

    html_calibration(&mut h, r);
    html_history(&mut h, r);

    if let Some(scrub) = &r.scrub {
        h.push_str(
            "<section>\n<h2>PHI scrubbing</h2>\n<table>\n<tr><th class=\"l\">Kind</th><th>Replacements</th></tr>\n",
        );
        for (kind, n) in scrub {
            let _ = writeln!(h, "<tr><td class=\"l\">{}</td><td>{n}</td></tr>", esc(kind));
        }
        h.push_str("</table>\n</section>\n");
    }

    let _ = writeln!(h, "<section>\n<h2>Rows left out</h2>\n<p>{}</p>", esc(&problem_intro(r)));
    if !r.problems.is_empty() {
        h.push_str("<ol class=\"problems\">\n");
        for p in r.problems.iter().take(MAX_PROBLEMS) {
            let at = format!("{}:{}", p.file.to_string_lossy(), p.line);
            let _ = writeln!(h, "<li><code>{}</code> {}: {}</li>", esc(&at), esc(p.kind.as_str()), esc(&p.message));
        }
        h.push_str("</ol>\n");
        if let Some(rest) = problem_rest(r) {
            let _ = writeln!(h, "<p>{}</p>", esc(&rest));
        }
    }
    h.push_str("</section>\n");

    let _ = write!(
        h,
        "<footer>Created by {}. Every number here is also in report.json.</footer>\n</main>\n</body>\n</html>\n",
        esc(or_unknown(&r.created_by))
    );
    h
}

fn html_class_table(h: &mut String, r: &Report) {
    h.push_str("<section>\n<h2>Per-class metrics</h2>\n<table>\n<tr>");
    for (i, head) in CLASS_HEADERS.iter().enumerate() {
        let class = if i == 0 { " class=\"l\"" } else { "" };
        let _ = write!(h, "<th{class}>{head}</th>");
    }
    h.push_str("</tr>\n");
    for (label, avg, cells) in class_table(r) {
        let _ = write!(h, "<tr{}><td class=\"l\">{}</td>", if avg { " class=\"avg\"" } else { "" }, esc(&label));
        for c in cells {
            let _ = write!(h, "<td>{c}</td>");
        }
        h.push_str("</tr>\n");
    }
    h.push_str(
        "</table>\n<p class=\"hint\">Each label is scored against all the others. Precision is the positive \
         predictive value; recall is sensitivity; support is the number of notes that truly have the label. \
         n/a: undefined because the split has no notes (or only notes) with that label.</p>\n</section>\n",
    );
}

/// A count cell shaded by its share of the largest count: blue on the diagonal (right), orange
/// off it (wrong).
fn shaded_cell(count: usize, max: usize, right: bool, row_total: usize) -> String {
    let alpha = if count == 0 || max == 0 { 0.0 } else { 0.1 + 0.6 * count as f64 / max as f64 };
    let rgb = if right { "37,99,235" } else { "234,88,12" };
    let share =
        if row_total == 0 { String::new() } else { format!("<small>{}</small>", pct(count as f64 / row_total as f64)) };
    format!("<td style=\"background:rgba({rgb},{alpha:.2})\">{count}{share}</td>")
}

fn html_confusion(h: &mut String, r: &Report) {
    h.push_str("<section>\n<h2>Confusion matrix</h2>\n");
    match &r.confusion_matrix {
        ConfusionMatrix::Classes(m) => {
            let max = m.iter().flatten().copied().max().unwrap_or(0);
            h.push_str("<table class=\"confusion\">\n<tr><th class=\"l\">True ↓ / Predicted →</th>");
            for l in &r.labels {
                let _ = write!(h, "<th>{}</th>", esc(l));
            }
            h.push_str("</tr>\n");
            for (i, row) in m.iter().enumerate() {
                let label = r.labels.get(i).map_or("?", String::as_str);
                let _ = write!(h, "<tr><th class=\"l\">{}</th>", esc(label));
                let total: usize = row.iter().sum();
                for (j, &n) in row.iter().enumerate() {
                    h.push_str(&shaded_cell(n, max, i == j, total));
                }
                h.push_str("</tr>\n");
            }
            h.push_str(
                "</table>\n<p class=\"hint\">Rows: the true label; columns: the prediction. \
                        The small number is the share of the row.</p>\n",
            );
        }
        ConfusionMatrix::PerLabel(ms) => {
            h.push_str("<div class=\"confusions\">\n");
            for (label, m) in r.labels.iter().zip(ms) {
                let max = m.iter().flatten().copied().max().unwrap_or(0);
                let _ = write!(
                    h,
                    "<table class=\"confusion\"><caption>{}</caption>\n<tr><th class=\"l\">True ↓ / Predicted →</th>\
                     <th>no</th><th>yes</th></tr>\n",
                    esc(label)
                );
                for (i, name) in ["no", "yes"].iter().enumerate() {
                    let total = m[i][0] + m[i][1];
                    let _ = writeln!(
                        h,
                        "<tr><th class=\"l\">{name}</th>{}{}</tr>",
                        shaded_cell(m[i][0], max, i == 0, total),
                        shaded_cell(m[i][1], max, i == 1, total)
                    );
                }
                h.push_str("</table>\n");
            }
            h.push_str(
                "</div>\n<p class=\"hint\">One table per label: does the note have it (yes) or not (no), \
                        truly (rows) and as predicted (columns).</p>\n",
            );
        }
    }
    h.push_str("</section>\n");
}

fn html_calibration(h: &mut String, r: &Report) {
    let c = &r.calibration;
    let _ = write!(
        h,
        "<section>\n<h2>Calibration</h2>\n<p>Expected calibration error {} (largest gap {}) over {} bins. \
         Confidence: {}.</p>\n",
        f3(c.ece),
        f3(c.mce),
        c.n_bins,
        esc(&c.confidence)
    );
    h.push_str(&reliability_chart(r));
    h.push_str(
        "\n<p class=\"hint\">Bars: how often predictions in each confidence bin were right; dots: their mean \
         confidence. A calibrated model's bars reach the dashed diagonal. Below: how many predictions fall in \
         each bin.</p>\n<details><summary>Calibration bins</summary>\n<table>\n\
         <tr><th>Confidence</th><th>Count</th><th>Mean confidence</th><th>Accuracy</th></tr>\n",
    );
    for b in &c.bins {
        let _ = writeln!(
            h,
            "<tr><td>{:.2}–{:.2}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            b.lower,
            b.upper,
            b.count,
            opt3(b.mean_confidence),
            opt3(b.accuracy)
        );
    }
    h.push_str("</table>\n</details>\n</section>\n");
}

fn html_history(h: &mut String, r: &Report) {
    if r.history.is_empty() {
        return;
    }
    h.push_str("<section>\n<h2>Training</h2>\n");
    if let Some(svg) = loss_chart(r) {
        h.push_str(&svg);
    }
    let metric = r.selection_metric.as_deref().unwrap_or("metric");
    let _ = write!(
        h,
        "\n<details><summary>History</summary>\n<table>\n<tr><th>Epoch</th><th>Step</th><th>Train loss</th>\
         <th>Val loss</th><th>Val {}</th><th>Learning rate</th></tr>\n",
        esc(metric)
    );
    for p in &r.history {
        let best = r.best_epoch == Some(p.epoch) && history_by_epoch(&r.history);
        let _ = writeln!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if best { " class=\"avg\"" } else { "" },
            p.epoch,
            p.step,
            opt4(p.train_loss),
            opt4(p.val_loss),
            opt4(p.val_metric),
            p.learning_rate.map_or_else(|| "n/a".into(), |x| format!("{x:.2e}"))
        );
    }
    h.push_str("</table>\n</details>\n</section>\n");
}

fn opt4(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite()).map_or_else(|| "n/a".into(), |v| format!("{v:.4}"))
}

// ---------------------------------------------------------------------------------------------
// Charts (plotters, SVG backend)
// ---------------------------------------------------------------------------------------------

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn Error>>;

/// Draws one inline SVG. plotters adds an `xmlns` URL that inline SVG in HTML does not need;
/// it is dropped so that the page holds no URL at all. A chart that fails to draw becomes a
/// sentence: the numbers are in the tables either way.
fn svg_chart(title: &str, size: (u32, u32), draw: impl FnOnce(&Area<'_>) -> DrawResult) -> String {
    let mut svg = String::new();
    let drawn = {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        draw(&root).and_then(|()| root.present().map_err(Into::into))
    };
    match drawn {
        Ok(()) => svg.replacen(r#" xmlns="http://www.w3.org/2000/svg""#, "", 1).replacen(
            "<svg ",
            &format!("<svg role=\"img\" aria-label=\"{}\" ", esc(title)),
            1,
        ),
        Err(e) => format!("<p class=\"hint\">The {} chart could not be drawn: {}</p>", esc(title), esc(&e.to_string())),
    }
}

fn dashed_diagonal() -> DashedLineSeries<std::vec::IntoIter<(f64, f64)>, i32> {
    let style = ShapeStyle { color: BLACK.mix(0.45), filled: false, stroke_width: 1 };
    DashedLineSeries::new(vec![(0.0, 0.0), (1.0, 1.0)], 6, 4, style)
}

/// At most about [`MAX_CURVE_POINTS`] points, the last always kept: a ROC curve over 100 000
/// notes would otherwise make a multi-megabyte page for no visible difference.
fn thinned(points: Vec<(f64, f64)>) -> Vec<(f64, f64)> {
    let step = points.len().div_ceil(MAX_CURVE_POINTS).max(1);
    if step == 1 {
        return points;
    }
    let last = points.last().copied();
    let mut kept: Vec<_> = points.into_iter().step_by(step).collect();
    if kept.last().copied() != last {
        kept.extend(last);
    }
    kept
}

/// Okabe–Ito colours (distinguishable with colour-blindness), then plotters' palette.
fn series_color(i: usize) -> RGBAColor {
    const OKABE_ITO: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(90, 90, 90),
    ];
    OKABE_ITO.get(i).map_or_else(|| Palette99::pick(i).to_rgba(), |c| c.to_rgba())
}

fn roc_chart(r: &Report) -> Option<String> {
    if r.roc_curves.is_empty() {
        return None;
    }
    Some(svg_chart("ROC curves", CHART_SIZE, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart
            .configure_mesh()
            .x_desc("1 − specificity (false positive rate)")
            .y_desc("Sensitivity (true positive rate)")
            .light_line_style(RGBColor(242, 244, 247))
            .draw()?;
        chart.draw_series(dashed_diagonal())?;
        let curves: Vec<_> = r.labels.iter().filter_map(|l| r.roc_curves.get(l).map(|c| (l, c))).collect();
        let legend = curves.len() <= MAX_LEGEND;
        for (i, (label, curve)) in curves.into_iter().enumerate() {
            let style = series_color(i).stroke_width(2);
            let points = thinned(curve.fpr.iter().copied().zip(curve.tpr.iter().copied()).collect());
            let drawn = chart.draw_series(LineSeries::new(points, style))?;
            if legend {
                let auc = r.per_class.get(label).and_then(|c| c.roc_auc);
                drawn
                    .label(format!("{} (AUC {})", truncate(label, LEGEND_CHARS), opt3(auc)))
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
            }
        }
        if !legend {
            return Ok(());
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    }))
}

fn reliability_chart(r: &Report) -> String {
    let bins = &r.calibration.bins;
    svg_chart("Reliability diagram", (CHART_SIZE.0, 500), |root| {
        root.fill(&WHITE)?;
        let (top, bottom) = root.split_vertically(350);
        let mut chart = ChartBuilder::on(&top)
            .margin(14)
            .x_label_area_size(28)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)?;
        chart.configure_mesh().y_desc("Accuracy").light_line_style(RGBColor(242, 244, 247)).draw()?;
        let bar = RGBColor(37, 99, 235).mix(0.35).filled();
        chart
            .draw_series(
                bins.iter().filter_map(|b| Some(Rectangle::new([(b.lower, 0.0), (b.upper, b.accuracy?)], bar))),
            )?
            .label("accuracy in bin")
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], bar));
        chart
            .draw_series(dashed_diagonal())?
            .label("perfect calibration")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.45)));
        let dot = RGBColor(220, 38, 38).filled();
        chart
            .draw_series(bins.iter().filter_map(|b| Some(Circle::new((b.mean_confidence?, b.accuracy?), 4, dot))))?
            .label("mean confidence")
            .legend(move |(x, y)| Circle::new((x + 7, y), 4, dot));
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()?;

        let max = bins.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
        let mut counts = ChartBuilder::on(&bottom)
            .margin(14)
            .x_label_area_size(40)
            .y_label_area_size(52)
            .build_cartesian_2d(0f64..1f64, 0f64..max * 1.1)?;
        let whole = |v: &f64| format!("{v:.0}");
        counts
            .configure_mesh()
            .x_desc("Confidence")
            .y_desc("Count")
            .y_labels(3)
            .y_label_formatter(&whole)
            .light_line_style(RGBColor(242, 244, 247))
            .draw()?;
        let grey = RGBColor(123, 135, 148).mix(0.6).filled();
        counts.draw_series(
            bins.iter()
                .filter(|b| b.count > 0)
                .map(|b| Rectangle::new([(b.lower, 0.0), (b.upper, b.count as f64)], grey)),
        )?;
        Ok(())
    })
}

fn loss_chart(r: &Report) -> Option<String> {
    let by_epoch = history_by_epoch(&r.history);
    let x = |p: &HistoryPoint| if by_epoch { p.epoch } else { p.step } as f64;
    let series = |f: fn(&HistoryPoint) -> Option<f64>| -> Vec<(f64, f64)> {
        r.history.iter().filter_map(|p| f(p).filter(|v| v.is_finite()).map(|v| (x(p), v))).collect()
    };
    let train = series(|p| p.train_loss);
    let val = series(|p| p.val_loss);
    let all = || train.iter().chain(&val);
    let x_min = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x_max = all().map(|p| p.0).fold(f64::NEG_INFINITY, f64::max);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max);
    if !x_min.is_finite() {
        return None;
    }
    // A little room on both sides, so that the end points and the best-epoch line stay visible.
    let pad = if x_max > x_min { (x_max - x_min) * 0.04 } else { 1.0 };
    let (x_lo, x_hi) = (x_min - pad, x_max + pad);
    let y_hi = if y_max > 0.0 { y_max * 1.1 } else { 1.0 };
    Some(svg_chart("Loss curves", CHART_SIZE, |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(56)
            .build_cartesian_2d(x_lo..x_hi, 0f64..y_hi)?;
        // Epochs and steps are whole numbers: label only the ticks that are.
        let whole = |v: &f64| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc(if by_epoch { "Epoch" } else { "Step" })
            .y_desc("Loss")
            .x_label_formatter(&whole)
            .light_line_style(RGBColor(242, 244, 247))
            .draw()?;
        for (name, points, color) in
            [("train loss", &train, RGBColor(37, 99, 235)), ("validation loss", &val, RGBColor(234, 88, 12))]
        {
            if points.is_empty() {
                continue;
            }
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(points.iter().copied(), style))?
                .label(name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
            chart.draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
        if let (Some(best), true) = (r.best_epoch, by_epoch) {
            let style = ShapeStyle { color: BLACK.mix(0.45), filled: false, stroke_width: 1 };
            let b = best as f64;
            chart
                .draw_series(DashedLineSeries::new(vec![(b, 0.0), (b, y_hi)], 6, 4, style))?
                .label("best epoch")
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 14))
            .draw()?;
        Ok(())
    }))
}

// ---------------------------------------------------------------------------------------------
// Markdown
// ---------------------------------------------------------------------------------------------

/// Escapes text for a Markdown table cell or list item: Markdown renderers pass HTML through,
/// so `<` and `&` are escaped as in HTML (a lone `>` starts no tag and stays readable); `|` would end the cell; emphasis and link characters
/// are neutralised; a newline would end the row.
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '#' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn md_row(out: &mut String, cells: impl IntoIterator<Item = String>) {
    out.push('|');
    for c in cells {
        let _ = write!(out, " {c} |");
    }
    out.push('\n');
}

/// A table header; `align` has one letter per column: `l`eft for text, `r`ight for numbers.
fn md_header(out: &mut String, heads: &[&str], align: &str) {
    md_row(out, heads.iter().map(|h| h.to_string()));
    let mut align = align.chars();
    md_row(out, heads.iter().map(|_| if align.next() == Some('l') { "---".into() } else { "---:".into() }));
}

/// The report as Markdown tables (no charts: those are in report.html).
pub fn render_markdown(r: &Report) -> String {
    let mut m = String::new();
    let _ = writeln!(m, "# Evaluation report: {}\n", md(&r.split));
    md_header(&mut m, &["Field", "Value"], "ll");
    for (k, v) in header_rows(r) {
        md_row(&mut m, [k.to_string(), md(&v)]);
    }
    m.push_str(
        "\nCharts (ROC curves, reliability diagram, loss curves) are in report.html; every number is in report.json.\n",
    );

    m.push_str("\n## Headline\n\n");
    md_header(&mut m, &["Metric", "Value", "Meaning"], "lrl");
    for (name, value, hint) in headline(r) {
        md_row(&mut m, [md(&name), md(&value), md(hint)]);
    }
    m.push_str("\n## Decision rule\n\n");
    for line in decision_lines(r) {
        let _ = writeln!(m, "- {}", md(&line));
    }
    let recipe = recipe_lines(r);
    if !recipe.is_empty() {
        m.push_str("\n## Recipe\n\n");
        for line in recipe {
            let _ = writeln!(m, "- {}", md(&line));
        }
    }

    m.push_str("\n## Per-class metrics\n\n");
    md_header(&mut m, &CLASS_HEADERS, "l");
    for (label, avg, cells) in class_table(r) {
        let label = if avg { format!("**{label}**") } else { md(&label) };
        md_row(&mut m, std::iter::once(label).chain(cells));
    }

    m.push_str("\n## Confusion matrix\n\n");
    match &r.confusion_matrix {
        ConfusionMatrix::Classes(cm) => {
            m.push_str("Rows: the true label; columns: the prediction.\n\n");
            let mut heads = vec!["True \\ Predicted".to_string()];
            heads.extend(r.labels.iter().map(|l| md(l)));
            md_header(&mut m, &heads.iter().map(String::as_str).collect::<Vec<_>>(), "l");
            for (i, row) in cm.iter().enumerate() {
                let label = r.labels.get(i).map_or("?".into(), |l| md(l));
                md_row(&mut m, std::iter::once(label).chain(row.iter().map(usize::to_string)));
            }
        }
        ConfusionMatrix::PerLabel(cms) => {
            m.push_str("Per label: true negatives, false positives, false negatives, true positives.\n\n");
            md_header(&mut m, &["Label", "TN", "FP", "FN", "TP"], "l");
            for (label, c) in r.labels.iter().zip(cms) {
                md_row(
                    &mut m,
                    [md(label), c[0][0].to_string(), c[0][1].to_string(), c[1][0].to_string(), c[1][1].to_string()],
                );
            }
        }
    }

    let c = &r.calibration;
    let _ = writeln!(
        m,
        "\n## Calibration\n\nExpected calibration error {} (largest gap {}) over {} bins. Confidence: {}.\n",
        f3(c.ece),
        f3(c.mce),
        c.n_bins,
        md(&c.confidence)
    );
    md_header(&mut m, &["Confidence", "Count", "Mean confidence", "Accuracy"], "l");
    for b in &c.bins {
        md_row(
            &mut m,
            [format!("{:.2}–{:.2}", b.lower, b.upper), b.count.to_string(), opt3(b.mean_confidence), opt3(b.accuracy)],
        );
    }

    if !r.history.is_empty() {
        m.push_str("\n## Training history\n\n");
        let metric = format!("Val {}", md(r.selection_metric.as_deref().unwrap_or("metric")));
        md_header(&mut m, &["Epoch", "Step", "Train loss", "Val loss", &metric, "Learning rate"], "");
        for p in &r.history {
            let epoch = if r.best_epoch == Some(p.epoch) && history_by_epoch(&r.history) {
                format!("**{}**", p.epoch)
            } else {
                p.epoch.to_string()
            };
            md_row(
                &mut m,
                [
                    epoch,
                    p.step.to_string(),
                    opt4(p.train_loss),
                    opt4(p.val_loss),
                    opt4(p.val_metric),
                    p.learning_rate.map_or_else(|| "n/a".into(), |x| format!("{x:.2e}")),
                ],
            );
        }
    }

    if let Some(scrub) = &r.scrub {
        m.push_str("\n## PHI scrubbing\n\n");
        md_header(&mut m, &["Kind", "Replacements"], "l");
        for (kind, n) in scrub {
            md_row(&mut m, [md(kind), n.to_string()]);
        }
    }

    let _ = writeln!(m, "\n## Rows left out\n\n{}\n", md(&problem_intro(r)));
    for (i, p) in r.problems.iter().take(MAX_PROBLEMS).enumerate() {
        let at = format!("{}:{}", p.file.to_string_lossy(), p.line);
        let _ = writeln!(m, "{}. {} {}: {}", i + 1, md(&at), md(p.kind.as_str()), md(&p.message));
    }
    if let Some(rest) = problem_rest(r) {
        let _ = writeln!(m, "\n{}", md(&rest));
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(md("a|b <i>*x*</i>\nc"), "a\\|b &lt;i>\\*x\\*&lt;/i> c");
    }

    #[test]
    fn long_curves_are_thinned_to_their_end() {
        let points: Vec<(f64, f64)> = (0..=2500).map(|i| (i as f64 / 2500.0, 1.0)).collect();
        let kept = thinned(points.clone());
        assert!(kept.len() <= MAX_CURVE_POINTS + 1, "{}", kept.len());
        assert_eq!((kept[0], kept.last().copied()), (points[0], points.last().copied()));
        assert_eq!(thinned(points[..10].to_vec()), points[..10].to_vec());
    }
}
