#!/usr/bin/env node
/**
 * decode.mjs: feed OPC UA JSON (OPC 10000-6 §5.4, 1.05 Compact/Verbose, and 1.04 forms) to
 * node-opcua's JSON decoder and print what it decoded, one JSON line per input line.
 *
 *   node interop/decode.mjs < requests.jsonl > replies.jsonl
 *
 * Needs `npm ci` in interop/ first (node-opcua-json 2.186.4, pinned in package-lock.json).
 * Works on Node.js 20 although node-opcua's "engines" asks for >=22.13 (.npmrc: engine-strict=false).
 *
 * ── Protocol ───────────────────────────────────────────────────────────────────────────────────
 * stdin, one JSON object per line (blank lines are skipped and get no reply):
 *   {"id": "any JSON value, echoed", "kind": "variant" | "datavalue" (default "variant"),
 *    "json": <OPC UA JSON value>,
 *    "namespaces": ["http://opcfoundation.org/UA/", "urn:..."],      (optional, default: [ns0 URI])
 *    "decoder": "auto" | "105" | "104"}                                (optional, default "auto")
 * stdout, one JSON object per input line, in input order:
 *   {"id", "ok": true, "dataType": <built-in type id, 0..25>, "dataTypeName": "Int32",
 *    "arrayType": "Scalar"|"Array"|"Matrix", "dimensions": [..]|null, "value": <normalised>,
 *    "jsType": <JS type of the decoded value, e.g. "number", "string", "Int32Array", "Array">,
 *    "statusCode": <number>|null, "sourceTimestamp": <ISO>|null, "serverTimestamp": <ISO>|null,
 *    "sourcePicoseconds": <number>|null, "serverPicoseconds": <number>|null}
 *   (the five DataValue members are null for kind "variant")
 *   or {"id", "ok": false, "error": "message"} when node-opcua throws (or the line is not JSON).
 * stderr: anything node-opcua logs (console.* is redirected there so stdout stays clean).
 *
 * ── Normalisation of "value" (arrays and matrices: flat JSON array of normalised elements) ────
 *   Null → null; Boolean, SByte..UInt32 → JSON number/boolean as decoded;
 *   Int64/UInt64 → decimal string (node-opcua holds them as [high, low] UInt32 pairs, two's
 *     complement for Int64; a BigInt or number is also accepted);
 *   Float/Double → number, or "NaN" / "Infinity" / "-Infinity". NOTE: a scalar Double sent as
 *     "NaN" stays the JS *string* "NaN" inside node-opcua: check "jsType" ("string" vs "number");
 *   String, XmlElement → string; DateTime → Date.toISOString() (always milliseconds, "Z");
 *     an invalid Date → "Invalid Date";
 *   Guid → lower-case string (node-opcua itself keeps whatever case it was given and does not
 *     validate it); ByteString → base64 (null stays null);
 *   NodeId / ExpandedNodeId → {"string": node-opcua toString(), "namespace", "identifierType":
 *     "Numeric"|"String"|"Guid"|"ByteString", "value" (number | string | lower-case guid |
 *     base64), "namespaceUri" (null for NodeId), "serverIndex" (null for NodeId)};
 *   StatusCode → number; QualifiedName → {"namespaceIndex", "name"};
 *   LocalizedText → {"locale", "text"};
 *   ExtensionObject → {"typeName", "dataTypeNodeId", "fields": {name: generic normalisation}};
 *   DataValue (nested, type 23) → {"value": <variant form>, "statusCode", "sourceTimestamp", ...};
 *   Variant (nested, type 24) → {"dataType", "arrayType", "dimensions", "value"};
 *   DiagnosticInfo → {"symbolicId", "namespaceUri", "locale", "localizedText",
 *     "additionalInfo", "innerStatusCode", "innerDiagnosticInfo"}.
 *
 * ── node-opcua-json API used (node_modules/node-opcua-json/source/*.ts) ──────────────────────
 *   opcuaJsonDecodeVariant(pojo, builder, namespaceArray): Variant
 *     dispatches on keys: "Type" present or "UaType" absent → 1.04 decoder (Type/Body/Dimensions),
 *     otherwise 1.05 decoder (UaType/Value/UaDimensions).
 *   opcuaJsonDecodeDataValue(pojo, builder, namespaceArray): DataValue
 *     "UaType" present → 1.05 (Variant members inline), else 1.04 ({"Value": {Type,Body}, ...}).
 *     Both read status from "StatusCode", timestamps from SourceTimestamp/ServerTimestamp and
 *     picoseconds from SourcePicoseconds/ServerPicoseconds.
 *   opcuaJsonDecodeVariant105/104, opcuaJsonDecodeDataValue105/104: the single-edition decoders
 *     ("decoder": "105" / "104" here).
 *   builder = ExtensionObjectBuilder {getExtensionObjectConstructor(dataTypeNodeId)}: only asked
 *     for structures outside namespace 0; here it throws (no custom structures).
 *   namespaceArray maps "nsu=" URIs to indices (indexOf).
 *
 * ── Departures from OPC 10000-6 1.05 §5.4, verified by experiment on 2.186.4 (see FINDINGS.md) ─
 *   - DataValue status: reads "StatusCode", ignores the spec's "Status" → TRUE (a DataValue with
 *     "Status":{"Code":2151546880} decodes with statusCode 0 = Good). Also for nested DataValues.
 *   - Matrix: reads "UaDimensions", ignores the spec's "Dimensions" → TRUE (a 1.05 matrix decodes
 *     as a one-dimensional Array, no error). The 1.04 form {"Type","Body","Dimensions"} is fine.
 *   - DataValue with a falsy Value → TRUE: 0, false, "" and an omitted Value all decode as a
 *     Null variant (dataType 0); status/timestamps survive. 1.05 form only ({"Value":{"Type":6,
 *     "Body":0}} in 1.04 form keeps the 0).
 *   - Int64 precision lost when given JSON numbers → TRUE, but it is JSON.parse that rounds
 *     anything above 2^53 before node-opcua sees it. Decimal strings (the spec form) are exact
 *     (-9223372036854775808, 18446744073709551615, ...). No range check: out-of-range strings wrap.
 *   - Unknown namespace URI → 0 → TRUE for NodeId, ExpandedNodeId and ExtensionObject UaTypeId
 *     ("nsu=urn:x;s=T" → ns=0;s=T; the spec wants ns=0 with the whole JSON string as a String
 *     identifier; an ExpandedNodeId drops the URI). For QualifiedName it gives namespaceIndex -1.
 *   Also seen: svu=/svr= ExpandedNodeIds throw; a Variant with its Value omitted (Compact default)
 *   throws for Boolean, integers, Int64/UInt64, NodeId; ExtensionObject fields written inline
 *   (the 1.05 form) are silently ignored (node-opcua reads {"UaTypeId","UaBody":{fields}});
 *   scalar Float/Double "NaN"/"Infinity" stay JS strings; Float arrays become Float32Array
 *   (values rounded to float32, scalars are not); only "%3B" is unescaped in nsu= URIs.
 */
