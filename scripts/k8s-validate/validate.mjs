// Reads the manifests kustomize rendered (one multi-document YAML file per argument) and:
// - validates each custom resource (KEDA, Prometheus operator) against its CRD's schema,
//   with the models the kubernetes-models project generates from those CRDs;
// - checks what every workload must hold: non-root, read-only root filesystem, no privilege
//   escalation, every capability dropped, resource requests and a memory limit, and no
//   Secret written into the manifests;
// - writes the built-in resources to OUT for kubernetes-validate.
import { readFileSync, writeFileSync } from "node:fs";
import { parseAllDocuments, stringify } from "yaml";

const CRDS = {
  "keda.sh/v1alpha1": "@kubernetes-models/keda/keda.sh/v1alpha1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};
const out = process.env.OUT;
const core = [];
const problems = [];
let custom = 0;

function checkPod(name, pod) {
  const podSec = pod.securityContext ?? {};
  if (podSec.runAsNonRoot !== true) problems.push(`${name}: the pod does not require runAsNonRoot`);
  for (const c of [...(pod.initContainers ?? []), ...pod.containers]) {
    const where = `${name}/${c.name}`;
    const sec = c.securityContext ?? {};
    if (sec.readOnlyRootFilesystem !== true) problems.push(`${where}: root filesystem not read-only`);
    if (sec.allowPrivilegeEscalation !== false) problems.push(`${where}: privilege escalation allowed`);
    if (!(sec.capabilities?.drop ?? []).includes("ALL")) problems.push(`${where}: capabilities not dropped`);
    const res = c.resources ?? {};
    if (!res.requests?.cpu || !res.requests?.memory) problems.push(`${where}: no cpu and memory requests`);
    if (!res.limits?.memory) problems.push(`${where}: no memory limit`);
    for (const e of c.env ?? []) {
      if (/PASSWORD|DATABASE_URL$/.test(e.name) && e.value !== undefined) {
        problems.push(`${where}: ${e.name} inlined; use a secret file (${e.name}_FILE)`);
      }
    }
  }
}

for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) throw new Error(`${file}: ${doc.errors[0].message}`);
    const obj = doc.toJS();
    if (!obj) continue;
    const name = `${file}: ${obj.kind}/${obj.metadata?.name}`;
    if (obj.kind === "Secret") problems.push(`${name}: a Secret in the manifests (reference one, never inline it)`);
    if (obj.kind === "Deployment" || obj.kind === "Job") checkPod(name, obj.spec.template.spec);
    const module = CRDS[obj.apiVersion];
    if (module) {
      const { [obj.kind]: Model } = await import(`${module}/${obj.kind}`);
      if (!Model) throw new Error(`${name}: no schema for ${obj.apiVersion} ${obj.kind}`);
      try {
        new Model(obj).validate();
        custom += 1;
        console.log(`ok   ${name} (${obj.apiVersion}, the CRD's schema)`);
      } catch (e) {
        problems.push(`${name}: ${e.message}`);
      }
    } else if (obj.apiVersion.includes(".") && !obj.apiVersion.includes("k8s.io/")) {
      problems.push(`${name}: ${obj.apiVersion} is a custom resource without a schema here`);
    } else {
      core.push(obj);
    }
  }
}
if (out) writeFileSync(out, core.map((o) => stringify(o)).join("---\n"));
for (const p of problems) console.error(`FAIL ${p}`);
console.log(`${custom} custom resources valid, ${core.length} built-in resources for kubernetes-validate, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
