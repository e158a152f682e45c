//! Why was the connection refused, and what to change: every refusal (TCP, HEL, OpenSecureChannel,
//! CreateSession, ActivateSession) becomes a `reject` event with a machine-readable `cause`, one
//! sentence a field tech understands, the evidence from the traffic, and where to look in
//! Kepware, in Ignition, or generically.
//!
//! The knowledge is one table, [`CAUSES`]; [`Explainer`] watches a connection's events and maps
//! each refusal to a row, inferring from what is visible (certificate dates against the capture
//! time, a close right after the HEL) when the status itself cannot be read, and saying so.

use serde::Serialize;

use crate::cert::CertSummary;
use crate::event::{Direction, EventKind};
use crate::payload::Status;
use crate::time::Timestamp;

/// One cause: its code, the explanation, and where to look.
#[derive(Debug, Clone, Copy)]
pub struct Cause {
    /// `reject.cause`.
    pub code: &'static str,
    /// StatusCodes (high 16 bits) that mean this cause.
    pub statuses: &'static [u32],
    /// One sentence for a person.
    pub explanation: &'static str,
    /// What to check in Kepware's OPC UA Configuration Manager.
    pub kepware: &'static str,
    /// What to check in Ignition's gateway (Config > OPC Client > OPC Connections).
    pub ignition: &'static str,
}

