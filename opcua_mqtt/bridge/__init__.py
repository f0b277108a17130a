"""The bridge: wiring of the OPC UA source, the writer states and the MQTT session."""
