"""The deployment files in deploy/ are checked by the validators available offline.

- the systemd unit by ``systemd-analyze verify`` (every key known, every section right; the only
  complaint allowed is the framegraph binary it names, which is not installed at /opt here);
- the Kubernetes manifests by ``kubernetes-validate`` against the schemas in its wheel;
- deploy/haproxy.cfg by ``haproxy -c`` (tests/test_haproxy.py).
"""

import shutil
import subprocess

import yaml
from conftest import ROOT

DEPLOY = ROOT / "deploy"


def test_the_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "framegraph@.service"
    shutil.copy(DEPLOY / "systemd" / "framegraph@.service", unit)
    checked = subprocess.run(["systemd-analyze", "verify", "--man=no", str(tmp_path / "framegraph@a.service")],
                             capture_output=True, text=True, timeout=60)
    complaints = [line for line in (checked.stdout + checked.stderr).splitlines()
                  if line.strip() and "/opt/framegraph/.venv/bin/framegraph is not executable" not in line]
    assert complaints == [], complaints


def test_the_kubernetes_manifests_match_their_schemas():
    import kubernetes_validate

    documents = [d for d in yaml.safe_load_all((DEPLOY / "kubernetes" / "framegraph.yaml").read_text()) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["Deployment", "Deployment", "Ingress", "Service", "Service"]
    for document in documents:
        kubernetes_validate.validate(document, "1.30", strict=True)  # raises on any unknown or wrong field
    framegraph = next(d for d in documents if d["kind"] == "Ingress")
    assert framegraph["metadata"]["annotations"]["nginx.ingress.kubernetes.io/affinity"] == "cookie"
