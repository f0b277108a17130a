"""Write-back requests: parse, convert exactly, allow, answer.

The pure half of write-back (docs/write-back.md); ``opcua_mqtt.bridge.write_back`` does the I/O.
Nothing here reads a clock: callers pass ``now``.

Requests (``schemas/write-request.schema.json``)::

    {"RequestId": "9c1f…", "Deadline": "2026-11-25T12:00:05Z", "ReplyTo": "app/replies/7",
     "Targets": [{"Writer": "Filler", "Field": "Setpoint", "Value": 42.5},
                 {"NodeId": "nsu=urn:plant;s=Line1.Speed", "Value": {"UaType": 10, "Value": 1.5},
                  "IndexRange": "2"}]}

:func:`parse_request` refuses a whole request with :class:`RequestError` (size, JSON, schema,
number of targets). :func:`convert_value` turns one target's value into the ``ua.Variant`` to write,
exactly or not at all (:class:`ConversionError`):

* a *typed* value is an OPC UA JSON 1.05 Variant ``{"UaType": n, "Value": …, "Dimensions": […]}``
  (Compact and Verbose write Variants the same way). Its UaType must be the node's built-in type;
  a node whose DataType is BaseDataType or another abstract type (built-in 0 or 24) takes any.
  Unknown members are refused (a typo such as ``"Valeu"`` would otherwise write the default), and
  ``Value`` is required (except for the Null Variant ``{"UaType": 0}``).
* a *plain* JSON value is converted to the node's built-in type. Integers: JSON integers exactly,
  JSON floats only when integral and below 2**53 in magnitude (where a double is exact: 2**53+1
  arrives as 2**53), decimal strings for Int64/UInt64 (the Part 6 form). Float/Double: numbers,
  and the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"``; an integer must be held exactly, a
  fraction is rounded to the nearest Float (the answer shows the value written); values beyond the
  Float range, or a non-zero value that would become 0, are refused. Boolean: ``true``/``false``
  only. Strings must be valid Unicode and within MaxStringLength (UTF-8 bytes, OPC 10000-3
  §5.6.4). DateTime: RFC 3339 with a time zone, within 1601-01-01 … 9999-12-31T23:59:59Z (the
  Part 6 literal ``0001-01-01T00:00:00Z`` is DateTime.MinValue), no digits finer than a microsecond
  unless zero. Other types take their Part 6 Compact form (Guid, base64 ByteString, NodeId strings
  ``nsu=…;s=…``, QualifiedName strings, LocalizedText objects, …); a namespace URI that the server
  does not have is refused rather than turned into a namespace-0 string as a decoder would.
* an object (LocalizedText, StatusCode, a 1.04 NodeId or QualifiedName object, a structure, a
  DataValue, a Variant inside a value, …) must hold only its own members, at any depth: the
  decoder ignores the others, so ``{"Txet": "x"}`` would write an empty LocalizedText
  (BadTypeMismatch; BadDecodingError inside a typed Variant, as for the top-level one).
* arrays are JSON arrays; a matrix is nested arrays in plain form and a flat Value with
  ``Dimensions`` in typed form. The rank must fit the node's ValueRank, each length its
  ArrayDimensions (a maximum, 0 meaning none).
* with an IndexRange (OPC 10000-4 §7.27 NumericRange) the value is the part written: its shape must
  be the range's; a scalar is accepted for a range that selects one element. On a scalar String or
  ByteString node a one-dimensional range selects a substring and the value is a scalar.
"""
