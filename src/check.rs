//! `uatap check`: a CI gate over the events of a capture. It holds them against expectations
//! written in TOML (events that must, or must not, occur) and/or against a golden snapshot of
//! the whole event stream, and exits 0 when everything holds, 1 with a report when not.
//!
//! ```toml
//! [[expect]]
//! kind = "hello"
//! endpoint_url = "opc.tcp://127.0.0.1:48401/UA/Test"
//! description = "the client asks for the test endpoint"
//!
//! [[expect]]
//! kind = "message"
//! service = "PublishResponse"
//! count = 31
//!
//! [[forbid]]
//! kind = "decode_error"
//! ```
//!
//! Every key of a table besides `kind`, `count` and `description` names a field of the event
//! JSON (docs/EVENTS.md) and must equal it: strings, numbers (`100` matches `100.0`), booleans
//! and arrays (same length, element by element) by value, tables as a subset of the object
//! (`client_cert = { subject = "CN=plc" }` ignores the certificate's other fields).

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde_json::{Map, Value};
use uatap_analysis::Options;

use crate::analyze;

/// Options of `uatap check`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The capture file (pcap or pcapng).
    pub capture: PathBuf,
    /// The expectations: `[[expect]]` and `[[forbid]]` tables naming an event `kind` and field
    /// values. Optional with --snapshot.
    #[arg(value_name = "EXPECT.toml")]
    pub expect: Option<PathBuf>,
    /// Also compare the whole event stream (JSON Lines, messages included) with this file.
    #[arg(long, value_name = "GOLDEN")]
    pub snapshot: Option<PathBuf>,
    /// Write the event stream to the --snapshot file instead of comparing with it.
    #[arg(long, requires = "snapshot")]
    pub update: bool,
}

/// At most this many nearest candidates shown for a failed expectation.
const MAX_CANDIDATES: usize = 3;
/// At most this many offending events shown for a violated forbid.
const MAX_OFFENDERS: usize = 5;
/// At most this many `-`/`+` lines of a snapshot diff.
const MAX_DIFF_LINES: usize = 40;

/// An expectation or a forbid: events of `kind` whose fields equal `fields`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Event kind (`hello`, `message`, ...).
    pub kind: String,
    /// Field name and expected value, in file order.
    pub fields: Vec<(String, Value)>,
    /// Exact number of matching events (expectations only); `None`: at least one.
    pub count: Option<u64>,
    /// Shown in the report.
    pub description: Option<String>,
}

/// The contents of an EXPECT.toml.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Spec {
    /// `[[expect]]` tables.
    pub expects: Vec<Rule>,
    /// `[[forbid]]` tables.
    pub forbids: Vec<Rule>,
}

impl Spec {
    /// Some rule is about `message` events, which the analysis emits only when asked.
    pub fn needs_messages(&self) -> bool {
        self.expects
            .iter()
            .chain(&self.forbids)
            .any(|r| r.kind == "message")
    }
}

/// Parses an EXPECT.toml; the error is one line.
pub fn parse_spec(text: &str) -> Result<Spec, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!(" at line {line}, column {col}")
            })
            .unwrap_or_default();
        format!(
            "invalid TOML{at}: {}",
            e.message().trim().replace('\n', "; ")
        )
    })?;
    let mut spec = Spec::default();
    for (key, value) in table {
        let forbid = match key.as_str() {
            "expect" => false,
            "forbid" => true,
            other => {
                return Err(format!(
                    "unknown top-level key `{other}` (only [[expect]] and [[forbid]] tables)"
                ))
            }
        };
        let toml::Value::Array(items) = value else {
            return Err(format!(
                "`{key}` must be an array of tables, written [[{key}]]"
            ));
        };
        for (i, item) in items.into_iter().enumerate() {
            let where_ = format!("[[{key}]] #{}", i + 1);
            let toml::Value::Table(t) = item else {
                return Err(format!("{where_}: not a table"));
            };
            let rule = parse_rule(t, forbid).map_err(|e| format!("{where_}: {e}"))?;
            if forbid {
                spec.forbids.push(rule);
            } else {
                spec.expects.push(rule);
            }
        }
    }
    if spec.expects.is_empty() && spec.forbids.is_empty() {
        return Err("no [[expect]] or [[forbid]] table".into());
    }
    Ok(spec)
}

