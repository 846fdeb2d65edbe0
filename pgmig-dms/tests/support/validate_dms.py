"""Checks the artifacts of `pgmig dms generate` against the AWS DMS service
model, offline: botocore's ParamValidator on every API input file, then the
documented rules of the JSON strings inside them (TableMappings,
ReplicationTaskSettings) and of the identifiers. No AWS call is made.

Usage: python3 validate_dms.py DIR [SECRET ...]
Every SECRET given must appear in no file under DIR. Exits 1 listing every
problem found.
"""

import json
import os
import re
import sys

import botocore.session
from botocore.validate import ParamValidator

problems = []


def fail(where, what):
    problems.append(f"{where}: {what}")


session = botocore.session.get_session()
model = session.get_service_model("dms")
validator = ParamValidator()


def validate_input(path, operation):
    with open(path) as f:
        params = json.load(f)
    report = validator.validate(params, model.operation_model(operation).input_shape)
    if report.has_errors():
        fail(path, f"{operation} input invalid:\n{report.generate_report()}")
    return params


IDENT = re.compile(r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,254}$")


def check_identifier(where, ident):
    if not IDENT.match(ident) or ident.endswith("-"):
        fail(where, f"identifier {ident!r} breaks the DMS rules")


def bare_wildcard(pattern):
    """Whether a DMS pattern has a wildcard outside brackets, or a bracket
    group that is not one escaped character."""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c in "%_":
            return True
        if c == "[":
            if i + 2 < len(pattern) and pattern[i + 2] == "]":
                i += 3
                continue
            return True
        i += 1
    return False


def check_mappings(where, text):
    if not isinstance(text, str):
        fail(where, "TableMappings is not a JSON string")
        return
    doc = json.loads(text)
    rules = doc.get("rules")
    if not isinstance(rules, list) or not rules:
        fail(where, "TableMappings has no rules")
        return
    ids, names = set(), set()
    selections = 0
    for rule in rules:
        rid, name = rule.get("rule-id"), rule.get("rule-name")
        if not (isinstance(rid, str) and rid.isdigit()):
            fail(where, f"rule-id {rid!r} is not numeric")
        if rid in ids or name in names:
            fail(where, f"rule {rid}/{name} is not unique")
        ids.add(rid)
        names.add(name)
        if rule.get("rule-type") != "selection":
            fail(where, f"rule {rid}: unexpected rule-type {rule.get('rule-type')!r}")
            continue
        selections += 1
        action = rule.get("rule-action")
        if action not in ("include", "exclude", "explicit"):
            fail(where, f"rule {rid}: rule-action {action!r}")
        loc = rule.get("object-locator", {})
        for key in ("schema-name", "table-name"):
            value = loc.get(key)
            if not isinstance(value, str) or not value:
                fail(where, f"rule {rid}: no {key}")
            elif action == "include" and bare_wildcard(value):
                fail(where, f"rule {rid}: {key} {value!r} has an unescaped wildcard")
        if loc.get("table-type", "table") not in ("table", "view", "all"):
            fail(where, f"rule {rid}: table-type {loc.get('table-type')!r}")
    if selections == 0:
        fail(where, "no selection rule")


POLICIES = {"IGNORE_RECORD", "LOG_ERROR", "SUSPEND_TABLE", "STOP_TASK"}


def check_settings(where, text):
    if not isinstance(text, str):
        fail(where, "ReplicationTaskSettings is not a JSON string")
        return
    s = json.loads(text)
    tm = s.get("TargetMetadata", {})
    if tm.get("SupportLobs"):
        if tm.get("FullLobMode") == tm.get("LimitedSizeLobMode"):
            fail(where, "exactly one of FullLobMode and LimitedSizeLobMode must be true")
        if tm.get("LimitedSizeLobMode") and not (0 < tm.get("LobMaxSize", 0) <= 102400):
            fail(where, f"LobMaxSize {tm.get('LobMaxSize')} outside 1..102400 KB")
        if tm.get("FullLobMode") and not tm.get("LobChunkSize", 0) > 0:
            fail(where, "full LOB mode without LobChunkSize")
    if not 0 <= tm.get("InlineLobMaxSize", 0) <= 102400:
        fail(where, "InlineLobMaxSize outside 0..102400")
    if s.get("FullLoadSettings", {}).get("TargetTablePrepMode") != "DO_NOTHING":
        fail(where, "TargetTablePrepMode is not DO_NOTHING")
    logging = s.get("Logging", {})
    for key in ("CloudWatchLogGroup", "CloudWatchLogStream"):
        if key in logging:
            fail(where, f"Logging.{key} cannot be set on create")
    for c in logging.get("LogComponents", []):
        if not c.get("Severity", "").startswith("LOGGER_SEVERITY_"):
            fail(where, f"log component {c}")
    eb = s.get("ErrorBehavior", {})
    for key, value in eb.items():
        if key.endswith("Policy"):
            allowed = POLICIES | {"INSERT_RECORD"} if key == "ApplyErrorInsertPolicy" else POLICIES
            allowed = allowed | {"UPDATE_RECORD"} if key == "ApplyErrorUpdatePolicy" else allowed
            if value not in allowed:
                fail(where, f"ErrorBehavior.{key} = {value!r}")
    if eb.get("DataTruncationErrorPolicy") in (None, "IGNORE_RECORD"):
        fail(where, "truncation errors must not be ignored")


