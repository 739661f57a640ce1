"""Drives the upstream Rancher plugin (waldur-site-agent-rancher, PyPI) with Keycloak enabled
through its lifecycle against `site-sim rancher`, calling the backend class the agent's
processors call, and reads the result back from the doubles.

Env: SIM_INFO (the JSON line `site-sim rancher` printed).
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
from waldur_site_agent_rancher.backend import RancherBackend

INFO = json.load(open(os.environ["SIM_INFO"]))
RANCHER = httpx.Client(base_url=INFO["url"], auth=(INFO["access_key"], INFO["secret_key"]))
KUBE = httpx.Client(base_url=INFO["kubernetes_url"], headers={"Authorization": "Bearer " + INFO["kubernetes_token"]})
CLUSTER = INFO["cluster_id"]

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


def kc_token():
    r = httpx.post(INFO["keycloak_url"] + "/realms/master/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli",
        "username": INFO["keycloak_username"], "password": INFO["keycloak_password"]})
    r.raise_for_status()
    return r.json()["access_token"]


def kc_groups():
    """Every group of the waldur realm as {path: [member usernames]}."""
    h = {"Authorization": "Bearer " + kc_token()}
    base = INFO["keycloak_url"] + "/admin/realms/waldur"
    out = {}

    def walk(groups):
        for g in groups:
            members = httpx.get(f"{base}/groups/{g['id']}/members", headers=h).json()
            out[g["path"]] = sorted(m["username"] for m in members)
            walk(httpx.get(f"{base}/groups/{g['id']}/children", params={"max": 1000}, headers=h).json())

    walk(httpx.get(f"{base}/groups", headers=h).json())
    return out


settings = {
    "backend_url": INFO["url"],
    "username": INFO["access_key"],
    "password": INFO["secret_key"],
    "cluster_id": CLUSTER,
    "verify_cert": False,
    "project_prefix": "waldur-",
    "default_role": "workloads-manage",
    "keycloak_use_user_id": True,
    "namespace_labels": {"gpu-pool": "h100-2x"},
    "keycloak_enabled": True,
    "keycloak": {
        "keycloak_url": INFO["keycloak_url"] + "/",
        "keycloak_realm": "waldur",
        "keycloak_user_realm": "master",
        "keycloak_username": INFO["keycloak_username"],
        "keycloak_password": INFO["keycloak_password"],
        "keycloak_ssl_verify": False,
    },
}
components = {
    "cpu": {"type": "cpu", "measured_unit": "cores", "accounting_type": "limit", "unit_factor": 1, "label": "CPU"},
    "memory": {"type": "ram", "measured_unit": "GB", "accounting_type": "limit", "unit_factor": 1, "label": "RAM"},
    "storage": {"type": "storage", "measured_unit": "GB", "accounting_type": "limit", "unit_factor": 1, "label": "Storage"},
    "gpu": {"type": "gpu", "measured_unit": "GPU", "accounting_type": "limit", "unit_factor": 1, "label": "GPU"},
}
backend = RancherBackend(settings, components)
resource = Resource(
    uuid=uuid.uuid4(),
    name="ML training",
    slug="ml-training",
    customer_slug="acme",
    customer_name="ACME",
    project_slug="webdev",
    project_name="Web development",
    limits=ResourceLimits.from_dict({"cpu": 4, "memory": 16, "storage": 100, "gpu": 2}),
)
NAME = "waldur-ml-training"
CHILD = "project_webdev_workloads-manage"
PARENT = "c_" + CLUSTER.replace(":", "").replace("-", "")[:8]
state = {}


def project():
    data = RANCHER.get("/v3/projects", params={"name": NAME}).json()["data"]
    return data[0] if data else None


def ping():
    result(backend.ping() is True, "ping (cluster by id, Keycloak realm)")
    result(backend.diagnostics() is True, "diagnostics")


def create():
    info = backend.create_resource_with_id(resource, "ignored")
    p = project()
    result(p is not None and info.backend_id == p["id"], "create: Rancher project", info.backend_id)
    state["pid"] = info.backend_id
    resource.backend_id = info.backend_id
    result(p["annotations"].get("waldur/organization") == "acme" and p["description"].startswith("ML training (Customer: ACME"),
           "create: project annotations and description", json.dumps(p["annotations"]))
    ns = RANCHER.get(f"/v3/clusters/{CLUSTER}/namespaces", params={"projectId": info.backend_id}).json()["data"]
    result([n["name"] for n in ns] == [NAME], "create: namespace in the project", json.dumps([n["name"] for n in ns]))
    k = KUBE.get(f"/api/v1/namespaces/{NAME}").json()
    labels = k["metadata"]["labels"]
    result(labels.get("gpu-pool") == "h100-2x" and labels.get("pod-security.kubernetes.io/enforce") == "restricted",
           "create: namespace labels (pod security, GPU pool)", json.dumps(labels))
    q = KUBE.get(f"/api/v1/namespaces/{NAME}/resourcequotas/custom-resource-quota").json()
    # The plugin sends 4000m / 16384Mi / 102400Mi; the API server stores quantities canonical.
    want = {"limits.cpu": "4", "limits.memory": "16Gi", "requests.storage": "100Gi", "requests.nvidia.com/gpu": "2"}
    result(q.get("spec", {}).get("hard") == want, "create: quota via importYaml", json.dumps(q.get("spec")))
    groups = kc_groups()
    result(f"/{PARENT}" in groups and f"/{PARENT}/{CHILD}" in groups, "create: Keycloak parent and child groups", json.dumps(groups))
    b = RANCHER.get("/v3/projectroletemplatebindings", params={"projectId": info.backend_id}).json()["data"]
    result(len(b) == 1 and b[0]["groupPrincipalId"] == f"keycloakoidc_group://{CHILD}" and b[0]["roleTemplateId"] == "workloads-manage",
           "create: group bound to the project", json.dumps([x.get("groupPrincipalId") for x in b]))


def set_limits():
    backend.set_resource_limits(state["pid"], {"cpu": 8, "memory": 32, "storage": 200, "gpu": 4})
    q = KUBE.get(f"/api/v1/namespaces/{NAME}/resourcequotas/custom-resource-quota").json()
    want = {"limits.cpu": "8", "limits.memory": "32Gi", "requests.storage": "200Gi", "requests.nvidia.com/gpu": "4"}
    result(q["spec"]["hard"] == want, "set limits: quota replaced", json.dumps(q["spec"]["hard"]))
    result(q["status"]["hard"] == want, "set limits: status.hard follows")


def add_user():
    result(backend.add_user(resource, "alice") is True, "add user alice")
    groups = kc_groups()
    result(groups.get(f"/{PARENT}/{CHILD}") == ["alice"], "add user: alice in the child group", json.dumps(groups))
    result(backend.add_user(resource, "nobody-yet") is True, "add unknown user: reported added (upstream behaviour)")
    note("upstream reports a user unknown to Keycloak as added and never retries; the Rust backend retries it on later cycles")


def usage():
    r = KUBE.put(f"/__sim/kubernetes/namespaces/{NAME}/usage", json={
        "pods": [{"requests": {"cpu": "1", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "3Gi"}}],
        "persistentvolumeclaims": [{"storage": "12Gi"}],
        "used": {"requests.nvidia.com/gpu": "1"},
    })
    result(r.status_code == 200, "usage: workload set running in the Kubernetes double", f"HTTP {r.status_code}")
    report = backend._get_usage_report([state["pid"]])
    got = report.get(state["pid"], {}).get("TOTAL_ACCOUNT_USAGE")
    want = {"cpu": 2.0, "memory": 3.0, "storage": 12.0, "gpu": 1.0}
    result(got == want, "usage through /k8s/clusters/<id>/ (quota status.used)", json.dumps(got))
    info = backend.pull_resource(resource)
    result(info is not None and len(info.users) == 1, "pull_resource: the child group's member", json.dumps(info.users if info else None))
    meta = backend.get_resource_metadata(state["pid"])
    result(meta.get("name") == NAME, "metadata", json.dumps(meta))


def remove_user():
    result(backend.remove_user(resource, "alice") is True, "remove user alice")
    groups = kc_groups()
    result(f"/{PARENT}/{CHILD}" not in groups, "remove user: empty child group deleted (upstream cleanup)", json.dumps(groups))
    b = RANCHER.get("/v3/projectroletemplatebindings", params={"projectId": state["pid"]}).json()["data"]
    result(b == [], "remove user: the group's binding deleted", json.dumps(b))


def terminate():
    backend.delete_resource(resource)
    result(project() is None, "terminate: project gone")
    for _ in range(50):
        if KUBE.get(f"/api/v1/namespaces/{NAME}").status_code == 404:
            break
        time.sleep(0.1)
    result(KUBE.get(f"/api/v1/namespaces/{NAME}").status_code == 404, "terminate: namespace gone")
    r = RANCHER.get(f"/v3/projects/{state['pid']}")
    body = r.json()
    result(r.status_code == 404 and body.get("type") == "error" and body.get("code") == "NotFound",
           "terminate: Rancher's error shape for the gone project", json.dumps(body))


for name, fn in [("ping", ping), ("create", create), ("set limits", set_limits), ("add user", add_user),
                 ("usage", usage), ("remove user", remove_user), ("terminate", terminate)]:
    step(name, fn)

print(f"{failures} failed", flush=True)
sys.exit(min(failures, 100))
