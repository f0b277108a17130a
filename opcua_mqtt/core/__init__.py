"""The pure core: OPC UA JSON encoding, PubSub messages, topics and signing.

Nothing in this package does I/O or needs an event loop, so publisher and subscriber share one
implementation of the wire format and it can be tested exhaustively.
"""
