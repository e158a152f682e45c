#!/usr/bin/env node
// node-opcua OPC UA test server for uatap integration tests.
//
//   node ua_server.js --port N [--items K] [--period MS] [--max-notif M] [--duration S]
//                     [--security POLICY:MODE] [--pki DIR] [--host ADDR]
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
// and announced on a "CERT <path>" line before READY, for the client's --server-cert.
//
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
    const opts = { port: undefined, items: 0, period: 100, maxNotif: 0, duration: 0, security: parseSecurity("None:None"), pki: DEFAULT_PKI, host: "127.0.0.1" };
    const names = { "--port": "port", "--items": "items", "--period": "period", "--max-notif": "maxNotif", "--duration": "duration" };
    for (let i = 0; i < argv.length; i++) {
        let [key, val] = argv[i].split("=", 2);
        if (key === "-h" || key === "--help") {
            console.log("usage: node ua_server.js --port N [--items K] [--period MS] [--max-notif M] [--duration S] [--security POLICY:MODE] [--pki DIR] [--host ADDR]");
            process.exit(0);
        }
        if (key === "--security" || key === "--pki" || key === "--host") {
            if (val === undefined) val = argv[++i];
            if (val === undefined) throw new Error(`missing value for ${key}`);
            if (key === "--security") opts.security = parseSecurity(val);
            else if (key === "--host") opts.host = val;
            else opts.pki = path.resolve(val);
            continue;
        }
        if (!(key in names)) throw new Error(`unknown argument ${argv[i]}`);
        if (val === undefined) val = argv[++i];
        const n = Number(val);
        if (val === undefined || !Number.isFinite(n) || n < 0) throw new Error(`bad value for ${key}: ${val}`);
        opts[names[key]] = n;
    }
    if (opts.port === undefined) throw new Error("--port is required (0: a free port, printed on the READY line)");
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
        allowAnonymous: true,
        buildInfo: { productName: "uatap test server (node-opcua)" },
        serverInfo: { applicationUri: "urn:uatap:test-server:node-opcua" },
    };
    const certDer = path.join(opts.pki, "node-server", "cert.der");
    if (secured) {
        const rootFolder = path.join(opts.pki, "node-server", "pki");
        fs.mkdirSync(rootFolder, { recursive: true });
        options.serverCertificateManager = new OPCUACertificateManager({
            rootFolder,
            automaticallyAcceptUnknownCertificate: true,
            keySize: 2048,
            disableFileWatchers: true,
        });
    }
    const server = new OPCUAServer(options);
    await server.initialize();
    if (secured) {
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
    // With --port 0 the system chose the port: the endpoint knows which.
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
