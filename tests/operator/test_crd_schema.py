"""The CRD file itself: one source, structural, described, strict (no cluster needed)."""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "charts/mediaimport/files/mediaimports.mediaimport.dev.yaml"


def _crd() -> dict[str, Any]:
    return yaml.safe_load(SOURCE.read_text())


def _version() -> dict[str, Any]:
    (version,) = _crd()["spec"]["versions"]
    return version


def _walk(schema: dict[str, Any], path: str = ""):
    yield path, schema
    for name, child in (schema.get("properties") or {}).items():
        yield from _walk(child, f"{path}.{name}")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_one_source_shared_by_the_chart_and_the_package() -> None:
    """The package ships the source file itself; the chart renders it (templates/crd.yaml
    reads it, tests/chart checks the rendering and deploy/crds/)."""
    packaged = importlib.resources.files("mediaimport_operator") / "crds"
    text = (packaged / "mediaimports.mediaimport.dev.yaml").read_text()
    assert text == SOURCE.read_text()
    chart_templates = ROOT / "charts/mediaimport/templates"
    assert not any("CustomResourceDefinition" in p.read_text()
                   for p in chart_templates.rglob("*.yaml"))


def test_names_and_subresources() -> None:
    crd = _crd()
    assert crd["metadata"]["name"] == "mediaimports.mediaimport.dev"
    names = crd["spec"]["names"]
    assert names["shortNames"] == ["mi"]
    assert names["categories"] == ["media"]
    assert crd["spec"]["scope"] == "Namespaced"
    version = _version()
    assert version["name"] == "v1alpha1"
    assert version["subresources"] == {"status": {}}


def test_every_field_is_described_and_only_metadata_is_free_form() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    free_form = []
    for path, node in _walk(schema):
        if path in (".metadata",):
            continue
        assert node.get("description"), f"{path or 'root'} has no description"
        assert "type" in node, f"{path} has no type"
        if node.get("x-kubernetes-preserve-unknown-fields"):
            free_form.append(path)
    assert free_form == [".spec.metadata"]


def test_spec_rules() -> None:
    schema = _version()["schema"]["openAPIV3Schema"]
    spec = schema["properties"]["spec"]
    assert schema["required"] == ["spec"]
    assert set(spec["required"]) == {"url", "userId"}
    assert spec["x-kubernetes-validations"][0]["rule"] == "self == oldSelf"
    props = spec["properties"]
    assert props["url"]["pattern"].startswith("^https?://")
    assert props["url"]["maxLength"] <= 8192
    assert props["type"]["enum"] == ["video", "image", "audio"]
    assert props["sha256"]["pattern"] == "^[0-9a-fA-F]{64}$"
    assert props["thumbnail"]["properties"]["width"]["minimum"] == 16
    assert props["thumbnail"]["properties"]["width"]["maximum"] == 3840
    assert props["thumbnail"]["properties"]["at"]["minimum"] == 0
    assert "/" not in props["userId"]["pattern"]


def test_status_conditions_are_a_map_keyed_by_type() -> None:
    status = _version()["schema"]["openAPIV3Schema"]["properties"]["status"]
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert status["properties"]["phase"]["enum"] == ["Pending", "Importing", "Ready", "Failed"]


def test_printer_columns() -> None:
    columns = {c["name"]: c for c in _version()["additionalPrinterColumns"]}
    assert [n for n, c in columns.items() if not c.get("priority")] == [
        "Type", "Phase", "Progress", "Size", "Duration", "Age",
    ]
    assert columns["Progress"]["jsonPath"] == ".status.progress.summary"
    assert [n for n, c in columns.items() if c.get("priority") == 1] == ["Reason", "Asset", "Job"]
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Succeeded")].reason'
