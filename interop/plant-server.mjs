#!/usr/bin/env node
/**
 * plant-server.mjs: a node-opcua OPC UA server with a small hand-made plant model, for the
 * interoperability tests (our asyncua-based bridge against an independent OPC UA stack).
 *
 *   node interop/plant-server.mjs <port> <pki-folder> [--users operator:secret-pw]
 *
 * Listens on 127.0.0.1:<port> only; the endpoint is opc.tcp://127.0.0.1:<port>/opcua-mqtt/plant.
 * Security: None/None and Basic256Sha256/SignAndEncrypt. Identities: anonymous and user name /
 * password (operator / secret-pw unless --users says otherwise; a wrong password is refused).
 * node-opcua keeps its PKI (own certificate and key, trusted/rejected client certificates) under
 * <pki-folder>; the server certificate is self-signed and created there at first start.
 * Unknown client certificates are accepted (automaticallyAcceptUnknownCertificate): a test
 * server, never do this in production.
 *
 * Works on Node.js 20 although node-opcua 2.186 asks for >=22.13 (.npmrc: engine-strict=false).
 *
 * stdout protocol, one line each, in this order once the server is listening:
 *   CERT <absolute path of the server certificate, PEM>
 *   NAMESPACE <namespace URI of the plant model>
 *   READY <endpoint URL>
 * Everything node-opcua logs goes to stderr. SIGTERM / SIGINT shut the server down cleanly.
 *
 * Model (namespace urn:opcua-mqtt:interop:plant, string NodeIds "s=<path with dots>"):
 *   Objects/Plant/Line1/Filler     Speed (Double, writable), FillLevel (Float), BottleCount
 *                                  (UInt32, changes), Running (Boolean, writable), Recipe
 *                                  (String, writable), LastStart (DateTime), ValveStates
 *                                  (Boolean[]), NozzleTemperatures (Double[], changes)
 *   Objects/Plant/Line1/Capper     Torque (Float, writable), CapCount (Int64, changes),
 *                                  Mode (Int32, writable), ErrorCode (UInt16), Serial
 *                                  (ByteString), LastCap (DateTime, changes), Torques (Float[])
 *   Objects/Plant/Utilities/Compressor  Pressure (Double, changes), Setpoint (Double,
 *                                  writable), Hours (UInt64), Alarm (Boolean), Phases
 *                                  (Int16[]), Labels (String[]), Byte (Byte), SByte (SByte)
 */
import path from "node:path";
import process from "node:process";

// node-opcua logs to stdout through console.log: keep stdout for the protocol lines above.
const protocolWrite = process.stdout.write.bind(process.stdout);
console.log = (...args) => console.error(...args);
console.info = (...args) => console.error(...args);
console.warn = (...args) => console.error(...args);

const {
    OPCUAServer,
    OPCUACertificateManager,
    SecurityPolicy,
    MessageSecurityMode,
    DataType,
    Variant,
    VariantArrayType,
    makeRoles,
    WellKnownRoles,
} = await import("node-opcua");

const NAMESPACE_URI = "urn:opcua-mqtt:interop:plant";
const RESOURCE_PATH = "/opcua-mqtt/plant";
const HOST = "127.0.0.1";

function usage(message) {
    process.stderr.write(`plant-server.mjs: ${message}\n`);
    process.stderr.write("usage: node plant-server.mjs <port> <pki-folder> [--users user:password,...]\n");
    process.exit(2);
}

const args = process.argv.slice(2);
if (args.length < 2) usage("need <port> and <pki-folder>");
const port = Number.parseInt(args[0], 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) usage(`bad port ${args[0]}`);
const pkiFolder = path.resolve(args[1]);
const users = new Map([["operator", "secret-pw"]]);
for (let i = 2; i < args.length; i++) {
    if (args[i] === "--users" && i + 1 < args.length) {
        users.clear();
        for (const pair of args[++i].split(",")) {
            const at = pair.indexOf(":");
            if (at <= 0) usage(`bad --users entry ${pair}`);
            users.set(pair.slice(0, at), pair.slice(at + 1));
        }
    } else {
        usage(`unknown argument ${args[i]}`);
    }
}

const serverCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pkiFolder, "server"),
    // Test server: trust every client certificate (it lands in trusted/ on first contact).
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
});
const userCertificateManager = new OPCUACertificateManager({
    rootFolder: path.join(pkiFolder, "user"),
    automaticallyAcceptUnknownCertificate: true,
    disableFileWatchers: true,
});

const server = new OPCUAServer({
    port,
    host: HOST, // bind to loopback only
    hostname: HOST, // and advertise it in the endpoint URL
    resourcePath: RESOURCE_PATH,
    serverCertificateManager,
    userCertificateManager,
    securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256],
    securityModes: [MessageSecurityMode.None, MessageSecurityMode.SignAndEncrypt],
    allowAnonymous: true,
    userManager: {
        isValidUser(username, password) {
            return users.has(username) && users.get(username) === password;
        },
        getUserRoles(username) {
            return users.has(username)
                ? makeRoles([WellKnownRoles.AuthenticatedUser, WellKnownRoles.Operator])
                : makeRoles([WellKnownRoles.Anonymous]);
        },
    },
    serverInfo: {
        applicationUri: "urn:opcua-mqtt:interop:plant-server",
        productUri: "urn:opcua-mqtt:interop:plant-server",
        applicationName: { text: "opcua-mqtt node-opcua plant server", locale: "en" },
    },
    buildInfo: { productName: "opcua-mqtt plant-server", manufacturerName: "opcua-mqtt tests" },
    // No option caps the session timeout: node-opcua 2.186 grants what the client asks, up to a
    // hard-coded 50 minutes. Test clients ask for short sessions, so that a killed client does
    // not leave its subscriptions here for long.
});

