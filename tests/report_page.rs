//! The report page (`artifacts/report/index.html`) in a real headless browser: Debian's
//! `chromium`, which `.ci/run` installs. Outside CI, without a chromium on PATH (or in
//! `SCIR_CHROMIUM`), the browser half is skipped with a note; in CI (`CI` set) a missing
//! browser fails the test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{scir, stdout_ok};

/// The browser to drive, if any.
fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("SCIR_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |d| d.join(name)))
        .find(|p| p.is_file())
}

/// Headless chromium on `url` with `args` (`--dump-dom` or `--screenshot=…`): stdout, and
/// stderr (where console messages go).
fn headless(browser: &Path, url: &str, args: &[&str]) -> (String, String) {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1400,1800",
        ])
        .args(args)
        .arg(url)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "chromium failed: {stderr}");
    (stdout, stderr)
}

/// The text of the element with `id` in a dumped DOM.
fn element_text<'a>(dom: &'a str, id: &str) -> &'a str {
    let open = format!("id=\"{id}\">");
    let start = dom
        .find(&open)
        .unwrap_or_else(|| panic!("no #{id} in {dom}"))
        + open.len();
    let end = start + dom[start..].find('<').unwrap();
    &dom[start..end]
}

/// One number from `scir sql`.
fn count(artifacts: &Path, q: &str) -> usize {
    let out = stdout_ok(&scir(&[
        "sql",
        q,
        "--format",
        "csv",
        "--artifacts",
        artifacts.to_str().unwrap(),
    ]));
    out.lines().nth(1).unwrap().trim().parse().unwrap()
}

/// The page of `artifacts` (a smoke run of the default pipeline, reported): self-contained,
/// and in the browser it loads without a script error, filters to the rows SQL counts, and
/// takes a screenshot.
pub fn check(artifacts: &Path) {
    let page = artifacts.join("report").join("index.html");
    let html = std::fs::read_to_string(&page).unwrap();
    for remote in ["http://", "https://", "href=", "src=\"/", "@import"] {
        assert!(!html.contains(remote), "the page refers to {remote}…");
    }
    assert!(
        html.contains("<img alt=\"gold score on held-out prompts\" src=\"data:image/png;base64,")
    );
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no chromium on PATH: .ci/run installs Debian's chromium for this test"
        );
        eprintln!("report page: no chromium on PATH, browser check skipped");
        return;
    };
    let pairs = "FROM filter_pairs f JOIN eval_label_pairs g ON g.arm = f.arm AND \
                 g.iteration = f.iteration AND g.pair_id = f.pair_id WHERE f.arm = 'srlm' \
                 AND f.iteration = 2";
    let views = [
        ("arm=srlm&iter=2", String::new()),
        (
            "arm=srlm&iter=2&inconsistent=1",
            " AND NOT f.consistent".into(),
        ),
        (
            "arm=srlm&iter=2&wrong=1",
            " AND f.label IS NOT NULL AND g.gold_label <> 'tie' AND f.label <> g.gold_label".into(),
        ),
        (
            "arm=srlm&iter=2&selected=1&inconsistent=1",
            " AND f.selected AND NOT f.consistent".into(),
        ),
    ];
    let url = |hash: &str| format!("file://{}#{hash}", page.display());
    let mut counts = Vec::new();
    for (hash, filter) in &views {
        let want = count(artifacts, &format!("SELECT count(*) {pairs}{filter}"));
        let (dom, console) = headless(&browser, &url(hash), &["--dump-dom"]);
        assert!(
            dom.contains("data-errors=\"0\""),
            "script error at #{hash}: {console}"
        );
        assert!(!console.contains("Uncaught"), "#{hash}: {console}");
        let shown: usize = element_text(&dom, "count").parse().unwrap();
        assert_eq!(shown, want, "#{hash}");
        counts.push(want);
    }
    assert!(counts[0] > 0, "no pairs to browse");
    assert!(
        counts[1..].iter().any(|&n| n < counts[0]),
        "no filter narrowed the view: {counts:?}"
    );
    let shot = tempfile::tempdir().unwrap();
    let png = shot.path().join("report.png");
    let arg = format!("--screenshot={}", png.display());
    headless(&browser, &url(views[1].0), &[&arg]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "screenshot"
    );
    if let Some(keep) = std::env::var_os("SCIR_KEEP_SCREENSHOT") {
        std::fs::copy(&png, keep).unwrap();
    }
}
