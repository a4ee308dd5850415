// An independent TUF client (tuf-js, the JavaScript implementation npm uses) reading an edgerun
// update repository: tests/test_update_tufjs.py runs it against `edgerun publish`'s output.
//
// usage: node fetch.js BASE_URL TRUSTED_ROOT CACHE_DIR TARGET_PATH OUT_FILE
// prints {"path", "length", "custom"} as JSON and exits 0, or "<ErrorClass>: <message>" on stderr and exits 1.
'use strict';
const fs = require('fs');
const path = require('path');
const { Updater } = require('tuf-js');

async function main() {
  const [base, trustedRoot, cacheDir, targetPath, outFile] = process.argv.slice(2);
  fs.mkdirSync(cacheDir, { recursive: true });
  fs.mkdirSync(path.dirname(outFile), { recursive: true });
  if (!fs.existsSync(path.join(cacheDir, 'root.json'))) {
    fs.copyFileSync(trustedRoot, path.join(cacheDir, 'root.json'));
  }
  const updater = new Updater({
    metadataDir: cacheDir,
    metadataBaseUrl: `${base}/metadata`,
    targetDir: path.dirname(outFile),
    targetBaseUrl: `${base}/targets`,
    config: { fetchRetries: 0 },
  });
  await updater.refresh();
  const info = await updater.getTargetInfo(targetPath);
  if (!info) {
    throw new Error(`no target ${targetPath}`);
  }
  await updater.downloadTarget(info, outFile);
  console.log(JSON.stringify({ path: info.path, length: info.length, custom: info.custom }));
}

main().catch((err) => {
  console.error(`${err.constructor.name}: ${err.message}`);
  process.exit(1);
});
