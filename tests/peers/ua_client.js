#!/usr/bin/env node
// node-opcua OPC UA test client for uatap integration tests.
//
//   node ua_client.js basic URL [--seconds S]            (default S = 3)
//   node ua_client.js big URL --items K [--seconds S]    (default S = 4)
//   node ua_client.js watch URL [--seconds S]            (default S = 10)
//   common options: [--security POLICY:MODE] [--pki DIR] [--server-cert FILE] [--reconnect]
//                   [--user NAME --password-env VAR]
//
// Anonymous, or with --user NAME the user name and the password read from the environment
// variable --password-env VAR (never from the command line, never printed). node-opcua's connect() asks GetEndpoints on the same channel before CreateSession.
//
// Security: --security POLICY:MODE (default None:None), e.g. Basic256Sha256:Sign,
// Basic256Sha256:SignAndEncrypt, Aes256_Sha256_RsaPss:Sign. With a secured policy the client
// (ApplicationUri urn:uatap:test-client:node-opcua) keeps its PKI store in DIR/node-client/pki
// (--pki DIR, default <repo>/.cache/pki), where node-opcua generates a self-signed 2048-bit RSA
// certificate on first use; unknown server certificates are accepted (and trusted). The server
// certificate comes from --server-cert (DER or PEM; the servers print its path on a "CERT"
// line); without it node-opcua first fetches it over a separate SecurityPolicy None connection
// (GetEndpoints), which then also shows up in a capture.
//
// basic: Read ns=1;s=Counter, one subscription (publishing interval 100 ms) monitoring Counter
//        (sampling 0, queue 100); prints "<elapsed> datachange ns=1;s=Counter <value>" per
//        notification; after S seconds DeleteSubscriptions, CloseSession, CLO, TCP close; prints
//        "done; values N gaps [...]" (gaps = Counter values that were skipped).
// big:   one subscription (publishing interval 1000 ms, MaxNotificationsPerPublish 0) with K
//        items ns=1;s=Item.0..K-1 in one CreateMonitoredItems (queue 10 each); after S seconds
//        tears down like basic and prints "done; notifications N".
// watch: stays up S seconds through connection losses with node-opcua's own reconnection
//        (connectionStrategy with retries, keepSessionAlive, transportTimeout 3 s so that a link
//        that forwards nothing counts as broken), left to do what it does by default: new
//        channel, ActivateSession on the same session, Republish from the last sequence number
//        + 1 until Bad_MessageNotAvailable; CreateSession + TransferSubscriptions (or recreate)
//        when the old session is gone. One subscription (publishing interval 100 ms,
//        MaxKeepAliveCount 5, LifetimeCount 300, session timeout 30 s) monitoring Counter
//        (sampling 50 ms, queue 10). Prints one line per NotificationMessage the subscription
//        receives (its "raw_notification" event, Publish and Republish alike):
//            "<elapsed> notification sub=ID seq=N values=V1,V2"
//            "<elapsed> keepalive sub=ID seq=N"
//            "<elapsed> status sub=ID seq=N status=NAME"
//        and "<elapsed> stack: EVENT" for the reconnection events node-opcua emits
//        (connection_lost, start_reconnection, backoff, connection_reestablished,
//        after_reconnection, session_restored, subscription id changes...). Ends with
//        DeleteSubscriptions, CloseSession and "done; last seq N values M"; a reconnect in
//        progress at the end of the S seconds, or ended less than 3 s before, makes it stay
//        until 3 s after it ended (8 s more at most).
//
// --reconnect: when the connection breaks, come back (node-opcua's own recovery: new channel,
//        ActivateSession on the same session, Republish) instead of failing; logs
//        "client event: connection_lost" and "client event: connection_reestablished".
//
// Exit status 0 on success, non-zero on any error (or when no notification arrived at all).
"use strict";

const fs = require("fs");
const path = require("path");
const {
    OPCUAClient,
    OPCUACertificateManager,
    MessageSecurityMode,
    SecurityPolicy,
    UserTokenType,
    AttributeIds,
    TimestampsToReturn,
} = require("node-opcua");

const APP_URI = "urn:uatap:test-client:node-opcua";
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

// A certificate file, DER or PEM, as DER.
function readCertificateDer(file) {
    const raw = fs.readFileSync(file);
    const text = raw.toString("latin1");
    const m = text.match(/-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/);
    return m ? Buffer.from(m[1].replace(/\s+/g, ""), "base64") : raw;
}