fn parse_rule(t: toml::Table, forbid: bool) -> Result<Rule, String> {
    let mut kind = None;
    let mut count = None;
    let mut description = None;
    let mut fields = Vec::new();
    for (key, value) in t {
        match key.as_str() {
            "kind" => match value {
                toml::Value::String(s) if !s.is_empty() => kind = Some(s),
                _ => return Err("`kind` must be a non-empty string".into()),
            },
            "count" if forbid => {
                return Err("`count` is not allowed in a forbid (a forbid means none)".into())
            }
            "count" => match value {
                toml::Value::Integer(n) if n >= 0 => count = Some(n as u64),
                _ => return Err("`count` must be a non-negative integer".into()),
            },
            "description" => match value {
                toml::Value::String(s) => description = Some(s),
                _ => return Err("`description` must be a string".into()),
            },
            _ => fields.push((key, toml_to_json(value))),
        }
    }
    let kind = kind.ok_or("missing `kind` (the event kind, e.g. kind = \"hello\")")?;
    Ok(Rule {
        kind,
        fields,
        count,
        description,
    })
}

fn toml_to_json(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        // Times are strings in the event JSON.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => {
            Value::Object(t.into_iter().map(|(k, v)| (k, toml_to_json(v))).collect())
        }
    }
}

/// Whether an event value matches an expected one: numbers by value whatever their JSON form,
/// arrays element by element, objects as a subset (keys not in the pattern are ignored).
pub fn value_matches(pattern: &Value, actual: &Value) -> bool {
    match (pattern, actual) {
        (Value::Number(p), Value::Number(a)) => match (p.as_i64(), a.as_i64()) {
            (Some(x), Some(y)) => x == y,
            _ => match (p.as_u64(), a.as_u64()) {
                (Some(x), Some(y)) => x == y,
                _ => p.as_f64() == a.as_f64(),
            },
        },
        (Value::Array(p), Value::Array(a)) => {
            p.len() == a.len() && p.iter().zip(a).all(|(p, a)| value_matches(p, a))
        }
        (Value::Object(p), Value::Object(a)) => p
            .iter()
            .all(|(k, pv)| a.get(k).is_some_and(|av| value_matches(pv, av))),
        _ => pattern == actual,
    }
}

/// Whether an event (its JSON object) is of the rule's kind and has all its field values.
pub fn matches(rule: &Rule, event: &Value) -> bool {
    event.get("kind").and_then(Value::as_str) == Some(rule.kind.as_str())
        && rule
            .fields
            .iter()
            .all(|(k, v)| event.get(k).is_some_and(|a| value_matches(v, a)))
}

/// One field where an event differs from a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDiff {
    /// Path of the field: `endpoint_url`, `client_cert.subject`, `acks[0]`.
    pub field: String,
    /// What the rule asks for.
    pub expected: Value,
    /// What the event has; `None`: no such field.
    pub got: Option<Value>,
    /// For a missing field, the event's field with the closest name.
    pub did_you_mean: Option<String>,
}

impl std::fmt::Display for FieldDiff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: expected {}, got ", self.field, self.expected)?;
        match (&self.got, &self.did_you_mean) {
            (Some(v), _) => write!(f, "{v}"),
            (None, Some(s)) => write!(f, "no such field (did you mean `{s}`?)"),
            (None, None) => write!(f, "no such field"),
        }
    }
}

/// The fields where an event differs from a rule (the kind is not compared).
pub fn field_diffs(rule: &Rule, event: &Value) -> Vec<FieldDiff> {
    let mut out = Vec::new();
    let obj = event.as_object();
    for (k, v) in &rule.fields {
        diff_value(k, v, obj.and_then(|o| o.get(k)), obj, &mut out);
    }
    out
}

fn diff_value(
    path: &str,
    pattern: &Value,
    actual: Option<&Value>,
    parent: Option<&Map<String, Value>>,
    out: &mut Vec<FieldDiff>,
) {
    match (pattern, actual) {
        (Value::Object(p), Some(Value::Object(a))) => {
            for (k, pv) in p {
                diff_value(&format!("{path}.{k}"), pv, a.get(k), Some(a), out);
            }
        }
        (Value::Array(p), Some(Value::Array(a))) if p.len() == a.len() => {
            for (i, (pv, av)) in p.iter().zip(a).enumerate() {
                diff_value(&format!("{path}[{i}]"), pv, Some(av), None, out);
            }
        }
        (_, Some(a)) if value_matches(pattern, a) => {}
        _ => {
            let did_you_mean = match (actual, parent) {
                (None, Some(parent)) => {
                    let name = path.rsplit(['.', ']']).next().unwrap_or(path);
                    closest(name, parent.keys().map(String::as_str))
                }
                _ => None,
            };
            out.push(FieldDiff {
                field: path.to_string(),
                expected: pattern.clone(),
                got: actual.cloned(),
                did_you_mean,
            });
        }
    }
}

/// The candidate nearest to `name` by edit distance, when near enough to be a typo.
fn closest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    candidates
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// `kind field=value ...` as shown in the report.
pub fn describe(rule: &Rule) -> String {
    let mut s = rule.kind.clone();
    for (k, v) in &rule.fields {
        let _ = write!(s, " {k}={v}");
    }
    if let Some(n) = rule.count {
        let _ = write!(s, " count={n}");
    }
    s
}

