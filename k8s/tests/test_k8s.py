"""Checks on the rendered Kubernetes manifests, the Terraform module and the Dockerfiles.

Run with the CI venv: `target/k8s-venv/bin/python -m pytest k8s/tests` (needs kubectl, pyyaml,
kubernetes-validate, checkov, python-hcl2, terraform; .ci/run installs them).
"""

import ipaddress
import json
import os
import posixpath
import re
import shutil
import subprocess
import sys
from pathlib import Path

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
OVERLAYS = ["base", "overlays/metallb", "overlays/metallb-dual-stack", "overlays/multi-replica"]
# The overlays built with components/dual-stack: a Service of both families, tern on both.
DUAL_STACK = {"overlays/metallb-dual-stack"}
# The overlays whose one address (one per family) is written in their kustomization.yaml.
METALLB = ["overlays/metallb", "overlays/metallb-dual-stack"]
LB_IPS = "metallb.io/loadBalancerIPs"
PORT_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
KUBERNETES_VERSION = "1.30.0"
# Checks checkov may fail, each justified in README.md ("checkov findings").
JUSTIFIED = {
    "CKV_K8S_15": "image pull policy IfNotPresent with a pinned tag or digest",
    "CKV_K8S_21": "the base is namespace-agnostic on purpose; overlays set the namespace",
    "CKV_K8S_43": "the digest of a user-built image is set in the user's overlay",
}

# Custom resources kubernetes-validate has no schema for. Each is checked instead against a
# schema written here from cert-manager's v1 API reference (cert-manager.io/docs/reference/
# api-docs): every field a Certificate spec may have is listed, unknown ones are refused, and
# the fields this repository sets are typed and, where the API has a closed set, enumerated.
STRINGS = {"type": "array", "items": {"type": "string"}}
CERTIFICATE_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object",
            "required": ["secretName", "issuerRef"],
            "anyOf": [{"required": ["dnsNames"]}, {"required": ["ipAddresses"]},
                      {"required": ["commonName"]}, {"required": ["uris"]}],
            "additionalProperties": False,
            "properties": {
                "secretName": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                "dnsNames": STRINGS, "ipAddresses": STRINGS, "uris": STRINGS,
                "emailAddresses": STRINGS, "usages": STRINGS, "otherNames": {"type": "array"},
                "commonName": {"type": "string"}, "literalSubject": {"type": "string"},
                "duration": {"type": "string"}, "renewBefore": {"type": "string"},
                "renewBeforePercentage": {"type": "integer"},
                "revisionHistoryLimit": {"type": "integer"},
                "isCA": {"type": "boolean"}, "encodeUsagesInRequest": {"type": "boolean"},
                "subject": {"type": "object"}, "secretTemplate": {"type": "object"},
                "keystores": {"type": "object"}, "nameConstraints": {"type": "object"},
                "additionalOutputFormats": {"type": "array"},
                "issuerRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string"}, "kind": {"type": "string"},
                                   "group": {"type": "string"}},
                },
                "privateKey": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                        "encoding": {"enum": ["PKCS1", "PKCS8"]},
                        "rotationPolicy": {"enum": ["Never", "Always"]},
                        "size": {"type": "integer"},
                    },
                },
            },
        },
    },
}
CUSTOM_SCHEMAS = {("cert-manager.io/v1", "Certificate"): CERTIFICATE_SCHEMA}

sys.path.insert(0, str(K8S))
import generate  # noqa: E402


def conf_values():
    return {k: v for k, (v, _) in generate.read_conf(K8S / "base" / "turnserver.conf").items()}


def render(overlay):
    out = subprocess.run(
        ["kubectl", "kustomize", str(K8S / overlay)], check=True, capture_output=True, text=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request):
    return request.param, render(request.param)


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def workloads(docs):
    return by_kind(docs, "Deployment") + by_kind(docs, "StatefulSet")


def expected_ports():
    ports = generate.ports_of(K8S)
    expected = {(ports.listening, "UDP"), (ports.listening, "TCP"), (ports.tls, "TCP")}
    expected |= {(p, "UDP") for p in range(ports.low, ports.high + 1)}
    return expected


def lb_services(docs):
    return [s for s in by_kind(docs, "Service") if s["spec"].get("type") == "LoadBalancer"]


# --- generation and drift ---------------------------------------------------------------


