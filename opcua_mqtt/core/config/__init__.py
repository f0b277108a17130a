"""The bridge configuration: model, file text, schema messages, rules, building, checking."""
