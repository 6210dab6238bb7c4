// Validate AsyncAPI documents with the official parser; print every diagnostic as JSON, exit 1 on any error.
// Usage: node validate.mjs <document.json>...
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const path of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), { source: path });
  for (const d of diagnostics) {
    const severity = Object.keys(DiagnosticSeverity).find((k) => DiagnosticSeverity[k] === d.severity);
    console.log(JSON.stringify({ path, severity, code: d.code, message: d.message, at: d.path.join("/") }));
    failed ||= d.severity === DiagnosticSeverity.Error;
  }
  failed ||= document === undefined;
}
process.exit(failed ? 1 : 0);
