// Type-check Grafana dashboards against Grafana's published dashboard schema (the `Dashboard`
// type of @grafana/schema, generated from Grafana's CUE schema). Each JSON file becomes an
// object literal typed as Dashboard, so a wrong type, a missing required key or an unknown key
// (TypeScript's excess-property check) is an error naming the path.
//   node schema-check/dashboard.mjs grafana/dashboards/*.json
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const ts = require("typescript");
const here = path.dirname(new URL(import.meta.url).pathname);
const types = path.join(here, "node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen");
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "dashboard-check-"));
const files = process.argv.slice(2).map((f, i) => {
  const out = path.join(dir, `d${i}.ts`);
  const json = fs.readFileSync(f, "utf8");
  JSON.parse(json); // a clear error for broken JSON first
  fs.writeFileSync(out, `import type { Dashboard } from ${JSON.stringify(types)};\nconst dashboard: Dashboard = ${json};\nexport default dashboard;\n`);
  return [f, out];
});
const program = ts.createProgram(files.map(([, out]) => out), { strict: true, noEmit: true, target: ts.ScriptTarget.ES2022, moduleResolution: ts.ModuleResolutionKind.Bundler, module: ts.ModuleKind.ESNext, skipLibCheck: true });
const byOut = Object.fromEntries(files.map(([f, out]) => [out, f]));
let errors = 0;
for (const d of ts.getPreEmitDiagnostics(program)) {
  const file = d.file ? byOut[d.file.fileName] ?? d.file.fileName : "";
  const where = d.file ? ` line ${d.file.getLineAndCharacterOfPosition(d.start).line}` : "";
  console.log(`${file}${where}: ${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`);
  errors++;
}
for (const [f] of files) console.log(`${f}: ${errors ? "checked" : "valid"}`);
fs.rmSync(dir, { recursive: true });
process.exit(errors ? 1 : 0);
