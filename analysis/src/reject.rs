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

/// How a `decode_error` starts for an ERR that carries a ServiceFault laid out like an OPN
/// chunk (node-opcua): the status of the `tcp_error` that follows is the ServiceFault's.
pub(crate) const ERR_LIKE_OPN: &str = "ERR laid out like an OPN chunk";

/// One cause: its code, the explanation, and where to look.
#[derive(Debug, Clone, Copy)]
pub struct Cause {
    /// `reject.cause`.
    pub code: &'static str,
    /// StatusCodes (high 16 bits) that mean this cause.
    pub statuses: &'static [u32],
    /// Where the statuses mean this cause (a row with a narrower scope wins).
    pub scope: Scope,
    /// One sentence for a person.
    pub explanation: &'static str,
    /// What to check in Kepware's OPC UA Configuration Manager.
    pub kepware: &'static str,
    /// What to check in Ignition's gateway (Config > OPC Client > OPC Connections).
    pub ignition: &'static str,
}

/// Where a row's statuses apply: at some stages only, for some identity token only.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// `reject.stage` values (empty: any stage).
    pub stages: &'static [&'static str],
    /// The identity token of the ActivateSession (`anonymous`, `username`, ...), if it matters.
    pub identity: Option<&'static str>,
}

/// Any stage, any identity.
pub const ANY: Scope = Scope {
    stages: &[],
    identity: None,
};
const SESSION: Scope = Scope {
    stages: &["create_session", "activate_session"],
    identity: None,
};
const ANONYMOUS: Scope = Scope {
    stages: &["activate_session"],
    identity: Some("anonymous"),
};
const USERNAME: Scope = Scope {
    stages: &["activate_session"],
    identity: Some("username"),
};

