#!/usr/bin/env bash
# Compiles contracts/*.sol with solc-js at a pinned version into contracts/build/*.json
# (abi + bytecode), deterministically: same sources, same bytes. Usage:
#   scripts/compile-contracts.sh [OUT_DIR]   (default contracts/build)
# solc-js is installed from npm into contracts/.solc/ (gitignored) on first use.
set -euo pipefail
SOLC_VERSION=0.8.28
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/contracts/build}
solc_dir=$root/contracts/.solc

if [ "$(node -p "try{require('$solc_dir/node_modules/solc/package.json').version}catch(e){''}")" != "$SOLC_VERSION" ]; then
    mkdir -p "$solc_dir"
    # A private package.json so npm installs here and not into a parent directory.
    echo '{"name":"bitcloud-solc","private":true}' >"$solc_dir/package.json"
    npm install --prefix "$solc_dir" --no-audit --no-fund --no-save "solc@$SOLC_VERSION" >&2
fi

mkdir -p "$out"
SOLC_DIR=$solc_dir SRC_DIR=$root/contracts OUT_DIR=$out node - <<'JS'
const fs = require('fs');
const path = require('path');
const solc = require(path.join(process.env.SOLC_DIR, 'node_modules', 'solc'));
const src = process.env.SRC_DIR;
const names = ['Cloudcoin', 'CloudcoinChannels'];
const sources = {};
for (const n of names) sources[`${n}.sol`] = { content: fs.readFileSync(path.join(src, `${n}.sol`), 'utf8') };
const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    // No metadata hash in the bytecode: the build then depends only on the code, and a
    // comment edit does not force a new deployment artifact.
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};
const output = JSON.parse(solc.compile(JSON.stringify(input)));
const errors = (output.errors || []).filter((e) => e.severity === 'error');
for (const e of output.errors || []) console.error(e.formattedMessage);
if (errors.length) process.exit(1);
for (const n of names) {
  const c = output.contracts[`${n}.sol`][n];
  const artifact = {
    contractName: n,
    compiler: `solc-js ${solc.version()}`,
    abi: c.abi,
    bytecode: '0x' + c.evm.bytecode.object,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
  };
  fs.writeFileSync(path.join(process.env.OUT_DIR, `${n}.json`), JSON.stringify(artifact, null, 2) + '\n');
}
JS
echo "compiled into $out" >&2
