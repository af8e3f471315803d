// Validate prometheus-operator resources (PodMonitor, PrometheusRule) against the models
// generated from prometheus-operator's CRDs (@kubernetes-models/prometheus-operator).
//   node schema-check/podmonitor.mjs < resources.json      (a JSON array of resources)
// Prints one line per resource; exits 1 if any is invalid.
import { PodMonitor, PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { PodMonitor, PrometheusRule };
const chunks = [];
for await (const c of process.stdin) chunks.push(c);
let failed = 0;
for (const r of JSON.parse(Buffer.concat(chunks).toString())) {
  const Model = kinds[r.kind];
  const name = `${r.kind}/${r.metadata?.name}`;
  if (!Model || r.apiVersion !== Model.apiVersion) {
    console.log(`${name}: no schema for ${r.apiVersion} ${r.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(r).validate();
    console.log(`${name}: valid`);
  } catch (e) {
    console.log(`${name}: ${e.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
