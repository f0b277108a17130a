#!/usr/bin/env node
/**
 * plant-server.mjs: a node-opcua OPC UA server with a small hand-made plant model, for the
 * interoperability tests (our asyncua-based bridge against an independent OPC UA stack).
 *
 *   node interop/plant-server.mjs <port> <pki-folder> [--users operator:secret-pw] [--tank-level 50]
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
 *   Objects/WriteBack              for write-back tests, outside Plant so that writing them never
 *                                  changes what the other tests read: one writable scalar per
 *                                  built-in type 1..25, named after it (ExtensionObject holds a
 *                                  Range, Variant has DataType BaseDataType), Doubles (Double[]),
 *                                  Strings (String[]), Int32Matrix (Int32, 2 x 3), ReadOnly
 *                                  (Double, read-only), NotAllowed (Double, writable)
 *   Objects/Alarms                 an event notifier (notifier of the Server object) for the
 *                                  Alarms and Conditions tests: TankLevel (Double, writable,
 *                                  --tank-level at start, 50 unless told) is the input of
 *                                  TankLevelAlarm, an ExclusiveLimitAlarm (LowLow 5, Low 20,
 *                                  High 80, HighHigh 95); ConveyorJam (Boolean, writable, false)
 *                                  is the input of ConveyorJamAlarm, an OffNormalAlarm whose
 *                                  normal state is false. Acknowledge, Confirm, AddComment and
 *                                  ConditionRefresh are node-opcua's own.
 *
 * Every Write that reaches a WriteBack variable adds a line on stdout, after READY:
 *   WRITE <path, e.g. WriteBack.Double> <resulting StatusCode name>
 * so that a test can tell a write the server refused from one that was never sent.
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
    StatusCodes,
    coerceNodeId,
    coerceExpandedNodeId,
    coerceQualifiedName,
    coerceLocalizedText,
    DataValue,
    DiagnosticInfo,
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
let tankLevelAtStart = 50;
for (let i = 2; i < args.length; i++) {
    if (args[i] === "--tank-level" && i + 1 < args.length) {
        tankLevelAtStart = Number.parseFloat(args[++i]);
        if (!Number.isFinite(tankLevelAtStart)) usage(`bad --tank-level ${args[i]}`);
    } else if (args[i] === "--users" && i + 1 < args.length) {
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

/**
 * Adds one variable; `array` true means a one-dimensional array (ValueRank 1), `dimensions` a
 * fixed shape ([2, 3]: a matrix). `dataType` names a built-in type, or another DataType by its
 * browse name ("Range", "BaseDataType"), in which case `value` is the Variant itself.
 */
function variable(
    parent,
    pathName,
    name,
    dataType,
    value,
    { writable = false, array = false, dimensions, description } = {},
) {
    const shape = dimensions ?? (array ? [0] : null);
    const builtIn = DataType[dataType];
    const arrayType = !shape
        ? VariantArrayType.Scalar
        : shape.length > 1
          ? VariantArrayType.Matrix
          : VariantArrayType.Array;
    return ns.addVariable({
        nodeId: `s=${pathName}.${name}`,
        browseName: name,
        componentOf: parent,
        description,
        dataType: builtIn ?? dataType,
        valueRank: shape ? shape.length : -1,
        arrayDimensions: shape,
        accessLevel: writable ? RW : RO,
        userAccessLevel: writable ? RW : RO,
        minimumSamplingInterval: 100,
        value:
            value instanceof Variant
                ? value
                : new Variant({
                      dataType: builtIn,
                      arrayType,
                      dimensions: arrayType === VariantArrayType.Matrix ? shape : undefined,
                      value,
                  }),
    });
}

