#!/usr/bin/env bash
# Writes deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml from
# deploy/prometheus/rules.yml: the same groups, as a PrometheusRule. With --check, fails when
# the file differs from what it would write (`just check-deploy` runs it so).
set -euo pipefail
cd "$(dirname "$0")/.."
out=deploy/kubernetes/components/prometheus-operator/prometheusrule.yaml
render() {
  cat <<'HEAD'
# Written by scripts/k8s-rules.sh from deploy/prometheus/rules.yml: change that file, then
# run `just k8s-rules`. The runbook links use the external label `runbook_base` when set.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: order-svc
spec:
HEAD
  # From `groups:` on, two spaces deeper.
  sed -n '/^groups:/,$p' deploy/prometheus/rules.yml | sed 's/^\(.\)/  \1/'
}
if [ "${1:-}" = --check ]; then
  diff -u "$out" <(render) || { echo "$out is out of date: run just k8s-rules" >&2; exit 1; }
else
  render >"$out"
fi
