"""Validates rendered Kubernetes resources against upstream schemas, strictly
(an unknown field is an error), and prints one JSON line per resource.

    validate.py --kubernetes 1.32.0 FILE.yaml...

Core kinds: kubernetes-validate's strict JSON schemas of that Kubernetes
version. Knative Serving, Knative Eventing and the Prometheus Operator's
kinds: cloudcoil's models (generated from their published CRDs), as JSON
schema with unknown fields refused. A kind neither knows is reported as
"no-schema"; the caller decides what that means. Runs in the virtualenv
scripts/setup.sh makes ($COVID_TOOLS_DIR/schema-venv).
"""

import argparse
import functools
import importlib
import importlib.metadata
import inspect
import json
import pkgutil
import sys
import typing
import warnings

import jsonschema
import kubernetes_validate
import pydantic
import yaml

CRD_MODEL_PACKAGES = {
    "cloudcoil.models.knative_serving": "cloudcoil-models-knative-serving",
    "cloudcoil.models.knative_eventing": "cloudcoil-models-knative-eventing",
    "cloudcoil.models.prometheus_operator": "cloudcoil-models-prometheus-operator",
}


def literal(annotation):
    """The single Literal value inside Optional[Literal["x"]], or None."""
    for arg in typing.get_args(annotation) or (annotation,):
        values = typing.get_args(arg)
        if typing.get_origin(arg) is typing.Literal and len(values) == 1:
            return values[0]
    return None


def crd_schemas():
    """(apiVersion, kind) -> (JSON schema, "package version"), every model
    made strict first: the CRDs' schemas list every field, so one they do not
    list is a mistake the API server would drop or refuse."""
    from cloudcoil import apimachinery

    warnings.simplefilter("ignore")
    modules = [apimachinery]
    for package in CRD_MODEL_PACKAGES:
        root = importlib.import_module(package)
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            modules.append(importlib.import_module(info.name))
    models = {
        c
        for m in modules
        for c in vars(m).values()
        if inspect.isclass(c)
        and issubclass(c, pydantic.BaseModel)
        and c.__module__ == m.__name__
        and not c.__name__.endswith("Builder")
    }
    for c in models:
        c.model_config["extra"] = "forbid"
    for c in models:
        c.model_rebuild(force=True)
    out = {}
    for c in models:
        fields = c.model_fields
        if "api_version" not in fields or "kind" not in fields:
            continue
        api, kind = literal(fields["api_version"].annotation), literal(fields["kind"].annotation)
        dist = next((d for p, d in CRD_MODEL_PACKAGES.items() if c.__module__.startswith(p)), None)
        if api and kind and dist:
            out[(api, kind)] = (c, f"{dist} {importlib.metadata.version(dist)}")
    return out


def leaves(error):
    """The errors under an anyOf (pydantic's Optional[X] is anyOf X, null),
    from the branch that is not a plain type mismatch: every unknown field,
    not only the first."""
    if not error.context:
        yield error
        return
    branches = {}
    for e in error.context:
        branches.setdefault(e.relative_schema_path[0], []).append(e)
    branch = min(branches.values(), key=lambda errs: all(e.validator == "type" for e in errs))
    for e in branch:
        yield from leaves(e)


VALIDATORS = {}


def crd_errors(model, doc):
    if model not in VALIDATORS:
        schema = model.model_json_schema(by_alias=True, mode="validation")
        VALIDATORS[model] = jsonschema.Draft202012Validator(schema)
    validator = VALIDATORS[model]
    errors = []
    for top in validator.iter_errors(doc):
        for e in leaves(top):
            path = "/".join(str(p) for p in e.absolute_path)
            errors.append(f"{path or '(top)'}: {e.message[:300]}")
    return errors


def cache_core_schemas():
    """kubernetes-validate reads its schema files again for every resource
    (the definitions are megabytes): read each once."""
    utils = kubernetes_validate.utils
    utils.schema_contents = functools.lru_cache(maxsize=None)(utils.schema_contents)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubernetes", required=True, help="Kubernetes version, e.g. 1.32.0")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    cache_core_schemas()
    crds = crd_schemas()
    core_origin = (
        f"kubernetes-validate {importlib.metadata.version('kubernetes-validate')} "
        f"(Kubernetes {args.kubernetes}, strict)"
    )
    for path in args.files:
        with open(path) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        for i, doc in enumerate(docs):
            api, kind = doc.get("apiVersion", ""), doc.get("kind", "")
            name = (doc.get("metadata") or {}).get("name", "")
            result = {"file": path, "index": i, "apiVersion": api, "kind": kind, "name": name}
            try:
                kubernetes_validate.validate(doc, args.kubernetes, strict=True)
                result.update(status="ok", schema=core_origin, errors=[])
            except kubernetes_validate.ValidationError as e:
                # kubernetes-validate stops at the first error; it is one of jsonschema's.
                where = "/".join(str(p) for p in e.absolute_path)
                result.update(
                    status="invalid",
                    schema=core_origin,
                    errors=[f"{where or '(top)'}: {e.message[:300]}"],
                )
            except kubernetes_validate.SchemaNotFoundError:
                if (api, kind) in crds:
                    model, origin = crds[(api, kind)]
                    errors = crd_errors(model, doc)
                    result.update(status="invalid" if errors else "ok", schema=origin, errors=errors)
                else:
                    result.update(status="no-schema", schema=None, errors=[])
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    sys.exit(main())