await server.initialize();
const addressSpace = server.engine.addressSpace;
const ns = addressSpace.registerNamespace(NAMESPACE_URI);

const plant = ns.addObject({
    nodeId: "s=Plant",
    browseName: "Plant",
    organizedBy: addressSpace.rootFolder.objects,
    description: "Hand-made plant model served by node-opcua",
});

function object(parent, pathName, name, description) {
    return ns.addObject({ nodeId: `s=${pathName}`, browseName: name, componentOf: parent, description });
}

const RW = "CurrentRead | CurrentWrite";
const RO = "CurrentRead";

/** Adds one variable; `array` true means a one-dimensional array (ValueRank 1). */
function variable(parent, pathName, name, dataType, value, { writable = false, array = false, description } = {}) {
    return ns.addVariable({
        nodeId: `s=${pathName}.${name}`,
        browseName: name,
        componentOf: parent,
        description,
        dataType: DataType[dataType],
        valueRank: array ? 1 : -1,
        arrayDimensions: array ? [0] : null,
        accessLevel: writable ? RW : RO,
        userAccessLevel: writable ? RW : RO,
        minimumSamplingInterval: 100,
        value: new Variant({
            dataType: DataType[dataType],
            arrayType: array ? VariantArrayType.Array : VariantArrayType.Scalar,
            value,
        }),
    });
}

const line1 = object(plant, "Plant.Line1", "Line1", "Bottling line 1");
const filler = object(line1, "Plant.Line1.Filler", "Filler", "Fills bottles");
const capper = object(line1, "Plant.Line1.Capper", "Capper");
const utilities = object(plant, "Plant.Utilities", "Utilities");
const compressor = object(utilities, "Plant.Utilities.Compressor", "Compressor", "Air compressor");

const F = "Plant.Line1.Filler";
variable(filler, F, "Speed", "Double", 120.5, { writable: true, description: "bottles per minute" });
variable(filler, F, "FillLevel", "Float", 0.75);
const bottleCount = variable(filler, F, "BottleCount", "UInt32", 0);
variable(filler, F, "Running", "Boolean", true, { writable: true });
variable(filler, F, "Recipe", "String", "Cola 0.5 l", { writable: true });
variable(filler, F, "LastStart", "DateTime", new Date("2024-05-06T07:08:09.123Z"));
variable(filler, F, "ValveStates", "Boolean", [true, false, true, true], { array: true });
const nozzles = variable(filler, F, "NozzleTemperatures", "Double", new Float64Array([20.5, 21.0, 21.5]), {
    array: true,
});

const C = "Plant.Line1.Capper";
variable(capper, C, "Torque", "Float", 1.25, { writable: true, description: "N·m" });
const capCount = variable(capper, C, "CapCount", "Int64", [0, 0]);
variable(capper, C, "Mode", "Int32", -3, { writable: true });
variable(capper, C, "ErrorCode", "UInt16", 65535);
variable(capper, C, "Serial", "ByteString", Buffer.from([0x00, 0x01, 0xfe, 0xff]));
const lastCap = variable(capper, C, "LastCap", "DateTime", new Date());
variable(capper, C, "Torques", "Float", new Float32Array([1.5, 2.5, 3.5]), { array: true, writable: true });

const P = "Plant.Utilities.Compressor";
const pressure = variable(compressor, P, "Pressure", "Double", 6.0, { description: "bar" });
variable(compressor, P, "Setpoint", "Double", 6.5, { writable: true });
variable(compressor, P, "Hours", "UInt64", [0, 123456]);
variable(compressor, P, "Alarm", "Boolean", false);
variable(compressor, P, "Phases", "Int16", new Int16Array([-1, 0, 1]), { array: true });
variable(compressor, P, "Labels", "String", ["L1", "L2", "L3"], { array: true, writable: true });
variable(compressor, P, "Byte", "Byte", 200);
variable(compressor, P, "SByte", "SByte", -100);

// Values that change every 100 ms so subscriptions see traffic.
let tick = 0;
const timer = setInterval(() => {
    tick += 1;
    bottleCount.setValueFromSource({ dataType: DataType.UInt32, value: tick });
    capCount.setValueFromSource({ dataType: DataType.Int64, arrayType: VariantArrayType.Scalar, value: [0, tick] });
    lastCap.setValueFromSource({ dataType: DataType.DateTime, value: new Date() });
    pressure.setValueFromSource({ dataType: DataType.Double, value: 6.0 + Math.sin(tick / 10) });
    nozzles.setValueFromSource({
        dataType: DataType.Double,
        arrayType: VariantArrayType.Array,
        value: new Float64Array([20.5 + (tick % 10) / 10, 21.0, 21.5]),
    });
}, 100);

await server.start();

let stopping = false;
async function shutdown(signal) {
    if (stopping) return;
    stopping = true;
    clearInterval(timer);
    process.stderr.write(`plant-server.mjs: ${signal}, shutting down\n`);
    try {
        await server.shutdown(0);
    } finally {
        process.exit(0);
    }
}
process.on("SIGTERM", () => void shutdown("SIGTERM"));
process.on("SIGINT", () => void shutdown("SIGINT"));

const endpoint = `opc.tcp://${HOST}:${port}${RESOURCE_PATH}`;
const advertised = server.getEndpointUrl();
if (advertised !== endpoint) {
    process.stderr.write(`plant-server.mjs: node-opcua advertises ${advertised}, expected ${endpoint}\n`);
}
protocolWrite(`CERT ${path.resolve(server.certificateFile)}\n`);
protocolWrite(`NAMESPACE ${NAMESPACE_URI}\n`);
protocolWrite(`READY ${endpoint}\n`);