fn with_description(mut line: String, rule: &Rule) -> String {
    if let Some(d) = &rule.description {
        let _ = write!(line, " -- {d}");
    }
    line
}

/// The verdict on one rule and its lines of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The rule holds.
    pub passed: bool,
    /// Report lines, without trailing newlines.
    pub lines: Vec<String>,
}

/// `ts conn dir` of an event, to tell it apart in the report.
fn event_ref(e: &Value) -> String {
    let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("-");
    format!("{} {} {}", s("ts"), s("conn"), s("dir"))
}

/// Holds an expectation against the events.
pub fn check_expect(rule: &Rule, events: &[Value]) -> Outcome {
    let matched: Vec<&Value> = events.iter().filter(|e| matches(rule, e)).collect();
    let n = matched.len() as u64;
    let passed = match rule.count {
        Some(c) => n == c,
        None => n >= 1,
    };
    let head = format!("{} ({n} matched)", describe(rule));
    if passed {
        return Outcome {
            passed,
            lines: vec![with_description(format!("ok  {head}"), rule)],
        };
    }
    let mut lines = vec![with_description(format!("FAIL {head}"), rule)];
    let of_kind: Vec<&Value> = events
        .iter()
        .filter(|e| e.get("kind").and_then(Value::as_str) == Some(rule.kind.as_str()))
        .collect();
    let wanted = match rule.count {
        Some(c) => format!("exactly {c} matching event{}", plural(c)),
        None => "at least 1 matching event".to_string(),
    };
    lines.push(format!(
        "     expected {wanted}, found {n} among {} `{}` event{}",
        of_kind.len(),
        rule.kind,
        plural(of_kind.len() as u64)
    ));
    if of_kind.is_empty() {
        let mut kinds: Vec<&str> = events
            .iter()
            .filter_map(|e| e.get("kind").and_then(Value::as_str))
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        let hint = closest(&rule.kind, kinds.iter().copied())
            .map(|k| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        lines.push(format!(
            "     no `{}` event at all{hint}; kinds present: {}",
            rule.kind,
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        ));
        if rule.kind == "message" {
            lines.push("     (message events are analysed whenever a rule names them)".into());
        }
    } else if rule.count.is_some_and(|c| n > c) {
        lines.push("     first matches:".to_string());
        for e in matched.iter().take(MAX_CANDIDATES) {
            lines.push(format!("       {e}"));
        }
    } else {
        let mut near: Vec<(Vec<FieldDiff>, &Value)> = of_kind
            .iter()
            .map(|e| (field_diffs(rule, e), *e))
            .filter(|(d, _)| !d.is_empty())
            .collect();
        // Stable: among equally near events, the earliest first.
        near.sort_by_key(|(d, _)| d.len());
        if !near.is_empty() {
            lines.push(format!("     nearest `{}` events:", rule.kind));
        }
        for (diffs, e) in near.iter().take(MAX_CANDIDATES) {
            lines.push(format!("       {}", event_ref(e)));
            for d in diffs {
                lines.push(format!("         ! {d}"));
            }
        }
    }
    Outcome {
        passed: false,
        lines,
    }
}

/// Holds a forbid against the events.
pub fn check_forbid(rule: &Rule, events: &[Value]) -> Outcome {
    let offenders: Vec<&Value> = events.iter().filter(|e| matches(rule, e)).collect();
    if offenders.is_empty() {
        return Outcome {
            passed: true,
            lines: vec![with_description(format!("ok  no {}", describe(rule)), rule)],
        };
    }
    let n = offenders.len() as u64;
    let mut lines = vec![with_description(
        format!(
            "FAIL no {}: {n} forbidden event{} occurred",
            describe(rule),
            plural(n)
        ),
        rule,
    )];
    for e in offenders.iter().take(MAX_OFFENDERS) {
        lines.push(format!("       {e}"));
    }
    if offenders.len() > MAX_OFFENDERS {
        lines.push(format!(
            "       ... and {} more",
            offenders.len() - MAX_OFFENDERS
        ));
    }
    Outcome {
        passed: false,
        lines,
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// One step of a line diff: indices into the old (golden) and new lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Line `.0` of old equals line `.1` of new.
    Equal(usize, usize),
    /// Old line only.
    Delete(usize),
    /// New line only.
    Insert(usize),
}

/// Beyond this many differences the middle is reported as all removed and all added.
const MAX_EDIT_DISTANCE: usize = 2000;

/// A shortest edit script from `old` to `new` (Myers), for the snapshot report.
pub fn diff_lines(old: &[&str], new: &[&str]) -> Vec<Op> {
    let prefix = old.iter().zip(new).take_while(|(a, b)| a == b).count();
    let suffix = old[prefix..]
        .iter()
        .rev()
        .zip(new[prefix..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let a = &old[prefix..old.len() - suffix];
    let b = &new[prefix..new.len() - suffix];
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Equal(i, i)).collect();
    let middle = myers(a, b).unwrap_or_else(|| {
        (0..a.len())
            .map(Op::Delete)
            .chain((0..b.len()).map(Op::Insert))
            .collect()
    });
    ops.extend(middle.into_iter().map(|op| match op {
        Op::Equal(i, j) => Op::Equal(i + prefix, j + prefix),
        Op::Delete(i) => Op::Delete(i + prefix),
        Op::Insert(j) => Op::Insert(j + prefix),
    }));
    let (oa, ob) = (old.len() - suffix, new.len() - suffix);
    ops.extend((0..suffix).map(|i| Op::Equal(oa + i, ob + i)));
    ops
}

fn myers(a: &[&str], b: &[&str]) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let max = (a.len() + b.len()).min(MAX_EDIT_DISTANCE) as isize;
    let off = max + 1;
    let mut v = vec![0isize; 2 * off as usize + 1];
    // v[k - 1 ..= k + 1] for k in -d..=d, saved before step d, to walk back.
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let idx = |k: isize| (k + off) as usize;
    let mut found = false;
    'outer: for d in 0..=max {
        trace.push(v[idx(-d - 1)..=idx(d + 1)].to_vec());
        let mut k = -d;
        while k <= d {
            let mut x = if k == -d || (k != d && v[idx(k - 1)] < v[idx(k + 1)]) {
                v[idx(k + 1)]
            } else {
                v[idx(k - 1)] + 1
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[idx(k)] = x;
            if x >= n && y >= m {
                found = true;
                break 'outer;
            }
            k += 2;
        }
    }
    if !found {
        return None;
    }
    let mut ops = Vec::new();
    let (mut x, mut y) = (n, m);
    for (d, saved) in trace.iter().enumerate().rev() {
        let d = d as isize;
        let at = |k: isize| saved[(k + d + 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        while x > prev_x && y > prev_y {
            x -= 1;
            y -= 1;
            ops.push(Op::Equal(x as usize, y as usize));
        }
        if d > 0 {
            if x == prev_x {
                ops.push(Op::Insert(prev_y as usize));
            } else {
                ops.push(Op::Delete(prev_x as usize));
            }
        }
        x = prev_x;
        y = prev_y;
    }
    ops.reverse();
    Some(ops)
}

/// A unified-style diff (`-` old, `+` new, 3 lines of context) showing at most `max_changes`
/// changed lines; `None` when the two are the same.
pub fn render_diff(old: &[&str], new: &[&str], max_changes: usize) -> Option<String> {
    const CONTEXT: usize = 3;
    let ops = diff_lines(old, new);
    let changes: Vec<usize> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Equal(..)))
        .map(|(i, _)| i)
        .collect();
    changes.first()?;
    // Hunks: runs of changes less than 2 * CONTEXT equal lines apart, with their context.
    let mut hunks: Vec<(usize, usize)> = Vec::new();
    for &c in &changes {
        let start = c.saturating_sub(CONTEXT);
        let end = (c + CONTEXT + 1).min(ops.len());
        match hunks.last_mut() {
            Some((_, e)) if start <= *e => *e = end,
            _ => hunks.push((start, end)),
        }
    }
    // Position in old and new before each op.
    let mut pos = Vec::with_capacity(ops.len() + 1);
    let (mut i, mut j) = (0, 0);
    for op in &ops {
        pos.push((i, j));
        match op {
            Op::Equal(..) => {
                i += 1;
                j += 1;
            }
            Op::Delete(_) => i += 1,
            Op::Insert(_) => j += 1,
        }
    }
    pos.push((i, j));
    let removed = ops.iter().filter(|o| matches!(o, Op::Delete(_))).count();
    let added = ops.iter().filter(|o| matches!(o, Op::Insert(_))).count();
    let mut out = String::new();
    let mut shown = 0;
    'hunks: for (start, end) in hunks {
        let (a0, b0) = pos[start];
        let (a1, b1) = pos[end];
        let range = |s: usize, l: usize| {
            if l == 0 {
                format!("{s},0")
            } else {
                format!("{},{l}", s + 1)
            }
        };
        let _ = writeln!(out, "@@ -{} +{} @@", range(a0, a1 - a0), range(b0, b1 - b0));
        for op in &ops[start..end] {
            if !matches!(op, Op::Equal(..)) {
                if shown == max_changes {
                    let _ = writeln!(out, "... {} more differing lines", removed + added - shown);
                    break 'hunks;
                }
                shown += 1;
            }
            let _ = match op {
                Op::Equal(a, _) => writeln!(out, " {}", old[*a]),
                Op::Delete(a) => writeln!(out, "-{}", old[*a]),
                Op::Insert(b) => writeln!(out, "+{}", new[*b]),
            };
        }
    }
    Some(format!(
        "{removed} line{} only in the golden (-), {added} only now (+)\n{out}",
        plural(removed as u64),
    ))
}

/// Runs the subcommand.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if args.expect.is_none() && args.snapshot.is_none() {
        bail!("check needs an EXPECT.toml, a --snapshot GOLDEN, or both (uatap check REC EXPECT.toml [--snapshot GOLDEN [--update]])");
    }
    let spec = match &args.expect {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_spec(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => Spec::default(),
    };
    // Said here in one line; the capture reader would say it twice.
    std::fs::File::open(&args.capture)
        .with_context(|| format!("cannot read {}", args.capture.display()))?;
    let options = Options {
        messages: args.snapshot.is_some() || spec.needs_messages(),
        stall_after: Some(uatap_analysis::DEFAULT_STALL_AFTER),
    };
    let mut events = Vec::new();
    let damage = analyze::for_each_event(&args.capture, options, |e| events.push(e.to_json()))?;
    if let Some(e) = damage {
        eprintln!(
            "uatap: {}: {e}; checked the events up to that point",
            args.capture.display()
        );
    }

    let mut report = String::new();
    let mut failed_expects = 0;
    let mut failed_forbids = 0;
    for rule in &spec.expects {
        let o = check_expect(rule, &events);
        failed_expects += usize::from(!o.passed);
        for l in o.lines {
            let _ = writeln!(report, "{l}");
        }
    }
    for rule in &spec.forbids {
        let o = check_forbid(rule, &events);
        failed_forbids += usize::from(!o.passed);
        for l in o.lines {
            let _ = writeln!(report, "{l}");
        }
    }
    let mut snapshot_differs = false;
    if let Some(golden) = &args.snapshot {
        snapshot_differs = snapshot(golden, args.update, &events, &mut report)?;
    }

    let (ne, nf) = (spec.expects.len(), spec.forbids.len());
    let passed = failed_expects == 0 && failed_forbids == 0 && !snapshot_differs;
    if passed {
        let _ = writeln!(
            report,
            "check passed: {ne} expectation{}, {nf} forbid{}",
            plural(ne as u64),
            plural(nf as u64)
        );
    } else {
        let mut why = Vec::new();
        if failed_expects > 0 {
            why.push(format!(
                "{failed_expects} of {ne} expectation{} not met",
                plural(ne as u64)
            ));
        }
        if failed_forbids > 0 {
            why.push(format!(
                "{failed_forbids} of {nf} forbid{} violated",
                plural(nf as u64)
            ));
        }
        if snapshot_differs {
            why.push("snapshot differs".to_string());
        }
        let _ = writeln!(report, "check failed: {}", why.join(", "));
    }
    let mut out = io::stdout().lock();
    if let Err(e) = out.write_all(report.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() != io::ErrorKind::BrokenPipe {
            return Err(e.into());
        }
    }
    Ok(if passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Compares the events with (or with `update`, writes them to) the golden file; reports into
/// `report` and returns whether they differ.
fn snapshot(
    golden: &Path,
    update: bool,
    events: &[Value],
    report: &mut String,
) -> anyhow::Result<bool> {
    let now: Vec<String> = events.iter().map(Value::to_string).collect();
    if update {
        let mut text = now.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        std::fs::write(golden, text)
            .with_context(|| format!("cannot write {}", golden.display()))?;
        let _ = writeln!(
            report,
            "ok  snapshot {} written ({} events)",
            golden.display(),
            now.len()
        );
        return Ok(false);
    }
    let text = std::fs::read_to_string(golden).with_context(|| {
        format!(
            "cannot read snapshot {} (write it with --update)",
            golden.display()
        )
    })?;
    let old: Vec<&str> = text.lines().collect();
    let new: Vec<&str> = now.iter().map(String::as_str).collect();
    match render_diff(&old, &new, MAX_DIFF_LINES) {
        None => {
            let _ = writeln!(
                report,
                "ok  snapshot {} ({} events)",
                golden.display(),
                now.len()
            );
            Ok(false)
        }
        Some(diff) => {
            let _ = writeln!(
                report,
                "FAIL snapshot {}: the events differ from the golden ({} then, {} now); rerun with --update to accept",
                golden.display(),
                old.len(),
                new.len()
            );
            let _ = writeln!(report, "--- {} (golden)", golden.display());
            let _ = writeln!(report, "+++ now");
            report.push_str(&diff);
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(kind: &str, fields: Value) -> Rule {
        Rule {
            kind: kind.into(),
            fields: fields
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            count: None,
            description: None,
        }
    }

    fn events() -> Vec<Value> {
        vec![
            json!({"v":1,"ts":"2026-11-23T19:31:56.000001Z","conn":"a->b","kind":"conn_open","dir":null}),
            json!({"v":1,"ts":"2026-11-23T19:31:56.000002Z","conn":"a->b","kind":"hello","dir":"c2s",
                   "endpoint_url":"opc.tcp://h:4840/UA","protocol_version":0}),
            json!({"v":1,"ts":"2026-11-23T19:31:56.000003Z","conn":"a->b","kind":"hello","dir":"s2c",
                   "endpoint_url":null,"protocol_version":0}),
            json!({"v":1,"ts":"2026-11-23T19:31:56.000004Z","conn":"a->b","kind":"secure_channel","dir":null,
                   "revised_lifetime_ms":600000,"interval":100.0,
                   "client_cert":{"subject":"CN=plc","thumbprint_sha1":"ab"}}),
            json!({"v":1,"ts":"2026-11-23T19:31:56.000005Z","conn":"a->b","kind":"publish","dir":"s2c",
                   "acks":[[7,1],[7,2]],"keep_alive":false}),
            json!({"v":1,"ts":"2026-11-23T19:31:56.000006Z","conn":"a->b","kind":"publish","dir":"s2c",
                   "acks":[],"keep_alive":true}),
        ]
    }

    #[test]
    fn parses_expect_and_forbid_tables() {
        let spec = parse_spec(
            r#"
            [[expect]]
            kind = "hello"
            endpoint_url = "opc.tcp://h:4840/UA"
            description = "right endpoint"
            [[expect]]
            kind = "publish"
            count = 2
            client_cert = { subject = "CN=plc" }
            [[forbid]]
            kind = "decode_error"
            "#,
        )
        .unwrap();
        assert_eq!(spec.expects.len(), 2);
        assert_eq!(spec.forbids.len(), 1);
        assert_eq!(
            spec.expects[0].fields,
            vec![("endpoint_url".into(), json!("opc.tcp://h:4840/UA"))]
        );
        assert_eq!(
            spec.expects[0].description.as_deref(),
            Some("right endpoint")
        );
        assert_eq!(spec.expects[1].count, Some(2));
        assert_eq!(
            spec.expects[1].fields,
            vec![("client_cert".into(), json!({"subject":"CN=plc"}))]
        );
        assert!(!spec.needs_messages());
        let spec = parse_spec("[[forbid]]\nkind = \"message\"\nservice = \"X\"").unwrap();
        assert!(spec.needs_messages());
    }

    #[test]
    fn rejects_bad_specs() {
        for (text, needle) in [
            ("[[expect]\nkind=1", "invalid TOML at line 1"),
            (
                "[[expect]]\nkind = \"hello\"\n[[expct]]\nkind = \"x\"",
                "unknown top-level key `expct`",
            ),
            ("[[expect]]\nendpoint_url = \"x\"", "missing `kind`"),
            (
                "[[forbid]]\nkind = \"hello\"\ncount = 0",
                "`count` is not allowed in a forbid",
            ),
            ("[[expect]]\nkind = \"hello\"\ncount = -1", "non-negative"),
            ("[[expect]]\nkind = 3", "`kind` must be"),
            ("expect = 3", "array of tables"),
            ("", "no [[expect]] or [[forbid]]"),
        ] {
            let err = parse_spec(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err}");
            assert!(!err.contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn values_match_by_json_value() {
        assert!(value_matches(&json!(100), &json!(100.0)));
        assert!(value_matches(&json!(600000), &json!(600000)));
        assert!(!value_matches(&json!(1), &json!("1")));
        assert!(!value_matches(&json!(1), &json!(2)));
        assert!(value_matches(&json!([[7, 1]]), &json!([[7, 1]])));
        assert!(!value_matches(&json!([[7, 1]]), &json!([[7, 1], [7, 2]])));
        assert!(value_matches(
            &json!({"subject":"CN=plc"}),
            &json!({"subject":"CN=plc","x":1})
        ));
        assert!(!value_matches(&json!({"subject":"CN=plc"}), &json!(null)));
        assert!(value_matches(&json!(false), &json!(false)));
        assert!(!value_matches(&json!(false), &json!(null)));
    }

    #[test]
    fn matches_kind_and_fields() {
        let ev = events();
        let r = rule("hello", json!({"endpoint_url":"opc.tcp://h:4840/UA"}));
        assert_eq!(ev.iter().filter(|e| matches(&r, e)).count(), 1);
        let r = rule("hello", json!({}));
        assert_eq!(ev.iter().filter(|e| matches(&r, e)).count(), 2);
        let r = rule(
            "secure_channel",
            json!({"client_cert":{"subject":"CN=plc"},"interval":100}),
        );
        assert_eq!(ev.iter().filter(|e| matches(&r, e)).count(), 1);
        // Same fields, other kind.
        let r = rule("publish", json!({"endpoint_url":"opc.tcp://h:4840/UA"}));
        assert_eq!(ev.iter().filter(|e| matches(&r, e)).count(), 0);
    }

    #[test]
    fn diffs_name_the_fields() {
        let ev = events();
        let r = rule(
            "secure_channel",
            json!({"revised_lifetime_ms":600000,"client_cert":{"subject":"CN=mes"},"revsed":1}),
        );
        let d = field_diffs(&r, &ev[3]);
        let text: Vec<String> = d.iter().map(ToString::to_string).collect();
        assert_eq!(
            text,
            vec![
                r#"client_cert.subject: expected "CN=mes", got "CN=plc""#.to_string(),
                "revsed: expected 1, got no such field".to_string(),
            ]
        );
        let r = rule("hello", json!({"endpont_url":"x"}));
        let d = field_diffs(&r, &ev[1]);
        assert_eq!(d[0].did_you_mean.as_deref(), Some("endpoint_url"));
        assert!(d[0].to_string().contains("did you mean `endpoint_url`?"));
        let r = rule("publish", json!({"acks":[[7,1],[7,3]]}));
        let d = field_diffs(&r, &ev[4]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].to_string(), "acks[1][1]: expected 3, got 2");
    }

    #[test]
    fn expectation_passes_and_fails_with_nearest_candidates() {
        let ev = events();
        let o = check_expect(&rule("hello", json!({"protocol_version":0})), &ev);
        assert!(o.passed);
        assert_eq!(o.lines, vec!["ok  hello protocol_version=0 (2 matched)"]);

        let o = check_expect(
            &rule("hello", json!({"endpoint_url":"opc.tcp://x/UA"})),
            &ev,
        );
        assert!(!o.passed);
        let text = o.lines.join("\n");
        assert!(
            text.starts_with("FAIL hello endpoint_url=\"opc.tcp://x/UA\" (0 matched)"),
            "{text}"
        );
        assert!(
            text.contains("expected at least 1 matching event, found 0 among 2 `hello` events"),
            "{text}"
        );
        assert!(
            text.contains(
                r#"! endpoint_url: expected "opc.tcp://x/UA", got "opc.tcp://h:4840/UA""#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"! endpoint_url: expected "opc.tcp://x/UA", got null"#),
            "{text}"
        );
        assert!(
            text.contains("2026-11-23T19:31:56.000002Z a->b c2s"),
            "{text}"
        );
    }

    #[test]
    fn expectation_count_is_exact() {
        let ev = events();
        let mut r = rule("publish", json!({}));
        r.count = Some(2);
        assert!(check_expect(&r, &ev).passed);
        r.count = Some(1);
        let o = check_expect(&r, &ev);
        assert!(!o.passed);
        let text = o.lines.join("\n");
        assert!(
            text.contains("expected exactly 1 matching event, found 2"),
            "{text}"
        );
        assert!(text.contains("first matches:"), "{text}");
        r.count = Some(3);
        let text = check_expect(&r, &ev).lines.join("\n");
        assert!(
            text.contains("expected exactly 3 matching events, found 2"),
            "{text}"
        );
        r.count = Some(0);
        r.kind = "reject".into();
        assert!(check_expect(&r, &ev).passed);
    }

    #[test]
    fn unknown_kind_lists_the_kinds() {
        let o = check_expect(&rule("helo", json!({})), &events());
        let text = o.lines.join("\n");
        assert!(
            text.contains("no `helo` event at all (did you mean `hello`?)"),
            "{text}"
        );
        assert!(
            text.contains("kinds present: conn_open, hello, publish, secure_channel"),
            "{text}"
        );
    }

    #[test]
    fn forbid_shows_offenders() {
        let ev = events();
        let o = check_forbid(&rule("decode_error", json!({})), &ev);
        assert!(o.passed);
        assert_eq!(o.lines, vec!["ok  no decode_error"]);
        let mut r = rule("publish", json!({"keep_alive":true}));
        r.description = Some("no idle subscription".into());
        let o = check_forbid(&r, &ev);
        assert!(!o.passed);
        assert_eq!(
            o.lines[0],
            "FAIL no publish keep_alive=true: 1 forbidden event occurred -- no idle subscription"
        );
        assert_eq!(o.lines[1].trim(), ev[5].to_string());
        let many: Vec<Value> = (0..8).map(|_| ev[5].clone()).collect();
        let o = check_forbid(&r, &many);
        assert_eq!(o.lines.len(), 1 + MAX_OFFENDERS + 1);
        assert_eq!(o.lines.last().unwrap().trim(), "... and 3 more");
    }

    fn apply(old: &[&str], new: &[&str], ops: &[Op]) -> (Vec<String>, Vec<String>) {
        let mut a = Vec::new();
        let mut b = Vec::new();
        for op in ops {
            match *op {
                Op::Equal(i, j) => {
                    assert_eq!(old[i], new[j]);
                    a.push(old[i].to_string());
                    b.push(new[j].to_string());
                }
                Op::Delete(i) => a.push(old[i].to_string()),
                Op::Insert(j) => b.push(new[j].to_string()),
            }
        }
        (a, b)
    }

    #[test]
    fn line_diff_is_a_valid_shortest_script() {
        let cases: [(&[&str], &[&str], usize); 6] = [
            (&["a", "b", "c"], &["a", "b", "c"], 0),
            (&["a", "b", "c"], &["a", "x", "c"], 2),
            (&["a", "b", "c", "d"], &["b", "c", "d", "e"], 2),
            (&[], &["a", "b"], 2),
            (&["a", "b"], &[], 2),
            (
                &["a", "b", "c", "a", "b", "b", "a"],
                &["c", "b", "a", "b", "a", "c"],
                5,
            ),
        ];
        for (old, new, distance) in cases {
            let ops = diff_lines(old, new);
            let (a, b) = apply(old, new, &ops);
            assert_eq!(a, old);
            assert_eq!(b, new);
            let edits = ops.iter().filter(|o| !matches!(o, Op::Equal(..))).count();
            assert_eq!(edits, distance, "{old:?} -> {new:?}: {ops:?}");
        }
    }

    /// Length of a longest common subsequence, the slow way.
    fn lcs(a: &[&str], b: &[&str]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for i in 0..a.len() {
            for j in 0..b.len() {
                t[i + 1][j + 1] = if a[i] == b[j] {
                    t[i][j] + 1
                } else {
                    t[i][j + 1].max(t[i + 1][j])
                };
            }
        }
        t[a.len()][b.len()]
    }

    #[test]
    fn line_diff_is_shortest_on_random_inputs() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let words = ["a", "b", "c", "d"];
        for _ in 0..300 {
            let old: Vec<&str> = (0..next(12)).map(|_| words[next(4) as usize]).collect();
            let new: Vec<&str> = (0..next(12)).map(|_| words[next(4) as usize]).collect();
            let ops = diff_lines(&old, &new);
            let (a, b) = apply(&old, &new, &ops);
            assert_eq!(
                (a, b),
                (
                    old.iter().map(|s| s.to_string()).collect(),
                    new.iter().map(|s| s.to_string()).collect()
                )
            );
            let equal = ops.iter().filter(|o| matches!(o, Op::Equal(..))).count();
            assert_eq!(equal, lcs(&old, &new), "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn line_diff_of_unrelated_long_inputs_is_still_valid() {
        let old: Vec<String> = (0..1500).map(|i| format!("old {i}")).collect();
        let new: Vec<String> = (0..1500).map(|i| format!("new {i}")).collect();
        let old: Vec<&str> = old.iter().map(String::as_str).collect();
        let new: Vec<&str> = new.iter().map(String::as_str).collect();
        let ops = diff_lines(&old, &new);
        assert_eq!(ops.len(), 3000);
        let (a, b) = apply(&old, &new, &ops);
        assert_eq!(a, old);
        assert_eq!(b, new);
    }

    #[test]
    fn rendered_diff_is_unified_and_bounded() {
        let old: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut new = old.clone();
        new[10] = "changed".into();
        let old_r: Vec<&str> = old.iter().map(String::as_str).collect();
        let new_r: Vec<&str> = new.iter().map(String::as_str).collect();
        assert_eq!(render_diff(&old_r, &old_r, 40), None);
        let d = render_diff(&old_r, &new_r, 40).unwrap();
        assert_eq!(
            d,
            "1 line only in the golden (-), 1 only now (+)\n\
             @@ -8,7 +8,7 @@\n line 7\n line 8\n line 9\n-line 10\n+changed\n line 11\n line 12\n line 13\n"
        );
        let new: Vec<String> = (0..100).map(|i| format!("other {i}")).collect();
        let new_r: Vec<&str> = new.iter().map(String::as_str).collect();
        let d = render_diff(&old_r, &new_r, 40).unwrap();
        let changed = d
            .lines()
            .filter(|l| l.starts_with('-') || l.starts_with('+'))
            .count();
        assert_eq!(changed, 40, "{d}");
        assert!(d.contains("... 80 more differing lines"), "{d}");
    }
}
