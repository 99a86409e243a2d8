//! `artifacts/report/index.html`: the report as one self-contained page — styles, script and
//! charts inline, nothing fetched — with a pair browser.
//!
//! ```text
//! summary        the text report's table (one row per arm and iteration)
//! charts         markdown.rs's PNGs, as data: URIs
//! pair browser   every arm's and iteration's generated pairs (filter_pairs ⋈ responses):
//!                prompt, both responses, p_irm, p_grm, consistent, selected, the label,
//!                and gold (eval_label_pairs, when eval-labels ran); pick arm and iteration,
//!                sort by a column, filter to inconsistent pairs, to labels that disagree
//!                with gold, to selected pairs, or by text
//! ```
//!
//! The browser's state lives in the URL fragment (`#arm=scir&iter=1&inconsistent=1&wrong=1&
//! selected=1&sort=p_irm&q=text`), so a link shows one view. `#count` holds the number of
//! pairs shown; a script error raises `data-errors` on `<body>` (the browser test reads
//! both). The pairs travel as JSON in a `<script type="application/json">` element, with
//! `<` escaped so no text can close it. The same tables give the same bytes.

use std::fmt::Write as _;
use std::path::Path;

use base64::Engine as _;
use serde::Serialize;

use super::view::Report;

/// The page's file name inside `artifacts/report/`.
pub const PAGE_FILE: &str = "index.html";

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

crate::table! {
    /// One generated pair as the browser shows it.
    pub struct BrowserPairRow in "browser_pairs" {
        arm: String,
        pair_id: i64,
        prompt: String,
        y1: String,
        y2: String,
        p_irm: f64,
        p_grm: f64,
        consistent: bool,
        selected: bool,
        /// `y1` | `y2` (None: no label).
        label: Option<String>,
        /// `y1` | `y2` | `tie` (None: eval-labels did not run).
        gold_label: Option<String>,
        gold_1: Option<f64>,
        gold_2: Option<f64>,
    }
}

/// A pair in the page's JSON.
#[derive(Serialize)]
struct PagePair<'a> {
    arm: &'a str,
    iteration: i32,
    pair_id: i64,
    prompt: &'a str,
    y1: &'a str,
    y2: &'a str,
    p_irm: f64,
    p_grm: f64,
    consistent: bool,
    selected: bool,
    label: Option<&'a str>,
    gold_label: Option<&'a str>,
    gold_1: Option<f64>,
    gold_2: Option<f64>,
}

/// Every pair of the public view (arm, iteration, pair order); none without `filter_pairs`.
pub fn pairs(artifacts: &Path) -> anyhow::Result<Vec<(i32, BrowserPairRow)>> {
    let tables: Vec<String> = crate::sql::table_dirs(artifacts)?
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let has = |t: &str| tables.iter().any(|n| n == t);
    if !has("filter_pairs") || !has("responses") {
        return Ok(Vec::new());
    }
    let (gold, join) = if has("eval_label_pairs") {
        (
            "g.gold_label, g.gold_1, g.gold_2",
            "LEFT JOIN eval_label_pairs g ON g.arm = f.arm AND g.iteration = f.iteration \
             AND g.pair_id = f.pair_id",
        )
    } else {
        (
            "CAST(NULL AS VARCHAR) AS gold_label, CAST(NULL AS DOUBLE) AS gold_1, \
             CAST(NULL AS DOUBLE) AS gold_2",
            "",
        )
    };
    let q = format!(
        "SELECT f.arm, f.iteration, f.pair_id, r1.prompt, r1.text AS y1, r2.text AS y2, \
           f.p_irm, f.p_grm, f.consistent, f.selected, f.label, {gold} \
         FROM filter_pairs f \
         JOIN responses r1 ON r1.arm = f.arm AND r1.iteration = f.iteration \
           AND r1.response_id = f.response_id_1 \
         JOIN responses r2 ON r2.arm = f.arm AND r2.iteration = f.iteration \
           AND r2.response_id = f.response_id_2 \
         {join} ORDER BY f.arm, f.iteration, f.pair_id"
    );
    crate::sql::query_rows::<BrowserPairRow>(artifacts, &q)
}

/// The JSON of the pairs, safe inside a `<script>` element.
fn pairs_json(pairs: &[(i32, BrowserPairRow)]) -> anyhow::Result<String> {
    let shown: Vec<PagePair> = pairs
        .iter()
        .map(|(k, r)| PagePair {
            arm: &r.arm,
            iteration: *k,
            pair_id: r.pair_id,
            prompt: &r.prompt,
            y1: &r.y1,
            y2: &r.y2,
            p_irm: r.p_irm,
            p_grm: r.p_grm,
            consistent: r.consistent,
            selected: r.selected,
            label: r.label.as_deref(),
            gold_label: r.gold_label.as_deref(),
            gold_1: r.gold_1,
            gold_2: r.gold_2,
        })
        .collect();
    Ok(serde_json::to_string(&shown)?.replace('<', "\\u003c"))
}

