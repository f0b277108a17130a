"""The bridge configuration: one YAML or JSON file, checked, then resolved into frozen dataclasses.

Checking happens in three passes so that every mistake in a file is reported at once, each with
the file, the line (YAML always; JSON when PyYAML can read it, which it usually can) and a
JSON-pointer-like path such as ``writer_groups/0/writers/1/fields/3/node_id``:

1. parsing (syntax, duplicate keys, numbers that are not finite);
2. ``schemas/config.schema.json`` - the contract, with jsonschema's messages rewritten to say what
   was expected (``expected one of None, Sign, SignAndEncrypt, got 'SignEncrypt'``) and unknown
   options answered with the closest known one;
3. the rules a schema cannot express: unique names and ids, NodeId syntax, option combinations.
   Some are warnings (severity ``"warning"``): legal but probably not meant, they never fail
   validation.

Publishing options fall back from a field to its writer, its writer group, then ``defaults``, and
are resolved here, so the bridge never looks anything up twice. Pure: no file or network access;
the caller reads the file and passes its text and name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opcua_mqtt.core.config.build import build_config
from opcua_mqtt.core.config.model import Config, ConfigError, ConfigIssue
from opcua_mqtt.core.config.report import Report
from opcua_mqtt.core.config.rules import semantic_issues
from opcua_mqtt.core.config.schema_messages import schema_issues
from opcua_mqtt.core.config.text import check_values, parse_text


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What checking found: the configuration when there were no errors, and every issue."""

    config: Config | None
    issues: list[ConfigIssue]

    @property
    def ok(self) -> bool:
        return self.config is not None

    @property
    def errors(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def warnings(self) -> list[ConfigIssue]:
        return [i for i in self.issues if i.severity == "warning"]


def _check(data: Any, report: Report) -> CheckResult:
    if not report.failed:
        schema_issues(data, report)
    if not report.failed:
        semantic_issues(data, report)
    config = None if report.failed else build_config(data)
    return CheckResult(config, report.sorted())


def check_config(text: str, source: str) -> CheckResult:
    """Parse and check the text of a configuration file named ``source`` (YAML or JSON, told
    apart by the extension, else by whether it starts with ``{``)."""
    report = Report(source)
    try:
        data = parse_text(text, report)
        if report.failed:
            return CheckResult(None, report.sorted())
        return _check(data, report)
    except RecursionError:
        return _too_deep(source)


def check_config_data(data: Any, source: str = "<config>") -> CheckResult:
    """Check a configuration already in memory (no line numbers)."""
    report = Report(source)
    try:
        check_values(data, (), report)
        return _check(data, report)
    except RecursionError:
        return _too_deep(source)


def _too_deep(source: str) -> CheckResult:
    return CheckResult(None, [ConfigIssue(source, "", None, "nested too deeply")])


def load_config(text: str, source: str) -> Config:
    """The configuration in ``text``; ConfigError (with every issue) if it has errors."""
    result = check_config(text, source)
    if result.config is None:
        raise ConfigError(result.issues)
    return result.config


def config_from_dict(data: Any, source: str = "<config>") -> Config:
    """The configuration in ``data`` (the file's structure); ConfigError if it has errors."""
    result = check_config_data(data, source)
    if result.config is None:
        raise ConfigError(result.issues)
    return result.config
