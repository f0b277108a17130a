"""OPC UA PubSub JSON messages (OPC 10000-14 1.05 §7.2.5): ua-data, ua-metadata, ua-status,
ua-connection; encoders for the bridge and decoders for subscribers, built on one JSON codec.

The content masks decide which members appear; the decoders read any layout the masks can produce
(and the 1.04 value forms), ignore unknown members, and raise :class:`DecodeError` naming the
member when a required one is missing or malformed.
"""
