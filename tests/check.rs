//! `uatap check` as CI runs it: the built binary over the fixtures, its exit codes and report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::util::root;

fn uatap_check(args: &[&Path]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .arg("check")
        .args(args)
        .current_dir(root())
        .output()
        .expect("uatap runs");
    out
}

fn check(args: &[&str]) -> (i32, String, String) {
    let paths: Vec<PathBuf> = args.iter().map(PathBuf::from).collect();
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let out = uatap_check(&refs);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8 stdout"),
        String::from_utf8(out.stderr).expect("utf-8 stderr"),
    )
}

const CAPTURE: &str = "fixtures/basic-none.pcapng";

/// A scratch directory of this test process, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("uatap-check-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("write temp file");
        p.to_str().expect("utf-8 path").to_string()
    }

    fn path(&self, name: &str) -> String {
        self.0.join(name).to_str().expect("utf-8 path").to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn true_expectations_pass() {
    let (code, out, err) = check(&[CAPTURE, "fixtures/expect/basic-none.toml"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(
            r#"ok  hello dir="c2s" endpoint_url="opc.tcp://127.0.0.1:48401/UA/Test" (1 matched)"#
        ),
        "{out}"
    );
    assert!(
        out.contains(r#"ok  message service="PublishResponse" count=31 (31 matched)"#),
        "{out}"
    );
    assert!(out.contains("ok  no decode_error\n"), "{out}");
    assert!(
        out.ends_with("check passed: 5 expectations, 2 forbids\n"),
        "{out}"
    );
}

#[test]
fn false_expectation_fails_with_a_field_diff() {
    let s = Scratch::new("false");
    let expect = s.file(
        "e.toml",
        "[[expect]]\nkind = \"hello\"\nendpoint_url = \"opc.tcp://127.0.0.1:4840/UA/Other\"\n",
    );
    let (code, out, err) = check(&[CAPTURE, &expect]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains(r#"FAIL hello endpoint_url="opc.tcp://127.0.0.1:4840/UA/Other" (0 matched)"#),
        "{out}"
    );
    assert!(
        out.contains("expected at least 1 matching event, found 0 among 2 `hello` events"),
        "{out}"
    );
    assert!(
        out.contains(r#"endpoint_url: expected "opc.tcp://127.0.0.1:4840/UA/Other", got "opc.tcp://127.0.0.1:48401/UA/Test""#),
        "{out}"
    );
    assert!(
        out.contains("2026-11-23T19:31:56.076175Z 127.0.0.1:35020->127.0.0.1:48401 c2s"),
        "{out}"
    );
    assert!(
        out.ends_with("check failed: 1 of 1 expectation not met\n"),
        "{out}"
    );
}

#[test]
fn misspelt_field_is_pointed_out() {
    let s = Scratch::new("typo");
    let expect = s.file(
        "e.toml",
        "[[expect]]\nkind = \"conn_close\"\nreson = \"fin\"\n",
    );
    let (code, out, _) = check(&[CAPTURE, &expect]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"reson: expected "fin", got no such field (did you mean `reason`?)"#),
        "{out}"
    );
}

#[test]
fn wrong_expectations_and_violated_forbid_fail() {
    let (code, out, err) = check(&[CAPTURE, "fixtures/expect/basic-none-wrong.toml"]);
    assert_eq!(code, 1, "{out}{err}");
    // Count mismatch.
    assert!(
        out.contains(r#"FAIL message service="PublishResponse" count=30 (31 matched)"#),
        "{out}"
    );
    assert!(
        out.contains("expected exactly 30 matching events, found 31 among 85 `message` events"),
        "{out}"
    );
    // Violated forbid: the offending event as a JSON line.
    assert!(
        out.contains(r#"FAIL no service_fault status_name="Bad_NoSubscription": 1 forbidden event occurred -- no fault at teardown"#),
        "{out}"
    );
    let offender = out
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with('{') && l.contains(r#""kind":"service_fault""#))
        .unwrap_or_else(|| panic!("offending event shown: {out}"));
    let e: serde_json::Value = serde_json::from_str(offender).expect("JSON line");
    assert_eq!(e["ts"], "2026-11-23T19:31:59.169842Z");
    assert_eq!(e["conn"], "127.0.0.1:35020->127.0.0.1:48401");
    assert!(
        out.ends_with("check failed: 2 of 2 expectations not met, 1 of 1 forbid violated\n"),
        "{out}"
    );
}

#[test]
fn forbid_of_an_occurring_kind_fails() {
    let s = Scratch::new("forbid");
    let expect = s.file(
        "e.toml",
        "[[forbid]]\nkind = \"conn_close\"\nby = \"client\"\n",
    );
    let (code, out, _) = check(&[CAPTURE, &expect]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(r#"FAIL no conn_close by="client": 1 forbidden event occurred"#),
        "{out}"
    );
    assert!(out.contains(r#""reason":"fin""#), "{out}");
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let s = Scratch::new("bad");
    let cases = [
        (
            s.file("syntax.toml", "[[expect]\nkind = \"hello\"\n"),
            "invalid TOML at line 1",
        ),
        (
            s.file(
                "top.toml",
                "[[expect]]\nkind = \"hello\"\n[[expects]]\nkind = \"x\"\n",
            ),
            "unknown top-level key `expects`",
        ),
        (
            s.file("nokind.toml", "[[expect]]\nendpoint_url = \"x\"\n"),
            "missing `kind`",
        ),
        (
            s.file("count.toml", "[[forbid]]\nkind = \"reject\"\ncount = 0\n"),
            "`count` is not allowed in a forbid",
        ),
        (s.path("missing.toml"), "cannot read"),
    ];
    for (expect, needle) in &cases {
        let (code, out, err) = check(&[CAPTURE, expect]);
        assert_eq!(code, 2, "{expect}: {out}{err}");
        assert!(err.contains(needle), "{expect}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(out.is_empty(), "{out}");
    }
    // Missing or unreadable capture.
    let (code, _, err) = check(&[&s.path("nope.pcapng"), "fixtures/expect/basic-none.toml"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("nope.pcapng"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let (code, _, err) = check(&["fixtures/basic-none.md", "fixtures/expect/basic-none.toml"]);
    assert_eq!(code, 2, "{err}");
    // Neither expectations nor snapshot.
    let (code, _, err) = check(&[CAPTURE]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--snapshot"), "{err}");
    // A snapshot that was never written.
    let (code, _, err) = check(&[CAPTURE, "--snapshot", &s.path("none.jsonl")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--update"), "{err}");
}

#[test]
fn snapshot_update_then_compare_then_detect_change() {
    let s = Scratch::new("snapshot");
    let golden = s.path("basic-none.jsonl");
    let (code, out, err) = check(&[CAPTURE, "--snapshot", &golden, "--update"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("written (129 events)"), "{out}");
    let text = std::fs::read_to_string(&golden).expect("golden written");
    assert_eq!(text.lines().count(), 129); // 128 before monitored_item events existed
                                           // Messages included, each line one event of the contract.
    assert_eq!(
        text.lines()
            .filter(|l| l.contains(r#""kind":"message""#))
            .count(),
        85
    );
    for l in text.lines() {
        let e: serde_json::Value = serde_json::from_str(l).expect("JSON line");
        assert_eq!(e["v"], 1);
    }

    // Unchanged: passes, alone and together with expectations.
    let (code, out, err) = check(&[CAPTURE, "--snapshot", &golden]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("ok  snapshot"), "{out}");
    let (code, out, err) = check(&[
        CAPTURE,
        "fixtures/expect/basic-none.toml",
        "--snapshot",
        &golden,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.ends_with("check passed: 5 expectations, 2 forbids\n"),
        "{out}"
    );

    // A changed value and a dropped line: exit 1 with a diff, - golden, + now.
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    let hello = lines
        .iter()
        .position(|l| l.contains(r#""kind":"hello""#))
        .expect("a hello");
    let original = lines[hello].clone();
    lines[hello] = original.replace("/UA/Test", "/UA/Changed");
    let dropped = lines.remove(100);
    std::fs::write(&golden, lines.join("\n") + "\n").expect("rewrite golden");
    let (code, out, err) = check(&[CAPTURE, "--snapshot", &golden]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("FAIL snapshot"), "{out}");
    assert!(
        out.contains("1 line only in the golden (-), 2 only now (+)"),
        "{out}"
    );
    assert!(out.contains(&format!("\n-{}\n", lines[hello])), "{out}");
    assert!(out.contains(&format!("\n+{original}\n")), "{out}");
    assert!(out.contains(&format!("\n+{dropped}\n")), "{out}");
    assert!(out.contains("\n@@ -"), "{out}");
    assert!(out.ends_with("check failed: snapshot differs\n"), "{out}");

    // --update accepts the stream again.
    let (code, _, _) = check(&[CAPTURE, "--snapshot", &golden, "--update"]);
    assert_eq!(code, 0);
    let (code, out, _) = check(&[CAPTURE, "--snapshot", &golden]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn snapshot_diff_shows_at_most_40_lines() {
    let s = Scratch::new("long");
    let golden = s.file("other.jsonl", &"{\"v\":1}\n".repeat(100));
    let (code, out, _) = check(&[CAPTURE, "--snapshot", &golden]);
    assert_eq!(code, 1, "{out}");
    let changed = out
        .lines()
        .filter(|l| {
            (l.starts_with('-') || l.starts_with('+'))
                && !l.starts_with("---")
                && !l.starts_with("+++")
        })
        .count();
    assert_eq!(changed, 40, "{out}");
    assert!(out.contains("... 189 more differing lines"), "{out}");
}
