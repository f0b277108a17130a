"""Adapters to the outside world: OPC UA (asyncua) and MQTT (gmqtt). They import the core."""
