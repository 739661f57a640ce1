"""Checks the output of `helm template` made by helm.sh (files in the directory argv[1]):
every object valid for kubernetes-validate (strict, Kubernetes 1.33; the ServiceMonitor CRD is
checked by hand), upstream values files render the same Deployments/Secrets as upstream's chart,
and the all-in-one, HA and default renders have what they promise. Exit 1 on any failure."""

import copy
import glob
import os
import sys

import kubernetes_validate
import yaml

VERSION = "1.33"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)


def load(path):
    return [d for d in yaml.safe_load_all(open(path)) if d]


def by_kind(objs, kind):
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def container(dep):
    cs = dep["spec"]["template"]["spec"]["containers"]
    check(len(cs) == 1, f"{dep['metadata']['name']}: one container")
    return cs[0]


def env(dep):
    return {e["name"]: e for e in container(dep).get("env", [])}


def validate_all(name, objs):
    check(objs, f"{name}: renders objects")
    for o in objs:
        if o["kind"] == "ServiceMonitor":
            check(o["apiVersion"] == "monitoring.coreos.com/v1", "ServiceMonitor apiVersion")
            check(o["spec"]["endpoints"][0]["port"] == "metrics", "ServiceMonitor scrapes metrics")
            continue
        try:
            kubernetes_validate.validate(o, VERSION, strict=True)
        except Exception as e:  # ValidationError, SchemaNotFoundError
            failures.append(f"{name}: {o['kind']}/{o['metadata']['name']}: {e}")


def normalize(o):
    o = copy.deepcopy(o)
    for meta in (o["metadata"], o.get("spec", {}).get("template", {}).get("metadata", {})):
        labels = meta.get("labels") or {}
        labels.pop("helm.sh/chart", None)
        labels.pop("app.kubernetes.io/version", None)
        ann = meta.get("annotations") or {}
        ann.pop("checksum/secret", None)
        if "annotations" in meta and not ann:
            del meta["annotations"]
    return o


def compare_with_upstream(name):
    ours = load(f"{d}/ours-{name}.yaml")
    theirs = load(f"{d}/upstream-{name}.yaml")
    for kind in ("Deployment", "Secret", "ServiceAccount"):
        o, t = by_kind(ours, kind), by_kind(theirs, kind)
        check(sorted(o) == sorted(t), f"{name}: {kind} names {sorted(o)} vs upstream {sorted(t)}")
        for n in t:
            if n in o:
                check(normalize(o[n]) == normalize(t[n]),
                      f"{name}: {kind}/{n} differs from upstream's:\n{normalize(o[n])}\n{normalize(t[n])}")
    check(len(ours) == len(theirs), f"{name}: {len(ours)} objects, upstream {len(theirs)}")


d = sys.argv[1]
files = sorted(glob.glob(f"{d}/ours-*.yaml"))
check(len(files) == 6, f"six renders, got {files}")
for f in files:
    validate_all(os.path.basename(f), load(f))
for f in sorted(glob.glob(f"{d}/upstream-*.yaml")):
    validate_all(os.path.basename(f), load(f))

for n in ("upstream-chart_values_yaml", "upstream-chart_test-values_yaml",
          "upstream-chart_test-values-event_yaml"):
    compare_with_upstream(n)

# chart defaults = upstream defaults: event-process and report, one replica each
deps = by_kind(load(f"{d}/ours-defaults.yaml"), "Deployment")
check(sorted(deps) == ["site-waldur-site-agent-event-process", "site-waldur-site-agent-report"],
      f"defaults: deployments {sorted(deps)}")
for dep in deps.values():
    c = container(dep)
    check(c["args"][0:2] == ["--mode", dep["metadata"]["name"].split("agent-")[1].replace("-", "_")],
          f"defaults: args {c['args']}")
    check(c["livenessProbe"]["exec"]["command"] == ["waldur_site_healthz", "--liveness-only"],
          "defaults: upstream's liveness probe")

# all-in-one
objs = load(f"{d}/ours-all-in-one_yaml.yaml")
deps = by_kind(objs, "Deployment")
check(list(deps) == ["site-waldur-site-agent-all-in-one"], f"all-in-one: deployments {list(deps)}")
dep = deps.get("site-waldur-site-agent-all-in-one")
if dep:
    c = container(dep)
    check(c["args"] == ["--mode", "event_process,report,order_process,membership_sync",
                        "--config-file", "/etc/waldur-site-agent/config.yaml"], f"all-in-one args {c['args']}")
    check(c["resources"]["limits"]["memory"] == "128Mi", "all-in-one: its own resources")
    check(c["envFrom"] == [{"secretRef": {"name": "waldur-agent-secrets"}}], "all-in-one: envFrom")
    check(env(dep)["WALDUR_SITE_AGENT_METRICS_LISTEN"]["value"] == "0.0.0.0:9100", "metrics listen env")
    check(c["ports"][0]["containerPort"] == 9100, "metrics port")
    vols = {v["name"]: v for v in dep["spec"]["template"]["spec"]["volumes"]}
    check(vols["config"]["secret"]["secretName"] == "site-agent-config", "existingSecret mounted")
    check("annotations" not in dep["spec"]["template"]["metadata"], "no checksum without our secret")
    check(c["image"] == "registry.example.org/waldur/waldur-site-agent-rs:0.1.0", f"image {c['image']}")