/// The table: cause -> explanation -> what to check. Looked up by status code first, then by
/// the code chosen from inference. Keep it readable: this is the product's knowledge.
pub const CAUSES: &[Cause] = &[
    Cause {
        code: "tcp_refused",
        statuses: &[],
        explanation: "Nothing accepts connections on that host and port: the server runtime is stopped, the port is wrong, or a firewall answers with a reset.",
        kepware: "Is the KEPServerEX runtime running, and is the endpoint's port (default 49320) the one configured in the OPC UA Configuration Manager > Server Endpoints?",
        ignition: "Check the Endpoint URL's host and port in the OPC UA connection settings; Ignition shows Bad_ConnectionRejected.",
    },
    Cause {
        code: "tcp_timeout",
        statuses: &[],
        explanation: "The server's host did not answer the connection attempt: it is down, unreachable from here, or a firewall silently drops the packets.",
        kepware: "Check that the Windows firewall allows the endpoint's port (49320 by default) inbound.",
        ignition: "Check routing and firewalls between the gateway and the server; Ignition shows Bad_Timeout.",
    },
    Cause {
        code: "tcp_unreachable",
        statuses: &[],
        explanation: "The network says the server's host cannot be reached from here (no route).",
        kepware: "Check the server's IP address and network.",
        ignition: "Check the Endpoint URL's host and the gateway's network settings.",
    },
    Cause {
        code: "dns_failed",
        statuses: &[],
        explanation: "The server's host name does not resolve from here.",
        kepware: "Use the IP address, or add the host name to DNS or the hosts file.",
        ignition: "Use the IP address in the Endpoint URL, or fix name resolution on the gateway.",
    },
    Cause {
        code: "connection_limit",
        statuses: &[],
        explanation: "The server closed the connection right after the client's Hello without an error message: servers do this when they already have as many connections as they allow.",
        kepware: "Check the endpoint's maximum number of connections (OPC UA Configuration Manager > Server Endpoints) and the Event Log for rejected connections; close stale clients.",
        ignition: "Check how many OPC UA connections point at this server (and other clients that use it).",
    },
    Cause {
        code: "server_too_busy",
        statuses: &[0x807D_0000],
        explanation: "The server refused the connection because it is at its limit of connections or sessions.",
        kepware: "Raise the endpoint's connection limit or close other clients; the Event Log names them.",
        ignition: "Reduce the number of connections to this server; retry later.",
    },
    Cause {
        code: "endpoint_url_invalid",
        statuses: &[0x8083_0000],
        explanation: "The endpoint URL the client asked for (in its Hello) is not one the server serves.",
        kepware: "Compare the URL with the endpoints in the OPC UA Configuration Manager (network adapter and port).",
        ignition: "Fix the Endpoint URL in the OPC UA connection settings; use Discover to pick it from the server.",
    },
    Cause {
        code: "policy_rejected",
        statuses: &[0x8055_0000, 0x80E6_0000],
        explanation: "The server does not offer the security policy or mode the client asked for.",
        kepware: "Enable the policy (e.g. Basic256Sha256, Sign and Encrypt) for the endpoint in the OPC UA Configuration Manager.",
        ignition: "Pick a security policy and mode the server offers (Discover lists them).",
    },
    Cause {
        code: "client_cert_untrusted",
        statuses: &[0x801A_0000],
        explanation: "The server does not trust the client's application certificate yet.",
        kepware: "OPC UA Configuration Manager > Trusted Clients: find the client's certificate and Trust it.",
        ignition: "Make sure the server trusts Ignition's certificate (Config > Security > Certificates shows it).",
    },
    Cause {
        code: "security_checks_failed",
        statuses: &[0x8013_0000],
        explanation: "The server's security checks failed on the client's request; Kepware answers this way when the client's certificate is not trusted (rejected certificates go to its rejected list).",
        kepware: "OPC UA Configuration Manager > Trusted Clients: trust the client's certificate (it is listed as rejected); check the clocks of both machines.",
        ignition: "Trust Ignition's certificate on the server; check the certificate's validity and the machines' clocks.",
    },
    Cause {
        code: "client_cert_expired",
        statuses: &[0x8014_0000],
        explanation: "The client's application certificate is outside its validity period (expired, or not yet valid because of a clock difference).",
        kepware: "Check both machines' clocks; if the client certificate expired, trust its renewed certificate.",
        ignition: "Renew Ignition's OPC UA client certificate (Config > Security > Certificates) and trust the new one on the server; check the gateway clock.",
    },
    Cause {
        code: "client_cert_not_yet_valid",
        statuses: &[],
        explanation: "The client's application certificate is not valid yet at the server's time: one of the machines' clocks is wrong, or the certificate was made on a machine whose clock is ahead.",
        kepware: "Compare the server's clock with the certificate's 'not before' date.",
        ignition: "Fix the gateway's clock, or regenerate the certificate with a correct clock.",
    },
    Cause {
        code: "client_cert_revoked",
        statuses: &[0x801D_0000, 0x801E_0000, 0x801B_0000, 0x801C_0000],
        explanation: "The client's certificate was revoked, or the server cannot find the revocation list of its issuer.",
        kepware: "Check the certificate authority's revocation lists in the trusted issuers store.",
        ignition: "Use a certificate that is not revoked; provide the issuer's CRL to the server.",
    },
    Cause {
        code: "client_cert_issuer_unknown",
        statuses: &[0x810D_0000, 0x8015_0000],
        explanation: "The client's certificate is signed by an issuer the server does not know or trust, or its chain is incomplete.",
        kepware: "Add the issuing CA certificate to the trusted issuers, or trust the client certificate itself.",
        ignition: "Install the CA chain on the server, or use a self-signed certificate the server trusts.",
    },
    Cause {
        code: "client_cert_wrong_usage",
        statuses: &[0x8018_0000, 0x8019_0000],
        explanation: "The client's certificate lacks the key usage or extended key usage the server requires, or is not valid for this purpose.",
        kepware: "Use an application instance certificate with digitalSignature, keyEncipherment and clientAuth.",
        ignition: "Regenerate Ignition's OPC UA certificate (Config > Security > Certificates).",
    },
    Cause {
        code: "client_cert_invalid",
        statuses: &[0x8012_0000, 0x8114_0000, 0x8059_0000],
        explanation: "The server found the client's certificate invalid (malformed, key too short for the policy, or failing its policy checks).",
        kepware: "Check the certificate's key length (2048 bits or more for Basic256Sha256) and signature algorithm (SHA-256).",
        ignition: "Regenerate Ignition's OPC UA certificate with a key size the policy accepts.",
    },
    Cause {
        code: "application_uri_mismatch",
        statuses: &[0x8017_0000],
        explanation: "The ApplicationUri in the client's certificate is not the one the client announces.",
        kepware: "Nothing to change on the server: the client's certificate and its ApplicationUri must match.",
        ignition: "Regenerate Ignition's certificate after changing the gateway name, so the URI matches.",
    },
    Cause {
        code: "server_cert_changed",
        statuses: &[],
        explanation: "The client encrypted to a server certificate that is not the server's current one: the server's certificate was renewed.",
        kepware: "If the server certificate was reissued, the clients must fetch and trust the new one.",
        ignition: "Edit the OPC UA connection and re-run Discover to accept the server's new certificate.",
    },
    Cause {
        code: "endpoint_host_not_in_cert",
        statuses: &[0x8016_0000],
        explanation: "The host name in the endpoint URL is not in the server certificate's names.",
        kepware: "Reissue the server certificate with the host name clients use, or use that name in the endpoint.",
        ignition: "Use the host name the server certificate names, or turn off host name verification for this connection.",
    },
    Cause {
        code: "too_many_sessions",
        statuses: &[0x8056_0000],
        explanation: "The server already has as many sessions as it allows.",
        kepware: "Raise the maximum sessions, or find the clients that leave sessions open (Event Log).",
        ignition: "Check for duplicate connections to the same server.",
    },
    Cause {
        code: "session_signature_invalid",
        statuses: &[0x8058_0000, 0x8024_0000, 0x8057_0000],
        explanation: "The session's signature or nonce did not check out: the client signed with a certificate or nonce the server does not expect.",
        kepware: "Check that the client's certificate on the channel is the one it signs the session with.",
        ignition: "Re-run Discover on the connection and reconnect.",
    },
    Cause {
        code: "identity_rejected",
        statuses: &[0x8020_0000, 0x8021_0000],
        explanation: "The server refused the user identity: anonymous access is off, or the user name or password is wrong.",
        kepware: "OPC UA Configuration Manager > Server Endpoints: is Anonymous allowed? Users are defined in the User Manager.",
        ignition: "Set the user name and password in the OPC UA connection's Authentication settings.",
    },
    Cause {
        code: "user_access_denied",
        statuses: &[0x801F_0000],
        explanation: "The user was authenticated but has no right to do this.",
        kepware: "Give the user group the needed permissions in the User Manager.",
        ignition: "Use a user with the needed rights on the server.",
    },
    Cause {
        code: "session_unknown",
        statuses: &[0x8025_0000, 0x8026_0000],
        explanation: "The session the client tried to reuse no longer exists on the server (it timed out while disconnected, or the server restarted).",
        kepware: "Normal after a long outage or a runtime restart; the client must create a new session.",
        ignition: "Ignition creates a new session by itself; if data stays frozen, look at its subscriptions.",
    },
    Cause {
        code: "rejected",
        statuses: &[],
        explanation: "The server refused the request with this status.",
        kepware: "Look up the status in the Event Log around this time.",
        ignition: "Look at the gateway's wrapper log for the same status.",
    },
];

