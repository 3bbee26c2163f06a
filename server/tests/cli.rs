//! `whis serve` as a person runs it: bad connectivity flags are a clear error
//! at start (exit status 2, one line naming the fix), a good start prints the
//! HTTP and STUN addresses on their own lines, and the TURN secret never shows.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn whis() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_whis"));
    c.env_remove("WHIS_TURN_SECRET").env("RUST_LOG", "warn");
    c
}

/// Run `whis serve ARGS` (which must refuse to start) and return its stderr.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = whis();
    c.arg("serve")
        .args(["--listen", "127.0.0.1:0", "--no-workers"])
        .args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("the whis binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should be refused: {stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing listens: {:?}", out.stdout);
    stderr
}

#[test]
fn an_ice_server_that_is_not_stun_or_turn_is_refused_at_start() {
    let e = refused(&["--ice-server", "http://stun.example.com"], &[]);
    assert!(e.contains("is not a STUN or TURN URL"), "{e}");
    let e = refused(&["--ice-server", "stun:stun.example.com/x"], &[]);
    assert!(e.contains("not a host name"), "{e}");
    let e = refused(&["--ice-server", "turn:turn.example.com:3478"], &[]);
    assert!(e.contains("needs credentials"), "{e}");
}

#[test]
fn a_turn_secret_without_its_url_and_the_reverse_are_refused_at_start() {
    let e = refused(&["--turn-secret", "s3cret"], &[]);
    assert!(e.contains("no --turn-url"), "{e}");
    let e = refused(&[], &[("WHIS_TURN_SECRET", "s3cret")]);
    assert!(e.contains("no --turn-url"), "{e}");
    assert!(!e.contains("s3cret"), "the secret is never printed: {e}");
    let e = refused(&["--turn-url", "turn:127.0.0.1:3478"], &[]);
    assert!(e.contains("--turn-secret S or WHIS_TURN_SECRET"), "{e}");
    let e = refused(
        &["--turn-url", "http://127.0.0.1:3478"],
        &[("WHIS_TURN_SECRET", "s")],
    );
    assert!(e.contains("is not a TURN URL"), "{e}");
    let e = refused(&["--relay-only"], &[]);
    assert!(e.contains("--relay-only needs a TURN server"), "{e}");
}

#[test]
fn help_names_the_secret_variable_but_never_its_value() {
    let out = whis()
        .args(["serve", "--help"])
        .env("WHIS_TURN_SECRET", "s3cret-in-env")
        .output()
        .expect("the whis binary runs");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(help.contains("WHIS_TURN_SECRET"), "{help}");
    assert!(!help.contains("s3cret-in-env"), "{help}");
    for flag in [
        "--stun",
        "--no-stun",
        "--ice-server",
        "--turn-url",
        "--relay-only",
        "--metered-upload",
    ] {
        assert!(help.contains(flag), "--help explains {flag}");
    }
}

#[test]
fn a_good_start_prints_the_http_then_the_stun_address() {
    let mut child = whis()
        .args(["serve", "--listen", "127.0.0.1:0", "--no-workers"])
        .env("WHIS_TURN_SECRET", "s3cret")
        .args(["--turn-url", "turn:127.0.0.1:3478"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the whis binary runs");
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    let second = lines.next().and_then(|l| l.ok()).unwrap_or_default();
    // Stop it by its own pid; then read what it logged.
    let _ = child.kill();
    let out = child.wait_with_output().expect("whis stops");
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let port = second
        .strip_prefix("stun listening on udp://127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok());
    assert!(port.is_some_and(|p| p > 0), "{second}");
    assert!(!logs.contains("s3cret"), "{logs}");
}