const t0 = process.hrtime.bigint();
function log(msg) {
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    process.stdout.write(`${s.toFixed(3).padStart(8)} ${msg}\n`);
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseArgs(argv) {
    const usage = "usage: node ua_client.js {basic|big|watch} URL [--seconds S] [--items K] [--security POLICY:MODE] [--pki DIR] [--server-cert FILE] [--reconnect] [--user NAME --password-env VAR]";
    const pos = [];
    const opts = { seconds: undefined, items: 2000, security: parseSecurity("None:None"), pki: DEFAULT_PKI, serverCert: undefined, reconnect: false };
    for (let i = 0; i < argv.length; i++) {
        let [key, val] = argv[i].split("=", 2);
        if (key === "-h" || key === "--help") {
            console.log(usage);
            process.exit(0);
        }
        if (!key.startsWith("--")) {
            pos.push(argv[i]);
            continue;
        }
        if (key === "--reconnect") {
            opts.reconnect = true;
            continue;
        }
        if (val === undefined) val = argv[++i];
        if (key === "--user" || key === "--password-env") {
            if (val === undefined) throw new Error(`missing value for ${key}`);
            if (key === "--user") opts.user = val;
            else opts.passwordEnv = val;
            continue;
        }
        if (key === "--security" || key === "--pki" || key === "--server-cert") {
            if (val === undefined) throw new Error(`missing value for ${key}`);
            if (key === "--security") opts.security = parseSecurity(val);
            else if (key === "--pki") opts.pki = path.resolve(val);
            else opts.serverCert = path.resolve(val);
            continue;
        }
        const n = Number(val);
        if (val === undefined || !Number.isFinite(n) || n <= 0) throw new Error(`bad value for ${key}: ${val}`);
        if (key === "--seconds") opts.seconds = n;
        else if (key === "--items") opts.items = n;
        else throw new Error(`unknown argument ${key}\n${usage}`);
    }
    if (pos.length !== 2 || !["basic", "big", "watch"].includes(pos[0])) throw new Error(usage);
    opts.mode = pos[0];
    opts.url = pos[1];
    if (opts.seconds === undefined) opts.seconds = { basic: 3, big: 4, watch: 10 }[opts.mode];
    return opts;
}

function gapsOf(values) {
    const gaps = [];
    for (let i = 1; i < values.length; i++) {
        for (let v = values[i - 1] + 1; v < values[i]; v++) gaps.push(v);
    }
    return gaps;
}

async function basic(session, opts) {
    const nodeId = "ns=1;s=Counter";
    const dv = await session.read({ nodeId, attributeId: AttributeIds.Value });
    log(`Read Counter = ${dv.value.value} ${dv.statusCode.name}`);
    if (!dv.statusCode.isGood()) throw new Error(`Read failed: ${dv.statusCode.toString()}`);

    const sub = await session.createSubscription2({
        requestedPublishingInterval: 100,
        requestedLifetimeCount: 600,
        requestedMaxKeepAliveCount: 20,
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 0,
    });
    const values = [];
    const item = await sub.monitor(
        { nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: 0, discardOldest: true, queueSize: 100 },
        TimestampsToReturn.Both
    );
    item.on("changed", (dataValue) => {
        log(`datachange ${nodeId} ${dataValue.value.value}`);
        values.push(dataValue.value.value);
    });
    await sleep(opts.seconds * 1000);
    await sub.terminate();
    log(`done; values ${values.length} gaps [${gapsOf(values).join(", ")}]`);
    return values.length > 0 ? 0 : 3;
}

async function big(session, opts) {
    const sub = await session.createSubscription2({
        requestedPublishingInterval: 1000,
        requestedLifetimeCount: 3600,
        requestedMaxKeepAliveCount: 10,
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 0,
    });
    const itemsToMonitor = [];
    for (let i = 0; i < opts.items; i++) {
        itemsToMonitor.push({ nodeId: `ns=1;s=Item.${i}`, attributeId: AttributeIds.Value });
    }
    let count = 0;
    const group = await sub.monitorItems(
        itemsToMonitor,
        { samplingInterval: 0, discardOldest: true, queueSize: 10 },
        TimestampsToReturn.Both
    );
    group.on("changed", () => {
        count++;
    });
    log(`monitoring ${opts.items} items`);
    await sleep(opts.seconds * 1000);
    await sub.terminate();
    log(`done; notifications ${count}`);
    return count > 0 ? 0 : 3;
}

// The watch mode's client options: node-opcua's own reconnection, a broken link noticed within
// a few seconds.
const WATCH_OPTIONS = {
    connectionStrategy: { maxRetry: 100, initialDelay: 200, maxDelay: 1000 },
    requestedSessionTimeout: 30000,
    keepSessionAlive: true,
    keepAliveInterval: 1000,
    transportTimeout: 3000,
    defaultTransactionTimeout: 3000,
};

// watch: how long to stay after a reconnect ends (and while one is in progress), past --seconds.
const SETTLE_MS = 3000;
const MAX_SETTLE_MS = 8000;
const reconnect = { busy: false, doneAt: -Infinity };

function logStackEvents(client, session) {
    client.on("connection_lost", () => (reconnect.busy = true));
    client.on("connection_reestablished", () => {
        reconnect.busy = false;
        reconnect.doneAt = Date.now();
    });
    for (const name of ["connection_lost", "start_reconnection", "connection_reestablished", "after_reconnection",
        "reconnection_attempt_has_failed", "reconnection_canceled", "timed_out_request", "connection_failed"]) {
        client.on(name, (arg) => log(`stack: client ${name}${arg && arg.message ? " " + arg.message : ""}`));
    }
    client.on("backoff", (retry, delay) => log(`stack: client backoff retry ${retry} delay ${delay}`));
    for (const name of ["session_restored", "session_closed", "keepalive_failure"]) {
        session.on(name, () => log(`stack: session ${name}`));
    }
}

function logMessage(subscriptionId, msg) {
    const head = `sub=${subscriptionId} seq=${msg.sequenceNumber}`;
    const data = msg.notificationData || [];
    if (data.length === 0) log(`keepalive ${head}`);
    for (const n of data) {
        if (!n) continue;
        if (n.schema.name === "DataChangeNotification") {
            log(`notification ${head} values=${n.monitoredItems.map((m) => m.value.value.value).join(",")}`);
        } else if (n.schema.name === "StatusChangeNotification") {
            log(`status ${head} status=${n.status.name}`);
        }
    }
}

async function watch(client, session, opts) {
    logStackEvents(client, session);
    const nodeId = "ns=1;s=Counter";
    const sub = await session.createSubscription2({
        requestedPublishingInterval: 100,
        requestedLifetimeCount: 300,
        requestedMaxKeepAliveCount: 5,
        maxNotificationsPerPublish: 0,
        publishingEnabled: true,
        priority: 0,
    });
    sub.on("raw_notification", (msg) => logMessage(sub.subscriptionId, msg));
    sub.on("subscriptionId_changed", (id, old) => log(`stack: subscription id ${old} -> ${id}`));
    sub.on("status_changed", (status) => log(`stack: subscription status_changed ${status.name}`));
    let values = 0;
    const item = await sub.monitor(
        { nodeId, attributeId: AttributeIds.Value },
        { samplingInterval: 50, discardOldest: true, queueSize: 10 },
        TimestampsToReturn.Both
    );
    item.on("changed", () => values++);
    log(`WATCHING sub=${sub.subscriptionId}`);
    await sleep(opts.seconds * 1000);
    const settleEnd = Date.now() + MAX_SETTLE_MS;
    while ((reconnect.busy || Date.now() - reconnect.doneAt < SETTLE_MS) && Date.now() < settleEnd) await sleep(200);
    const last = sub.lastSequenceNumber;
    await sub.terminate();
    log(`done; last seq ${last} values ${values}`);
    return values > 0 ? 0 : 3;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const watchdog = setTimeout(() => {
        console.error("client timed out");
        process.exit(2);
    }, (opts.seconds + 60) * 1000);
    watchdog.unref();

    const { policy, mode } = opts.security;
    const options = {
        applicationName: "uatap test client (node-opcua)",
        endpointMustExist: false,
        securityMode: MessageSecurityMode[mode],
        securityPolicy: SecurityPolicy[policy],
        connectionStrategy: opts.reconnect
            ? { maxRetry: 50, initialDelay: 200, maxDelay: 500 }
            : { maxRetry: 0, initialDelay: 100, maxDelay: 200 },
        requestedSessionTimeout: 60000,
        keepSessionAlive: false,
    };
    if (policy !== "None") {
        const rootFolder = path.join(opts.pki, "node-client", "pki");
        fs.mkdirSync(rootFolder, { recursive: true });
        options.applicationUri = APP_URI;
        options.clientCertificateManager = new OPCUACertificateManager({
            rootFolder,
            automaticallyAcceptUnknownCertificate: true,
            keySize: 2048,
            disableFileWatchers: true,
        });
        if (opts.serverCert) options.serverCertificate = readCertificateDer(opts.serverCert);
        log(`security ${policy} ${mode}, PKI ${rootFolder}`);
    }
    if (opts.mode === "watch") Object.assign(options, WATCH_OPTIONS);
    const client = OPCUAClient.create(options);
    client.on("backoff", (retry, delay) => log(`client event: backoff retry ${retry} delay ${delay}`));
    client.on("close", () => log("client event: close"));
    client.on("connection_lost", () => log("client event: connection_lost"));
    client.on("connection_reestablished", () => log("client event: connection_reestablished"));

    await client.connect(opts.url);
    let rc = 1;
    let session;
    try {
        let identity;
        if (opts.user !== undefined) {
            const password = process.env[opts.passwordEnv || ""];
            if (password === undefined) throw new Error("--user needs --password-env VAR naming a variable that is set");
            identity = { type: UserTokenType.UserName, userName: opts.user, password };
        }
        session = await client.createSession(identity);
        log(`session created ${session.sessionId.toString()}`);
        if (opts.mode === "watch") rc = await watch(client, session, opts);
        else rc = opts.mode === "basic" ? await basic(session, opts) : await big(session, opts);
    } finally {
        if (session) await session.close(true);
        await client.disconnect();
    }
    return rc;
}

main().then(
    (rc) => {
        log(`exit ${rc}`);
        process.exit(rc);
    },
    (err) => {
        console.error("client failed:", err && err.message ? err.message : err);
        process.exit(1);
    }
);
