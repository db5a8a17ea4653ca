#!/usr/bin/env bash
# Checks deploy/ with the real tools: promtool (the Prometheus configurations, the alert
# rules and their unit tests, and every query of the Grafana dashboard), kustomize (through
# kubectl) and kubernetes-validate for the Kubernetes manifests, and a Compose parser for the
# compose file. .ci/run installs the tools; run it with `just check-deploy`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The Kubernetes version the manifests are validated against.
K8S_VERSION=${K8S_VERSION:-1.32.0}

echo "== Prometheus: configurations, rules, rule tests"
promtool check config deploy/prometheus/prometheus.yml deploy/prometheus/prometheus.local.yml
promtool check rules deploy/prometheus/rules.yml
promtool test rules deploy/prometheus/rules.test.yml

echo "== Grafana: every dashboard query parses as PromQL"
python3 - deploy/grafana/dashboards/order-svc.json >"$tmp/dashboard-rules.yml" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1]))
print("groups:\n  - name: dashboard\n    rules:")
n = 0
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = (target["expr"].replace("$__rate_interval", "1m")
                .replace("$job", ".*").replace("$instance", ".*"))
        n += 1
        print(f"      - record: dashboard:query{n}\n        expr: {json.dumps(expr)}")
PY
promtool check rules "$tmp/dashboard-rules.yml"

echo "== Kubernetes: the PrometheusRule is rules.yml; render, validate against Kubernetes $K8S_VERSION and the CRDs"
scripts/k8s-rules.sh --check
for dir in deploy/kubernetes/base deploy/kubernetes/overlays/production; do
  name=$(echo "$dir" | tr / -)
  kubectl kustomize "$dir" >"$tmp/$name.yaml"
  OUT="$tmp/$name-core.yaml" node scripts/k8s-validate/validate.mjs "$tmp/$name.yaml"
  kubernetes-validate --kubernetes-version "$K8S_VERSION" --strict --quiet "$tmp/$name-core.yaml"
  echo "$dir: $(grep -c '^kind:' "$tmp/$name.yaml") resources valid"
done

echo "== Compose: deploy/compose.yaml parsed and checked by compose-spec"
POSTGRES_PASSWORD=x SERVE_DB_PASSWORD=x GRAFANA_ADMIN_PASSWORD=x python3 - deploy/compose.yaml <<'PY'
import sys
import compose_spec
options = compose_spec.PyOptions()
options.apply_merge = True  # the file's x-app anchors and << merges
compose = options.from_yaml(open(sys.argv[1]).read())
compose.validate()
print(f"{sys.argv[1]}: valid, services {', '.join(compose.service_names())}")
PY
