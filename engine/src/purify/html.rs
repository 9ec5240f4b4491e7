//! report.html: one self-contained page (inline CSS and SVG, no scripts, no network fetches)
//! that an engineer reads at a glance.

use std::fmt::Write;

use super::report::{ProjectedPoint, PurifyReport};
use super::settings::RunMode;
use crate::metrics::Evaluation;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1d2330;padding:0 1em}\
h1{font-size:22px}h2{font-size:17px;margin-top:2em;border-bottom:1px solid #dde}\
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #dde;padding:4px 10px;text-align:right}\
th{background:#f3f4f8}.verdict{padding:12px 16px;border-radius:6px;font-weight:600}\
.bad{background:#fde8e8;color:#8a1c1c}.good{background:#e6f6ea;color:#1d5e2c}.warn{background:#fff4d6;color:#6b4a00;margin-top:8px}.sel{background:#fff7d6}\
.grid{display:flex;flex-wrap:wrap;gap:24px}.muted{color:#667}svg{background:#fafbfd;border:1px solid #e4e6ee}";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// Writes `<name a="v" ...>` (or `<name a="v" .../>` when `empty`) with every value quoted
/// and escaped, so an HTML parser reads the values and the self-closing slash as written (an
/// unquoted `stroke-width=3/>` is the value `3/` and an element left open).
fn element(h: &mut String, name: &str, attrs: &[(&str, &dyn std::fmt::Display)], empty: bool) {
    h.push('<');
    h.push_str(name);
    for (key, value) in attrs {
        let _ = write!(h, " {key}=\"{}\"", esc(&value.to_string()));
    }
    h.push_str(if empty { "/>" } else { ">" });
}

/// A coordinate with one decimal.
struct C(f64);

impl std::fmt::Display for C {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:.1}", self.0)
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

/// Renders the whole report.
pub fn render(report: &PurifyReport) -> String {
    let mut h = String::new();
    let v = &report.verdict;
    let scan = report.config.mode == RunMode::Scan;
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>gcleaner report</title><style>{STYLE}</style></head><body>\
         <h1>gcleaner {} report</h1><div class=\"verdict {}\">{}</div>",
        if scan { "scan" } else { "purification" },
        if v.backdoor_evidence { "bad" } else { "good" },
        esc(&v.summary)
    );
    if scan {
        h.push_str(
            "<p><strong>Scan only:</strong> the trigger was recovered and judged; nothing was unlearned and no purified \
             model was written. The measurements below are the model's as given.</p>",
        );
    }
    for warning in &report.warnings {
        let _ = write!(h, "<div class=\"verdict warn\">{}</div>", esc(warning));
    }
    let _ = write!(
        h,
        "<p class=\"muted\">{} model, {} layers, {} classes &middot; clean sample {} graphs ({} for unlearning, {} held out) &middot; \
         {:.1}s in all (explain {:.1}s, recovery {:.1}s, unlearning {:.1}s){}</p>",
        report.spec.arch.name().to_uppercase(),
        report.spec.num_layers,
        report.spec.num_classes,
        report.sample.n_total,
        report.sample.n_unlearning,
        report.sample.n_holdout,
        report.timings.total_s,
        report.timings.explain_s,
        report.timings.recovery_s,
        report.timings.unlearning_s,
        report.input_sha256.as_ref().map(|s| format!(" &middot; input sha256 {}", esc(&s[..16.min(s.len())]))).unwrap_or_default()
    );
    before_after(&mut h, report);
    candidates(&mut h, report);
    h.push_str("<h2>Recovered trigger</h2><div class=\"grid\">");
    trigger_svg(&mut h, report);
    h.push_str("</div>");
    if let Some(u) = &report.unlearning {
        h.push_str("<h2>Unlearning, per epoch</h2><div class=\"grid\">");
        let epochs: Vec<f64> = u.history.iter().map(|e| e.epoch as f64).collect();
        line_chart(&mut h, "loss", &epochs, &u.history.iter().map(|e| e.loss).collect::<Vec<_>>());
        line_chart(&mut h, "held-out accuracy", &epochs, &u.history.iter().map(|e| e.holdout_accuracy).collect::<Vec<_>>());
        line_chart(&mut h, "held-out flip rate", &epochs, &u.history.iter().map(|e| e.holdout_flip_rate).collect::<Vec<_>>());
        h.push_str("</div>");
        if let Some(epoch) = u.rolled_back_to_epoch {
            let _ = write!(h, "<p>A class's recall collapsed; the weights of epoch {epoch} were restored.</p>");
        }
    }
    h.push_str("<h2>Confusion matrices (held-out clean graphs)</h2><div class=\"grid\">");
    // A scan's "after" is the same model measured again: one of each is shown.
    confusion(&mut h, if scan { "model" } else { "before" }, &report.holdout.before.evaluation);
    if !scan {
        confusion(&mut h, "after", &report.holdout.after.evaluation);
    }
    h.push_str("</div>");
    if let Some(p) = &report.projection {
        h.push_str("<h2>Graph embeddings (PCA), triggered graphs in red</h2><div class=\"grid\">");
        scatter(&mut h, if scan { "model" } else { "before" }, &p.before);
        if !scan {
            scatter(&mut h, "after", &p.after);
        }
        h.push_str("</div>");
    }
    h.push_str("<p class=\"muted\">Field-by-field meaning: docs/report.md. Every number is measured on graphs the purification did not train on.</p></body></html>\n");
    h
}

fn before_after(h: &mut String, r: &PurifyReport) {
    let target = r.verdict.suspected_target;
    let (b, a) = (&r.holdout.before, &r.holdout.after);
    let recall = |e: &Evaluation| e.per_class.get(target).map_or(0.0, |c| c.recall);
    let scan = r.config.mode == RunMode::Scan;
    if scan {
        h.push_str("<h2>The model as given</h2><table><tr><th></th><th>model</th></tr>");
    } else {
        h.push_str("<h2>Before and after</h2><table><tr><th></th><th>before</th><th>after</th></tr>");
    }
    let mut row = |name: &str, x: f64, y: f64| {
        if scan {
            let _ = write!(h, "<tr><th>{name}</th><td>{}</td></tr>", pct(x));
        } else {
            let _ = write!(h, "<tr><th>{name}</th><td>{}</td><td>{}</td></tr>", pct(x), pct(y));
        }
    };
    if let Some(at) = &r.attack {
        let t = at.before.target_label;
        let recall = |m: &crate::attacks::evaluate::AttackMetrics| m.per_class_recall.get(t).copied().unwrap_or(0.0);
        row("attack success rate (attack eval set)", at.before.asr, at.after.asr);
        row("clean accuracy (attack eval set)", at.before.clean_accuracy, at.after.clean_accuracy);
        row("balanced accuracy (attack eval set)", at.before.balanced_accuracy, at.after.balanced_accuracy);
        row(&format!("recall of target class {t} (attack eval set)"), recall(&at.before), recall(&at.after));
        if let Some(c) = &at.clean_model {
            row("never-backdoored model: ASR (same set)", c.asr, c.asr);
        }
    }
    row("held-out accuracy", b.evaluation.accuracy, a.evaluation.accuracy);
    row("held-out balanced accuracy", b.evaluation.balanced_accuracy, a.evaluation.balanced_accuracy);
    row(&format!("held-out recall of class {target}"), recall(&b.evaluation), recall(&a.evaluation));
    row("recovered-trigger flip rate (held-out)", b.flip_rate, a.flip_rate);
    h.push_str("</table>");
}

fn candidates(h: &mut String, r: &PurifyReport) {
    h.push_str(
        "<h2>Trigger candidates</h2><table><tr><th>size</th><th>edges</th><th>objective</th><th>mean cos</th>\
         <th>target</th><th>base share</th><th>flip rate</th><th>evidence</th></tr>",
    );
    for (i, c) in r.candidates.iter().enumerate() {
        let _ = write!(
            h,
            "<tr{}><td>{}</td><td>{}</td><td>{:.4}</td><td>{:.3}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
            if i == r.selected { " class=\"sel\"" } else { "" },
            c.recovered.trigger.size,
            c.recovered.trigger.edges.len(),
            c.recovered.objective,
            c.recovered.mean_similarity,
            c.evidence.target,
            pct(c.evidence.base_share),
            pct(c.evidence.flip_rate),
            c.evidence.score
        );
    }
    h.push_str("</table>");
}

fn trigger_svg(h: &mut String, r: &PurifyReport) {
    let t = &r.trigger;
    let (w, c, rad) = (260.0, 130.0, 90.0);
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / t.size.max(1) as f64 - std::f64::consts::FRAC_PI_2;
        (c + rad * a.cos(), c + rad * a.sin())
    };
    let view_box = format!("0 0 {w} {w}");
    element(h, "svg", &[("class", &"trigger"), ("width", &w), ("height", &w), ("viewBox", &view_box)], false);
    for &(i, j) in &t.edges {
        let ((x1, y1), (x2, y2)) = (pos(i), pos(j));
        element(
            h,
            "line",
            &[("x1", &C(x1)), ("y1", &C(y1)), ("x2", &C(x2)), ("y2", &C(y2)), ("stroke", &"#b33"), ("stroke-width", &3)],
            true,
        );
    }
    for i in 0..t.size {
        let (x, y) = pos(i);
        element(
            h,
            "circle",
            &[("cx", &C(x)), ("cy", &C(y)), ("r", &14), ("fill", &"#fff"), ("stroke", &"#333"), ("stroke-width", &2)],
            true,
        );
        element(h, "text", &[("x", &C(x)), ("y", &C(y + 4.0)), ("text-anchor", &"middle"), ("font-size", &12)], false);
        let _ = write!(h, "{i}</text>");
    }
    let _ = write!(h, "</svg><p>{} nodes, {} edges: {}</p>", t.size, t.edges.len(), esc(&format!("{:?}", t.edges)));
}

fn line_chart(h: &mut String, title: &str, xs: &[f64], ys: &[f64]) {
    let (w, ht, pad) = (320.0, 180.0, 30.0);
    let finite: Vec<f64> = ys.iter().copied().filter(|v| v.is_finite()).collect();
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, u), &v| (l.min(v), u.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo { (lo, hi) } else { (lo.min(0.0), lo.max(0.0) + 1.0) };
    let xmax = xs.iter().copied().fold(1.0, f64::max);
    let points: Vec<String> = xs
        .iter()
        .zip(ys)
        .filter(|(_, y)| y.is_finite())
        .map(|(x, y)| {
            format!("{:.1},{:.1}", pad + (w - 2.0 * pad) * x / xmax, ht - pad - (ht - 2.0 * pad) * (y - lo) / (hi - lo))
        })
        .collect();
    h.push_str("<figure>");
    element(h, "svg", &[("class", &"chart"), ("width", &w), ("height", &ht)], false);
    let points = points.join(" ");
    element(h, "polyline", &[("fill", &"none"), ("stroke", &"#2957a4"), ("stroke-width", &2), ("points", &points)], true);
    let labels =
        [(pad, 16.0, format!("{hi:.3}")), (pad, ht - 8.0, format!("{lo:.3}")), (w - 70.0, ht - 8.0, format!("epoch {xmax:.0}"))];
    for (x, y, label) in labels {
        element(h, "text", &[("x", &format!("{x:.0}")), ("y", &format!("{y:.0}")), ("font-size", &11)], false);
        let _ = write!(h, "{}</text>", esc(&label));
    }
    let _ = write!(h, "</svg><figcaption>{}</figcaption></figure>", esc(title));
}

fn confusion(h: &mut String, title: &str, e: &Evaluation) {
    let max = e.confusion.iter().flatten().copied().max().unwrap_or(1).max(1) as f64;
    let _ = write!(h, "<div><b>{}</b> (accuracy {})<table><tr><th>true \\ predicted</th>", esc(title), pct(e.accuracy));
    for c in 0..e.confusion.len() {
        let _ = write!(h, "<th>{c}</th>");
    }
    h.push_str("</tr>");
    for (i, row) in e.confusion.iter().enumerate() {
        let _ = write!(h, "<tr><th>{i}</th>");
        for &v in row {
            let alpha = v as f64 / max * 0.6;
            let _ = write!(h, "<td style=\"background:rgba(41,87,164,{alpha:.2})\">{v}</td>");
        }
        h.push_str("</tr>");
    }
    h.push_str("</table></div>");
}

fn scatter(h: &mut String, title: &str, points: &[ProjectedPoint]) {
    let (w, pad) = (320.0, 12.0);
    let (mut x0, mut x1, mut y0, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY);
    for p in points {
        x0 = x0.min(p.x);
        x1 = x1.max(p.x);
        y0 = y0.min(p.y);
        y1 = y1.max(p.y);
    }
    let sx = if x1 > x0 { (w - 2.0 * pad) / (x1 - x0) } else { 1.0 };
    let sy = if y1 > y0 { (w - 2.0 * pad) / (y1 - y0) } else { 1.0 };
    h.push_str("<figure>");
    element(h, "svg", &[("class", &"embedding"), ("width", &w), ("height", &w)], false);
    for p in points {
        let (cx, cy) = (pad + (p.x - x0) * sx, w - pad - (p.y - y0) * sy);
        let color = if p.triggered { "#c62828" } else { "#2957a4" };
        element(h, "circle", &[("cx", &C(cx)), ("cy", &C(cy)), ("r", &3.5), ("fill", &color), ("fill-opacity", &0.7)], true);
    }
    let _ = write!(h, "</svg><figcaption>{}</figcaption></figure>", esc(title));
}
