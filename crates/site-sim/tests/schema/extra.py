"""More of the API than the plugin uses, so the schema check sees every kind and error shape:
namespaces (create, patch, delete), leases (create, renew, conflict), role bindings, cluster
roles, pagination, discovery, and Status errors (401, 404, 409, 422, 400)."""

import os

import httpx

URL, CA, TOKEN = os.environ["OKD_URL"], os.environ["OKD_CA"], os.environ["OKD_ADMIN_TOKEN"]
c = httpx.Client(base_url=URL, verify=CA, headers={"Authorization": "Bearer " + TOKEN})

for path in ["/api", "/apis", "/api/v1", "/apis/rbac.authorization.k8s.io/v1", "/apis/coordination.k8s.io/v1",
             "/apis/project.openshift.io/v1", "/apis/project.openshift.io", "/version"]:
    c.get(path).raise_for_status()
c.post("/api/v1/namespaces", json={"metadata": {"name": "schema-a", "labels": {"team": "x"}}}).raise_for_status()
c.patch("/api/v1/namespaces/schema-a", json={"metadata": {"annotations": {"note": "y"}}},
        headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
         "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "2025-01-01T00:00:00.000000Z",
                  "renewTime": "2025-01-01T00:00:00.000000Z", "leaseTransitions": 0}}
created = c.post("/apis/coordination.k8s.io/v1/namespaces/schema-a/leases", json=lease).json()
renewed = dict(created, spec=dict(created["spec"], renewTime="2025-01-01T00:00:05.000000Z"))
c.put("/apis/coordination.k8s.io/v1/namespaces/schema-a/leases/leader", json=renewed).raise_for_status()
assert c.put("/apis/coordination.k8s.io/v1/namespaces/schema-a/leases/leader", json=renewed).status_code == 409
c.get("/apis/coordination.k8s.io/v1/namespaces/schema-a/leases").raise_for_status()
c.post("/apis/rbac.authorization.k8s.io/v1/namespaces/schema-a/rolebindings", json={
    "metadata": {"name": "viewers"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "ci", "namespace": "schema-a"}]}).raise_for_status()
c.get("/apis/rbac.authorization.k8s.io/v1/rolebindings?limit=2").raise_for_status()
c.get("/apis/rbac.authorization.k8s.io/v1/clusterroles").raise_for_status()
c.post("/api/v1/namespaces/schema-a/resourcequotas", json={"metadata": {"name": "q"}, "spec": {"hard": {"pods": "4", "requests.memory": "1.5Gi"}}}).raise_for_status()
c.get("/api/v1/resourcequotas").raise_for_status()
c.get("/api/v1/namespaces?limit=2").raise_for_status()
c.get("/apis/project.openshift.io/v1/projects?limit=3").raise_for_status()
c.get("/apis/project.openshift.io/v1/projectrequests").raise_for_status()
# Errors.
assert httpx.get(URL + "/api/v1/namespaces", verify=CA).status_code == 401
assert c.get("/api/v1/namespaces/missing").status_code == 404
assert c.get("/api/v1/pods").status_code == 404
assert c.post("/api/v1/namespaces", json={"metadata": {"name": "schema-a"}}).status_code == 409
assert c.post("/api/v1/namespaces", json={"metadata": {"name": "Not_Valid"}}).status_code == 422
assert c.post("/api/v1/namespaces", content=b"{", headers={"Content-Type": "application/json"}).status_code == 400
c.delete("/apis/rbac.authorization.k8s.io/v1/namespaces/schema-a/rolebindings/viewers").raise_for_status()
c.delete("/api/v1/namespaces/schema-a").raise_for_status()
print("extra scenario done")