fn find(code: &str) -> &'static Cause {
    CAUSES
        .iter()
        .find(|c| c.code == code)
        .or_else(|| CAUSES.last())
        .unwrap_or(&CAUSES[0])
}

/// The cause a status code means (every status belongs to one row at most).
fn by_status(status: u32) -> &'static Cause {
    let key = status & 0xFFFF_0000;
    CAUSES
        .iter()
        .find(|c| c.statuses.contains(&key))
        .unwrap_or_else(|| find("rejected"))
}

/// The `reject` event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RejectInfo {
    /// `tcp`, `hello`, `secure_channel`, `create_session`, `activate_session`.
    pub stage: &'static str,
    /// The status sent (or what the client sees, at the TCP stage).
    #[serde(flatten)]
    pub status: Status,
    /// Machine-readable cause.
    pub cause: &'static str,
    /// One sentence for a person.
    pub explanation: String,
    /// What in the traffic shows it.
    pub evidence: String,
    /// The cause was inferred from what is visible, not read from a status.
    pub inferred: bool,
    /// Where to look, in order: Kepware, Ignition.
    pub check: Vec<String>,
}

fn info(
    stage: &'static str,
    status: Option<u32>,
    cause: &'static Cause,
    evidence: String,
    inferred: bool,
) -> RejectInfo {
    RejectInfo {
        stage,
        status: Status::opt(status),
        cause: cause.code,
        explanation: cause.explanation.to_string(),
        evidence,
        inferred,
        check: vec![
            format!("Kepware: {}", cause.kepware),
            format!("Ignition: {}", cause.ignition),
        ],
    }
}

/// Watches one connection's events and explains each refusal.
#[derive(Debug, Default)]
pub struct Explainer {
    hello_sent: bool,
    ack_seen: bool,
    channel_open: bool,
    last_client_cert: Option<CertSummary>,
}