/** Reports each Write that reaches `node` on stdout (see the top of this file). */
function reportWrites(node, pathName) {
    const writeAttribute = node.writeAttribute.bind(node);
    node.writeAttribute = (context, writeValue, callback) =>
        writeAttribute(context, writeValue, (err, statusCode) => {
            const result = err ? `error:${err.message}` : (statusCode ?? StatusCodes.Good).name;
            protocolWrite(`WRITE ${pathName} ${result}\n`);
            callback(err, statusCode);
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

const W = "WriteBack";
const writeBack = ns.addObject({
    nodeId: `s=${W}`,
    browseName: W,
    organizedBy: addressSpace.rootFolder.objects,
    description: "Variables for the write-back tests",
});
const range = addressSpace.findDataType("Range");
const writeBackVariables = [
    ["Boolean", false],
    ["SByte", 0],
    ["Byte", 0],
    ["Int16", 0],
    ["UInt16", 0],
    ["Int32", 0],
    ["UInt32", 0],
    ["Int64", [0, 0]],
    ["UInt64", [0, 0]],
    ["Float", 0],
    ["Double", 0],
    ["String", "initial"],
    ["DateTime", new Date("2024-01-01T00:00:00Z")],
    ["Guid", "00000000-0000-0000-0000-000000000000"],
    ["ByteString", Buffer.from("initial")],
    ["XmlElement", "<initial/>"],
    ["NodeId", coerceNodeId("i=84")],
    ["ExpandedNodeId", coerceExpandedNodeId("i=84")],
    ["StatusCode", StatusCodes.Good],
    ["QualifiedName", coerceQualifiedName("Initial")],
    ["LocalizedText", coerceLocalizedText({ locale: "en", text: "initial" })],
    ["DataValue", new DataValue({ value: { dataType: DataType.Double, value: 0 } })],
    ["DiagnosticInfo", new DiagnosticInfo({})],
].map(([type, value]) => variable(writeBack, W, type, type, value, { writable: true }));
writeBackVariables.push(
    variable(
        writeBack,
        W,
        "ExtensionObject",
        "Range",
        new Variant({
            dataType: DataType.ExtensionObject,
            value: addressSpace.constructExtensionObject(range, { low: 0, high: 1 }),
        }),
        { writable: true, description: "a Range" },
    ),
    variable(writeBack, W, "Variant", "BaseDataType", new Variant({ dataType: DataType.Double, value: 0 }), {
        writable: true,
        description: "DataType BaseDataType: takes any type",
    }),
    variable(writeBack, W, "Doubles", "Double", new Float64Array([0, 0, 0]), { writable: true, array: true }),
    variable(writeBack, W, "Strings", "String", ["a", "b"], { writable: true, array: true }),
    variable(writeBack, W, "Int32Matrix", "Int32", new Int32Array(6), { writable: true, dimensions: [2, 3] }),
    variable(writeBack, W, "ReadOnly", "Double", 1.5),
    variable(writeBack, W, "NotAllowed", "Double", 2.5, { writable: true }),
);
for (const node of writeBackVariables) reportWrites(node, node.nodeId.value);

// Alarms and Conditions (Part 9): a notifier of the Server object with two alarms.
addressSpace.installAlarmsAndConditionsService();
const alarms = ns.addObject({
    nodeId: "s=Alarms",
    browseName: "Alarms",
    organizedBy: addressSpace.rootFolder.objects,
    description: "Alarms and Conditions for the event tests",
    eventNotifier: 1,
    notifierOf: addressSpace.rootFolder.objects.server,
});
function alarmInput(name, dataType, value) {
    return ns.addVariable({
        nodeId: `s=Alarms.${name}`,
        browseName: name,
        componentOf: alarms,
        eventSourceOf: alarms,
        dataType,
        accessLevel: RW,
        userAccessLevel: RW,
        minimumSamplingInterval: 100,
        value: new Variant({ dataType: DataType[dataType], value }),
    });
}
const tankLevel = alarmInput("TankLevel", "Double", tankLevelAtStart);
const conveyorJam = alarmInput("ConveyorJam", "Boolean", false);
const jamNormal = ns.addVariable({
    nodeId: "s=Alarms.ConveyorJamNormal",
    browseName: "ConveyorJamNormal",
    componentOf: alarms,
    dataType: "Boolean",
    value: new Variant({ dataType: DataType.Boolean, value: false }),
});
ns.instantiateExclusiveLimitAlarm("ExclusiveLimitAlarmType", {
    nodeId: "s=Alarms.TankLevelAlarm",
    browseName: "TankLevelAlarm",
    componentOf: alarms,
    conditionSource: tankLevel,
    inputNode: tankLevel,
    highHighLimit: 95,
    highLimit: 80,
    lowLimit: 20,
    lowLowLimit: 5,
});
ns.instantiateOffNormalAlarm({
    nodeId: "s=Alarms.ConveyorJamAlarm",
    browseName: "ConveyorJamAlarm",
    componentOf: alarms,
    conditionSource: conveyorJam,
    inputNode: conveyorJam,
    normalState: jamNormal,
});

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