import { createInterface } from "node:readline";

// node-opcua may log warnings with console.log: keep stdout for the protocol only.
for (const k of ["log", "info", "warn", "debug", "trace"]) {
    console[k] = (...args) => process.stderr.write(`${args.map(String).join(" ")}\n`);
}

const J = await import("node-opcua-json");
const { DataType, VariantArrayType, Variant } = await import("node-opcua-variant");
const { NodeIdType, NodeId, ExpandedNodeId } = await import("node-opcua-nodeid");

const NS0 = "http://opcfoundation.org/UA/";

const builder = {
    getExtensionObjectConstructor(dataTypeNodeId) {
        throw new Error(`no ExtensionObjectBuilder in this harness (structure ${dataTypeNodeId?.toString()})`);
    }
};

const DECODERS = {
    auto: { variant: J.opcuaJsonDecodeVariant, datavalue: J.opcuaJsonDecodeDataValue },
    105: { variant: J.opcuaJsonDecodeVariant105, datavalue: J.opcuaJsonDecodeDataValue105 },
    104: { variant: J.opcuaJsonDecodeVariant104, datavalue: J.opcuaJsonDecodeDataValue104 }
};

const ID_TYPE = {
    [NodeIdType.NUMERIC]: "Numeric",
    [NodeIdType.STRING]: "String",
    [NodeIdType.GUID]: "Guid",
    [NodeIdType.BYTESTRING]: "ByteString"
};

const TWO64 = 1n << 64n;
const SIGN64 = 1n << 63n;

function jsTypeOf(v) {
    if (v === null) return "null";
    if (v === undefined) return "undefined";
    if (typeof v === "object") return v.constructor?.name ?? "Object";
    return typeof v;
}

