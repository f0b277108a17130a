"""The pure core: OPC UA JSON encoding, PubSub messages, topics, signing, and the
configuration model with the address-space mapping that produces it.

Nothing in this package does I/O or needs an event loop, so publisher and subscriber share one
implementation of the wire format and it can be tested exhaustively.
"""
