//! report.html as a browser's HTML parser reads it: every SVG shape is its own element (a shape
//! left open would swallow its later siblings, which are then not drawn), with one circle per
//! trigger node, one line per trigger edge and one point per projected graph embedding.

use gcleaner_engine::data::synthetic;
use gcleaner_engine::progress::NoProgress;
use gcleaner_engine::purify::recovery::Pattern;
use gcleaner_engine::purify::report::PurifyReport;
use gcleaner_engine::purify::{html, purify, PurifyConfig};
use scraper::{ElementRef, Html, Selector};

/// A real report: a small GIN trained on generated graphs, purified with few epochs.
fn real_report() -> PurifyReport {
    let ds = synthetic::generate(60, 3);
    let model = crate::small_gin::trained_small_gin(&ds, 3);

    let mut c = PurifyConfig { seed: 3, force: true, trigger_nodes: Some(4), ..PurifyConfig::default() };
    c.recovery.epochs = 3;
    c.recovery.restarts = 2;
    c.unlearn.epochs = 2;
    c.unlearn.teacher_epochs = Some(2);
    c.unlearn.positions = 2;
    purify(&model, &ds, &c, &mut NoProgress).unwrap().report
}

fn select<'a>(doc: &'a Html, css: &str) -> Vec<ElementRef<'a>> {
    doc.select(&Selector::parse(css).unwrap()).collect()
}

/// What the parsed page draws.
#[derive(Debug, PartialEq)]
struct Drawn {
    trigger_circles: usize,
    trigger_lines: usize,
    trigger_labels: usize,
    /// Points of each embedding plot, in page order.
    embedding_points: Vec<usize>,
}

fn drawn(page: &str) -> Drawn {
    let doc = Html::parse_document(page);
    // A shape never holds other elements; one that does was left open by the markup.
    let nested = select(&doc, "svg circle *, svg line *, svg polyline *");
    assert!(nested.is_empty(), "SVG shapes hold other elements: {:?}", nested.iter().map(|e| e.html()).collect::<Vec<_>>());
    assert_eq!(select(&doc, "svg.trigger").len(), 1, "one trigger drawing");
    for line in select(&doc, "svg.trigger > line") {
        assert_eq!(line.value().attr("stroke-width"), Some("3"), "{}", line.html());
        for coordinate in ["x1", "y1", "x2", "y2"] {
            let value = line.value().attr(coordinate).unwrap();
            assert!(value.parse::<f64>().is_ok(), "{coordinate}={value:?} in {}", line.html());
        }
    }
    for circle in select(&doc, "svg circle") {
        let r = circle.value().attr("r").unwrap();
        assert!(r.parse::<f64>().is_ok(), "r={r:?} in {}", circle.html());
    }
    Drawn {
        trigger_circles: select(&doc, "svg.trigger > circle").len(),
        trigger_lines: select(&doc, "svg.trigger > line").len(),
        trigger_labels: select(&doc, "svg.trigger > text").len(),
        embedding_points: select(&doc, "svg.embedding")
            .iter()
            .map(|svg| svg.children().filter_map(ElementRef::wrap).count())
            .collect(),
    }
}

#[test]
fn a_real_report_draws_every_trigger_node_edge_and_embedding_point() {
    let mut report = real_report();
    let projection = report.projection.clone().expect("purify projects the embeddings");
    // Each graph of the unlearning split appears twice: clean and with the trigger.
    assert_eq!(projection.before.len(), 2 * report.sample.n_unlearning);
    let expected = |report: &PurifyReport| Drawn {
        trigger_circles: report.trigger.size,
        trigger_lines: report.trigger.edges.len(),
        trigger_labels: report.trigger.size,
        embedding_points: vec![projection.before.len(), projection.after.len()],
    };
    assert_eq!(drawn(&html::render(&report)), expected(&report));

    // The recovered trigger may have few edges; a denser one must be drawn whole as well.
    report.trigger =
        Pattern { size: 6, edges: vec![(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (0, 3)], slot_features: None };
    let page = html::render(&report);
    assert_eq!(drawn(&page), expected(&report));
    let doc = Html::parse_document(&page);
    let embeddings = select(&doc, "svg.embedding > circle");
    assert_eq!(embeddings.len(), 2 * projection.before.len());
    let red = embeddings.iter().filter(|c| c.value().attr("fill") == Some("#c62828")).count();
    assert_eq!(red, projection.before.iter().chain(&projection.after).filter(|p| p.triggered).count());
}

#[test]
fn text_from_the_report_is_escaped() {
    let mut report = real_report();
    let hostile = r#"<b>bold</b> & "quoted" 'single' <svg onload=alert(1)>"#;
    report.warnings = vec![hostile.to_string()];
    report.verdict.summary = hostile.to_string();
    let doc = Html::parse_document(&html::render(&report));
    let verdicts = select(&doc, "div.verdict");
    assert_eq!(verdicts.len(), 2, "the verdict and one warning");
    for verdict in verdicts {
        assert_eq!(verdict.text().collect::<String>(), hostile);
        assert_eq!(verdict.children().filter_map(ElementRef::wrap).count(), 0, "{}", verdict.html());
    }
    assert_eq!(select(&doc, "svg").len(), 1 + 3 + 2, "trigger, three unlearning charts, two embedding plots");
}