/// The table: cause -> explanation -> what to check. Looked up by status code first, then by
/// the code chosen from inference. Keep it readable: this is the product's knowledge.
pub const CAUSES: &[Cause] = &[
    Cause {
        code: "tcp_refused",
        statuses: &[],
        scope: ANY,
        explanation: "Nothing accepts connections on that host and port: the server runtime is stopped, the port is wrong, or a firewall answers with a reset.",
        kepware: "Is the KEPServerEX runtime running, and is the endpoint's port (default 49320) the one configured in the OPC UA Configuration Manager > Server Endpoints?",
        ignition: "Check the Endpoint URL's host and port in the OPC UA connection settings; Ignition shows Bad_ConnectionRejected.",
    },
    Cause {
        code: "tcp_timeout",
        statuses: &[],
        scope: ANY,
        explanation: "The server's host did not answer the connection attempt: it is down, unreachable from here, or a firewall silently drops the packets.",
        kepware: "Check that the Windows firewall allows the endpoint's port (49320 by default) inbound.",
        ignition: "Check routing and firewalls between the gateway and the server; Ignition shows Bad_Timeout.",
    },
    Cause {
        code: "tcp_unreachable",
        statuses: &[],
        scope: ANY,
        explanation: "The network says the server's host cannot be reached from here (no route).",
        kepware: "Check the server's IP address and network.",
        ignition: "Check the Endpoint URL's host and the gateway's network settings.",
    },
    Cause {
        code: "dns_failed",
        statuses: &[],
        scope: ANY,
        explanation: "The server's host name does not resolve from here.",
        kepware: "Use the IP address, or add the host name to DNS or the hosts file.",
        ignition: "Use the IP address in the Endpoint URL, or fix name resolution on the gateway.",
    },
    Cause {
        code: "connection_limit",
        statuses: &[0x80B7_0000],
        scope: ANY,
        explanation: "The server refused the connection (or closed it right after the client's Hello without an error message, as servers do) because it already has as many client connections as it allows: close unused connections or raise the server's limit.",
        kepware: "Check the endpoint's maximum number of connections (OPC UA Configuration Manager > Server Endpoints) and the Event Log for rejected connections; close stale clients.",
        ignition: "Check how many OPC UA connections point at this server (and other clients that use it).",
    },
    Cause {
        code: "server_too_busy",
        statuses: &[0x807D_0000],
        scope: ANY,
        explanation: "The server refused the connection because it is at its limit of connections or sessions.",
        kepware: "Raise the endpoint's connection limit or close other clients; the Event Log names them.",
        ignition: "Reduce the number of connections to this server; retry later.",
    },
    Cause {
        code: "endpoint_url_invalid",
        statuses: &[0x8083_0000],
        scope: ANY,
        explanation: "The endpoint URL the client asked for (in its Hello) is not one the server serves.",
        kepware: "Compare the URL with the endpoints in the OPC UA Configuration Manager (network adapter and port).",
        ignition: "Fix the Endpoint URL in the OPC UA connection settings; use Discover to pick it from the server.",
    },
    Cause {
        code: "policy_rejected",
        statuses: &[0x8055_0000, 0x8054_0000, 0x80E6_0000],
        scope: ANY,
        explanation: "The server does not offer the security policy or mode the client asked for: pick one of the server's endpoints (policy and mode) in the client, or enable that policy on the server.",
        kepware: "Enable the policy (e.g. Basic256Sha256, Sign and Encrypt) for the endpoint in the OPC UA Configuration Manager.",
        ignition: "Pick a security policy and mode the server offers (Discover lists them).",
    },
    Cause {
        code: "client_cert_untrusted",
        statuses: &[0x801A_0000],
        scope: ANY,
        explanation: "The server does not trust the client's application certificate yet: trust it on the server (it is usually listed among the rejected certificates).",
        kepware: "OPC UA Configuration Manager > Trusted Clients: find the client's certificate and Trust it.",
        ignition: "Make sure the server trusts Ignition's certificate (Config > Security > Certificates shows it).",
    },
    Cause {
        code: "security_checks_failed",
        statuses: &[0x8013_0000],
        scope: ANY,
        explanation: "The server's security checks failed on the client's request; Kepware answers this way when the client's certificate is not trusted (rejected certificates go to its rejected list).",
        kepware: "OPC UA Configuration Manager > Trusted Clients: trust the client's certificate (it is listed as rejected); check the clocks of both machines.",
        ignition: "Trust Ignition's certificate on the server; check the certificate's validity and the machines' clocks.",
    },
    Cause {
        code: "client_cert_expired",
        statuses: &[0x8014_0000],
        scope: ANY,
        explanation: "The client's application certificate has expired (or the server's clock is wrong): renew the client's certificate and trust the new one on the server, or fix the clock.",
        kepware: "Check both machines' clocks; if the client certificate expired, trust its renewed certificate.",
        ignition: "Renew Ignition's OPC UA client certificate (Config > Security > Certificates) and trust the new one on the server; check the gateway clock.",
    },
    Cause {
        code: "client_cert_not_yet_valid",
        statuses: &[],
        scope: ANY,
        explanation: "The client's application certificate is not valid yet at the server's time: fix the clock of the machine that is wrong, or regenerate the certificate with a correct clock.",
        kepware: "Compare the server's clock with the certificate's 'not before' date.",
        ignition: "Fix the gateway's clock, or regenerate the certificate with a correct clock.",
    },
    Cause {
        code: "client_cert_revoked",
        statuses: &[0x801D_0000, 0x801E_0000, 0x801B_0000, 0x801C_0000],
        scope: ANY,
        explanation: "The client's certificate was revoked, or the server cannot find the revocation list of its issuer.",
        kepware: "Check the certificate authority's revocation lists in the trusted issuers store.",
        ignition: "Use a certificate that is not revoked; provide the issuer's CRL to the server.",
    },
    Cause {
        code: "client_cert_issuer_unknown",
        statuses: &[0x810D_0000, 0x8015_0000],
        scope: ANY,
        explanation: "The client's certificate is signed by an issuer the server does not know or trust, or its chain is incomplete.",
        kepware: "Add the issuing CA certificate to the trusted issuers, or trust the client certificate itself.",
        ignition: "Install the CA chain on the server, or use a self-signed certificate the server trusts.",
    },
    Cause {
        code: "client_cert_wrong_usage",
        statuses: &[0x8018_0000, 0x8019_0000],
        scope: ANY,
        explanation: "The client's certificate lacks the key usage or extended key usage the server requires, or is not valid for this purpose.",
        kepware: "Use an application instance certificate with digitalSignature, keyEncipherment and clientAuth.",
        ignition: "Regenerate Ignition's OPC UA certificate (Config > Security > Certificates).",
    },
    Cause {
        code: "client_cert_invalid",
        statuses: &[0x8012_0000, 0x8114_0000, 0x8059_0000],
        scope: ANY,
        explanation: "The server found the client's certificate invalid (malformed, key too short for the policy, or failing its policy checks).",
        kepware: "Check the certificate's key length (2048 bits or more for Basic256Sha256) and signature algorithm (SHA-256).",
        ignition: "Regenerate Ignition's OPC UA certificate with a key size the policy accepts.",
    },
    Cause {
        code: "application_uri_mismatch",
        statuses: &[0x8017_0000],
        scope: ANY,
        explanation: "The ApplicationUri in the client's certificate is not the one the client announces.",
        kepware: "Nothing to change on the server: the client's certificate and its ApplicationUri must match.",
        ignition: "Regenerate Ignition's certificate after changing the gateway name, so the URI matches.",
    },
    Cause {
        code: "server_cert_changed",
        statuses: &[],
        scope: ANY,
        explanation: "The client encrypted its request to a server certificate that is not the one the server presents now: the server's certificate was renewed (or replaced) and the client still holds the old one; give the client the server's current certificate.",
        kepware: "If the server certificate was reissued, the clients must fetch and trust the new one.",
        ignition: "Edit the OPC UA connection and re-run Discover to accept the server's new certificate.",
    },
    Cause {
        code: "endpoint_host_not_in_cert",
        statuses: &[0x8016_0000],
        scope: ANY,
        explanation: "The host name in the endpoint URL is not in the server certificate's names.",
        kepware: "Reissue the server certificate with the host name clients use, or use that name in the endpoint.",
        ignition: "Use the host name the server certificate names, or turn off host name verification for this connection.",
    },
    Cause {
        code: "too_many_sessions",
        statuses: &[0x8056_0000, 0x80B7_0000],
        scope: SESSION,
        explanation: "The server already has as many sessions as it allows: close the sessions other clients (or stale connections) hold, or raise the server's session limit.",
        kepware: "Raise the maximum sessions, or find the clients that leave sessions open (Event Log).",
        ignition: "Check for duplicate connections to the same server.",
    },
    Cause {
        code: "session_signature_invalid",
        statuses: &[0x8058_0000, 0x8024_0000, 0x8057_0000],
        scope: ANY,
        explanation: "The session's signature or nonce did not check out: the client signed with a certificate or nonce the server does not expect.",
        kepware: "Check that the client's certificate on the channel is the one it signs the session with.",
        ignition: "Re-run Discover on the connection and reconnect.",
    },
    Cause {
        code: "anonymous_disabled",
        statuses: &[0x8020_0000, 0x8021_0000, 0x801F_0000],
        scope: ANONYMOUS,
        explanation: "The server does not accept anonymous logins: give the client a user name and password the server knows, or allow anonymous access on the server's endpoint.",
        kepware: "Project Properties > OPC UA: is anonymous login allowed? Otherwise create a user in the User Manager and use it in the client.",
        ignition: "Set a user name and password in the OPC UA connection's Authentication settings.",
    },
    Cause {
        code: "wrong_user_or_password",
        statuses: &[0x801F_0000, 0x8021_0000],
        scope: USERNAME,
        explanation: "The server refused the user name or password the client sent: correct them in the client (passwords are case-sensitive), or check that the user exists and is enabled on the server.",
        kepware: "User Manager: does the user exist, is it enabled, is the password the one the client uses?",
        ignition: "Re-enter the user name and password in the OPC UA connection's Authentication settings.",
    },
    Cause {
        code: "user_token_not_offered",
        statuses: &[0x8020_0000],
        scope: USERNAME,
        explanation: "The server does not take user name logins on this endpoint (none of the endpoint's user token policies fits the token the client sent): pick a login type the server's endpoint offers (anonymous, or a user name where one is offered), or enable user name logins on the server; the password itself was not the problem.",
        kepware: "Project Properties > OPC UA and the endpoint's security policies: are user name logins enabled for the endpoint the client uses? Users are defined in the User Manager.",
        ignition: "Re-run Discover and choose an endpoint whose user token policies include user name, or switch the connection's Authentication to anonymous.",
    },
    Cause {
        code: "identity_rejected",
        statuses: &[0x8020_0000, 0x8021_0000],
        scope: ANY,
        explanation: "The server refused the user identity the client logged in with: use an identity (anonymous, user name, certificate) the server's endpoint accepts, with the right credentials.",
        kepware: "OPC UA Configuration Manager > Server Endpoints: is Anonymous allowed? Users are defined in the User Manager.",
        ignition: "Set the user name and password in the OPC UA connection's Authentication settings.",
    },
    Cause {
        code: "user_access_denied",
        statuses: &[0x801F_0000],
        scope: ANY,
        explanation: "The user was authenticated but has no right to do this.",
        kepware: "Give the user group the needed permissions in the User Manager.",
        ignition: "Use a user with the needed rights on the server.",
    },
    Cause {
        code: "session_unknown",
        statuses: &[0x8025_0000, 0x8026_0000],
        scope: ANY,
        explanation: "The session the client tried to reuse no longer exists on the server (it timed out while disconnected, or the server restarted).",
        kepware: "Normal after a long outage or a runtime restart; the client must create a new session.",
        ignition: "Ignition creates a new session by itself; if data stays frozen, look at its subscriptions.",
    },
    Cause {
        code: "secure_channel_unanswered",
        statuses: &[],
        scope: ANY,
        explanation: "The server never answered the client's OpenSecureChannel request: servers stay silent when they cannot use it (a security policy they do not offer, or a request encrypted to a certificate that is not theirs); check the policy and the server certificate the client uses.",
        kepware: "Compare the client's security policy with the endpoint's policies in the OPC UA Configuration Manager > Server Endpoints, and the client's copy of the server certificate with the current one.",
        ignition: "Edit the OPC UA connection and re-run Discover, so that the policy and the server certificate come from the server.",
    },
    Cause {
        code: "rejected",
        statuses: &[],
        scope: ANY,
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

/// The cause a status code means at `stage` (for an ActivateSession, with that `identity`):
/// a row scoped to the stage and identity first, then one scoped to the stage, then any.
fn by_status(status: u32, stage: &str, identity: Option<&str>) -> &'static Cause {
    let key = status & 0xFFFF_0000;
    let rows = || CAUSES.iter().filter(move |c| c.statuses.contains(&key));
    let stage_ok = |c: &Cause| c.scope.stages.is_empty() || c.scope.stages.contains(&stage);
    rows()
        .find(|c| c.scope.identity.is_some() && c.scope.identity == identity && stage_ok(c))
        .or_else(|| {
            rows().find(|c| c.scope.identity.is_none() && !c.scope.stages.is_empty() && stage_ok(c))
        })
        .or_else(|| rows().find(|c| c.scope.identity.is_none() && c.scope.stages.is_empty()))
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
    /// An ERR in answer to the OpenSecureChannel request, explained with the `secure_channel`
    /// event that follows it (one reject for both).
    opn_err: Option<(u32, Option<String>)>,
    /// An ERR already refused the Hello.
    hello_refused: bool,
    /// The ERR being read is the malformed kind ([`ERR_LIKE_OPN`]).
    err_like_opn: bool,
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

/// `ERR 0x80130000 (Bad_SecurityChecksFailed) from the server, reason "..."`.
fn err_text(code: u32, reason: Option<&str>) -> String {
    format!(
        "ERR {} from the server{}",
        Status::opt(Some(code)).describe(),
        match reason {
            Some(r) if !r.trim().is_empty() => format!(", reason \"{}\"", r.trim()),
            _ => String::new(),
        }
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
            EventKind::DecodeError { what, .. } => {
                self.err_like_opn = what.starts_with(ERR_LIKE_OPN);
                None
            }
            EventKind::TcpError { status, reason } => {
                let code = (*status)?;
                let reason = if std::mem::take(&mut self.err_like_opn) {
                    Some(format!(
                        "{} (a malformed ERR: a ServiceFault laid out like an OPN chunk, read for its status)",
                        reason.as_deref().unwrap_or("no reason").trim()
                    ))
                } else {
                    reason.clone()
                };
                let stage = if !self.ack_seen {
                    "hello"
                } else if !self.channel_open {
                    "secure_channel"
                } else {
                    // An ERR on a working channel ends it, but is not a refusal to connect.
                    return None;
                };
                if stage == "secure_channel" {
                    // The secure_channel event (rejected, with this status) comes next and
                    // knows the policy and the certificates: one reject for both.
                    self.opn_err = Some((code, reason));
                    return None;
                }
                self.hello_refused = true;
                Some(info(
                    stage,
                    Some(code),
                    by_status(code, stage, None),
                    format!(
                        "{} in answer to the client's Hello",
                        err_text(code, reason.as_deref())
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
                let err = self.opn_err.take();
                let mut inferred = false;
                let cert = sc.client_cert.as_ref().or(self.last_client_cert.as_ref());
                let cause = match code {
                    Some(c) => by_status(c, "secure_channel", None),
                    None => {
                        inferred = true;
                        match cert.and_then(|c| cert_dates(c, ts)) {
                            Some(code) => find(code),
                            None if sc.outcome == "no_response" => {
                                find("secure_channel_unanswered")
                            }
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
                // The client encrypted to a certificate the server no longer presents: the server
                // cannot read the request, whatever else is wrong. It answers with a generic
                // status (node-opcua: ERR Bad_TcpInternalError "Cannot decrypt OPN package"),
                // or not at all.
                let renewed = sc.server_cert_now.is_some()
                    && matches!(code, None | Some(0x8013_0000 | 0x8012_0000 | 0x8082_0000));
                let cause = if renewed {
                    find("server_cert_changed")
                } else {
                    cause
                };
                let policy = sc.policy.as_deref().unwrap_or("?");
                let mut evidence = match (code, &err) {
                    (Some(c), Some((e, reason))) if *e == c => format!(
                        "OpenSecureChannel {policy} answered by {}",
                        err_text(c, reason.as_deref())
                    ),
                    (Some(c), _) if sc.decrypted => format!(
                        "OpenSecureChannel {policy} answered {} (read by decrypting the server's answer with the client's private key)",
                        Status::opt(Some(c)).describe()
                    ),
                    (Some(c), _) => format!(
                        "OpenSecureChannel {policy} answered {}",
                        Status::opt(Some(c)).describe()
                    ),
                    (None, _) if sc.outcome == "no_response" => format!(
                        "OpenSecureChannel {policy} got no answer before the connection ended; the cause is inferred"
                    ),
                    (None, _) => format!(
                        "OpenSecureChannel {policy} was answered with a message encrypted to the client (status unreadable without the client's private key), then the connection ended without a message on the channel; the cause is inferred"
                    ),
                };
                if let Some(c) = cert {
                    evidence.push_str(&format!(
                        " after the client offered certificate {} (capture time {})",
                        cert_text(c),
                        ts.to_rfc3339().get(..19).unwrap_or("?")
                    ));
                }
                match (&sc.receiver_thumbprint, &sc.server_cert_now) {
                    (Some(t), Some(now)) => evidence.push_str(&format!(
                        "; the client encrypted to server certificate {t}, but the server presents certificate {now}"
                    )),
                    (Some(t), None) => {
                        evidence.push_str(&format!("; the client encrypted to server certificate {t}"))
                    }
                    _ => {}
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
                let cause =
                    code.map_or_else(|| find("rejected"), |c| by_status(c, stage, s.identity));
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
            EventKind::ConnClose { .. } if self.opn_err.is_some() => {
                // An ERR to the OpenSecureChannel that no secure_channel event followed.
                let (code, reason) = self.opn_err.take()?;
                Some(info(
                    "secure_channel",
                    Some(code),
                    by_status(code, "secure_channel", None),
                    format!(
                        "{} in answer to the OpenSecureChannel request",
                        err_text(code, reason.as_deref())
                    ),
                    false,
                ))
            }
            EventKind::ConnClose { by, bytes_s2c, .. } => {
                // Closed by the server before any ACK or ERR: asyncua closes a connection over
                // its limit as soon as it accepts it, often before the Hello reached it.
                if !self.ack_seen && !self.hello_refused && *by == crate::event::ClosedBy::Server {
                    return Some(info(
                        "hello",
                        None,
                        find("connection_limit"),
                        format!(
                            "the server closed the connection {} without an ACK or an ERR ({bytes_s2c} bytes from the server)",
                            if self.hello_sent {
                                "after the client's Hello"
                            } else {
                                "before the client's Hello"
                            }
                        ),
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
        assert_eq!(
            by_status(0x807D_0000, "hello", None).code,
            "server_too_busy"
        );
        assert_eq!(
            by_status(0x801A_0000, "secure_channel", None).code,
            "client_cert_untrusted"
        );
        assert_eq!(
            by_status(0x801D_0000, "secure_channel", None).code,
            "client_cert_revoked"
        );
        assert_eq!(
            by_status(0x801F_0000, "create_session", None).code,
            "user_access_denied"
        );
        assert_eq!(
            by_status(0x8056_0000, "create_session", None).code,
            "too_many_sessions"
        );
        assert_eq!(by_status(0x8001_0000, "hello", None).code, "rejected");
        // node-opcua refuses a None channel's CreateSession on a secured-only server so.
        assert_eq!(
            by_status(0x8054_0000, "create_session", None).code,
            "policy_rejected"
        );
        // node-opcua's malformed ERR to a secured OPN on a None-only server carries this.
        assert_eq!(
            by_status(0x8055_0000, "secure_channel", None).code,
            "policy_rejected"
        );
    }

    #[test]
    fn activate_session_statuses_depend_on_the_identity() {
        let activate = |status, identity| by_status(status, "activate_session", identity).code;
        // A wrong password: asyncua, node-opcua and open62541 answer Bad_UserAccessDenied.
        assert_eq!(
            activate(0x801F_0000, Some("username")),
            "wrong_user_or_password"
        );
        // open62541 answers a user name token that no user token policy of the endpoint fits
        // (a server with anonymous logins only) with Bad_IdentityTokenInvalid: not a wrong
        // password.
        assert_eq!(
            activate(0x8020_0000, Some("username")),
            "user_token_not_offered"
        );
        assert_eq!(
            activate(0x8021_0000, Some("username")),
            "wrong_user_or_password"
        );
        // Anonymous refused: node-opcua Bad_IdentityTokenInvalid, asyncua Bad_IdentityTokenRejected.
        assert_eq!(
            activate(0x8020_0000, Some("anonymous")),
            "anonymous_disabled"
        );
        assert_eq!(
            activate(0x8021_0000, Some("anonymous")),
            "anonymous_disabled"
        );
        assert_eq!(
            activate(0x801F_0000, Some("anonymous")),
            "anonymous_disabled"
        );
        // Any other identity keeps the general rows.
        assert_eq!(activate(0x8020_0000, Some("x509")), "identity_rejected");
        assert_eq!(activate(0x801F_0000, None), "user_access_denied");
    }

    #[test]
    fn max_connections_reached_by_stage() {
        // asyncua's session limit answers the ActivateSession with Bad_MaxConnectionsReached.
        assert_eq!(
            by_status(0x80B7_0000, "activate_session", Some("anonymous")).code,
            "too_many_sessions"
        );
        assert_eq!(
            by_status(0x80B7_0000, "create_session", None).code,
            "too_many_sessions"
        );
        assert_eq!(
            by_status(0x80B7_0000, "hello", None).code,
            "connection_limit"
        );
    }

    #[test]
    fn every_status_has_one_row_per_scope() {
        // A status may be in two rows only if their scopes differ.
        for (i, a) in CAUSES.iter().enumerate() {
            for b in &CAUSES[i + 1..] {
                let same_scope =
                    a.scope.stages == b.scope.stages && a.scope.identity == b.scope.identity;
                if same_scope {
                    for st in a.statuses {
                        assert!(
                            !b.statuses.contains(st),
                            "0x{st:08X} in {} and {}",
                            a.code,
                            b.code
                        );
                    }
                }
            }
        }
    }

    fn cert(not_before: &str, not_after: &str) -> CertSummary {
        CertSummary {
            subject: Some("CN=Ignition".into()),
            thumbprint_sha1: "3A".into(),
            not_before: Some(not_before.into()),
            not_after: Some(not_after.into()),
            application_uri: None,
            parse_error: None,
        }
    }

    fn channel(outcome: &'static str, status: Option<u32>, c: Option<CertSummary>) -> EventKind {
        EventKind::SecureChannel(Box::new(crate::payload::SecureChannelInfo {
            request_type: None,
            policy: Some("Basic256Sha256".into()),
            policy_uri: None,
            mode: None,
            outcome,
            status: Status::opt(status),
            channel_id: Some(1),
            token_id: None,
            revised_lifetime_ms: None,
            requested_lifetime_ms: None,
            client_cert: c,
            server_cert: None,
            receiver_thumbprint: None,
            server_cert_now: None,
            decrypted: false,
        }))
    }

    const NOV_23_2026: i64 = 1_795_392_000_000_000;

    fn after_ack() -> Explainer {
        let mut x = Explainer::default();
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let hello = EventKind::Hello(crate::event::HelloInfo {
            endpoint_url: None,
            protocol_version: 0,
            receive_buffer_size: 0,
            send_buffer_size: 0,
            max_message_size: 0,
            max_chunk_count: 0,
        });
        assert!(x
            .observe(ts, Some(Direction::ClientToServer), &hello)
            .is_none());
        assert!(x
            .observe(ts, Some(Direction::ServerToClient), &hello)
            .is_none());
        x
    }

    #[test]
    fn an_encrypted_refusal_is_inferred_from_the_certificate() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        // Valid dates: the server most likely does not trust the certificate.
        let valid = cert("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let r = after_ack()
            .observe(ts, None, &channel("rejected", None, Some(valid.clone())))
            .expect("a reject");
        assert_eq!(
            (r.stage, r.cause, r.inferred),
            ("secure_channel", "client_cert_untrusted", true)
        );
        assert!(r.evidence.contains("encrypted"), "{}", r.evidence);
        // Expired the day before the capture.
        let expired = cert("2025-01-01T00:00:00Z", "2026-11-22T00:00:00Z");
        let r = after_ack()
            .observe(ts, None, &channel("rejected", None, Some(expired)))
            .expect("a reject");
        assert_eq!((r.cause, r.inferred), ("client_cert_expired", true));
        assert!(r.evidence.contains("2026-11-22"), "{}", r.evidence);
        // No answer at all is not a certificate problem.
        let r = after_ack()
            .observe(ts, None, &channel("no_response", None, Some(valid)))
            .expect("a reject");
        assert_eq!((r.cause, r.inferred), ("secure_channel_unanswered", true));
    }

    #[test]
    fn a_request_encrypted_to_an_old_server_certificate_is_named() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let valid = cert("2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
        let mut ev = channel("no_response", None, Some(valid));
        if let EventKind::SecureChannel(sc) = &mut ev {
            sc.receiver_thumbprint = Some("AAAA".into());
            sc.server_cert_now = Some("BBBB".into());
        }
        let r = after_ack().observe(ts, None, &ev).expect("a reject");
        assert_eq!((r.cause, r.inferred), ("server_cert_changed", true));
        assert!(
            r.evidence
                .contains("server certificate AAAA, but the server presents certificate BBBB"),
            "{}",
            r.evidence
        );
        assert!(r.explanation.contains("renewed"), "{}", r.explanation);
        // A specific status the server read (the policy) is not overridden.
        let mut ev = channel("rejected", Some(0x8055_0000), None);
        if let EventKind::SecureChannel(sc) = &mut ev {
            sc.server_cert_now = Some("BBBB".into());
        }
        let r = after_ack().observe(ts, None, &ev).expect("a reject");
        assert_ne!(r.cause, "server_cert_changed");
    }

    #[test]
    fn an_err_to_the_opn_and_its_secure_channel_make_one_reject() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let mut x = after_ack();
        let what = format!("{ERR_LIKE_OPN} (SecureChannelId 1, ...)");
        let decode = EventKind::DecodeError {
            offset: 28,
            what,
            hex_prefix: String::new(),
        };
        assert!(x
            .observe(ts, Some(Direction::ServerToClient), &decode)
            .is_none());
        let err = EventKind::TcpError {
            status: Some(0x8055_0000),
            reason: Some("not supported".into()),
        };
        assert!(x
            .observe(ts, Some(Direction::ServerToClient), &err)
            .is_none());
        let r = x
            .observe(ts, None, &channel("rejected", Some(0x8055_0000), None))
            .expect("one reject, with the secure_channel event");
        assert_eq!(
            (r.stage, r.cause, r.inferred),
            ("secure_channel", "policy_rejected", false)
        );
        assert!(
            r.evidence.contains("Bad_SecurityPolicyRejected"),
            "{}",
            r.evidence
        );
        assert!(r.evidence.contains("malformed ERR"), "{}", r.evidence);
        let close = EventKind::ConnClose {
            by: crate::event::ClosedBy::Server,
            reason: crate::event::CloseReason::Fin,
            bytes_c2s: 0,
            bytes_s2c: 0,
        };
        assert!(
            x.observe(ts, None, &close).is_none(),
            "nothing left to explain"
        );
    }

    #[test]
    fn an_err_to_the_opn_alone_is_explained_at_the_close() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let mut x = after_ack();
        let err = EventKind::TcpError {
            status: Some(0x801A_0000),
            reason: None,
        };
        assert!(x
            .observe(ts, Some(Direction::ServerToClient), &err)
            .is_none());
        let close = EventKind::ConnClose {
            by: crate::event::ClosedBy::Server,
            reason: crate::event::CloseReason::Fin,
            bytes_c2s: 0,
            bytes_s2c: 0,
        };
        let r = x.observe(ts, None, &close).expect("the ERR explained");
        assert_eq!(
            (r.stage, r.cause),
            ("secure_channel", "client_cert_untrusted")
        );
        assert!(r.evidence.contains("0x801A0000"), "{}", r.evidence);
    }

    #[test]
    fn a_server_close_before_any_ack_is_a_connection_limit_once() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let close = EventKind::ConnClose {
            by: crate::event::ClosedBy::Server,
            reason: crate::event::CloseReason::Fin,
            bytes_c2s: 0,
            bytes_s2c: 0,
        };
        // asyncua over its max_connections: closed before the Hello got through.
        let r = Explainer::default()
            .observe(ts, None, &close)
            .expect("a reject");
        assert_eq!(
            (r.stage, r.cause, r.inferred),
            ("hello", "connection_limit", true)
        );
        assert!(
            r.evidence.contains("before the client's Hello"),
            "{}",
            r.evidence
        );
        // An ERR to the Hello is the reject; the close that follows adds none.
        let mut x = Explainer::default();
        let hello = EventKind::Hello(crate::event::HelloInfo {
            endpoint_url: Some("opc.tcp://h:4840/x".into()),
            protocol_version: 0,
            receive_buffer_size: 0,
            send_buffer_size: 0,
            max_message_size: 0,
            max_chunk_count: 0,
        });
        assert!(x
            .observe(ts, Some(Direction::ClientToServer), &hello)
            .is_none());
        let err = EventKind::TcpError {
            status: Some(0x8083_0000),
            reason: None,
        };
        let r = x
            .observe(ts, Some(Direction::ServerToClient), &err)
            .expect("a reject");
        assert_eq!((r.stage, r.cause), ("hello", "endpoint_url_invalid"));
        assert!(x.observe(ts, None, &close).is_none());
    }

    #[test]
    fn session_refusals_use_the_identity() {
        let ts = crate::Timestamp::from_unix_micros(NOV_23_2026);
        let activate = |identity, status| {
            EventKind::Session(crate::payload::SessionInfo {
                action: "activate",
                session_id: None,
                outcome: "rejected",
                status: Status::opt(Some(status)),
                identity: Some(identity),
                user: (identity == "username").then(|| "op".to_string()),
                reused_on_new_channel: None,
                session_name: None,
                revised_session_timeout_ms: None,
                latency_ms: None,
            })
        };
        let r = Explainer::default()
            .observe(ts, None, &activate("username", 0x801F_0000))
            .expect("a reject");
        assert_eq!(
            (r.stage, r.cause),
            ("activate_session", "wrong_user_or_password")
        );
        assert!(r.evidence.contains("0x801F0000") && r.evidence.contains("\"op\""));
        let r = Explainer::default()
            .observe(ts, None, &activate("anonymous", 0x8021_0000))
            .expect("a reject");
        assert_eq!(r.cause, "anonymous_disabled");
        assert!(r.explanation.contains("anonymous"));
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
