// Transforms text. Parameters: a YAML file named by ATTUNE_PARAMETER_FILE (flat `key: value`).
const fs = require('node:fs');

function parseFlatYaml(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][\w-]*):\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2];
    if (/^'.*'$/.test(v)) v = v.slice(1, -1).replace(/''/g, "'");
    else if (/^".*"$/.test(v)) v = JSON.parse(v);
    out[m[1]] = v;
  }
  return out;
}

const params = parseFlatYaml(fs.readFileSync(process.env.ATTUNE_PARAMETER_FILE, 'utf8'));
const text = String(params.text ?? '');
const mode = params.mode || 'upper';
const transforms = {
  upper: (s) => s.toUpperCase(),
  lower: (s) => s.toLowerCase(),
  reverse: (s) => [...s].reverse().join(''),
};
if (!transforms[mode]) {
  console.error(`transform: unknown mode '${mode}' (use upper, lower or reverse)`);
  process.exit(2);
}
console.error(`transforming ${text.length} characters (${mode})`);
console.log(JSON.stringify({ input: text, output: transforms[mode](text), mode, length: text.length }));
