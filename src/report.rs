//! The human view of an analysis: each connection as a readable timeline (channel, session,
//! subscriptions, publish cadence, the break, each recovery step, the verdict in one sentence),
//! as text (`uatap analyze --timeline`) or as a self-contained HTML page with a chart of publish
//! sequence numbers over time per subscription, gaps marked (`--html`).
//!
//! It reads the events of the JSON contract, so it shows the same story as `--json`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::Value;

/// One line of a timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// Seconds since the connection's first event.
    pub at: f64,
    /// `info`, `warn` or `bad`: how much it should stand out.
    pub level: &'static str,
    /// What happened, for a person.
    pub text: String,
}

/// A connection's timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Timeline {
    /// Connection id.
    pub conn: String,
    /// Its first event's time (RFC 3339).
    pub start: String,
    /// The lines, in order.
    pub lines: Vec<Line>,
    /// One sentence per recovery or problem, the headline.
    pub verdicts: Vec<String>,
}

/// One PublishResponse, for the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// Unix seconds.
    pub t: f64,
    /// NotificationMessage sequence number.
    pub seq: u64,
    /// A keep-alive (no notification).
    pub keep_alive: bool,
}

/// A sequence gap, for the chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Unix seconds.
    pub t: f64,
    /// Expected sequence number.
    pub expected: u64,
    /// Received one.
    pub got: u64,
    /// Missing numbers.
    pub missing: Vec<u64>,
}

/// The whole report: timelines and one series per subscription.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// One per connection, in the order they first appear.
    pub timelines: Vec<Timeline>,
    /// Publish points per subscription id.
    pub series: BTreeMap<u64, Vec<Point>>,
    /// Gaps per subscription id.
    pub gaps: BTreeMap<u64, Vec<Gap>>,
    /// Breaks (connection closes and faults): time and label.
    pub breaks: Vec<(f64, String)>,
}

/// RFC 3339 with microseconds to Unix seconds (UTC only, as the events write it).
fn unix_seconds(ts: &str) -> Option<f64> {
    let t = crate::analyze::parse_time(ts).ok()?;
    Some(t.unix_micros as f64 / 1e6)
}

fn s<'a>(e: &'a Value, k: &str) -> &'a str {
    e.get(k).and_then(Value::as_str).unwrap_or("?")
}

fn n(e: &Value, k: &str) -> Option<u64> {
    e.get(k).and_then(Value::as_u64)
}

/// `118–124`, `5, 7, 9–11`.
pub fn ranges(nums: &[u64]) -> String {
    uatap_analysis::reconnect::ranges(nums)
}

fn nums(e: &Value, k: &str) -> Vec<u64> {
    e.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default()
}

