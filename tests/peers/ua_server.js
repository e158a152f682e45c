#!/usr/bin/env node
// node-opcua OPC UA test server for uatap integration tests.
//
//   node ua_server.js --port N [--items K] [--period MS] [--max-notif M] [--duration S]
//                     [--security POLICY:MODE] [--pki DIR] [--host ADDR]
//                     [--no-auto-accept] [--trust-cert FILE] [--max-sessions N] [--no-anonymous]
//                     [--user NAME --password-env VAR]
//
// Listens on --host only (default 127.0.0.1; IPv6 e.g. ::1); endpoint opc.tcp://HOST:N/UA/Test
// (an IPv6 address in brackets: opc.tcp://[::1]:N/UA/Test), anonymous login allowed.
// Address space (namespace 1, the server's own):
//
//   ns=1;s=Counter   Int32, +1 every --period ms (default 100)
//   ns=1;s=Item.<i>  Double, i = 0..K-1, all changed every --period ms
//
// --max-notif M raises node-opcua's server-side cap on notifications per PublishResponse
// (Subscription.maxNotificationPerPublishHighLimit, 1000 by default) so that a single
// PublishResponse can grow past one 524288-byte chunk (see fixtures/big-publish.md).
//
// Security: --security POLICY:MODE (default None:None). The server offers exactly one endpoint,
// that policy and mode (no None endpoint besides a secured one), e.g. Basic256Sha256:Sign,
// Basic256Sha256:SignAndEncrypt, Aes256_Sha256_RsaPss:Sign. With a secured policy the server
// (ApplicationUri urn:uatap:test-server:node-opcua) keeps its PKI store in DIR/node-server/pki
// (--pki DIR, default <repo>/.cache/pki): node-opcua generates a self-signed 2048-bit RSA
// certificate there on first use, and the OPCUACertificateManager accepts (and trusts) every
// unknown client certificate. The certificate is also written as DER to DIR/node-server/cert.der
// and announced on a "CERT <path>" line before READY, for the client's --server-cert. With
// security None the same happens when --pki is given (so that a client can ask a secured
// channel of a server that offers only None, with the server's real certificate).
//
// Refusals, one way each (for the reject tests, tests/rejects.rs):
//   --no-auto-accept  the certificate manager does not accept unknown client certificates (its
//                     trust list starts empty): a secured OpenSecureChannel is refused with a
//                     ServiceFault encrypted to the client (node-opcua turns
//                     Bad_CertificateUntrusted into Bad_SecurityChecksFailed). node-opcua checks
//                     the dates only of certificates it trusts, and auto-accepting trusts any,
//                     an expired one too.
//   --trust-cert FILE puts a client certificate (DER or PEM) in the trust list: with
//                     --no-auto-accept and an expired certificate, the OpenSecureChannel is
//                     refused with Bad_CertificateTimeInvalid (encrypted).
//   --max-sessions N  serverCapabilities.maxSessions: one CreateSession more is refused with
//                     Bad_TooManySessions.
//   --no-anonymous    allowAnonymous false: an anonymous ActivateSession is refused with
//                     Bad_IdentityTokenInvalid.
//   --user NAME --password-env VAR
//                     a user name / password user, the password read from the environment
//                     variable VAR (never from the command line, never printed); a wrong
//                     password is refused with Bad_UserAccessDenied. On a None endpoint the
//                     user name token policy asks the client to encrypt the password with
//                     Basic256Sha256 to the server certificate.
// A policy or mode the server does not offer: a request in mode None is refused with a plain
// ServiceFault (Bad_SecurityPolicyRejected) in an OPN; a secured request for a policy the
// server does not offer is answered with an ERR message that carries a ServiceFault laid out
// like an OPN response (not a well-formed ERR). node-opcua does not check the EndpointUrl of the
// client's Hello.
//
// --port 0 listens on a port the system picks; READY names it.
// Prints "READY opc.tcp://HOST:N/UA/Test" on stdout once listening, then runs until
// SIGTERM/SIGINT or --duration seconds. --port 0 listens on a port the system chooses, named on
// the READY line (the endpoints the server advertises then say port 0).
"use strict";

