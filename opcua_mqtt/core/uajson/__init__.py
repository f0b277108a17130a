"""OPC UA JSON encoding (OPC 10000-6 §5.4): one module per kind of value, the codec on top."""
