"""Validates every object the double answered (a /__sim/kubernetes/recorded dump) with
kubernetes-validate's strict schemas (unknown fields are errors), at Kubernetes VERSION.

List bodies are validated as lists and item by item; meta types (Status, APIResourceList, ...)
against their meta.k8s.io schemas; OpenShift Projects against the Namespace schema (a Project's
spec and status are NamespaceSpec and NamespaceStatus); Tables and the version document have no
published schema and are counted apart. Exit 1 on any invalid object, or when nothing was checked."""

import collections
import json
import sys

import jsonschema
import kubernetes_validate
from kubernetes_validate import utils
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError
from referencing import Registry, Resource

VERSION = "1.33"
META = {"Status", "APIResourceList", "APIGroupList", "APIGroup", "APIVersions"}


def candidates(entry):
    body = entry.get("body")
    if not isinstance(body, dict) or "kind" not in body:
        return
    yield body
    kind = body["kind"]
    if kind.endswith("List") and isinstance(body.get("items"), list):
        for item in body["items"]:
            yield dict(item, kind=kind[: -len("List")], apiVersion=body.get("apiVersion", "v1"))


def schema_form(obj):
    kind = obj["kind"]
    if kind in ("Project", "ProjectList"):
        return dict(obj, kind=kind.replace("Project", "Namespace"), apiVersion="v1")
    return obj


def validate_meta(obj):
    """meta.k8s.io types: their schema files are named <kind>-meta-v1 (validate() cannot find them)."""
    version = [v for v in utils.all_versions() if utils.major_minor(v) <= VERSION][-1]
    folder = f"kubernetes-json-schema/v{version}-local-strict"
    schema = utils.schema_contents(f"{folder}/{obj['kind'].lower()}-meta-v1.json", VERSION)
    defs = utils.schema_contents(f"{folder}/_definitions.json", VERSION)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    try:
        jsonschema.validators.Draft202012Validator(schema, registry=registry).validate(obj)
    except jsonschema.ValidationError as e:
        raise ValidationError(e, version=VERSION) from e


def main(path):
    entries = json.load(open(path))["items"]
    seen = set()
    valid = collections.Counter()
    unschemed = collections.Counter()
    invalid = []
    for e in entries:
        for obj in candidates(e):
            key = json.dumps(obj, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            form = schema_form(obj)
            try:
                if obj["kind"] in META:
                    validate_meta(obj)
                else:
                    kubernetes_validate.validate(form, VERSION, strict=True)
                valid[obj["kind"]] += 1
            except SchemaNotFoundError:
                unschemed[obj["kind"]] += 1
            except ValidationError as err:
                invalid.append((e["method"], e["path"], obj["kind"], str(err).splitlines()[0]))
    for method, p, kind, msg in invalid:
        print(f"INVALID: {kind} from {method} {p}: {msg}")
    print("valid:", dict(sorted(valid.items())))
    print("no published schema:", dict(sorted(unschemed.items())))
    print(f"{sum(valid.values())} passed, {len(invalid)} failed")
    return 1 if invalid or not valid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