fn cert_text(c: &CertSummary) -> String {
    format!(
        "{}, thumbprint {}, valid {} to {}",
        c.subject.as_deref().unwrap_or("(no subject)"),
        c.thumbprint_sha1,
        c.not_before.as_deref().unwrap_or("?"),
        c.not_after.as_deref().unwrap_or("?")
    )
}

/// The cause a certificate's dates point at, at time `now`.
fn cert_dates(c: &CertSummary, now: Timestamp) -> Option<&'static str> {
    let now = now.to_rfc3339();
    // RFC 3339 UTC strings of the same shape compare in time order.
    let cut = |s: &str| s.get(..19).map(str::to_string);
    let (now19, nb, na) = (
        cut(&now)?,
        c.not_before.as_deref().and_then(cut),
        c.not_after.as_deref().and_then(cut),
    );
    if na.as_deref().is_some_and(|a| a < now19.as_str()) {
        return Some("client_cert_expired");
    }
    if nb.as_deref().is_some_and(|b| b > now19.as_str()) {
        return Some("client_cert_not_yet_valid");
    }
    None
}

impl Explainer {
    /// Looks at one event of the connection (at `ts`); returns the reject it implies.
    pub fn observe(
        &mut self,
        ts: Timestamp,
        dir: Option<Direction>,
        kind: &EventKind,
    ) -> Option<RejectInfo> {
        match kind {
            EventKind::UpstreamError { error, detail } => {
                let (code, status) = match *error {
                    "refused" => ("tcp_refused", 0x80AC_0000),
                    "timeout" => ("tcp_timeout", 0x800A_0000),
                    "unreachable" => ("tcp_unreachable", 0x80AC_0000),
                    "dns" => ("dns_failed", 0x80AC_0000),
                    _ => return None,
                };
                Some(info(
                    "tcp",
                    Some(status),
                    find(code),
                    format!("TCP connect to the server: {detail}"),
                    false,
                ))
            }
            EventKind::Hello(_) => {
                if dir == Some(Direction::ClientToServer) {
                    self.hello_sent = true;
                } else {
                    self.ack_seen = true;
                }
                None
            }
            EventKind::TcpError { status, reason } => {
                let code = (*status)?;
                let stage = if !self.ack_seen {
                    "hello"
                } else if !self.channel_open {
                    "secure_channel"
                } else {
                    // An ERR on a working channel ends it, but is not a refusal to connect.
                    return None;
                };
                let cause = by_status(code);
                Some(info(
                    stage,
                    Some(code),
                    cause,
                    format!(
                        "ERR {} from the server{}{}",
                        Status::opt(Some(code)).describe(),
                        match reason {
                            Some(r) if !r.is_empty() => format!(", reason \"{r}\""),
                            _ => String::new(),
                        },
                        if stage == "hello" {
                            " in answer to the client's Hello"
                        } else {
                            " in answer to the OpenSecureChannel request"
                        }
                    ),
                    false,
                ))
            }
            EventKind::SecureChannel(sc) => {
                if sc.client_cert.is_some() {
                    self.last_client_cert = sc.client_cert.clone();
                }
                if sc.outcome == "ok" {
                    self.channel_open = true;
                    return None;
                }
                let code = sc.status.code();
                let mut inferred = false;
                let cert = sc.client_cert.as_ref().or(self.last_client_cert.as_ref());
                let cause = match code {
                    Some(c) => by_status(c),
                    None => {
                        inferred = true;
                        match cert.and_then(|c| cert_dates(c, ts)) {
                            Some(code) => find(code),
                            None if cert.is_some() => find("client_cert_untrusted"),
                            None => find("rejected"),
                        }
                    }
                };
                // A status that hides the dates (Bad_SecurityChecksFailed) is sharpened by them.
                let cause = match (cause.code, cert.and_then(|c| cert_dates(c, ts))) {
                    ("security_checks_failed" | "client_cert_expired", Some(d)) => find(d),
                    _ => cause,
                };
                let mut evidence = match code {
                    Some(c) => format!(
                        "OpenSecureChannel {} answered {}",
                        sc.policy.as_deref().unwrap_or("?"),
                        Status::opt(Some(c)).describe()
                    ),
                    None => format!(
                        "OpenSecureChannel {} {}: the answer cannot be read (encrypted to the client) and the connection ended; the cause is inferred",
                        sc.policy.as_deref().unwrap_or("?"),
                        if sc.outcome == "no_response" { "got no answer" } else { "was refused" }
                    ),
                };
                if let Some(c) = cert {
                    evidence.push_str(&format!(
                        " after the client offered certificate {} (capture time {})",
                        cert_text(c),
                        ts.to_rfc3339().get(..19).unwrap_or("?")
                    ));
                }
                if let Some(t) = &sc.receiver_thumbprint {
                    evidence.push_str(&format!("; the client encrypted to server certificate {t}"));
                }
                Some(info("secure_channel", code, cause, evidence, inferred))
            }
            EventKind::Session(s) if s.outcome != "ok" && s.action != "close" => {
                let stage = if s.action == "create" {
                    "create_session"
                } else {
                    "activate_session"
                };
                let code = s.status.code();
                let cause = code.map_or_else(|| find("rejected"), by_status);
                let evidence = format!(
                    "{} answered {}{}",
                    if stage == "create_session" {
                        "CreateSession"
                    } else {
                        "ActivateSession"
                    },
                    Status::opt(code).describe(),
                    match (s.identity, &s.user) {
                        (Some(i), Some(u)) => format!(" for {i} user \"{u}\""),
                        (Some(i), None) => format!(" for an {i} identity"),
                        _ => String::new(),
                    }
                );
                Some(info(stage, code, cause, evidence, false))
            }
            EventKind::ConnClose { by, .. } => {
                // Closed by the server after the Hello, with neither ACK nor ERR.
                if self.hello_sent && !self.ack_seen && *by == crate::event::ClosedBy::Server {
                    self.hello_sent = false;
                    return Some(info(
                        "hello",
                        None,
                        find("connection_limit"),
                        "the server closed the connection after the client's Hello without an ACK or an ERR".into(),
                        true,
                    ));
                }
                None
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_is_complete_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for c in CAUSES {
            assert!(seen.insert(c.code), "{} twice", c.code);
            assert!(c.explanation.ends_with('.'), "{}", c.code);
            assert!(
                !c.kepware.is_empty() && !c.ignition.is_empty(),
                "{}",
                c.code
            );
        }
        // The contract's examples exist.
        for code in [
            "tcp_refused",
            "tcp_timeout",
            "endpoint_url_invalid",
            "server_too_busy",
            "policy_rejected",
            "client_cert_untrusted",
            "client_cert_expired",
            "server_cert_changed",
            "too_many_sessions",
            "identity_rejected",
            "user_access_denied",
        ] {
            assert_eq!(find(code).code, code);
        }
    }

    #[test]
    fn statuses_map_by_stage() {
        assert_eq!(by_status(0x807D_0000).code, "server_too_busy");
        assert_eq!(by_status(0x801A_0000).code, "client_cert_untrusted");
        assert_eq!(by_status(0x801D_0000).code, "client_cert_revoked");
        assert_eq!(by_status(0x8020_0000).code, "identity_rejected");
        assert_eq!(by_status(0x801F_0000).code, "user_access_denied");
        assert_eq!(by_status(0x8056_0000).code, "too_many_sessions");
        assert_eq!(by_status(0x8001_0000).code, "rejected");
    }

    #[test]
    fn certificate_dates_against_the_capture_time() {
        let cert = CertSummary {
            subject: Some("CN=Ignition".into()),
            thumbprint_sha1: "3A".into(),
            not_before: Some("2026-11-24T00:00:00Z".into()),
            not_after: Some("2027-11-24T00:00:00Z".into()),
            application_uri: None,
            parse_error: None,
        };
        let day_before = crate::Timestamp::from_unix_micros(1_795_392_000_000_000); // 2026-11-23
        assert_eq!(
            cert_dates(&cert, day_before),
            Some("client_cert_not_yet_valid")
        );
        let years_later = crate::Timestamp::from_unix_micros(1_900_000_000_000_000); // 2030
        assert_eq!(cert_dates(&cert, years_later), Some("client_cert_expired"));
        let inside = crate::Timestamp::from_unix_micros(1_800_000_000_000_000); // 2027-01
        assert_eq!(cert_dates(&cert, inside), None);
    }
}