function int64ToString(v, signed) {
    if (v === null || v === undefined) return null;
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number") return Number.isInteger(v) ? BigInt(v).toString() : String(v);
    if (Array.isArray(v) && v.length === 2) {
        let r = (BigInt(v[0] >>> 0) << 32n) | BigInt(v[1] >>> 0);
        if (signed && r >= SIGN64) r -= TWO64;
        return r.toString();
    }
    return `?${JSON.stringify(v)}`;
}

function floatOut(v) {
    if (typeof v === "number") {
        if (Number.isNaN(v)) return "NaN";
        if (v === Infinity) return "Infinity";
        if (v === -Infinity) return "-Infinity";
        return v;
    }
    return v === undefined ? null : v; // e.g. the string "NaN" node-opcua keeps for scalars
}

function isoOut(d) {
    if (d === null || d === undefined) return null;
    if (!(d instanceof Date)) return `?${String(d)}`;
    return Number.isNaN(d.getTime()) ? "Invalid Date" : d.toISOString();
}

function b64(buf) {
    if (buf === null || buf === undefined) return null;
    return Buffer.isBuffer(buf) || buf instanceof Uint8Array ? Buffer.from(buf).toString("base64") : `?${String(buf)}`;
}

function nodeIdOut(n) {
    if (n === null || n === undefined) return null;
    if (!(n instanceof NodeId)) return `?${String(n)}`;
    let value = n.value;
    if (n.identifierType === NodeIdType.BYTESTRING) value = b64(value);
    else if (n.identifierType === NodeIdType.GUID && typeof value === "string") value = value.toLowerCase();
    const expanded = n instanceof ExpandedNodeId;
    return {
        string: n.toString(),
        namespace: n.namespace,
        identifierType: ID_TYPE[n.identifierType] ?? String(n.identifierType),
        value,
        namespaceUri: expanded ? (n.namespaceUri ?? null) : null,
        serverIndex: expanded ? (n.serverIndex ?? 0) : null
    };
}

function statusOut(s) {
    if (s === null || s === undefined) return null;
    if (typeof s === "number") return s;
    return typeof s.value === "number" ? s.value : `?${String(s)}`;
}

function diagOut(d) {
    if (d === null || d === undefined) return null;
    return {
        symbolicId: d.symbolicId,
        namespaceUri: d.namespaceURI,
        locale: d.locale,
        localizedText: d.localizedText,
        additionalInfo: d.additionalInfo ?? null,
        innerStatusCode: statusOut(d.innerStatusCode),
        innerDiagnosticInfo: diagOut(d.innerDiagnosticInfo)
    };
}

/** generic normaliser for structure fields whose built-in type we do not know */
function anyOut(v) {
    if (v === null || v === undefined) return null;
    if (typeof v === "bigint") return v.toString();
    if (typeof v === "number") return floatOut(v);
    if (typeof v !== "object") return v;
    if (v instanceof Date) return isoOut(v);
    if (Buffer.isBuffer(v)) return b64(v);
    if (v instanceof NodeId) return nodeIdOut(v);
    if (ArrayBuffer.isView(v)) return Array.from(v, anyOut);
    if (Array.isArray(v)) return v.map(anyOut);
    if (v instanceof Variant) return variantOut(v);
    const name = v.constructor?.name;
    if (name === "QualifiedName") return { namespaceIndex: v.namespaceIndex, name: v.name ?? null };
    if (name === "LocalizedText") return { locale: v.locale ?? null, text: v.text ?? null };
    if (name === "DataValue") return dataValueOut(v);
    if (name === "DiagnosticInfo") return diagOut(v);
    if (typeof v.value === "number" && typeof v.name === "string" && "description" in v) return v.value; // StatusCode
    if (v.schema && typeof v.schema === "object") return extObjOut(v);
    const o = {};
    for (const [k, x] of Object.entries(v)) o[k] = anyOut(x);
    return o;
}

function extObjOut(e) {
    if (e === null || e === undefined) return null;
    const schema = e.schema ?? {};
    const fields = {};
    const names = Array.isArray(schema.fields) ? schema.fields.map((f) => f.name) : Object.keys(e);
    for (const n of names) fields[n] = anyOut(e[n]);
    return {
        typeName: schema.name ?? e.constructor?.name ?? null,
        dataTypeNodeId: schema.dataTypeNodeId ? schema.dataTypeNodeId.toString() : null,
        fields
    };
}