def test_generated_files_match_the_configuration():
    r = subprocess.run([sys.executable, str(K8S / "generate.py"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_drift_is_caught(tmp_path):
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    conf = copy / "base" / "turnserver.conf"
    conf.write_text(conf.read_text().replace("max-port=49252", "max-port=49262"))
    r = subprocess.run(
        [sys.executable, str(copy / "generate.py"), "--check", "--root", str(copy)],
        capture_output=True, text=True,
    )
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "service.yaml" in r.stderr
    # ... and regenerating makes the copy consistent again, with the new port in the Service.
    subprocess.run([sys.executable, str(copy / "generate.py"), "--root", str(copy)], check=True)
    r = subprocess.run(
        [sys.executable, str(copy / "generate.py"), "--check", "--root", str(copy)],
        capture_output=True, text=True,
    )
    assert r.returncode == 0, r.stderr
    assert "port: 49262, targetPort: 49262" in (copy / "base" / "service.yaml").read_text()


# --- invariants on the rendered YAML ------------------------------------------------------


def test_no_host_network_no_host_port(rendered):
    _, docs = rendered
    assert workloads(docs)
    for w in workloads(docs):
        spec = w["spec"]["template"]["spec"]
        assert not spec.get("hostNetwork"), w["metadata"]["name"]
        assert not spec.get("hostPID") and not spec.get("hostIPC")
        for c in spec["containers"]:
            for p in c.get("ports", []):
                assert "hostPort" not in p, (w["metadata"]["name"], p)


def test_load_balancer_services(rendered):
    overlay, docs = rendered
    lbs = [s for s in by_kind(docs, "Service") if s["spec"].get("type") == "LoadBalancer"]
    assert lbs, overlay
    for s in lbs:
        spec, name = s["spec"], s["metadata"]["name"]
        # One Service, mixed protocols: Kubernetes >= 1.26 (GA); MetalLB announces it as one.
        assert spec["externalTrafficPolicy"] == "Local", name
        assert spec["allocateLoadBalancerNodePorts"] is False, name
        names = [p["name"] for p in spec["ports"]]
        assert len(names) == len(set(names)), f"{name}: duplicate port names"
        for p in spec["ports"]:
            assert p["port"] == p["targetPort"], (name, p)
            assert len(p["name"]) <= 15 and PORT_NAME.match(p["name"]), p["name"]
            assert re.search("[a-z]", p["name"]) and "--" not in p["name"], p["name"]
            assert "nodePort" not in p
        covered = {(p["port"], p["protocol"]) for p in spec["ports"]}
        assert covered == expected_ports(), f"{name}: ports differ from turnserver.conf"


def test_network_policy_covers_the_range(rendered):
    _, docs = rendered
    listening, _, tls, low, high = generate.ports_of(K8S)
    (np,) = by_kind(docs, "NetworkPolicy")
    (open_rule,) = [rule for rule in np["spec"]["ingress"] if "from" not in rule]
    ports = open_rule["ports"]
    assert {"protocol": "UDP", "port": low, "endPort": high} in ports
    assert {"protocol": "UDP", "port": listening} in ports
    # TURN over TCP and over TLS, from anywhere like UDP.
    assert {"protocol": "TCP", "port": listening} in ports
    assert {"protocol": "TCP", "port": tls} in ports


# --- TURN over TCP and TLS --------------------------------------------------------------------


def test_tls_is_on_in_the_base_configuration():
    conf = conf_values()
    ports = generate.ports_of(K8S)
    assert ports.tcp and ports.tls == int(conf["tls-listening-port"]) == 5349
    assert "no-tls" not in conf and "no-tcp" not in conf
    # The keys of a kubernetes.io/tls Secret, in one directory (the Secret's mount).
    assert posixpath.basename(conf["cert"]) == "tls.crt"
    assert posixpath.basename(conf["pkey"]) == "tls.key"
    assert posixpath.dirname(conf["cert"]) == posixpath.dirname(conf["pkey"])


def test_ports_follow_no_tcp_and_no_tls(tmp_path):
    copy = tmp_path / "k8s"
    (copy / "base").mkdir(parents=True)
    conf = (K8S / "base" / "turnserver.conf").read_text()
    (copy / "base" / "turnserver.conf").write_text(conf + "no-tls\nno-tcp=yes\n")
    ports = generate.ports_of(copy)
    assert ports.tls is None and not ports.tcp
    service = generate.base_service(ports)
    assert "protocol: TCP" not in service and "turn-udp" in service
    (copy / "base" / "turnserver.conf").write_text(conf.replace("cert=", "# cert="))
    assert generate.ports_of(copy).tls is None, "no cert, no TLS"
    (copy / "base" / "turnserver.conf").write_text(
        conf.replace("tls-listening-port=5349", "tls-listening-port=49160"))
    with pytest.raises(generate.ConfigError, match="tls-listening-port 49160 is inside"):
        generate.ports_of(copy)


def test_service_carries_udp_tcp_and_tls(rendered):
    overlay, docs = rendered
    ports = generate.ports_of(K8S)
    for s in lb_services(docs):
        named = {p["name"]: p for p in s["spec"]["ports"]}
        expected = {"turn-udp": ("UDP", ports.listening), "turn-tcp": ("TCP", ports.listening),
                    "turn-tls": ("TCP", ports.tls)}
        for name, (protocol, port) in expected.items():
            assert (named[name]["protocol"], named[name]["port"]) == (protocol, port), (overlay, name)
            assert named[name]["targetPort"] == port


def test_container_ports_match_the_services(rendered):
    overlay, docs = rendered
    for w in workloads(docs):
        (c,) = w["spec"]["template"]["spec"]["containers"]
        declared = {(p["containerPort"], p["protocol"]) for p in c["ports"]}
        by_name = {p["name"]: (p["containerPort"], p["protocol"]) for p in c["ports"]}
        assert len(by_name) == len(c["ports"]), "container port names must be unique"
        for s in lb_services(docs):
            for p in s["spec"]["ports"]:
                if p["name"].startswith("turn-"):
                    assert by_name[p["name"]] == (p["targetPort"], p["protocol"]), (overlay, p)
        ports = generate.ports_of(K8S)
        assert {(ports.listening, "UDP"), (ports.listening, "TCP"), (ports.tls, "TCP")} <= declared


def tls_volume(pod):
    (vol,) = [v for v in pod["volumes"] if v.get("secret", {}).get("secretName") == "tern-tls"]
    return vol


def test_certificate_secret_is_mounted_whole(rendered):
    overlay, docs = rendered
    conf = conf_values()
    for w in workloads(docs):
        pod = w["spec"]["template"]["spec"]
        vol = tls_volume(pod)
        assert not vol["secret"].get("optional"), "without the Secret tern cannot start"
        assert "items" not in vol["secret"], "the Secret's keys are the file names tern reads"
        (c,) = pod["containers"]
        (mount,) = [m for m in c["volumeMounts"] if m["name"] == vol["name"]]
        # A subPath mount is a copy the kubelet never updates: renewals would not be seen.
        assert "subPath" not in mount and "subPathExpr" not in mount, (overlay, mount)
        assert mount["readOnly"] is True
        assert mount["mountPath"].rstrip("/") == posixpath.dirname(conf["cert"]), overlay
        # The container runs as 65532 with fsGroup 65532: group-readable files suffice.
        assert vol["secret"]["defaultMode"] & 0o040
        assert pod["securityContext"]["fsGroup"] == c["securityContext"]["runAsGroup"]
    if overlay == "overlays/multi-replica":
        conf_text = configmap(docs, "tern-pods")["data"]["tern-0.conf"]
        assert f"cert={conf['cert']}" in conf_text and f"pkey={conf['pkey']}" in conf_text


def test_cert_manager_certificate_feeds_the_mounted_secret():
    docs = render("overlays/metallb")
    (cert,) = by_kind(docs, "Certificate")
    assert cert["apiVersion"] == "cert-manager.io/v1"
    (deploy,) = by_kind(docs, "Deployment")
    vol = tls_volume(deploy["spec"]["template"]["spec"])
    assert cert["spec"]["secretName"] == vol["secret"]["secretName"]
    assert cert["metadata"]["namespace"] == deploy["metadata"]["namespace"]
    # The name clients put in turns: URIs; the realm is the same host here.
    assert conf_values()["realm"] in cert["spec"]["dnsNames"]
    # A renewal brings a new key too.
    assert cert["spec"]["privateKey"]["rotationPolicy"] == "Always"


def uncommented_443_patch():
    """The kustomization of overlays/metallb with its commented 443 patch turned on."""
    text = (K8S / "overlays" / "metallb" / "kustomization.yaml").read_text()
    lines = text.splitlines()
    start = lines.index("# patches:")
    block = [ln[2:] for ln in lines[start:] if ln.startswith("# ") or ln == "#"]
    assert block[0] == "patches:" and len(block) > 5
    return "\n".join(lines[:start] + block) + "\n"


def test_the_documented_443_patch_renders(tmp_path):
    copy = tmp_path / "k8s"
    shutil.copytree(K8S, copy, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    kustomization = copy / "overlays" / "metallb" / "kustomization.yaml"
    kustomization.write_text(uncommented_443_patch())
    out = subprocess.run(["kubectl", "kustomize", str(copy / "overlays" / "metallb")],
                         check=True, capture_output=True, text=True).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    (svc,) = lb_services(docs)
    (tls,) = [p for p in svc["spec"]["ports"] if p["name"] == "turn-tls"]
    assert (tls["port"], tls["targetPort"], tls["protocol"]) == (443, 5349, "TCP")
    assert kubernetes_validate([write_docs(tmp_path / "443.yaml", docs)]).returncode == 0
    # The dual-stack overlay, built on overlays/metallb, gets the same port.
    out = subprocess.run(["kubectl", "kustomize", str(copy / "overlays" / "metallb-dual-stack")],
                         check=True, capture_output=True, text=True).stdout
    (svc,) = lb_services([d for d in yaml.safe_load_all(out) if d])
    (tls,) = [p for p in svc["spec"]["ports"] if p["name"] == "turn-tls"]
    assert (tls["port"], tls["targetPort"], svc["spec"]["ipFamilyPolicy"]) == (443, 5349, "PreferDualStack")


def test_workload_shape(rendered):
    overlay, docs = rendered
    conf = conf_values()
    drain = int(conf["drain-timeout"])
    assert conf["admin-listen"] == "0.0.0.0:9641"
    for w in workloads(docs):
        spec = w["spec"]
        if w["kind"] == "Deployment":
            assert spec["replicas"] == 1
            assert spec["strategy"]["type"] == "Recreate"
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert pod["automountServiceAccountToken"] is False
        assert drain + 5 <= pod["terminationGracePeriodSeconds"] <= drain + 60, (
            "terminationGracePeriodSeconds must be a few seconds above drain-timeout"
        )
        (c,) = pod["containers"]
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0
        assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add")
        for kind in ("requests", "limits"):
            assert {"cpu", "memory"} <= set(c["resources"][kind]), kind
        admin = {p["name"]: p["containerPort"] for p in c["ports"]}["admin"]
        assert admin == 9641
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] in ("admin", 9641)
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert any("secret" in v for v in volumes.values()), "the shared secret comes from a Secret"
        assert any("configMap" in v for v in volumes.values()), "the config comes from a ConfigMap"


def configmap(docs, prefix):
    (cm,) = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith(prefix)]
    return cm


def tern_list(value):
    """A TERN_* variable's value the way tern reads a multi-valued key from it: one entry per
    comma-separated item, blanks trimmed, empty items skipped (crates/tern/src/overrides.rs)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def external_ips_from_env(docs, deploy):
    """The external-ip entries the Deployment's pod gets: TERN_EXTERNAL_IP from tern-public."""
    (env,) = [e for e in deploy["spec"]["template"]["spec"]["containers"][0]["env"]
              if e["name"] == "TERN_EXTERNAL_IP"]
    ref = env["valueFrom"]["configMapKeyRef"]
    public = configmap(docs, "tern-public")
    assert ref["name"] == public["metadata"]["name"]
    return public["data"][ref["key"]], tern_list(public["data"][ref["key"]])


@pytest.mark.parametrize("overlay", METALLB)
def test_address_written_once_metallb(overlay):
    docs = render(overlay)
    (svc,) = lb_services(docs)
    (deploy,) = by_kind(docs, "Deployment")
    value, ips = external_ips_from_env(docs, deploy)
    # One address per family of the Service, in its order: tern reads one external-ip each.
    assert [family(ip) for ip in ips] == svc["spec"]["ipFamilies"], (overlay, value)
    # The same value is MetalLB's list (comma-separated, one per family), never retyped.
    assert svc["metadata"]["annotations"][LB_IPS] == value == ",".join(ips)
    text = (K8S / overlay / "kustomization.yaml").read_text()
    for ip in ips:
        assert text.count(ip) == 1, f"{overlay}: {ip} must be written once in the overlay"


def test_multi_replica_one_service_and_address_per_pod():
    docs = render("overlays/multi-replica")
    assert not by_kind(docs, "Deployment")
    (sts,) = by_kind(docs, "StatefulSet")
    addresses = generate.read_addresses(K8S / "overlays" / "multi-replica" / "addresses.txt")
    assert sts["spec"]["replicas"] == len(addresses) >= 2
    pods_cm = configmap(docs, "tern-pods")
    lbs = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")
           if s["spec"].get("type") == "LoadBalancer"}
    assert set(lbs) == {f"tern-{i}" for i in range(len(addresses))}
    for i, ip in enumerate(addresses):
        pod = f"tern-{i}"
        svc = lbs[pod]
        assert svc["spec"]["selector"]["statefulset.kubernetes.io/pod-name"] == pod
        assert svc["metadata"]["annotations"]["metallb.io/loadBalancerIPs"] == ip
        conf = pods_cm["data"][f"{pod}.conf"]
        assert re.findall(r"^external-ip=(.*)$", conf, re.M) == [ip]
    c = sts["spec"]["template"]["spec"]["containers"][0]
    assert c["args"] == ["-c", "/etc/tern/pods/$(POD_NAME).conf"]
    assert not any(e["name"] == "TERN_EXTERNAL_IP" for e in c.get("env", []))


# --- IPv6 and dual-stack ---------------------------------------------------------------------


def family(ip):
    return {4: "IPv4", 6: "IPv6"}[ipaddress.ip_address(ip).version]


def container_env(workload):
    (c,) = workload["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e for e in c.get("env", [])}


def test_service_ip_families(rendered):
    overlay, docs = rendered
    for s in lb_services(docs):
        spec, name = s["spec"], s["metadata"]["name"]
        if overlay in DUAL_STACK:
            # Both families when the cluster has them, IPv4 first (the ClusterIP's family).
            assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("PreferDualStack", ["IPv4", "IPv6"])
        else:
            assert (spec["ipFamilyPolicy"], spec["ipFamilies"]) == ("SingleStack", ["IPv4"]), name
        annotations = s["metadata"].get("annotations", {})
        assert not any(a.startswith("metallb.universe.tf/") for a in annotations), "deprecated prefix"
        if LB_IPS in annotations:
            # MetalLB refuses addresses whose families are not the Service's (one per family).
            ips = annotations[LB_IPS].split(",")
            assert [family(ip) for ip in ips] == spec["ipFamilies"], (overlay, name, ips)
            assert ips == [str(ipaddress.ip_address(ip)) for ip in ips], "no blanks, canonical"


def test_tern_advertises_an_address_per_family_of_its_service(rendered):
    overlay, docs = rendered
    lbs = {s["spec"]["selector"].get("statefulset.kubernetes.io/pod-name"): s for s in lb_services(docs)}
    for w in workloads(docs):
        if w["kind"] == "Deployment":
            (svc,) = lbs.values()
            _, ips = external_ips_from_env(docs, w)
            pairs = [(svc, ips)]
        else:
            pods = configmap(docs, "tern-pods")["data"]
            pairs = [(lbs[f.removesuffix(".conf")], re.findall(r"^external-ip=(.*)$", conf, re.M))
                     for f, conf in pods.items()]
        for svc, ips in pairs:
            # A relayed address of a family the Service does not carry is unreachable, and a
            # family the Service carries without an external-ip would advertise the pod's.
            assert [family(ip) for ip in ips] == svc["spec"]["ipFamilies"], (overlay, ips)
            if LB_IPS in svc["metadata"].get("annotations", {}):
                assert svc["metadata"]["annotations"][LB_IPS].split(",") == ips


def implemented_keys():
    """tern's keys (crates/tern/src/keys.rs): name -> whether it may be given more than once."""
    text = (REPO / "crates" / "tern" / "src" / "keys.rs").read_text()
    table = text[text.index("pub const IMPLEMENTED"):]
    table = table[:table.index("];")]
    keys = {name: False for name in re.findall(r'\bkey\("([a-z0-9-]+)"', table)}
    keys.update({name: True for name in re.findall(r'multi\(key\("([a-z0-9-]+)"', table)})
    assert {"listening-ip", "relay-ip", "external-ip", "admin-listen"} <= set(keys), "keys.rs moved?"
    return keys


def test_tern_variables_name_keys_tern_reads(rendered):
    overlay, docs = rendered
    keys = implemented_keys()
    by_var = {"TERN_" + k.upper().replace("-", "_"): k for k in keys}
    for w in workloads(docs):
        for name, e in container_env(w).items():
            if not name.startswith("TERN_"):
                continue
            assert name in by_var, f"{overlay}: tern ignores {name}"
            if "," in e.get("value", "") or name == "TERN_EXTERNAL_IP":
                # A list (or a ConfigMap value that may be one) needs a repeatable key.
                assert keys[by_var[name]], f"{overlay}: {by_var[name]} takes one value"


def test_dual_stack_tern_listens_and_relays_on_both_families(rendered):
    overlay, docs = rendered
    for w in workloads(docs):
        env = container_env(w)
        (c,) = w["spec"]["template"]["spec"]["containers"]
        admin_port = {p["name"]: p["containerPort"] for p in c["ports"]}["admin"]
        if overlay not in DUAL_STACK:
            # IPv4 only, as the Service: the file's default listening-ip and relay-ip.
            assert not {"TERN_LISTENING_IP", "TERN_RELAY_IP", "TERN_ADMIN_LISTEN"} & set(env)
            for key in ("listening-ip", "relay-ip"):
                assert ipaddress.ip_address(conf_values().get(key, "0.0.0.0")).version == 4, key
            continue
        for var in ("TERN_LISTENING_IP", "TERN_RELAY_IP"):
            ips = [ipaddress.ip_address(v) for v in tern_list(env[var]["value"])]
            # One wildcard per family: every address of the pod, whichever the CNI gives.
            assert sorted(ip.version for ip in ips) == [4, 6], (var, ips)
            assert all(ip.is_unspecified for ip in ips), (var, ips)
        # The kubelet probes the pod's first address (IPv6 on an IPv6-first cluster): the admin
        # port on [::] (which takes IPv4 too), replacing the image's TERN_ADMIN_LISTEN.
        host, _, port = env["TERN_ADMIN_LISTEN"]["value"].rpartition(":")
        assert host == "[::]" and int(port) == admin_port


def test_the_dual_stack_overlay_only_adds_to_metallb():
    """Apart from the address, the family fields and the variables, the dual-stack overlay
    renders exactly what overlays/metallb does: the same ports, policy, probes and volumes."""
    def normalized(overlay):
        docs = render(overlay)
        for d in docs:
            d["metadata"]["name"] = re.sub(r"^(tern-(config|public))-[a-z0-9]{10}$", r"\1", d["metadata"]["name"])
            d["metadata"].get("annotations", {}).pop(LB_IPS, None)
            d["data"] = {} if d["metadata"]["name"] == "tern-public" else d.get("data")
            if d["kind"] == "Service" and d["spec"].get("type") == "LoadBalancer":
                del d["spec"]["ipFamilyPolicy"], d["spec"]["ipFamilies"]
            for w in workloads([d]):
                (c,) = w["spec"]["template"]["spec"]["containers"]
                c["env"] = [e for e in c["env"] if e["name"] not in
                            ("TERN_LISTENING_IP", "TERN_RELAY_IP", "TERN_ADMIN_LISTEN")]
                c["env"][0]["valueFrom"]["configMapKeyRef"]["name"] = "tern-public"
        return sorted(json.dumps(d, sort_keys=True) for d in docs)
    assert normalized("overlays/metallb-dual-stack") == normalized("overlays/metallb")


# --- external validators --------------------------------------------------------------------


def write_rendered(tmp_path):
    paths = []
    for overlay in OVERLAYS:
        out = subprocess.run(["kubectl", "kustomize", str(K8S / overlay)], check=True,
                             capture_output=True, text=True).stdout
        p = tmp_path / (overlay.replace("/", "-") + ".yaml")
        p.write_text(out)
        paths.append(p)
    return paths


def write_docs(path, docs):
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def custom_schema(doc):
    return CUSTOM_SCHEMAS.get((doc["apiVersion"], doc["kind"]))


def split_custom(paths, tmp_path):
    """Writes each file's built-in objects to a file of its own; returns those files and the
    custom resources, which kubernetes-validate cannot check."""
    builtin, custom = [], []
    for p in paths:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d]
        custom += [d for d in docs if custom_schema(d)]
        builtin.append(write_docs(tmp_path / f"builtin-{p.name}",
                                  [d for d in docs if not custom_schema(d)]))
    return builtin, custom


def schema_errors(doc):
    import jsonschema
    validator = jsonschema.Draft7Validator(custom_schema(doc))
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def kubernetes_validate(paths):
    exe = Path(sys.executable).parent / "kubernetes-validate"
    return subprocess.run([str(exe), "--strict", "-k", KUBERNETES_VERSION, "--quiet", *map(str, paths)],
                          capture_output=True, text=True)


def test_kubernetes_validate_strict(tmp_path):
    paths, custom = split_custom(write_rendered(tmp_path), tmp_path)
    r = kubernetes_validate(paths)
    assert r.returncode == 0, r.stdout + r.stderr
    # Every built-in object was checked against a schema: none was passed unseen.
    assert "find schema" not in r.stdout + r.stderr, r.stdout + r.stderr
    # The custom resources, against their schemas above: the Certificate is the only one (in
    # overlays/metallb and in the dual-stack overlay built on it).
    assert [(d["kind"], d["metadata"]["name"]) for d in custom] == [("Certificate", "tern-tls")] * 2
    for doc in custom:
        assert schema_errors(doc) == [], doc["metadata"]["name"]
    # ... and that schema refuses what it should: a misspelt field, a wrong enum value.
    bad = yaml.safe_load(yaml.safe_dump(custom[0]))
    bad["spec"]["secretname"] = bad["spec"].pop("secretName")
    bad["spec"]["privateKey"]["rotationPolicy"] = "always"
    errors = " ".join(schema_errors(bad))
    assert "secretname" in errors and "secretName" in errors and "always" in errors, errors
    # Why the split: kubernetes-validate passes a kind it has no schema for, with only a note.
    r = kubernetes_validate([write_docs(tmp_path / "cert.yaml", custom)])
    assert "find schema for kind Certificate" in r.stdout + r.stderr, r.stdout + r.stderr
    # The validator does reject what it should: an unknown field fails strict validation.
    bad = tmp_path / "bad.yaml"
    bad.write_text(paths[0].read_text().replace("externalTrafficPolicy: Local",
                                                "externalTrafficPolicy: Local\n  hostNetwork: true", 1))
    assert kubernetes_validate([bad]).returncode != 0


def test_checkov_no_unjustified_failure(tmp_path):
    import json
    write_rendered(tmp_path)
    exe = Path(sys.executable).parent / "checkov"
    r = subprocess.run([str(exe), "-d", str(tmp_path), "--framework", "kubernetes", "--quiet",
                        "--compact", "--skip-download", "-o", "json"],
                       capture_output=True, text=True, timeout=300)
    reports = json.loads(r.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = {f["check_id"] for rep in reports for f in rep["results"]["failed_checks"]}
    passed = sum(rep["summary"]["passed"] for rep in reports)
    assert passed > 50, "checkov ran no checks"
    unjustified = failed - set(JUSTIFIED)
    assert not unjustified, f"checkov failures without a justification: {sorted(unjustified)}"
    readme = (REPO / "README.md").read_text()
    for check in failed:
        assert check in readme, f"{check} fails but README.md does not justify it"


# --- Terraform --------------------------------------------------------------------------------


TF = REPO / "terraform" / "tern"
# No version check against checkpoint-api.hashicorp.com: the tests contact nothing outside.
TF_ENV = {**os.environ, "CHECKPOINT_DISABLE": "1"}


def test_terraform_fmt():
    r = subprocess.run(["terraform", "fmt", "-check", "-recursive", "-diff", str(TF)],
                       capture_output=True, text=True, env=TF_ENV)
    assert r.returncode == 0, r.stdout + r.stderr


def load_tf(name):
    with open(TF / name) as f:
        return hcl2.load(f)


def one(value):
    """checkov's HCL parser (the `hcl2` module it installs) wraps attribute values in lists."""
    while isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value


def strip(value):
    value = one(value)
    return value.strip('"') if isinstance(value, str) else value


def test_terraform_port_range_matches_the_manifests():
    ports = generate.ports_of(K8S)
    low, high = ports.low, ports.high
    variables = {k: v for block in load_tf("variables.tf")["variable"] for k, v in block.items()}
    assert int(one(variables["min_port"]["default"])) == low
    assert int(one(variables["max_port"]["default"])) == high
    assert int(one(variables["drain_timeout"]["default"])) == int(conf_values()["drain-timeout"])
    main = (TF / "main.tf").read_text()
    assert re.search(r"relay_ports\s*=\s*range\(var\.min_port,\s*var\.max_port \+ 1\)", main)
    resources = {}
    for block in load_tf("main.tf")["resource"]:
        for kind, named in block.items():
            for name, body in named.items():
                resources[(strip(kind), strip(name))] = body
    svc = one(resources[("kubernetes_service_v1", "tern")]["spec"])
    assert strip(svc["type"]) == "LoadBalancer"
    assert strip(svc["external_traffic_policy"]) == "Local"
    assert one(svc["allocate_load_balancer_node_ports"]) is False
    dynamic_ports = {strip(d["port"]["for_each"]): one(d["port"]["content"])
                     for d in svc["dynamic"] if "port" in d}
    content = dynamic_ports["${local.relay_ports}"]
    assert strip(content["port"]) == strip(content["target_port"]) == "${port.value}"
    assert strip(content["name"]) == "relay-${port.value}"
    assert {strip(p["name"]): strip(p["protocol"]) for p in svc["port"]} == {
        "turn-udp": "UDP", "turn-tcp": "TCP"}
    tls = dynamic_ports["${local.tls}"]
    assert strip(tls["name"]) == "turn-tls" and strip(tls["protocol"]) == "TCP"
    assert strip(tls["target_port"]) == "${var.tls_port}"
    assert strip(tls["port"]) == "${var.tls_service_port}"
    assert int(one(variables["tls_port"]["default"])) == generate.ports_of(K8S).tls
    assert strip(variables["tls_secret_name"]["default"]) == "tern-tls"
    assert re.search(r'"cert=/etc/tern/tls/tls\.crt"', main) and re.search(r'"pkey=/etc/tern/tls/tls\.key"', main)
    dep = one(resources[("kubernetes_deployment_v1", "tern")]["spec"])
    assert int(one(dep["replicas"])) == 1
    assert strip(one(dep["strategy"])["type"]) == "Recreate"
    pod = one(one(dep["template"])["spec"])
    assert "host_network" not in pod
    assert one(one(pod["security_context"])["run_as_non_root"]) is True
    sc = one(one(pod["container"])["security_context"])
    assert one(sc["read_only_root_filesystem"]) is True
    assert one(one(sc["capabilities"])["drop"]) == "ALL"
    container = one(pod["container"])
    (mount,) = [one(d["volume_mount"]) for d in container["dynamic"] if "volume_mount" in d]
    mount_content = one(mount["content"])
    assert "sub_path" not in mount_content, "a sub_path mount never sees a renewed certificate"
    assert strip(mount_content["mount_path"]) == "/etc/tern/tls"
    assert one(mount_content["read_only"]) is True
    (vol,) = [one(d["volume"]) for d in pod["dynamic"] if "volume" in d]
    assert strip(one(one(vol["content"])["secret"])["secret_name"]) == "${volume.value}"
    policy = one(resources[("kubernetes_network_policy_v1", "tern")]["spec"])
    opened = [strip(one(d["ports"]["content"])["port"]) for rule in policy["ingress"]
              for d in rule.get("dynamic", []) if strip(d["ports"]["for_each"]) == "${local.tls}"]
    assert opened == ["${tostring(var.tls_port)}"]


def tf_block(path, header):
    """A top-level block of a .tf file, from `header {` to its closing brace at column 0."""
    lines = path.read_text().splitlines()
    start = lines.index(header + " {")
    return "\n".join(lines[start:lines.index("}", start) + 1]) + "\n"


def tf_console(tmp_path, expression, **variables):
    """Evaluates an expression with `terraform console` on a copy of the module holding only
    its variables.tf and its locals: no resource and no provider, so nothing to download.
    Returns (the value or None, terraform's output)."""
    module = tmp_path / "tf"
    module.mkdir(exist_ok=True)
    (module / "variables.tf").write_text((TF / "variables.tf").read_text())
    (module / "locals.tf").write_text(tf_block(TF / "main.tf", "locals"))
    variables = {"namespace": "turn", "static_auth_secret": "s", **variables}
    args = [a for k, v in variables.items() for a in ("-var", f"{k}={v}")]
    r = subprocess.run(["terraform", "console", *args], input=f"jsonencode({expression})\n",
                       cwd=module, capture_output=True, text=True, env=TF_ENV, timeout=60)
    out = r.stdout + r.stderr
    if r.returncode != 0:
        return None, out
    return json.loads(json.loads(r.stdout.strip().splitlines()[-1])), out


# What the resources take from the locals (test_terraform_resources_use_the_locals).
TF_LOCALS = "[local.turnserver_conf, local.ip_family_policy, local.ip_families, " \
    "local.service_annotations, local.admin_listen, local.ice_server_uris]"


def conf_lines(conf, key):
    return re.findall(rf"^{re.escape(key)}=(.*)$", conf, re.M)


def test_terraform_ipv4_only_by_default(tmp_path):
    value, out = tf_console(tmp_path, TF_LOCALS, external_ip="192.168.1.240")
    assert value is not None, out
    conf, policy, families, annotations, admin, uris = value
    # As k8s/base and overlays/metallb: IPv4 only, the same listening and admin addresses.
    assert (policy, families) == ("SingleStack", ["IPv4"])
    assert annotations == {LB_IPS: "192.168.1.240"}
    assert conf_lines(conf, "external-ip") == ["192.168.1.240"]
    assert conf_lines(conf, "listening-ip") == conf_lines(conf, "relay-ip") == []
    assert admin == conf_values()["admin-listen"] == "0.0.0.0:9641"
    assert uris == ["turn:192.168.1.240:3478?transport=udp", "turn:192.168.1.240:3478?transport=tcp"]
    value, out = tf_console(tmp_path, "local.service_annotations", external_ip="192.168.1.240",
                            metallb="false", service_annotations='{"a"="b"}')
    assert value == {"a": "b"}, out


def test_terraform_dual_stack_follows_the_overlay(tmp_path):
    value, out = tf_console(tmp_path, TF_LOCALS, external_ip="192.168.1.240",
                            external_ipv6="2001:db8::240")
    assert value is not None, out
    conf, policy, families, annotations, admin, uris = value
    # The Service, MetalLB's list and tern's external-ip lines as overlays/metallb-dual-stack
    # renders them, and each address written once (as a variable).
    docs = render("overlays/metallb-dual-stack")
    (svc,) = lb_services(docs)
    (deploy,) = by_kind(docs, "Deployment")
    _, ips = external_ips_from_env(docs, deploy)
    assert (policy, families) == (svc["spec"]["ipFamilyPolicy"], svc["spec"]["ipFamilies"])
    assert annotations == {LB_IPS: "192.168.1.240,2001:db8::240"}
    assert conf_lines(conf, "external-ip") == ["192.168.1.240", "2001:db8::240"]
    assert [family(ip) for ip in conf_lines(conf, "external-ip")] == [family(ip) for ip in ips]
    # Listening, relay and admin addresses: what the component's variables give tern.
    env = container_env(deploy)
    assert conf_lines(conf, "listening-ip") == tern_list(env["TERN_LISTENING_IP"]["value"])
    assert conf_lines(conf, "relay-ip") == tern_list(env["TERN_RELAY_IP"]["value"])
    assert admin == env["TERN_ADMIN_LISTEN"]["value"]
    assert uris[2:] == ["turn:[2001:db8::240]:3478?transport=udp",
                        "turn:[2001:db8::240]:3478?transport=tcp"]


@pytest.mark.parametrize("variables, message", [
    ({"external_ip": "2001:db8::240"}, "external_ip must be an IPv4 address"),
    ({"external_ip": "192.168.1.300"}, "external_ip must be an IPv4 address"),
    ({"external_ip": "192.168.1.240", "external_ipv6": "192.168.1.241"}, "external_ipv6 must be an IPv6"),
    ({"external_ip": "192.168.1.240", "external_ipv6": "2001:db8::24g"}, "external_ipv6 must be an IPv6"),
])
def test_terraform_refuses_an_address_of_the_wrong_family(tmp_path, variables, message):
    value, out = tf_console(tmp_path, "local.external_ips", **variables)
    assert value is None and message in out, out


def test_terraform_resources_use_the_locals():
    """The values the tests above evaluate are the ones the resources take."""
    resources = {}
    for block in load_tf("main.tf")["resource"]:
        for kind, named in block.items():
            for name, body in named.items():
                resources[(strip(kind), strip(name))] = body
    svc = resources[("kubernetes_service_v1", "tern")]
    assert strip(one(svc["metadata"])["annotations"]) == "${local.service_annotations}"
    spec = one(svc["spec"])
    assert strip(spec["ip_family_policy"]) == "${local.ip_family_policy}"
    assert strip(spec["ip_families"]) == "${local.ip_families}"
    config = resources[("kubernetes_config_map_v1", "config")]
    assert strip(one(config["data"])["turnserver.conf"]) == "${local.turnserver_conf}"
    pod = one(one(one(resources[("kubernetes_deployment_v1", "tern")]["spec"])["template"])["spec"])
    env = one(one(pod["container"])["env"])
    # A variable: the image's TERN_ADMIN_LISTEN would win over an admin-listen in the file.
    assert (strip(env["name"]), strip(env["value"])) == ("TERN_ADMIN_LISTEN", "${local.admin_listen}")
    outputs = {k: v for block in load_tf("outputs.tf")["output"] for k, v in block.items()}
    assert strip(outputs["ice_server_uris"]["value"]) == "${local.ice_server_uris}"


# --- Dockerfiles ---------------------------------------------------------------------------


def runtime_stage(path):
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    start = max(i for i, ln in enumerate(lines) if ln.startswith("FROM "))
    return [ln for ln in lines[start:] if not ln.startswith("COPY ")]


def test_both_dockerfiles_have_the_same_runtime_stage():
    full = runtime_stage(REPO / "docker" / "Dockerfile")
    local = runtime_stage(REPO / "docker" / "Dockerfile.local")
    assert full == local
    assert full[0] == "FROM scratch"
    assert "USER 65532:65532" in full
    assert 'ENTRYPOINT ["/tern", "serve"]' in full
