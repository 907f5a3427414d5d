"""The operator's RBAC in the chart is what its code does, verb for verb.

The verbs are derived from the operator's source: every call of its Kubernetes client
(``kube.get/create/merge_patch/list_items/list_pages/watch/request`` on a ``*_path(...)``:
its own MediaImport watch, the Events it posts and its finalizer included), every kopf
handler (watches; the finalizer kopf patches in for timers and deletion handlers), and the
owner references it sets. The chart's rendered Roles must grant
exactly that: a missing verb fails the operator at run time, an extra one is a right
nobody uses.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import pytest
from support.chart import ROOT, Obj, only, render

OPERATOR = ROOT / "operator/mediaimport_operator"
LEASE = "mediaimport-operator"

# The path builders of kube.py and the resource each one names.
PATHS = {
    "mediaimport_path": ("mediaimport.dev", "mediaimports"),
    "job_path": ("batch", "jobs"),
    "pods_path": ("", "pods"),
    "lease_path": ("coordination.k8s.io", "leases"),
    "events_path": ("", "events"),
    "secret_path": ("", "secrets"),
    "service_path": ("", "services"),
}
# Objects the operator reads by one name only, and the chart's name of each (the S3 Secret
# in the imports' namespaces; the channel's Service in the release namespace).
NAMED = {"leases": LEASE, "secrets": "mediaimport-s3", "services": "mediaimport-operator-channel"}
HTTP = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete",
        "WATCH": "watch"}
# What each Kube method sends (checked against kube.py below): create reads the existing
# object when it is already there.
METHODS = {"get": ["GET"], "create": ["POST", "GET"], "merge_patch": ["PATCH"],
           "list_items": ["GET"], "list_pages": ["GET"], "watch": ["WATCH"]}
# kopf's own calls, whatever the handlers: it lists and watches the CRDs to find the
# resources it serves, and, when given namespaces, the namespaces (kopf/_core/reactor/
# observation.py).
KOPF_ALWAYS = {("apiextensions.k8s.io", "customresourcedefinitions", v, None)
               for v in ("list", "watch")}
KOPF_NAMESPACED = {("", "namespaces", v, None) for v in ("list", "watch")}
KOPF_EVENT_CALLS = {"event", "info", "warn", "exception"}
Grant = tuple[str, str, str, str | None]  # group, resource, verb, resourceName


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(OPERATOR.glob("*.py")):
        yield path.name, ast.parse(path.read_text(), filename=str(path))


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _path(node: ast.AST) -> tuple[str, str, bool] | None:
    """(group, resource[/subresource], named) of a ``*_path(...)`` expression."""
    suffix = ""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        if isinstance(node.right, ast.Constant) and isinstance(node.right.value, str):
            suffix = node.right.value
        node = node.left
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in PATHS:
        group, resource = PATHS[node.func.id]
        return group, resource + suffix, len(node.args) >= 2
    return None


def _verb(method: str, resource_is_named: bool) -> str:
    verb = HTTP[method]
    return "list" if verb == "get" and not resource_is_named else verb


def client_calls() -> set[tuple[str, str, str, bool]]:
    """(group, resource, verb, named) of every call through the operator's Kube client."""
    found: set[tuple[str, str, str, bool]] = set()
    for _, module in _modules():
        for node in ast.walk(module):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and _dotted(node.func.value).endswith("kube")):
                continue
            method, args = node.func.attr, node.args
            if method == "request" and len(args) >= 2 and isinstance(args[0], ast.Constant):
                target, sent = _path(args[1]), [str(args[0].value)]
            elif method in METHODS and args:
                target, sent = _path(args[0]), METHODS[method]
            else:
                continue
            assert target is not None, f"a Kube call this test cannot read: {ast.unparse(node)}"
            group, resource, named = target
            for index, http in enumerate(sent):
                # create's second request reads the object it could not create: by name.
                found.add((group, resource, _verb(http, named or index > 0), named or index > 0))
    return found


def _resource_of(decorator: ast.Call, resources: dict[str, tuple[str, str]]) -> tuple[str, str]:
    args = decorator.args
    if len(args) == 1 and isinstance(args[0], ast.Starred):
        return resources[_dotted(args[0].value)]
    group, _, plural = (a.value for a in args[:3] if isinstance(a, ast.Constant))
    return str(group), str(plural)


def kopf_grants() -> set[Grant]:
    grants: set[Grant] = set()
    for _, module in _modules():
        # `resource = (GROUP, VERSION, PLURAL)` tuples the handlers are registered with.
        resources = {"resource": ("mediaimport.dev", "mediaimports")}
        for node in ast.walk(module):
            if not isinstance(node, ast.Call):
                continue
            name = _dotted(node.func)
            if name in ("kopf.on.event",):
                group, plural = _resource_of(node, resources)
                grants |= {(group, plural, "list", None), (group, plural, "watch", None)}
            elif name in ("kopf.timer", "kopf.daemon", "kopf.on.delete"):
                # kopf holds the object with its finalizer while these may still run.
                group, plural = _resource_of(node, resources)
                grants |= {(group, plural, "list", None), (group, plural, "watch", None),
                           (group, plural, "patch", None)}
            elif name in {f"kopf.{call}" for call in KOPF_EVENT_CALLS}:
                grants.add(("", "events", "create", None))
            elif name.startswith("kopf.on.") and name not in (
                    "kopf.on.login", "kopf.on.startup", "kopf.on.cleanup"):
                raise AssertionError(f"a kopf handler this test does not know: {name}")
    return grants