check(not by_kind(objs, "Secret"), "all-in-one: existingSecret creates no Secret")
svc = by_kind(objs, "Service").get("site-waldur-site-agent-metrics")
check(svc and svc["spec"]["ports"][0]["targetPort"] == "metrics", "all-in-one: metrics Service")
check(svc and "app.kubernetes.io/component" not in svc["spec"]["selector"], "metrics Service selects every mode")
sm = by_kind(objs, "ServiceMonitor").get("site-waldur-site-agent")
check(sm and sm["metadata"]["labels"].get("release") == "prometheus", "ServiceMonitor with labels")
np = by_kind(objs, "NetworkPolicy").get("site-waldur-site-agent")
check(np is not None, "NetworkPolicy")
if np:
    check(np["spec"]["policyTypes"] == ["Ingress", "Egress"], "NetworkPolicy types")
    check(np["spec"]["ingress"][0]["ports"][0]["port"] == "metrics", "NetworkPolicy: metrics ingress only")
    check(len(np["spec"]["ingress"]) == 1, "NetworkPolicy: one ingress rule")
    check(np["spec"]["egress"][0]["ports"][0]["port"] == 53, "NetworkPolicy: DNS egress")
    check(np["spec"]["egress"][1]["ports"][0]["port"] == 443, "NetworkPolicy: listed egress")
check(not by_kind(objs, "Role"), "all-in-one: no leases RBAC without leaderElection")

# HA
objs = load(f"{d}/ours-ha_yaml.yaml")
deps = by_kind(objs, "Deployment")
want = {"site-waldur-site-agent-event-process": 3, "site-waldur-site-agent-order-process": 3,
        "site-waldur-site-agent-report": 2}
check({n: x["spec"]["replicas"] for n, x in deps.items()} == want, f"HA replicas {list(deps)}")
for n, dep in deps.items():
    e = env(dep)
    check(e.get("WALDUR_SITE_AGENT_LEADER_ELECTION", {}).get("value") == "true", f"{n}: leader election on")
    check(e.get("WALDUR_SITE_AGENT_LEASE_IDENTITY", {}).get("valueFrom", {}).get("fieldRef", {})
          .get("fieldPath") == "metadata.name", f"{n}: identity is the pod name")
    check(e.get("WALDUR_SITE_AGENT_LEASE_NAMESPACE", {}).get("valueFrom", {}).get("fieldRef", {})
          .get("fieldPath") == "metadata.namespace", f"{n}: lease namespace is the pod's")
    check(e.get("WALDUR_SITE_AGENT_LEASE_DURATION_SECONDS", {}).get("value") == "15", f"{n}: duration")
    check(e.get("WALDUR_SITE_AGENT_LEASE_RENEW_SECONDS", {}).get("value") == "5", f"{n}: renew")
    check(dep["spec"]["template"]["spec"]["serviceAccountName"] == "site-agent", f"{n}: service account")
    check(dep["spec"]["strategy"]["type"] == "RollingUpdate", f"{n}: strategy")
if deps:
    check(container(deps["site-waldur-site-agent-event-process"])["resources"]["limits"]["memory"] == "256Mi",
          "HA: event-process resources per mode")
    check(container(deps["site-waldur-site-agent-order-process"])["resources"]["limits"]["memory"] == "1024Mi",
          "HA: order-process falls back to the global resources")
role = by_kind(objs, "Role").get("site-waldur-site-agent-leases")
check(role is not None, "HA: leases Role")
if role:
    r = role["rules"][0]
    check(r["apiGroups"] == ["coordination.k8s.io"] and r["resources"] == ["leases"], "Role on leases")
    check({"get", "create", "update"} <= set(r["verbs"]), "Role verbs")
rb = by_kind(objs, "RoleBinding").get("site-waldur-site-agent-leases")
check(rb and rb["subjects"] == [{"kind": "ServiceAccount", "name": "site-agent", "namespace": "waldur-agent"}],
      "RoleBinding to the service account")
check("site-agent" in by_kind(objs, "ServiceAccount"), "HA: service account created")
pdbs = by_kind(objs, "PodDisruptionBudget")
check(sorted(pdbs) == sorted(want), f"HA: a PDB per Deployment {sorted(pdbs)}")
for p in pdbs.values():
    check(p["spec"].get("minAvailable") == 1 and "maxUnavailable" not in p["spec"], "PDB minAvailable")

if failures:
    for f in failures:
        print("FAIL:", f)
    sys.exit(1)
print(f"helm renders: {len(files)} files valid, compatible with upstream, assertions hold")
