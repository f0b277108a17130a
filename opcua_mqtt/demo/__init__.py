"""``opcua-mqtt demo``: a simulated plant, an embedded broker and the bridge, wired together.

``plant`` is the OPC UA server, ``broker`` the MQTT broker child process, ``app`` the wiring
of those with the real bridge, mapping and subscriber.
"""
