"""What the tests and the benchmarks start: a throw-away PKI, Mosquitto brokers, the test OPC UA
servers (the program and its launcher), bridge processes and write-back requesters. Not part of
the installed package; tests and bench/ import it from the repository root."""
