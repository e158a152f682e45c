//! The human view: `uatap analyze --timeline` and `--html` on a recording where the proxy
//! dropped a PublishResponse; the HTML page is rendered in headless Chromium, which must show
//! the gap.

use std::process::Command;

use serde_json::Value;

use crate::faults::{chunks, drop_message_exchange, seqs};
use crate::util::{peers_dir, temp_dir};

#[test]
fn timeline_and_html_report_show_the_gap() {
    let dir = temp_dir("report");
    let rec = dir.join("rec.pcapng");
    let (s2c, _got, _events) = drop_message_exchange(&dir, &["--record", rec.to_str().unwrap()]);
    let dropped = chunks(&s2c)
        .iter()
        .find_map(|c| seqs(c).1)
        .expect("a PublishResponse");

    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--timeline"])
        .arg(&rec)
        .output()
        .expect("uatap analyze");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.contains(&format!("(missing {dropped})")),
        "the timeline names the gap:\n{text}"
    );
    assert!(
        text.contains("SecureChannel 1 issue (None None): ok"),
        "{text}"
    );

    let html = dir.join("report.html");
    let shot = dir.join("report.png");
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(["analyze", "--html"])
        .arg(&html)
        .arg(&rec)
        .output()
        .expect("uatap analyze --html");
    assert!(out.status.success());
    let out = Command::new("node")
        .arg(peers_dir().join("render_check.js"))
        .arg(&html)
        .arg(&shot)
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "Chromium renders the report: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(seen["charts"], 1, "{seen}");
    let gaps = seen["gaps"].as_array().expect("gaps");
    assert_eq!(gaps.len(), 1, "{seen}");
    assert_eq!(gaps[0]["missing"], dropped.to_string());
    assert_eq!(gaps[0]["text"], format!("missing {dropped}"));
    assert!(gaps[0]["width"].as_f64().unwrap() > 0.0);
    assert!(gaps[0]["height"].as_f64().unwrap() > 0.0);
    assert_eq!(gaps[0]["inside"], true, "{seen}");
    assert!(seen["timeline_lines"].as_u64().unwrap() > 5);
    assert!(std::fs::metadata(&shot).expect("screenshot").len() > 1000);
    let _ = std::fs::remove_dir_all(dir);
}