/// The verdict of a `reconnect` event in one sentence (the same as the live log's).
pub fn reconnect_sentence(e: &Value) -> String {
    let fails: Vec<&str> = e
        .get("rules")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter(|r| r.get("verdict").and_then(Value::as_str) == Some("FAIL"))
                .filter_map(|r| r.get("id").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    uatap_analysis::reconnect::Story {
        // Events written before `came_back` existed count as having come back.
        came_back: e.get("came_back").and_then(Value::as_bool).unwrap_or(true),
        session_reused: e.get("session_reused").and_then(Value::as_bool) == Some(true),
        transferred: e
            .get("transferred")
            .and_then(Value::as_array)
            .map_or(0, Vec::len),
        republished: nums(e, "republished"),
        lost: nums(e, "lost"),
        downtime_ms: e.get("downtime_ms").and_then(Value::as_f64),
        failed_rules: fails,
    }
    .sentence()
}

/// Publishes of one subscription seen in a row, shown as one line.
struct Run {
    sub: u64,
    first_at: f64,
    last_at: f64,
    first_seq: u64,
    last_seq: u64,
    responses: u64,
    keep_alives: u64,
    notifications: u64,
}

impl Run {
    fn line(&self) -> Line {
        let every = if self.responses > 1 {
            format!(
                ", every ~{:.0} ms",
                (self.last_at - self.first_at) * 1000.0 / (self.responses - 1) as f64
            )
        } else {
            String::new()
        };
        let ka = if self.keep_alives > 0 {
            format!(", {} keep-alive(s)", self.keep_alives)
        } else {
            String::new()
        };
        Line {
            at: self.first_at,
            level: "info",
            text: format!(
                "subscription {}: {} PublishResponse(s), seq {}–{}{every}{ka}, {} notification(s)",
                self.sub, self.responses, self.first_seq, self.last_seq, self.notifications
            ),
        }
    }
}

/// Builds the report from events (in order).
pub fn build(events: &[Value]) -> Report {
    let mut report = Report::default();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    let mut starts: Vec<f64> = Vec::new();
    let mut runs: BTreeMap<usize, Run> = BTreeMap::new();
    for e in events {
        let conn = s(e, "conn").to_string();
        let Some(t) = e.get("ts").and_then(Value::as_str).and_then(unix_seconds) else {
            continue;
        };
        let i = *index.entry(conn.clone()).or_insert_with(|| {
            report.timelines.push(Timeline {
                conn: conn.clone(),
                start: s(e, "ts").to_string(),
                lines: Vec::new(),
                verdicts: Vec::new(),
            });
            starts.push(t);
            report.timelines.len() - 1
        });
        let at = t - starts[i];
        let kind = s(e, "kind");
        if kind == "publish" {
            let (Some(sub), Some(seq)) = (n(e, "subscription_id"), n(e, "sequence_number")) else {
                continue;
            };
            let keep_alive = e.get("keep_alive").and_then(Value::as_bool) == Some(true);
            report
                .series
                .entry(sub)
                .or_default()
                .push(Point { t, seq, keep_alive });
            let notes = n(e, "notifications").unwrap_or(0);
            match runs.get_mut(&i) {
                Some(r) if r.sub == sub => {
                    r.last_at = at;
                    r.last_seq = seq;
                    r.responses += 1;
                    r.keep_alives += u64::from(keep_alive);
                    r.notifications += notes;
                }
                _ => {
                    if let Some(r) = runs.remove(&i) {
                        report.timelines[i].lines.push(r.line());
                    }
                    runs.insert(
                        i,
                        Run {
                            sub,
                            first_at: at,
                            last_at: at,
                            first_seq: seq,
                            last_seq: seq,
                            responses: 1,
                            keep_alives: u64::from(keep_alive),
                            notifications: notes,
                        },
                    );
                }
            }
            continue;
        }
        let line = describe(e, kind);
        let Some((level, text)) = line else {
            continue;
        };
        if let Some(r) = runs.remove(&i) {
            report.timelines[i].lines.push(r.line());
        }
        match kind {
            "sequence_gap" => {
                if let Some(sub) = n(e, "subscription_id") {
                    report.gaps.entry(sub).or_default().push(Gap {
                        t,
                        expected: n(e, "expected").unwrap_or(0),
                        got: n(e, "got").unwrap_or(0),
                        missing: nums(e, "missing"),
                    });
                }
            }
            "conn_close" => report.breaks.push((t, format!("closed by {}", s(e, "by")))),
            "fault_injected" => report.breaks.push((t, format!("fault {}", s(e, "fault")))),
            "reconnect" => {
                let v = reconnect_sentence(e);
                report.timelines[i].verdicts.push(v);
            }
            _ => {}
        }
        report.timelines[i].lines.push(Line { at, level, text });
    }
    for (i, r) in runs {
        report.timelines[i].lines.push(r.line());
    }
    report
}

/// The timeline line of an event, or `None` for events the timeline leaves out.
fn describe(e: &Value, kind: &str) -> Option<(&'static str, String)> {
    let status = || {
        e.get("status_name")
            .and_then(Value::as_str)
            .or_else(|| e.get("status").and_then(Value::as_str))
            .unwrap_or("?")
            .to_string()
    };
    let good = || {
        e.get("status")
            .and_then(Value::as_str)
            .is_none_or(|s| s.starts_with("0x0") || s.starts_with("0x4"))
    };
    Some(match kind {
        "conn_open" => (
            "info",
            format!("TCP open: {} -> {}", s(e, "client"), s(e, "server")),
        ),
        "conn_close" => {
            let level = if s(e, "reason") == "fin" {
                "info"
            } else {
                "warn"
            };
            (
                level,
                format!(
                    "TCP closed by {} ({}), {} bytes up, {} bytes down",
                    s(e, "by"),
                    s(e, "reason"),
                    n(e, "bytes_c2s").unwrap_or(0),
                    n(e, "bytes_s2c").unwrap_or(0)
                ),
            )
        }
        "upstream_error" => (
            "bad",
            format!("server unreachable: {} ({})", s(e, "error"), s(e, "detail")),
        ),
        "hello" if e.get("endpoint_url").is_some_and(Value::is_string) => {
            ("info", format!("HEL to {}", s(e, "endpoint_url")))
        }
        "tcp_error" => ("bad", format!("ERR {}: {}", status(), s(e, "reason"))),
        "abort" => ("bad", format!("message aborted: {}", status())),
        "secure_channel" => {
            let ok = s(e, "outcome") == "ok";
            (
                if ok { "info" } else { "bad" },
                format!(
                    "SecureChannel {} {} ({} {}): {}{}",
                    e.get("channel_id").map_or("?".into(), Value::to_string),
                    s(e, "request_type"),
                    s(e, "policy"),
                    s(e, "mode"),
                    s(e, "outcome"),
                    if ok {
                        String::new()
                    } else {
                        format!(", {}", status())
                    }
                ),
            )
        }
        "session" => (
            if good() { "info" } else { "bad" },
            format!(
                "session {}: {}{}{}",
                s(e, "action"),
                status(),
                e.get("identity")
                    .and_then(Value::as_str)
                    .map_or(String::new(), |i| format!(" ({i})")),
                if e.get("reused_on_new_channel").and_then(Value::as_bool) == Some(true) {
                    ", reused on a new channel"
                } else {
                    ""
                }
            ),
        ),
        "subscription" => (
            if good() { "info" } else { "bad" },
            format!(
                "subscription {} {}: {}{}",
                e.get("subscription_id")
                    .map_or("?".into(), Value::to_string),
                s(e, "action"),
                status(),
                e.get("revised_publishing_interval_ms")
                    .and_then(Value::as_f64)
                    .map_or(String::new(), |ms| format!(", every {ms} ms"))
            ),
        ),
        "sequence_gap" => (
            "bad",
            if e.get("duplicate").and_then(Value::as_bool) == Some(true) {
                format!(
                    "subscription {}: sequence number {} repeated",
                    e.get("subscription_id")
                        .map_or("?".into(), Value::to_string),
                    e.get("got").map_or("?".into(), Value::to_string)
                )
            } else {
                format!(
                    "GAP subscription {}: expected {}, got {} (missing {})",
                    e.get("subscription_id")
                        .map_or("?".into(), Value::to_string),
                    e.get("expected").map_or("?".into(), Value::to_string),
                    e.get("got").map_or("?".into(), Value::to_string),
                    ranges(&nums(e, "missing"))
                )
            },
        ),
        "republish" => (
            if good() { "info" } else { "warn" },
            format!(
                "Republish subscription {} seq {}: {}",
                e.get("subscription_id")
                    .map_or("?".into(), Value::to_string),
                e.get("retransmit_sequence_number")
                    .map_or("?".into(), Value::to_string),
                status()
            ),
        ),
        "reconnect" => (
            if e.get("recovered").and_then(Value::as_bool) == Some(true) {
                "info"
            } else {
                "bad"
            },
            format!("RECONNECT: {}", reconnect_sentence(e)),
        ),
        "service_fault" if e.get("normal").and_then(Value::as_bool) != Some(true) => (
            "warn",
            format!("{} failed: {}", s(e, "for_service"), status()),
        ),
        "reject" => (
            "bad",
            format!(
                "REJECTED at {}: {} — {}",
                s(e, "stage"),
                status(),
                s(e, "explanation")
            ),
        ),
        "fault_injected" => (
            "warn",
            format!("FAULT {}: {}", s(e, "fault"), s(e, "detail")),
        ),
        "decode_error" => ("warn", format!("undecodable bytes: {}", s(e, "what"))),
        "item_quality" => (
            "warn",
            format!(
                "item {} quality {} -> {}",
                s(e, "node_id"),
                s(e, "from"),
                s(e, "to_name")
            ),
        ),
        "item_stale" => ("warn", format!("item {} stopped changing", s(e, "node_id"))),
        _ => return None,
    })
}

/// The text timeline.
pub fn text(r: &Report) -> String {
    let mut out = String::new();
    for t in &r.timelines {
        let _ = writeln!(out, "Connection {} (from {})", t.conn, t.start);
        for l in &t.lines {
            let mark = match l.level {
                "bad" => "!!",
                "warn" => " !",
                _ => "  ",
            };
            let _ = writeln!(out, "{mark} +{:>9.3}s  {}", l.at, l.text);
        }
        for v in &t.verdicts {
            let _ = writeln!(out, "   Verdict: {v}");
        }
        out.push('\n');
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The self-contained HTML page (no script, no external resource).
pub fn html(r: &Report, title: &str) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>\
body{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\
h2{{font-size:1.1em;margin-top:1.6em}} .verdict{{font-weight:bold;padding:.4em .6em;background:#eef}}\
ol.tl{{list-style:none;padding:0;font-family:ui-monospace,monospace;font-size:.9em}}\
ol.tl li.bad{{color:#b00;font-weight:bold}} ol.tl li.warn{{color:#a60}}\
.at{{display:inline-block;width:7em;color:#777}} svg{{border:1px solid #ccc;background:#fff}}\
.legend span{{margin-right:1.5em}}</style></head><body><h1>{}</h1>",
        esc(title),
        esc(title)
    );
    for t in &r.timelines {
        let _ = write!(
            h,
            "<h2>Connection {} <small>from {}</small></h2>",
            esc(&t.conn),
            esc(&t.start)
        );
        for v in &t.verdicts {
            let _ = write!(h, "<p class=\"verdict\">{}</p>", esc(v));
        }
        h.push_str("<ol class=\"tl\">");
        for l in &t.lines {
            let _ = write!(
                h,
                "<li class=\"{}\"><span class=\"at\">+{:.3} s</span>{}</li>",
                l.level,
                l.at,
                esc(&l.text)
            );
        }
        h.push_str("</ol>");
    }
    for (sub, points) in &r.series {
        h.push_str(&chart(
            *sub,
            points,
            r.gaps.get(sub).map_or(&[][..], Vec::as_slice),
            &r.breaks,
        ));
    }
    h.push_str("</body></html>\n");
    h
}

/// One subscription's chart: sequence number over time, gaps in red.
fn chart(sub: u64, points: &[Point], gaps: &[Gap], breaks: &[(f64, String)]) -> String {
    const W: f64 = 900.0;
    const H: f64 = 300.0;
    const PAD: f64 = 45.0;
    let t0 = points.iter().map(|p| p.t).fold(f64::INFINITY, f64::min);
    let t1 = points.iter().map(|p| p.t).fold(f64::NEG_INFINITY, f64::max);
    let s0 = points.iter().map(|p| p.seq).min().unwrap_or(0) as f64;
    let s1 = points.iter().map(|p| p.seq).max().unwrap_or(1) as f64;
    let span_t = (t1 - t0).max(1e-3);
    let span_s = (s1 - s0).max(1.0);
    let x = |t: f64| PAD + (t - t0) / span_t * (W - 2.0 * PAD);
    let y = |s: f64| H - PAD - (s - s0) / span_s * (H - 2.0 * PAD);
    let mut c = String::new();
    let _ = write!(
        c,
        "<h2>Subscription {sub}: publish sequence numbers over time</h2>\
<p class=\"legend\"><span style=\"color:#26c\">● data</span><span style=\"color:#999\">○ keep-alive</span>\
<span style=\"color:#d00\">▮ gap</span><span style=\"color:#888\">┆ close / fault</span></p>\
<svg class=\"chart\" data-subscription=\"{sub}\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    let _ = write!(
        c,
        "<line x1=\"{PAD}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"#444\"/><line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{b}\" stroke=\"#444\"/>\
<text x=\"{PAD}\" y=\"{ty}\" font-size=\"11\">+0 s</text><text x=\"{r}\" y=\"{ty}\" font-size=\"11\" text-anchor=\"end\">+{span:.1} s</text>\
<text x=\"4\" y=\"{b}\" font-size=\"11\">{s0}</text><text x=\"4\" y=\"{PAD}\" font-size=\"11\">{s1}</text>",
        b = H - PAD,
        r = W - PAD,
        ty = H - PAD + 16.0,
        span = span_t,
    );
    for (t, label) in breaks.iter().filter(|(t, _)| *t >= t0 && *t <= t1) {
        let _ = write!(
            c,
            "<line class=\"break\" x1=\"{0:.1}\" y1=\"{PAD}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#888\" stroke-dasharray=\"4 3\"><title>{2}</title></line>",
            x(*t),
            H - PAD,
            esc(label)
        );
    }
    for g in gaps {
        let gx = x(g.t);
        let (ya, yb) = (y(g.expected as f64), y(g.got as f64));
        let _ = write!(
            c,
            "<g class=\"gap\" data-missing=\"{m}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"8\" height=\"{:.1}\" fill=\"#d00\" opacity=\"0.8\"/>\
<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" fill=\"#d00\">missing {m}</text></g>",
            gx - 4.0,
            yb.min(ya) - 6.0,
            (ya - yb).abs() + 12.0,
            gx + 7.0,
            yb.min(ya) - 8.0,
            m = esc(&ranges(&g.missing)),
        );
    }
    for p in points {
        let (fill, r) = if p.keep_alive {
            ("none", 2.5)
        } else {
            ("#26c", 2.5)
        };
        let stroke = if p.keep_alive { "#999" } else { "#26c" };
        let _ = write!(
            c,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{fill}\" stroke=\"{stroke}\"/>",
            x(p.t),
            y(p.seq as f64)
        );
    }
    c.push_str("</svg>");
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(ts: &str, kind: &str, extra: Value) -> Value {
        let mut e = json!({"v": 1, "ts": ts, "conn": "c1", "kind": kind, "dir": null});
        for (k, v) in extra.as_object().unwrap() {
            e[k] = v.clone();
        }
        e
    }

    #[test]
    fn ranges_are_compact() {
        assert_eq!(ranges(&[118, 119, 120, 124, 5]), "5, 118–120, 124");
        assert_eq!(ranges(&[]), "");
    }

    #[test]
    fn publishes_collapse_and_gaps_stand_out() {
        let mut events = vec![ev(
            "2026-11-23T10:00:00Z",
            "conn_open",
            json!({"client": "a", "server": "b"}),
        )];
        for (i, seq) in [1u64, 2, 3, 5, 6].iter().enumerate() {
            let ts = format!("2026-11-23T10:00:0{}.500000Z", i);
            if *seq == 5 {
                events.push(ev(&ts, "sequence_gap", json!({"subscription_id": 7, "expected": 4, "got": 5, "missing": [4], "duplicate": false})));
            }
            events.push(ev(&ts, "publish", json!({"subscription_id": 7, "sequence_number": seq, "keep_alive": false, "notifications": 1})));
        }
        events.push(ev(
            "2026-11-23T10:00:09Z",
            "reconnect",
            json!({
            "session_reused": false, "republished": [], "lost": [118, 119, 120], "recovered": false,
            "transferred": [], "downtime_ms": 2500.0,
            "rules": [{"id": "R5", "verdict": "FAIL", "ok": false, "detail": "x"}]}),
        ));
        let r = build(&events);
        let t = text(&r);
        assert!(
            t.contains("subscription 7: 3 PublishResponse(s), seq 1–3, every ~1000 ms"),
            "{t}"
        );
        assert!(
            t.contains("!! +    3.500s  GAP subscription 7: expected 4, got 5 (missing 4)"),
            "{t}"
        );
        assert!(
            t.contains("subscription 7: 2 PublishResponse(s), seq 5–6"),
            "{t}"
        );
        assert!(t.contains("Verdict: client created a new session; notifications 118–120 were never delivered (down 2.5 s); rules not followed: R5"), "{t}");
        assert_eq!(r.series[&7].len(), 5);
        assert_eq!(r.gaps[&7][0].missing, vec![4]);
        let page = html(&r, "t");
        assert_eq!(page.matches("class=\"gap\"").count(), 1);
        assert!(page.contains("missing 4"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn a_client_that_never_came_back_reads_as_such() {
        let e = json!({"came_back": false, "session_reused": false, "republished": [], "lost": [7, 8], "recovered": false, "transferred": [], "rules": []});
        assert_eq!(
            reconnect_sentence(&e),
            "client did not come back; notifications 7–8 were never delivered"
        );
    }

    #[test]
    fn a_clean_recovery_reads_as_such() {
        let e = json!({"session_reused": true, "republished": [4, 5, 6], "lost": [], "recovered": true, "transferred": [], "rules": []});
        assert_eq!(
            reconnect_sentence(&e),
            "client reused its session and republished 3 of 3 missing notification(s); nothing lost"
        );
    }
}