/// `s` with HTML's special characters escaped.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

fn summary_table(report: &Report) -> String {
    let grid = report.grid();
    let mut s = String::from("<table class=\"summary\">\n");
    for (i, row) in grid.iter().enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        s.push_str("<tr>");
        for c in row {
            let _ = write!(s, "<{cell}>{}</{cell}>", esc(c));
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
    s
}

/// The page: `report`'s summary, `charts` (title, PNG bytes) and `pairs`.
pub fn page(
    report: &Report,
    charts: &[(&str, Vec<u8>)],
    pairs: &[(i32, BrowserPairRow)],
) -> anyhow::Result<String> {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>scir report</title>\n<style>\n{STYLE}</style>\n</head>\n\
         <body data-errors=\"0\">\n<h1>scir report</h1>\n\
         <p>Arms: {}. Iteration 0 is M0, iteration k the model after k iterations. Built by \
         <code>scir report</code> from the public tables; query them with <code>scir sql</code>.\
         </p>\n<h2>Summary</h2>\n{}",
        esc(&report.arms.join(", ")),
        summary_table(report)
    );
    s.push_str("<h2>Charts</h2>\n<div class=\"charts\">\n");
    for (title, png) in charts {
        let data = base64::engine::general_purpose::STANDARD.encode(png);
        let _ = writeln!(
            s,
            "<figure><img alt=\"{t}\" src=\"data:image/png;base64,{data}\"></figure>",
            t = esc(title)
        );
    }
    s.push_str("</div>\n<h2>Pairs</h2>\n");
    if pairs.is_empty() {
        s.push_str("<p>No generated pairs in these artifacts (no filter_pairs table).</p>\n");
    }
    let _ = write!(
        s,
        "<div id=\"browser\"{hidden}>\n\
         <div class=\"controls\">\n\
         <label>arm <select id=\"arm\"></select></label>\n\
         <label>iteration <select id=\"iter\"></select></label>\n\
         <label><input type=\"checkbox\" id=\"inconsistent\"> inconsistent pairs</label>\n\
         <label><input type=\"checkbox\" id=\"wrong\"> label disagrees with gold</label>\n\
         <label><input type=\"checkbox\" id=\"selected\"> selected only</label>\n\
         <label>text <input type=\"search\" id=\"q\"></label>\n\
         <span><span id=\"count\">0</span> pairs</span>\n\
         </div>\n\
         <table id=\"pairs\"><thead><tr>\
         <th data-key=\"pair_id\">pair</th><th data-key=\"prompt\">prompt</th>\
         <th data-key=\"y1\">y1</th><th data-key=\"y2\">y2</th>\
         <th data-key=\"p_irm\">p_irm</th><th data-key=\"p_grm\">p_grm</th>\
         <th data-key=\"consistent\">consistent</th><th data-key=\"selected\">selected</th>\
         <th data-key=\"label\">label</th><th data-key=\"gold_label\">gold</th>\
         </tr></thead><tbody></tbody></table>\n</div>\n",
        hidden = if pairs.is_empty() { " hidden" } else { "" }
    );
    let _ = write!(
        s,
        "<script id=\"pair-data\" type=\"application/json\">{}</script>\n\
         <script>\n{SCRIPT}</script>\n</body>\n</html>\n",
        pairs_json(pairs)?
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(arm: &str, id: i64, text: &str) -> (i32, BrowserPairRow) {
        (
            1,
            BrowserPairRow {
                arm: arm.into(),
                pair_id: id,
                prompt: "p".into(),
                y1: text.into(),
                y2: "b".into(),
                p_irm: 0.7,
                p_grm: 0.4,
                consistent: false,
                selected: true,
                label: Some("y1".into()),
                gold_label: None,
                gold_1: None,
                gold_2: None,
            },
        )
    }

    #[test]
    fn no_text_can_close_the_data_script() {
        let json = pairs_json(&[row("scir", 0, "</script><b>x</b>")]).unwrap();
        assert!(!json.contains('<'), "{json}");
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0]["y1"], "</script><b>x</b>");
        assert_eq!(back[0]["gold_label"], serde_json::Value::Null);
    }

    #[test]
    fn the_page_is_self_contained() {
        let report = Report {
            arms: vec!["a<b".into()],
            metrics: vec![],
            summary: vec![],
            rows: vec![],
        };
        let html = page(&report, &[("gold", vec![1, 2, 3])], &[row("a<b", 0, "y")]).unwrap();
        assert!(html.contains("a&lt;b"));
        assert!(html.contains("src=\"data:image/png;base64,AQID\""));
        for remote in ["http://", "https://", "src=\"/", "href="] {
            assert!(!html.contains(remote), "{remote}");
        }
    }
}
