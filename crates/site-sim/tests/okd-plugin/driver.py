"""Drives the upstream OKD plugin (waldur-site-agent-okd, PyPI) through its lifecycle against the
site-sim Kubernetes double, calling the backend class the agent's processors call.

Env: OKD_URL, OKD_CA (CA file), OKD_SA_TOKEN_FILE (the service account token file the double
rotates), OKD_ADMIN_TOKEN (for the double's /__sim endpoints and read-backs).
Prints PASS/FAIL/NOTE lines; exits with the number of failures.
"""

import json
import os
import sys
import time
import uuid

import httpx
from waldur_api_client.models.resource import Resource
from waldur_api_client.models.resource_limits import ResourceLimits
from waldur_site_agent_okd.backend import OkdBackend

URL = os.environ["OKD_URL"]
CA = os.environ["OKD_CA"]
TOKEN_FILE = os.environ["OKD_SA_TOKEN_FILE"]
ADMIN = httpx.Client(base_url=URL, verify=CA, headers={"Authorization": "Bearer " + os.environ["OKD_ADMIN_TOKEN"]})

failures = 0


def result(ok, what, detail=""):
    global failures
    if not ok:
        failures += 1
    print(("PASS" if ok else "FAIL") + ": " + what + (f" ({detail})" if detail else ""), flush=True)


def note(what):
    print("NOTE: " + what, flush=True)