def walk(root):
    for base, _, files in os.walk(root):
        for name in files:
            yield os.path.join(base, name)


def main():
    root, secrets = sys.argv[1], sys.argv[2:]
    tasks = endpoints = 0
    for path in sorted(walk(root)):
        name = os.path.basename(path)
        with open(path, encoding="utf-8") as f:
            content = f.read()
        for secret in secrets:
            if secret and secret in content:
                fail(path, "contains a password")
        if name == "create-replication-task.json":
            p = validate_input(path, "CreateReplicationTask")
            tasks += 1
            check_identifier(path, p.get("ReplicationTaskIdentifier", ""))
            if p.get("MigrationType") != "cdc":
                fail(path, "MigrationType is not cdc")
            if "CdcStartTime" in p:
                fail(path, "CdcStartTime and CdcStartPosition are exclusive")
            if not re.match(r"^[0-9A-F]{1,8}/[0-9A-F]{1,8}$", p.get("CdcStartPosition", "")):
                fail(path, f"CdcStartPosition {p.get('CdcStartPosition')!r} is not an LSN")
            check_mappings(path, p.get("TableMappings"))
            check_settings(path, p.get("ReplicationTaskSettings"))
            # The readable copies say the same.
            d = os.path.dirname(path)
            with open(os.path.join(d, "table-mappings.json")) as f:
                if json.load(f) != json.loads(p["TableMappings"]):
                    fail(path, "table-mappings.json differs from TableMappings")
            with open(os.path.join(d, "task-settings.json")) as f:
                if json.load(f) != json.loads(p["ReplicationTaskSettings"]):
                    fail(path, "task-settings.json differs from ReplicationTaskSettings")
        elif name.endswith("endpoint.json"):
            p = validate_input(path, "CreateEndpoint")
            endpoints += 1
            check_identifier(path, p.get("EndpointIdentifier", ""))
            if "Password" in p or "Password" in p.get("PostgreSQLSettings", {}):
                fail(path, "an endpoint input carries a password")
            if p.get("SslMode") not in ("require", "verify-ca", "verify-full"):
                fail(path, f"SslMode {p.get('SslMode')!r} is weaker than require")
            pg = p.get("PostgreSQLSettings", {})
            if p.get("EndpointType") == "source":
                if pg.get("PluginName") != "pglogical" or not pg.get("SlotName"):
                    fail(path, "a source endpoint needs SlotName and PluginName pglogical")
                if pg.get("CaptureDdls") is not False:
                    fail(path, "CaptureDdls must be false")
                if pg.get("FailTasksOnLobTruncation") is not True:
                    fail(path, "FailTasksOnLobTruncation must be true")
    # What dms.sh calls exists in the model.
    script = os.path.join(root, "dms.sh")
    if os.path.exists(script):
        with open(script) as f:
            text = "\n".join(l for l in f if not l.lstrip().startswith("#"))
        start_types = model.shape_for("StartReplicationTaskTypeValue").enum
        for t in ("start-replication", "resume-processing"):
            if t not in start_types or t not in text:
                fail(script, f"start type {t}")
        waiters = session.get_waiter_model("dms").waiter_names
        for w in re.findall(r"dms wait ([a-z-]+)", text):
            if "".join(x.capitalize() for x in w.split("-")) not in waiters:
                fail(script, f"no waiter {w}")
        for op in set(re.findall(r"\bdms ([a-z][a-z-]+)", text)) - {"wait"}:
            name = "".join(x.capitalize() for x in op.split("-"))
            if name not in model.operation_names:
                fail(script, f"no operation {op}")
    if tasks == 0 or endpoints == 0:
        fail(root, f"found {tasks} task and {endpoints} endpoint inputs")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"ok: {tasks} CreateReplicationTask and {endpoints} CreateEndpoint inputs valid (botocore {botocore.__version__})")


main()