def owner_reference_grants() -> set[Grant]:
    """blockOwnerDeletion on an owner reference needs update on the owner's finalizers."""
    source = (OPERATOR / "jobs.py").read_text()
    module = ast.parse(source)
    for node in ast.walk(module):
        if isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
            if "blockOwnerDeletion" in keys and "kind" in keys:
                return {("mediaimport.dev", "mediaimports/finalizers", "update", None)}
    return set()


def derived(*, namespaced: bool) -> set[Grant]:
    grants = {(group, resource, verb, NAMED.get(resource) if named else None)
              for group, resource, verb, named in client_calls()}
    grants |= kopf_grants() | owner_reference_grants() | KOPF_ALWAYS
    if namespaced:
        grants |= KOPF_NAMESPACED
    return grants


def granted(docs: list[Obj]) -> set[Grant]:
    operator_roles = [d for d in docs if d["kind"] in ("ClusterRole", "Role")
                      and d["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    grants: set[Grant] = set()
    for role in operator_roles:
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames") or [None]:
                            grants.add((group, resource, verb, name))
    return grants


def test_kube_method_table_matches_the_client() -> None:
    module = ast.parse((OPERATOR / "kube.py").read_text())
    kube = next(n for n in module.body if isinstance(n, ast.ClassDef) and n.name == "Kube")
    methods = {n.name: n for n in kube.body if isinstance(n, ast.AsyncFunctionDef)}

    def sent(name: str) -> list[str]:
        verbs: list[str] = []
        for node in ast.walk(methods[name]):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and _dotted(node.func.value) == "self":
                if node.func.attr == "request":
                    verbs.append(str(node.args[0].value))  # type: ignore[attr-defined]
                elif node.func.attr in methods:
                    verbs += sent(node.func.attr)
            # A watch is a GET on its own sessions: ``self._get_watch_session().get(...)``.
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "get" and isinstance(node.func.value, ast.Call) \
                    and _dotted(node.func.value.func) == "self._get_watch_session":
                verbs.append("WATCH")
        return verbs

    assert {name: sorted(sent(name)) for name in METHODS} == {
        name: sorted(verbs) for name, verbs in METHODS.items()}


def test_the_derivation_sees_the_calls_that_matter() -> None:
    """A derivation that finds nothing would make the comparison below vacuous."""
    calls = client_calls()
    assert ("batch", "jobs", "create", False) in calls
    assert ("batch", "jobs", "patch", True) in calls  # the TTL, once the result is recorded
    assert ("mediaimport.dev", "mediaimports/status", "patch", True) in calls
    assert ("", "pods", "list", False) in calls
    assert ("coordination.k8s.io", "leases", "update", True) in calls
    assert ("mediaimport.dev", "mediaimports", "list", False) in calls  # the paged listing
    assert ("mediaimport.dev", "mediaimports", "watch", False) in calls
    assert ("", "events", "create", False) in calls
    assert ("", "pods", "get", True) in calls  # a result is accepted from the Job's own pod
    assert ("", "secrets", "get", True) in calls  # brokered uploads are signed with it
    assert ("", "services", "get", True) in calls  # the channel's cluster IP
    assert ("batch", "jobs", "watch", None) in kopf_grants()


@pytest.mark.parametrize("namespaced", [False, True], ids=["cluster-wide", "namespaced"])
def test_operator_rbac_is_exactly_what_the_code_does(namespaced: bool) -> None:
    sets = ["watchNamespaces={media}", "api.namespace=media"] if namespaced else []
    docs = render(sets=sets)
    want, have = derived(namespaced=namespaced), granted(docs)
    assert sorted(want - have, key=str) == [], "the chart lacks rights the code uses"
    assert sorted(have - want, key=str) == [], "the chart grants rights the code never uses"


def test_lease_rights_are_limited_to_the_lease() -> None:
    role = only(render(), "Role", "mediaimport-operator-leader")
    named = [r for r in role["rules"] if r.get("resourceNames")]
    assert named == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                      "resourceNames": [LEASE], "verbs": ["get", "update"]},
                     {"apiGroups": [""], "resources": ["services"],
                      "resourceNames": ["mediaimport-operator-channel"], "verbs": ["get"]}]
    # create cannot be limited by name: the object does not exist yet.
    unnamed = [r for r in role["rules"] if not r.get("resourceNames")]
    assert unnamed == [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                        "verbs": ["create"]}]


def test_watching_namespaces_binds_only_there() -> None:
    docs = render(sets=["watchNamespaces={media,media-staging}", "api.namespace=media"])
    bindings = [d for d in docs if d["kind"] == "RoleBinding"
                and d["metadata"]["name"] == "mediaimport-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["media", "media-staging"]
    cluster_bindings = {d["roleRef"]["name"] for d in docs if d["kind"] == "ClusterRoleBinding"}
    assert cluster_bindings == {"mediaimport-operator-discovery"}