const fs = require("fs");
const path = require("path");
const {
    OPCUAServer,
    OPCUACertificateManager,
    Subscription,
    SecurityPolicy,
    MessageSecurityMode,
    DataType,
} = require("node-opcua");

const DEFAULT_PKI = path.join(__dirname, "..", "..", ".cache", "pki");
const POLICIES = ["None", "Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"];
const MODES = ["None", "Sign", "SignAndEncrypt"];

// "POLICY:MODE" -> { policy, mode } (names as in the SecurityPolicy URIs / MessageSecurityMode)
function parseSecurity(text) {
    const [policy, mode, extra] = String(text).split(":");
    if (extra !== undefined || !POLICIES.includes(policy) || !MODES.includes(mode) || (policy === "None") !== (mode === "None")) {
        throw new Error(`bad --security ${text}: POLICY:MODE with POLICY in ${POLICIES.join(", ")} and MODE Sign or SignAndEncrypt (or None:None)`);
    }
    return { policy, mode };
}

function parseArgs(argv) {
    const opts = { port: undefined, items: 0, period: 100, maxNotif: 0, duration: 0, security: parseSecurity("None:None"), pki: DEFAULT_PKI, host: "127.0.0.1", autoAccept: true, maxSessions: 0, anonymous: true, user: undefined, passwordEnv: undefined };
    const names = { "--port": "port", "--items": "items", "--period": "period", "--max-notif": "maxNotif", "--duration": "duration", "--max-sessions": "maxSessions" };
    for (let i = 0; i < argv.length; i++) {
        let [key, val] = argv[i].split("=", 2);
        if (key === "-h" || key === "--help") {
            console.log("usage: node ua_server.js --port N [--items K] [--period MS] [--max-notif M] [--duration S] [--security POLICY:MODE] [--pki DIR] [--host ADDR] [--no-auto-accept] [--trust-cert FILE] [--max-sessions N] [--no-anonymous] [--user NAME --password-env VAR]");
            process.exit(0);
        }
        if (key === "--no-auto-accept") {
            opts.autoAccept = false;
            continue;
        }
        if (key === "--no-anonymous") {
            opts.anonymous = false;
            continue;
        }
        if (key === "--user" || key === "--password-env") {
            if (val === undefined) val = argv[++i];
            if (val === undefined) throw new Error(`missing value for ${key}`);
            if (key === "--user") opts.user = val;
            else opts.passwordEnv = val;
            continue;
        }
        if (key === "--security" || key === "--pki" || key === "--host" || key === "--trust-cert") {
            if (val === undefined) val = argv[++i];
            if (val === undefined) throw new Error(`missing value for ${key}`);
            if (key === "--security") opts.security = parseSecurity(val);
            else if (key === "--host") opts.host = val;
            else if (key === "--trust-cert") opts.trustCert = path.resolve(val);
            else {
                opts.pki = path.resolve(val);
                opts.pkiGiven = true;
            }
            continue;
        }
        if (!(key in names)) throw new Error(`unknown argument ${argv[i]}`);
        if (val === undefined) val = argv[++i];
        const n = Number(val);
        if (val === undefined || !Number.isFinite(n) || n < 0) throw new Error(`bad value for ${key}: ${val}`);
        opts[names[key]] = n;
    }
    if (opts.port === undefined) throw new Error("--port is required (0: a free port, printed on the READY line)");
    if (opts.user !== undefined && opts.passwordEnv === undefined) throw new Error("--user needs --password-env VAR");
    if (!opts.period) throw new Error("--period must be > 0");
    return opts;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    if (opts.maxNotif > 0) {
        Subscription.maxNotificationPerPublishHighLimit = opts.maxNotif;
    }

    const { policy, mode } = opts.security;
    const secured = policy !== "None";
    const options = {
        port: opts.port,
        host: opts.host,
        // node-opcua writes the hostname into its endpoint URLs as is: an IPv6 address needs
        // its brackets there.
        hostname: opts.host.includes(":") ? `[${opts.host}]` : opts.host,
        resourcePath: "/UA/Test",
        securityPolicies: [SecurityPolicy[policy]],
        securityModes: [MessageSecurityMode[mode]],
        allowAnonymous: opts.anonymous,
        buildInfo: { productName: "uatap test server (node-opcua)" },
        serverInfo: { applicationUri: "urn:uatap:test-server:node-opcua" },
    };
    if (opts.maxSessions > 0) options.serverCapabilities = { maxSessions: opts.maxSessions };
    if (opts.user !== undefined) {
        const password = process.env[opts.passwordEnv];
        if (password === undefined) throw new Error(`--password-env: ${opts.passwordEnv} is not set`);
        options.userManager = {
            isValidUser: (userName, userPassword) => userName === opts.user && userPassword === password,
        };
        // node-opcua offers a user name token on a None endpoint only for the policies it
        // lists (the password is encrypted to the server certificate): list Basic256Sha256 too,
        // with no secured mode, so that the one endpoint stays None.
        if (!secured) options.securityPolicies.push(SecurityPolicy.Basic256Sha256);
    }
    const certDer = path.join(opts.pki, "node-server", "cert.der");
    const ownPki = secured || opts.pkiGiven || opts.trustCert !== undefined;
    if (ownPki) {
        const rootFolder = path.join(opts.pki, "node-server", "pki");
        fs.mkdirSync(rootFolder, { recursive: true });
        options.serverCertificateManager = new OPCUACertificateManager({
            rootFolder,
            automaticallyAcceptUnknownCertificate: opts.autoAccept,
            keySize: 2048,
            disableFileWatchers: true,
        });
    }
    const server = new OPCUAServer(options);
    await server.initialize();
    if (opts.trustCert !== undefined) {
        const raw = fs.readFileSync(opts.trustCert);
        const m = raw.toString("latin1").match(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/);
        await options.serverCertificateManager.trustCertificate(m ? Buffer.from(m[1].replace(/\s+/g, ""), "base64") : raw);
    }
    if (ownPki) {
        fs.writeFileSync(certDer, server.getCertificate());
        process.stdout.write(`CERT ${certDer}\n`);
    }

    const addressSpace = server.engine.addressSpace;
    const ns = addressSpace.getOwnNamespace();
    const objects = addressSpace.rootFolder.objects;
    const counter = ns.addVariable({
        organizedBy: objects,
        browseName: "Counter",
        nodeId: "s=Counter",
        dataType: "Int32",
        value: { dataType: DataType.Int32, value: 0 },
    });
    const items = [];
    for (let i = 0; i < opts.items; i++) {
        items.push(
            ns.addVariable({
                organizedBy: objects,
                browseName: `Item.${i}`,
                nodeId: `s=Item.${i}`,
                dataType: "Double",
                value: { dataType: DataType.Double, value: 0 },
            })
        );
    }

    let tick = 0;
    const timer = setInterval(() => {
        tick++;
        counter.setValueFromSource({ dataType: DataType.Int32, value: tick });
        for (let i = 0; i < items.length; i++) {
            items[i].setValueFromSource({ dataType: DataType.Double, value: tick + i / 10000 });
        }
    }, opts.period);

    let stopping = false;
    async function stop(reason) {
        if (stopping) return;
        stopping = true;
        clearInterval(timer);
        try {
            await server.shutdown(0);
            console.log(`server stopped (${reason}) after ${tick} ticks`);
            process.exit(0);
        } catch (err) {
            console.error("shutdown failed:", err);
            process.exit(1);
        }
    }
    process.on("SIGTERM", () => stop("SIGTERM"));
    process.on("SIGINT", () => stop("SIGINT"));
    if (opts.duration > 0) setTimeout(() => stop("duration"), opts.duration * 1000);

    await server.start();
    // With --port 0 the endpoint learns its port once listening.
    const port = opts.port || server.endpoints[0].port;
    const url = `opc.tcp://${options.hostname}:${port}/UA/Test`;
    const advertised = server.getEndpointUrl();
    if (advertised !== url) console.error(`warning: server advertises ${advertised}, expected ${url}`);
    process.stdout.write(`READY ${url}\n`);
}

main().catch((err) => {
    console.error("server failed:", err);
    process.exit(1);
});
