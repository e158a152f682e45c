//! The admin API and the metrics off loopback: refused without the flag and a token; with them,
//! HTTPS only (checked by Python's ssl, OpenSSL, as an independent client) and a bearer token
//! on every request. Clients connect over 127.0.0.1 only.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use crate::util::{python, temp_dir, terminate};

const TOKEN: &str = "s3cr3t-t0ken-for-the-admin-api";

fn uatap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("uatap runs")
}

/// Starts `uatap proxy ARGS` and returns it with its metrics and admin URLs from the banner.
fn start(args: &[&str]) -> (Child, String, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .arg("proxy")
        .args(args)
        .args(["--duration", "60"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("uatap proxy starts");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
    let (mut metrics, mut admin, mut seen) = (None, None, String::new());
    while metrics.is_none() || admin.is_none() {
        let mut line = String::new();
        if lines.read_line(&mut line).expect("stderr") == 0 {
            let _ = child.kill();
            panic!("the proxy ended before it was ready: {seen}");
        }
        seen.push_str(&line);
        let words: Vec<&str> = line.split_whitespace().collect();
        if line.contains("uatap: metrics on ") {
            metrics = Some(words[3].trim_end_matches("/metrics").to_string());
        } else if line.contains("uatap: admin API on ") {
            admin = Some(words[4].trim_end_matches("/faults").to_string());
        }
    }
    std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = lines.read_to_string(&mut rest);
    });
    (child, metrics.unwrap(), admin.unwrap(), seen)
}

/// GET `url` with Python's urllib over OpenSSL, trusting `ca`; prints the status and body, or
/// `ERROR <why>` when no HTTP answer came.
const GET: &str = r#"
import ssl, sys, urllib.request, urllib.error
url, ca, token = sys.argv[1], sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(cafile=ca) if ca else None
headers = {"Authorization": "Bearer " + token} if token else {}
try:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=ctx, timeout=10) as r:
        print(r.status); print(r.read().decode())
except urllib.error.HTTPError as e:
    print(e.code); print(e.headers.get("WWW-Authenticate", "")); print(e.read().decode())
except Exception as e:
    print("ERROR", type(e).__name__, e)
"#;

fn get(url: &str, ca: &Path, token: &str) -> String {
    let out = Command::new(python())
        .args(["-c", GET, url, ca.to_str().unwrap(), token])
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// On loopback through 127.0.0.1: the port of a URL such as `https://0.0.0.0:1234`.
fn local(url: &str) -> String {
    let port = url.rsplit(':').next().unwrap();
    let scheme = url.split("://").next().unwrap();
    format!("{scheme}://127.0.0.1:{port}")
}

#[test]
fn remote_endpoints_are_refused_without_the_flag_or_a_token() {
    let dir = temp_dir("access-refused");
    let pki = dir.join("pki");
    let common = [
        "proxy",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--duration",
        "5",
        "--pki",
        pki.to_str().unwrap(),
    ];
    let short = dir.join("short");
    std::fs::write(&short, "tiny\n").unwrap();
    let cases: [(&[&str], &str); 4] = [
        (&["--admin", "0.0.0.0:0"], "--admin-allow-remote"),
        (
            &["--admin", "0.0.0.0:0", "--admin-allow-remote"],
            "--http-token-file",
        ),
        (
            &["--metrics", "0.0.0.0:0", "--metrics-allow-remote"],
            "--http-token-file",
        ),
        (
            &[
                "--metrics",
                "127.0.0.1:0",
                "--http-token-file",
                short.to_str().unwrap(),
            ],
            "at least 16",
        ),
    ];
    for (extra, expect) in cases {
        let args: Vec<&str> = common.iter().chain(extra).copied().collect();
        let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
            .args(&args)
            .env_remove("UATAP_HTTP_TOKEN")
            .stdin(Stdio::null())
            .output()
            .expect("uatap runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains(expect), "{extra:?}: {err}");
        assert!(!err.contains("proxying"), "refused before serving: {err}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Off loopback: HTTPS with the certificate uatap made, and the token on every request; plain
/// HTTP gets no answer; the token is in no output.
#[test]
fn remote_metrics_and_admin_need_https_and_the_token() {
    let dir = temp_dir("access-remote");
    let pki = dir.join("pki");
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let (mut child, metrics, admin, banner) = start(&[
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        "127.0.0.1:1",
        "--metrics",
        "0.0.0.0:0",
        "--metrics-allow-remote",
        "--admin",
        "0.0.0.0:0",
        "--admin-allow-remote",
        "--http-token-file",
        token_file.to_str().unwrap(),
        "--pki",
        pki.to_str().unwrap(),
    ]);
    assert!(metrics.starts_with("https://0.0.0.0:"), "{banner}");
    assert!(admin.starts_with("https://0.0.0.0:"), "{banner}");
    let ca = pki.join("https-cert.pem");
    assert!(ca.exists(), "uatap made its HTTPS certificate: {banner}");
    assert!(banner.contains("https-cert.pem"), "{banner}");

    let metrics_url = format!("{}/metrics", local(&metrics));
    let ok = get(&metrics_url, &ca, TOKEN);
    assert!(ok.starts_with("200\n"), "{ok}");
    assert!(ok.contains("uatap_connections_total"), "{ok}");
    let none = get(&metrics_url, &ca, "");
    assert!(none.starts_with("401\n"), "{none}");
    assert!(none.contains("Bearer"), "{none}");
    let wrong = get(&metrics_url, &ca, "s3cr3t-t0ken-for-the-admin-apX");
    assert!(wrong.starts_with("401\n"), "{wrong}");
    // Plain HTTP on the TLS port: no HTTP answer at all.
    let plain = get(&metrics_url.replace("https://", "http://"), &ca, TOKEN);
    assert!(plain.starts_with("ERROR"), "{plain}");
    // A certificate Python does not trust: refused by the client.
    let untrusted = get(&metrics_url, Path::new(""), TOKEN);
    assert!(untrusted.starts_with("ERROR"), "{untrusted}");

    // The admin API through uatap's own client, and through Python.
    let admin_local = local(&admin);
    let out = uatap(&[
        "fault",
        "--admin",
        &admin_local,
        "--cacert",
        ca.to_str().unwrap(),
        "--http-token-file",
        token_file.to_str().unwrap(),
        "add",
        "latency",
        "5ms",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = get(&format!("{admin_local}/faults"), &ca, TOKEN);
    assert!(listed.starts_with("200\n"), "{listed}");
    assert!(listed.contains("latency 5ms"), "{listed}");
    let out = Command::new(env!("CARGO_BIN_EXE_uatap"))
        .args([
            "fault",
            "--admin",
            &admin_local,
            "--cacert",
            ca.to_str().unwrap(),
            "list",
        ])
        .env_remove("UATAP_HTTP_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));
    let denied = get(&format!("{admin_local}/faults"), &ca, "");
    assert!(denied.starts_with("401\n"), "{denied}");

    let status = terminate(&mut child);
    assert!(status.success(), "{status}");
    assert!(!banner.contains(TOKEN));
    let _ = std::fs::remove_dir_all(dir);
}