def step(name, fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - a step failing must not stop the others
        result(False, name, f"{type(e).__name__}: {e}")


def get(path):
    r = ADMIN.get(path)
    return r.status_code, (r.json() if r.content else {})


settings = {
    "api_url": URL,
    "verify_cert": CA,
    "namespace_prefix": "waldur-",
    "token_config": {"token_type": "file", "token_file_path": TOKEN_FILE},
}
components = {
    name: {"measured_unit": unit, "accounting_type": "limit", "unit_factor": 1, "label": name}
    for name, unit in [("cpu", "Core"), ("memory", "GB"), ("storage", "GB"), ("pods", "Count")]
}
backend = OkdBackend(settings, components)
resource = Resource(
    uuid=uuid.uuid4(),
    name="Production environment",
    slug="production-environment",
    customer_slug="acme",
    project_slug="webdev",
    limits=ResourceLimits.from_dict({"cpu": 4, "memory": 16, "storage": 100, "pods": 10}),
)
ns = "waldur-alloc-" + resource.uuid.hex[:8]


def ping():
    result(backend.ping() is True, "ping (GET /api/v1 is an APIResourceList)")
    result(backend.diagnostics() is True, "diagnostics (ping + list projects)")


def create():
    info = backend.create_resource(resource)
    result(info.backend_id == ns, "create returns the allocation id", info.backend_id)
    code, project = get(f"/apis/project.openshift.io/v1/projects/{ns}")
    result(code == 200, "create: projectrequest made the project", f"HTTP {code}")
    code, nsobj = get(f"/api/v1/namespaces/{ns}")
    result(code == 200 and nsobj["status"]["phase"] == "Active", "create: namespace Active")
    ann = project.get("metadata", {}).get("annotations", {})
    result("openshift.io/requester" in ann, "create: project has the template's annotations", json.dumps(ann))
    if not ann.get("waldur/organization"):
        note(
            "the plugin sends its annotations (description, display-name, waldur/organization, waldur/parent) in the "
            "ProjectRequest's metadata; OpenShift's project template ignores them (it uses the top-level displayName "
            "and description, which the plugin leaves unset), so the project has empty description/display-name and "
            "no waldur/organization: list_resources/get_resource report organization ''"
        )
    code, _ = get(f"/api/v1/namespaces/{ns}/resourcequotas/waldur-quota")
    if code == 404:
        note(
            "create set no quota: OkdBackend._collect_resource_limits reads limits with getattr(ResourceLimits, 'cpu', 0), "
            "which is 0 for the API client's ResourceLimits (keys live in additional_properties), so the order's limits "
            "are dropped until the next set-limits call"
        )
    again = backend._create_backend_resource(ns, resource.name, "waldur-org-acme", "waldur-proj-webdev")
    result(again is False, "create is idempotent (existing project detected)")


def set_limits():
    backend.set_resource_limits(ns, {"cpu": 4, "memory": 16, "storage": 100, "pods": 10})
    code, q = get(f"/api/v1/namespaces/{ns}/resourcequotas/waldur-quota")
    want = {"requests.cpu": "4", "limits.cpu": "8", "requests.memory": "16Gi", "limits.memory": "32Gi", "requests.storage": "100Gi", "pods": "10"}
    result(code == 200 and q["spec"]["hard"] == want, "set limits: quota created (POST after GET 404)", json.dumps(q.get("spec")))
    result(q.get("status", {}).get("hard") == want, "set limits: status.hard mirrors spec.hard")
    backend.set_resource_limits(ns, {"cpu": 6, "memory": 24, "storage": 200, "pods": 20})
    code, q2 = get(f"/api/v1/namespaces/{ns}/resourcequotas/waldur-quota")
    result(q2["spec"]["hard"]["requests.cpu"] == "6" and q2["spec"]["hard"]["limits.memory"] == "48Gi", "set limits: quota replaced (PUT without resourceVersion)")
    result(q2["metadata"]["uid"] == q["metadata"]["uid"], "set limits: same quota object updated")
    got = backend.client.get_resource_limits(ns)
    result(got == {"cpu": 6, "memory": 24, "storage": 200, "pods": 20}, "limits read back", json.dumps(got))


def add_user():
    added = backend.add_users_to_resource(resource, {"alice"})
    result(added == {"alice"}, "add user (core add_user -> RoleBinding)", str(added))
    code, rb = get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/waldur-alice")
    result(code == 200 and rb["subjects"][0]["name"] == "alice", "add user: RoleBinding waldur-alice exists")
    role = rb.get("roleRef", {}).get("name")
    if role not in ("admin", "edit", "view"):
        note(
            f"the RoleBinding references ClusterRole {role!r}: core add_user passes backend_settings.default_account "
            "(default 'root') as the role; no such ClusterRole exists, so alice gets no permissions. The double (like a "
            "real API server for a caller allowed to 'bind') accepts the binding; a token with only the README's "
            "ClusterRole would get 403 Forbidden"
        )
    again = backend.add_users_to_resource(resource, {"alice"})
    result(again == {"alice"}, "add user again is a no-op (association found)")
    users = backend.client.list_resource_users(ns)
    result("alice" in users, "list users", str(users))
    extra = [u for u in users if u != "alice"]
    if extra:
        note(f"list_resource_users also reports {extra}: the project template's 'admin' RoleBinding of the requester")


def usage():
    r = ADMIN.put(f"/__sim/kubernetes/namespaces/{ns}/usage", json={
        "pods": [
            {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
            {"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
        ],
        "persistentvolumeclaims": [{"storage": "20Gi"}],
    })
    result(r.status_code == 200, "usage: pods set running in the double", f"HTTP {r.status_code}")
    report = backend._get_usage_report([ns])
    want = {"cpu": 1.5, "memory": 3.0, "storage": 20.0, "pods": 2}
    got = report.get(ns, {}).get("TOTAL_ACCOUNT_USAGE")
    result(got == want, "usage report from quota status.used", json.dumps(got))
    info = backend.pull_resource(resource)
    result(info is not None and info.usage.get("TOTAL_ACCOUNT_USAGE") == want and "alice" in info.users, "pull_resource (users + usage)")
    meta = backend.get_resource_metadata(ns)
    result(meta.get("name") == ns and meta.get("quotas", {}).get("pods") == 20, "resource metadata", json.dumps(meta))


def lifecycle_quotas():
    result(backend.pause_resource(ns) is True, "pause (all quotas 0)")
    result(backend.client.get_resource_limits(ns) == {"cpu": 0, "memory": 0, "storage": 0, "pods": 0}, "paused quota read back")
    result(backend.downscale_resource(ns) is True, "downscale")
    result(backend.restore_resource(ns) is True, "restore")
    result(backend.client.get_resource_limits(ns) == {"cpu": 10, "memory": 32, "storage": 100, "pods": 50}, "restored quota read back")


def token_rotation():
    r = ADMIN.post("/__sim/kubernetes/tokens/rotate")
    result(r.status_code == 200, "token rotated in the double (old token now 401)")
    limits = backend.client.get_resource_limits(ns)
    result(limits.get("pods") == 50, "plugin re-reads the token file after a 401 and retries", json.dumps(limits))


def remove_user():
    removed = backend.remove_users_from_resource(resource, {"alice"})
    result(removed == ["alice"], "remove user", str(removed))
    code, _ = get(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings/waldur-alice")
    result(code == 404, "remove user: RoleBinding gone")
    result(backend.remove_users_from_resource(resource, {"alice"}) == ["alice"], "remove again is idempotent")


def terminate():
    resource.backend_id = ns
    backend.delete_resource(resource)
    code, p = get(f"/apis/project.openshift.io/v1/projects/{ns}")
    result(code == 404 or p["status"]["phase"] == "Terminating", "terminate: project Terminating")
    for _ in range(50):
        if get(f"/api/v1/namespaces/{ns}")[0] == 404:
            break
        time.sleep(0.1)
    result(get(f"/api/v1/namespaces/{ns}")[0] == 404, "terminate: namespace and its content gone")
    result(backend.client.get_resource(ns) is None, "terminate: get_resource reports none")
    result(get(f"/api/v1/namespaces/{ns}/resourcequotas/waldur-quota")[0] == 404, "terminate: quota gone")


for name, fn in [("ping", ping), ("create", create), ("set limits", set_limits), ("add user", add_user),
                 ("usage", usage), ("pause/downscale/restore", lifecycle_quotas),
                 ("token rotation", token_rotation), ("remove user", remove_user), ("terminate", terminate)]:
    step(name, fn)

print(f"{failures} failed", flush=True)
sys.exit(min(failures, 100))
