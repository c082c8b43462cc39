#!/usr/bin/env python3
"""Validates PredictiveAutoscaler objects as the API server would admit them, without a cluster.

Usage: crd_validate.py CRD.yaml OBJECTS.yaml...

Each object is checked against the CRD's openAPIV3Schema (jsonschema; unknown fields are errors, as with kubectl's
default strict field validation) and every x-kubernetes-validations rule on the way down is evaluated with a CEL
interpreter (celpy), `self` bound to the value at that place with the schema's types (a `number` is a double, as the
API server converts it). Prints one JSON line per object: {"file", "index", "name", "errors": ["path: message"]}.
"""

import copy
import json
import sys

import celpy
import jsonschema
import yaml
from celpy import celtypes

ROOT_FIELDS = {
    "apiVersion": {"type": "string"},
    "kind": {"type": "string"},
    "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
}


def strict(schema):
    """The schema with unknown fields refused and `nullable` spelled as JSON Schema spells it."""
    schema = copy.deepcopy(schema)

    def visit(s):
        if not isinstance(s, dict):
            return
        if s.get("nullable") and isinstance(s.get("type"), str):
            s["type"] = [s["type"], "null"]
        if "properties" in s and not s.get("x-kubernetes-preserve-unknown-fields"):
            s.setdefault("additionalProperties", False)
        for sub in s.get("properties", {}).values():
            visit(sub)
        visit(s.get("items"))
        if isinstance(s.get("additionalProperties"), dict):
            visit(s["additionalProperties"])

    visit(schema)
    return schema


def to_cel(value, schema):
    """A JSON value as CEL sees it under this schema."""
    kind = (schema or {}).get("type")
    if value is None:
        return None
    if kind == "number" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return celtypes.DoubleType(float(value))
    if kind == "integer" and isinstance(value, int) and not isinstance(value, bool):
        return celtypes.IntType(value)
    if kind == "object" and isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        return celtypes.MapType(
            {celtypes.StringType(k): to_cel(v, props.get(k)) for k, v in value.items() if v is not None}
        )
    if kind == "array" and isinstance(value, list):
        return celtypes.ListType([to_cel(v, schema.get("items")) for v in value])
    return celpy.json_to_cel(value)


def type_matches(value, schema):
    kind = schema.get("type")
    return {
        "object": isinstance(value, dict),
        "array": isinstance(value, list),
        "string": isinstance(value, str),
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
    }.get(kind, True)


def cel_errors(schema, value, path, env, errors):
    if value is None or not isinstance(schema, dict) or not type_matches(value, schema):
        return
    for rule in schema.get("x-kubernetes-validations", []):
        where = path or "<object>"
        try:
            program = env.program(env.compile(rule["rule"]))
            result = program.evaluate({"self": to_cel(value, schema)})
        except Exception as e:  # a rule that cannot run is a failed admission too
            errors.append(f"{where}: rule {rule['rule']!r} failed to evaluate: {e}")
            continue
        if not (isinstance(result, celtypes.BoolType) and bool(result)):
            errors.append(f"{where}: {rule.get('message') or 'failed rule: ' + rule['rule']}")
    if isinstance(value, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in value:
                cel_errors(sub, value[key], f"{path}.{key}" if path else key, env, errors)
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            cel_errors(schema["items"], item, f"{path}[{i}]", env, errors)


def main():
    crd_path, *object_paths = sys.argv[1:]
    with open(crd_path) as f:
        crd = yaml.safe_load(f)
    version = crd["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    group_version = f"{crd['spec']['group']}/{version['name']}"
    kind = crd["spec"]["names"]["kind"]
    root = strict(schema)
    root["properties"] = {**ROOT_FIELDS, **root["properties"]}
    validator = jsonschema.Draft7Validator(root)
    env = celpy.Environment()
    for object_path in object_paths:
        with open(object_path) as f:
            documents = [d for d in yaml.safe_load_all(f) if d is not None]
        for index, obj in enumerate(documents):
            if obj.get("kind") != kind:
                continue
            errors = []
            if obj.get("apiVersion") != group_version:
                errors.append(f"apiVersion: {obj.get('apiVersion')!r} is not {group_version}")
            for error in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
                where = ".".join(str(p) for p in error.absolute_path) or "<object>"
                errors.append(f"{where}: {error.message}")
            cel_errors(schema, obj, "", env, errors)
            name = (obj.get("metadata") or {}).get("name")
            print(json.dumps({"file": object_path, "index": index, "name": name, "errors": errors}))


if __name__ == "__main__":
    main()