function scalarOut(dataType, v) {
    if (v === null || v === undefined) return null;
    switch (dataType) {
        case DataType.Null:
            return null;
        case DataType.Boolean:
        case DataType.SByte:
        case DataType.Byte:
        case DataType.Int16:
        case DataType.UInt16:
        case DataType.Int32:
        case DataType.UInt32:
            return v;
        case DataType.Int64:
            return int64ToString(v, true);
        case DataType.UInt64:
            return int64ToString(v, false);
        case DataType.Float:
        case DataType.Double:
            return floatOut(v);
        case DataType.String:
        case DataType.XmlElement:
            return v;
        case DataType.DateTime:
            return isoOut(v);
        case DataType.Guid:
            return typeof v === "string" ? v.toLowerCase() : anyOut(v);
        case DataType.ByteString:
            return b64(v);
        case DataType.NodeId:
        case DataType.ExpandedNodeId:
            return nodeIdOut(v);
        case DataType.StatusCode:
            return statusOut(v);
        case DataType.QualifiedName:
            return { namespaceIndex: v.namespaceIndex, name: v.name ?? null };
        case DataType.LocalizedText:
            return { locale: v.locale ?? null, text: v.text ?? null };
        case DataType.ExtensionObject:
            return extObjOut(v);
        case DataType.DataValue:
            return dataValueOut(v);
        case DataType.Variant:
            return variantOut(v);
        case DataType.DiagnosticInfo:
            return diagOut(v);
        default:
            return anyOut(v);
    }
}

function variantFields(variant) {
    const dataType = variant.dataType;
    const arrayType = VariantArrayType[variant.arrayType] ?? String(variant.arrayType);
    const raw = variant.value;
    let value;
    if (variant.arrayType === VariantArrayType.Scalar) {
        value = scalarOut(dataType, raw);
    } else if (raw === null || raw === undefined) {
        value = null;
    } else {
        value = Array.from(raw, (e) => scalarOut(dataType, e));
    }
    return {
        dataType,
        dataTypeName: DataType[dataType] ?? null,
        arrayType,
        dimensions: variant.dimensions ? Array.from(variant.dimensions) : null,
        value,
        jsType: jsTypeOf(raw)
    };
}

function variantOut(variant) {
    const { dataType, arrayType, dimensions, value } = variantFields(variant);
    return { dataType, arrayType, dimensions, value };
}

function dataValueOut(dv) {
    return {
        value: dv.value ? variantOut(dv.value) : null,
        statusCode: statusOut(dv.statusCode),
        sourceTimestamp: isoOut(dv.sourceTimestamp),
        serverTimestamp: isoOut(dv.serverTimestamp),
        sourcePicoseconds: dv.sourcePicoseconds ?? null,
        serverPicoseconds: dv.serverPicoseconds ?? null
    };
}

function handle(req) {
    const kind = req.kind ?? "variant";
    const decoders = DECODERS[req.decoder ?? "auto"];
    if (!decoders) throw new Error(`unknown decoder ${JSON.stringify(req.decoder)}`);
    const decode = decoders[kind];
    if (!decode) throw new Error(`unknown kind ${JSON.stringify(kind)}`);
    const namespaces = Array.isArray(req.namespaces) ? req.namespaces : [NS0];
    if (kind === "variant") {
        const v = decode(req.json, builder, namespaces);
        return {
            ...variantFields(v),
            statusCode: null,
            sourceTimestamp: null,
            serverTimestamp: null,
            sourcePicoseconds: null,
            serverPicoseconds: null
        };
    }
    const dv = decode(req.json, builder, namespaces);
    const d = dataValueOut(dv);
    return {
        ...variantFields(dv.value ?? new Variant()),
        statusCode: d.statusCode,
        sourceTimestamp: d.sourceTimestamp,
        serverTimestamp: d.serverTimestamp,
        sourcePicoseconds: d.sourcePicoseconds,
        serverPicoseconds: d.serverPicoseconds
    };
}

function reply(obj) {
    let text;
    try {
        text = JSON.stringify(obj);
    } catch (e) {
        text = JSON.stringify({ id: obj.id ?? null, ok: false, error: `harness could not serialise result: ${e.message}` });
    }
    process.stdout.write(`${text}\n`);
}

const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
    if (!line.trim()) continue;
    let req;
    try {
        req = JSON.parse(line);
    } catch (e) {
        reply({ id: null, ok: false, error: `bad request line: ${e.message}` });
        continue;
    }
    try {
        reply({ id: req.id ?? null, ok: true, ...handle(req) });
    } catch (e) {
        reply({ id: req.id ?? null, ok: false, error: String(e?.message ?? e) });
    }
}
